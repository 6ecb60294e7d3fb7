"""CAN frames carried end to end, and 60 virtual minutes with every frame delivered and logged.

The emulator runs in its own process (``packrig emulate``, virtual time); the rig advances it
over the control port, receives every frame through python-can's socketcand interface, decodes
them on demand (PCS stand-in) and logs every one to .asc (recorder), as in a test run but
without the supervisor's SCPI sampling. Issue goal: 60 virtual minutes in <= 1 s (>= 3,600x).

Run: ``python benchmarks/bench_emulated_bench.py``
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import can
import pyvisa

from rig.bench import quiet_socketcand_fragments
from rig.clock import VirtualClock
from rig.emulator_client.remote_emulator import RemoteEmulator
from rig.emulator_client.virtual_time_bus import EmulatorBus
from rig.files.bench_file import BENCHES
from rig.pcs import PcsStandIn
from rig.recorder import Recorder, read_can


def main() -> None:
    emulator = RemoteEmulator(["--bench", str(BENCHES / "emulated-subprocess.toml"), "--packs", "1"])
    try:
        ends = emulator.endpoints()
        clock = VirtualClock()
        emulator.follow(clock)  # as the subprocess backend does for the rig's Bench
        quiet_socketcand_fragments()  # as the rig's Bench does
        bus = emulator.attach_bus(can.Bus(**ends["can"]))
        assert isinstance(bus, EmulatorBus)
        io = pyvisa.ResourceManager("@py").open_resource(ends["instruments"]["io"], read_termination="\n",
                                                         write_termination="\n", timeout=2000)
        with tempfile.TemporaryDirectory() as tmp:
            recorder = Recorder(Path(tmp), "bench", can_format="asc", flush_s=1.0, clock=clock)
            pcs = PcsStandIn(bus, clock)
            pcs.listeners.append(recorder.on_message_received)
            pcs.start()
            io.write("ROUT:CLOS (@102,101)")   # breaker, POWER
            io.query("*OPC?")                  # done before time moves on (as the rig's drivers wait)
            clock.sleep(2.0)
            io.write("ROUT:OPEN (@101)")
            io.query("*OPC?")
            clock.sleep(10.0)
            before = pcs.frames_received
            started = time.perf_counter()
            clock.sleep(3600.0)
            pcs.pump()
            wall = time.perf_counter() - started
            frames = pcs.frames_received - before
            recorder.close()
            logged = sum(1 for m in read_can(recorder.can_path) if m.is_rx)  # not the heartbeats (Tx)
            sent = emulator.last["can_sent"]
        print(f"60 virtual minutes: {wall:.2f} s wall ({3600 / wall:,.0f}x), {frames} frames delivered "
              f"({frames / wall:,.0f} frames/s end to end), {logged} logged, {sent} sent by the emulator")
        assert pcs.frames_received == sent == logged, "a frame went missing"
        bus.shutdown()
        io.close()
    finally:
        emulator.close()


if __name__ == "__main__":
    main()
