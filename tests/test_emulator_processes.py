"""The emulator as a device stand-in in another process, reached only through real transports.

``packrig emulate`` runs in a child process; these tests reach it with pyvisa-py (SCPI over
TCP), python-can's stock ``socketcand`` interface and pyserial ``socket://``, and move its time
over the control port, as the rig does. They check the dialects answer, the CAN schedule, the
RS485 answers, the parallel pair, and that time and data stay in step: a 10-minute virtual run
gives byte-identical CAN logs twice, with no frame missing.
"""
from __future__ import annotations

import filecmp

import can
import pytest
import pyvisa
import serial

from rig.bench import Bench
from rig.clock import VirtualClock
from rig.emulator_client.remote_emulator import RemoteEmulator
from rig.emulator_client.virtual_time_bus import EmulatorBus
from rig.errors import RigError
from rig.files.bench_file import BENCHES, load_bench
from rig.pcs import PcsStandIn
from rig.protocol import can_frames, rs485
from rig.protocol.rs485_commands import AnalogValues
from rig.recorder import Recorder, read_can
from rig.supervisor import Supervisor

SUBPROCESS_BENCH = BENCHES / "emulated-subprocess.toml"


@pytest.fixture
def emulator():
    remote = RemoteEmulator(["--bench", str(SUBPROCESS_BENCH), "--packs", "2"])
    yield remote
    remote.close()


def test_every_port_answers_through_its_own_transport(emulator):
    ends = emulator.endpoints()
    rm = pyvisa.ResourceManager("@py")
    idns = {}
    for name, resource in ends["instruments"].items():
        inst = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=2000)
        idns[name] = inst.query("*IDN?" if name != "chamber" else "ROM?")
        inst.close()
    assert "N8920A" in idns["psu"] and "DAQ970A" in idns["scanner"] and "34465A" in idns["dmm"]
    with can.Bus(**ends["can"]) as bus:
        assert bus.recv(0.2) is None  # a pack that is off says nothing
    with serial.serial_for_url(ends["rs485"], timeout=0.5) as line:
        line.write(rs485.encode_frame(rs485.request(rs485.Cid2.PROTOCOL_VERSION, 0)))
        assert line.read_until(b"\r") == b""  # an Off pack is silent on RS485 too


def test_control_port_refuses_bad_requests_by_name_and_keeps_serving(emulator):
    with pytest.raises(RigError, match="unknown op 'warp'; choices: advance, fault, cyclic"):
        emulator.call("warp")
    with pytest.raises(RigError, match="unknown cyclic action 'pause'; choices: start, stop"):
        emulator.call("cyclic", action="pause")
    with pytest.raises(RigError, match="period_s must be positive, got 0"):
        emulator.call("cyclic", action="start", frames=[[0x305, False, "00" * 8]], period_s=0)
    emulator.call("cyclic", action="stop", handle=99)  # an unknown job: nothing to stop, as twice
    assert emulator.call("status")["t_ns"] == 0


def test_pack_on_the_bus_reports_on_schedule_and_answers_rs485(emulator):
    ends = emulator.endpoints()
    rm = pyvisa.ResourceManager("@py")
    io = rm.open_resource(ends["instruments"]["io"], read_termination="\n", write_termination="\n", timeout=2000)
    clock = VirtualClock()
    emulator.follow(clock)
    bus = emulator.attach_bus(can.Bus(**ends["can"]))
    assert isinstance(bus, EmulatorBus)
    pcs = PcsStandIn(bus, clock)
    pcs.start()
    for relay in ("@101", "@105"):  # POWER of both packs (bench wiring: outputs 1 and 5)
        io.write(f"ROUT:CLOS ({relay})")
    io.query("*OPC?")  # done before time moves (SCPI and time are two channels; the rig's drivers confirm too)
    clock.sleep(2.0)
    for relay in ("@101", "@105"):
        io.write(f"ROUT:OPEN ({relay})")
    io.query("*OPC?")
    clock.sleep(20.0)
    periods = pcs.periods("ProtectionsAlarms")
    assert periods and all(p == pytest.approx(1.0, abs=1e-6) for p in periods)
    assert pcs.latest("ProtectionsAlarms")["ModuleCount"] == 2
    assert pcs.latest("DetailStatus", 3)["ParallelRole"] == "Slave"
    assert bus.received == emulator.last["can_sent"]  # every frame sent has arrived
    with serial.serial_for_url(ends["rs485"], timeout=1.0) as line:
        line.reset_input_buffer()
        line.write(rs485.encode_frame(rs485.request(rs485.Cid2.ANALOG_VALUES, rs485.SLAVE_ADR,
                                                    bytes([rs485.SLAVE_ADR]))))
        reader = rs485.FrameReader()
        replies = []
        while not replies:
            data = line.read(256)
            assert data, "no reply from the slave within 1 s"
            replies = [f for f in reader.feed(data) if isinstance(f, rs485.Frame) and f.adr == rs485.SLAVE_ADR
                       and f.cid2_or_rtn == rs485.Rtn.OK]
        values = AnalogValues.decode(replies[0].info)
        assert len(values.cell_mv) == 16 and 45_000 < values.module_mv < 58_000
    pcs.stop()
    bus.shutdown()
    io.close()


def _ten_minute_run(tmp_path, name: str) -> tuple:
    """Power on, charge 5 minutes, rest 5 minutes, on the emulator in another process."""
    loaded = load_bench(SUBPROCESS_BENCH)
    clock = VirtualClock()
    with Bench(loaded, clock=clock, seed=3) as bench:
        # time_origin=0.0: the log keeps virtual times (dated 1970), so two runs give the same bytes
        recorder = Recorder(tmp_path, name, can_format="asc", flush_s=1.0, clock=clock, time_origin=0.0)
        pcs = PcsStandIn(bench.can, clock)
        pcs.listeners.append(recorder.on_message_received)
        pcs.start()
        supervisor = Supervisor(bench)  # its queries also keep the instruments' watchdogs fed
        supervisor.start()
        bench.output("breaker", True)
        bench.output("power_button", True)
        clock.sleep(2.0)
        bench.output("power_button", False)
        clock.sleep(3.0)
        bench.psu.apply(56.0, 40.0)
        bench.psu.output_on()
        clock.sleep(300.0)
        bench.psu.output_off()
        clock.sleep(295.0)
        pcs.pump()
        pcs.stop()
        supervisor.stop()
        recorder.close()
        sent = bench.emulator.last["can_sent"]
    return recorder.can_path, sent, pcs.frames_received


def test_ten_virtual_minutes_give_byte_identical_can_logs_with_no_frame_missing(tmp_path):
    first, sent1, got1 = _ten_minute_run(tmp_path / "a", "run")
    second, sent2, got2 = _ten_minute_run(tmp_path / "b", "run")
    logged = read_can(first)
    assert sent1 == got1 == sum(m.is_rx for m in logged), "every frame the emulator sent was received and logged"
    assert {m.arbitration_id for m in logged if not m.is_rx} == {0x305}, "the rig's own frames: the heartbeat, Tx"
    assert (sent1, got1) == (sent2, got2)
    assert filecmp.cmp(first, second, shallow=False), "the two CAN logs differ"
    frames = read_can(first)
    assert all(a.timestamp <= b.timestamp for a, b in zip(frames, frames[1:])), "frames out of order"
    names = {can_frames.decode(m).name for m in frames}
    assert {"ChargeLimits", "PackMeasurements", "DetailStatus"} <= names
