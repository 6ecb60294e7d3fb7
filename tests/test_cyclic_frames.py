"""Cyclic frames on an emulated bench: python-can's ``send_periodic``, run by the emulator in
virtual time, and the PCS stand-in that keeps its heartbeat there.

The rig's bus is an :class:`~rig.emulator_client.virtual_time_bus.EmulatorBus` around the emulator's python-can
``virtual`` channel (the cross-process path, over the control port, is exercised by
``test_emulator_processes.py``). What the pack hears is read at the world's CAN input.
"""
from __future__ import annotations

import can
import pytest

from rig.clock import VirtualClock
from emulator.emulated_bench import EmulatedBench
from rig.emulator_client.virtual_time_bus import EmulatorBus
from rig.files.bench_file import BENCHES, load_bench
from emulator.firmware.profile import load_firmware_profile
from rig.pcs import PcsStandIn
from rig.protocol.can_frames import encode

HEARTBEAT = encode("PcsHeartbeat", {})


@pytest.fixture
def rig():
    """(clock, emulated bench, the rig's bus, the frames the pack heard as (time s, ID, data))."""
    emulated = EmulatedBench(load_bench(BENCHES / "emulated.toml").file, load_firmware_profile())
    heard: list[tuple[float, int, bytes]] = []
    hear = emulated.world.on_can_frame
    emulated.world.on_can_frame = lambda msg: (
        heard.append((emulated.world.t_ns / 1e9, msg.arbitration_id, bytes(msg.data))), hear(msg))
    clock = VirtualClock()
    emulated.follow(clock)  # advanced by the clock, as the in_process backend is
    bus = emulated.attach_bus(can.Bus(**emulated.endpoints()["can"]))
    assert isinstance(bus, EmulatorBus)  # in virtual time the rig's bus runs cyclic jobs in the world's time
    yield clock, emulated, bus, heard
    bus.shutdown()
    emulated.close()


def _power_on(emulated: EmulatedBench, clock: VirtualClock) -> None:
    outputs = emulated.world.plant.io.outputs
    outputs["breaker"] = outputs["power_button"] = True
    clock.sleep(2.0)
    outputs["power_button"] = False


def test_a_periodic_frame_reaches_the_pack_at_exact_virtual_instants_until_stopped(rig):
    clock, _, bus, heard = rig
    clock.sleep(0.25)
    task = bus.send_periodic(HEARTBEAT, 1.0)
    clock.sleep(3.5)
    task.stop()
    clock.sleep(5.0)
    assert heard == [(t, 0x305, bytes(8)) for t in (0.25, 1.25, 2.25, 3.25)]


def test_a_sequence_goes_in_turn_for_its_duration(rig):
    clock, _, bus, heard = rig
    first, second = (can.Message(arbitration_id=0x305, is_extended_id=False, data=bytes([n]) + bytes(7))
                     for n in (1, 2))
    bus.send_periodic([first, second], 0.5, duration=2.0)
    clock.sleep(4.0)
    assert [(t, data[0]) for t, _, data in heard] == [(0.0, 1), (0.5, 2), (1.0, 1), (1.5, 2), (2.0, 1)]


def test_shutting_the_bus_down_stops_its_jobs(rig):
    clock, _, bus, heard = rig
    bus.send_periodic(HEARTBEAT, 1.0)
    clock.sleep(1.0)
    bus.stop_all_periodic_tasks()
    clock.sleep(3.0)
    assert [t for t, _, _ in heard] == [0.0, 1.0]


def test_what_the_emulator_cannot_do_is_refused_by_name(rig):
    _, _, bus, _ = rig
    with pytest.raises(NotImplementedError, match="modifier_callback"):
        bus.send_periodic(HEARTBEAT, 1.0, modifier_callback=lambda msg: None)


def test_pcs_heartbeat_is_a_cyclic_job_counted_and_silenced_in_virtual_time(rig):
    clock, _, bus, heard = rig
    pcs = PcsStandIn(bus, clock)
    pcs.start()
    clock.sleep(5.5)
    assert (pcs.heartbeats_sent, pcs.last_heartbeat_at) == (6, 5.0)
    pcs.silence(True)
    clock.sleep(2.0)  # t = 7.5
    assert (pcs.heartbeats_sent, pcs.last_heartbeat_at) == (6, 5.0)
    pcs.silence(False)
    clock.sleep(1.0)  # at once, then every second
    assert (pcs.heartbeats_sent, pcs.last_heartbeat_at) == (8, 8.5)
    pcs.stop()
    clock.sleep(3.0)
    assert [t for t, _, _ in heard] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 8.5]
    assert pcs.heartbeats_sent == 8


def test_pcs_takes_every_frame_when_an_advance_ends_without_waking_each_second(rig):
    clock, emulated, bus, _ = rig
    pcs = PcsStandIn(bus, clock)
    logged: list[can.Message] = []
    pcs.listeners.append(logged.append)  # the recorder's place
    pcs.start()
    _power_on(emulated, clock)
    clock.sleep(600.0)
    # the listeners also get the stand-in's own heartbeats, marked Tx, for the CAN log
    received = [m for m in logged if m.is_rx]
    assert emulated.can_sent > 0 and len(received) == pcs.frames_received == emulated.can_sent
    assert len(logged) - len(received) == pcs.heartbeats_sent
    assert received[-1].timestamp == pytest.approx(clock.now())  # the last report, at t = 602 s
    assert pcs.signal("State", frame="DetailStatus") in ("Standby", "Run")  # heard the PCS: no loss
    assert not pcs.latest("DetailStatus")["FailurePcsCommunication"]
