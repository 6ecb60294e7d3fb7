"""The soak, short: one virtual hour of the 24-hour soak (``benchmarks/bench_soak.py``).

The same bench as the pytest fixtures build (the emulated bench file, the supervisor at the bench
file's period, the PCS stand-in, the recorder) and the same cycle, for an hour: the pack
powered on and discharged at 85 A from its initial 50 % to 10 %, rested, then charged at 64 A.
The PCS stand-in keeps 600 receptions per frame instead of 10,000, so its history is full
after 10 virtual minutes and the 50 minutes after show any leak. Asserts the soak's three goals:
no supervisor trip, RSS growth after the warm-up under 10 MB, every CAN frame logged.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rig.files.bench_file import EMULATED_BENCH, load_bench

_BENCH_SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_soak.py"
_spec = importlib.util.spec_from_file_location("bench_soak", _BENCH_SOAK)
bench_soak = sys.modules["bench_soak"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(bench_soak)

HOURS = 1.0


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    return bench_soak.run_soak(HOURS, tmp_path_factory.mktemp("soak"), EMULATED_BENCH, history=600)


def test_the_soak_cycles_with_the_supervisor_sampling_throughout(soak):
    period_s = load_bench(EMULATED_BENCH).file.supervisor.period_s
    assert soak.supervisor_samples == round(HOURS * 3600 / period_s) + 1, soak.report()
    assert soak.half_cycles and soak.half_cycles[0].startswith("discharge to 10 %"), soak.report()


def test_no_spurious_trip(soak):
    assert soak.trips == [], soak.report()


def test_rss_grows_less_than_10_mb_after_the_warm_up(soak):
    assert soak.warmed_up and soak.warm_up_s <= HOURS * 3600 / 4, "too little soak after the warm-up"
    grown = soak.rss_growth_mb()
    assert grown and all(mb < bench_soak.RSS_GOAL_MB for mb in grown.values()), soak.report()


def test_every_can_frame_is_logged(soak):
    assert soak.can_received == soak.can_sent_by_pack > 0, soak.report()
    assert soak.can_logged == soak.can_expected, soak.report()
