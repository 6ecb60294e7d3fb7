"""A bench used before starts again: the PSU watchdog latch its last run left is cleared, nothing else.

The PSU's I/O watchdog trips, and latches the output off, once a rig stops talking to it: after
every run that ends, and behind one that dies. On a bench of one's own (a real one, or a
``packrig emulate`` served for hours) the next run's first output on would be refused. The bench
clears that latch at start with the output off; any other latched protection stops it.
"""
from __future__ import annotations

import time

import pytest
import pyvisa

from rig.bench import Bench
from rig.emulator_client.remote_emulator import RemoteEmulator
from rig.errors import RigError
from rig.files.bench_file import load_bench
from test_exits import WALL_BENCH, bench_file_for  # a 'real' bench file on a served emulator

WDOG, OV = 2048, 1   # STATus:QUEStionable bits of the N8900 (and its emulation)


def _questionable(resource: str) -> int:
    rm = pyvisa.ResourceManager("@py")
    try:
        psu = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=5000)
        return int(psu.query("STAT:QUES:COND?"))
    finally:
        rm.close()


@pytest.fixture
def served(tmp_path):
    emulator = RemoteEmulator(["--bench", str(WALL_BENCH), "--clock", "wall", "--packs", "1"])
    try:
        yield load_bench(bench_file_for(emulator, tmp_path)), emulator
    finally:
        emulator.close()


def test_the_watchdog_latch_of_the_last_run_is_cleared_with_the_output_off(served):
    loaded, _ = served
    Bench(loaded).close()                                 # a run that ended: nobody talks to the PSU now
    time.sleep(loaded.file.instruments.psu.watchdog_s + 1.5)
    address = loaded.file.instruments.psu.resource
    assert _questionable(address) & WDOG                  # latched, as a real N8900 would be
    bench = Bench(loaded)
    try:
        assert bench.psu.latched_protections() == [] and not bench.psu.output_enabled
        bench.psu.apply(52.0, 1.0)
        bench.psu.output_on()                             # refused while the latch held
        assert bench.psu.output_enabled
    finally:
        bench.close()


def test_any_other_latched_protection_stops_the_bench(served):
    loaded, _ = served
    address = loaded.file.instruments.psu.resource
    rm = pyvisa.ResourceManager("@py")
    try:   # an over-voltage trip: OVP below the output, the output on
        psu = rm.open_resource(address, read_termination="\n", write_termination="\n", timeout=5000)
        psu.write("VOLT 20;:VOLT:PROT 10;:OUTP ON")
        time.sleep(0.5)
        assert int(psu.query("STAT:QUES:COND?")) & OV
    finally:
        rm.close()
    with pytest.raises(RigError, match="latched off by OV"):
        Bench(loaded)
