"""A bench used before starts again: the PSU watchdog latch its last run left is cleared, nothing else.

The PSU's I/O watchdog trips, and latches the output off, once a rig stops talking to it: after
every run that ends, and behind one that dies. On a bench of one's own (a real one, or a
``packrig emulate`` served for hours) the next run's first output on would be refused. The bench
clears that latch at start with the output off; any other latched protection stops it.

A lab place's hand-over (the exporter's safe state after a release) follows the same policy
(:mod:`rig.psu_latch`): it clears the watchdog's latch and leaves an over-voltage latch latched,
saying so, for the next run to stop on. Both against the emulated N8900, over SCPI.
"""
from __future__ import annotations

import json
import logging
import time

import pytest
import pyvisa

from rig.bench import Bench
from rig.emulator_client.remote_emulator import RemoteEmulator
from rig.errors import RigError
from rig.files.bench_file import load_bench
from rig.lab.place_bench import lab_form
from rig.lab.safe_state import make_bench_safe
from test_exits import WALL_BENCH, bench_file_for  # a 'real' bench file on a served emulator

WDOG, OV = 2048, 1   # STATus:QUEStionable bits of the N8900 (and its emulation)


def _query(resource: str, query: str) -> int:
    rm = pyvisa.ResourceManager("@py")
    try:
        psu = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=5000)
        return int(psu.query(query))
    finally:
        rm.close()


def _questionable(resource: str) -> int:
    return _query(resource, "STAT:QUES:COND?")


def _trip_over_voltage(resource: str) -> None:
    """An over-voltage trip, as a fault would leave it: OVP below the output, the output on."""
    rm = pyvisa.ResourceManager("@py")
    try:
        psu = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=5000)
        psu.write("VOLT 20;:VOLT:PROT 10;:OUTP ON")
        time.sleep(0.5)
        assert int(psu.query("STAT:QUES:COND?")) & OV
    finally:
        rm.close()


def _latch_the_watchdog(loaded) -> None:
    """A run that ended: nobody talks to the PSU, whose armed watchdog latches the output off."""
    Bench(loaded).close()
    time.sleep(loaded.file.instruments.psu.watchdog_s + 1.5)
    assert _questionable(loaded.file.instruments.psu.resource) & WDOG


@pytest.fixture
def served(tmp_path):
    emulator = RemoteEmulator(["--bench", str(WALL_BENCH), "--clock", "wall", "--packs", "1"])
    try:
        yield load_bench(bench_file_for(emulator, tmp_path)), emulator
    finally:
        emulator.close()


def test_the_watchdog_latch_of_the_last_run_is_cleared_with_the_output_off(served):
    loaded, _ = served
    _latch_the_watchdog(loaded)                           # latched, as a real N8900 would be
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
    _trip_over_voltage(loaded.file.instruments.psu.resource)
    with pytest.raises(RigError, match="latched off by OV"):
        Bench(loaded)


def test_a_hand_over_clears_the_watchdog_latch_with_the_output_off(served):
    loaded, _ = served
    address = loaded.file.instruments.psu.resource
    _latch_the_watchdog(loaded)
    ok, said = make_bench_safe(json.dumps(lab_form(loaded)))
    assert ok and said.startswith("psu: output off, WDOG latch cleared, watchdog off while idle"), said
    assert _questionable(address) == 0 and _query(address, "OUTP?") == 0
    assert _query(address, "OUTP:PROT:WDOG?") == 0        # disarmed while nobody holds the place


def test_a_hand_over_leaves_an_over_voltage_latch_latched_and_says_so(served, caplog):
    loaded, _ = served
    address = loaded.file.instruments.psu.resource
    _trip_over_voltage(address)
    with caplog.at_level(logging.WARNING, logger="rig.lab.safe_state"):
        ok, said = make_bench_safe(json.dumps(lab_form(loaded)))
    assert ok, said                                       # the output is off: the bench is safe
    assert said.startswith("psu: output off, latched off by OV (left latched: find out why"), said
    assert [r.getMessage() for r in caplog.records] == [
        f"bench {loaded.file.bench.name}: the PSU's output is latched off by OV (left latched: find out why "
        "and clear it at the instrument before a run)"]
    assert _questionable(address) & OV and _query(address, "OUTP?") == 0
    with pytest.raises(RigError, match="latched off by OV"):
        Bench(loaded)                                     # the next run stops at its start
