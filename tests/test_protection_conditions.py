"""ProtectionEngine.conditions, the world's step check: two measurements give equal conditions
exactly when every trip and release comparison the timers make comes out the same for both."""
from __future__ import annotations

import math
import random

import pytest

from emulator.pack.protections import ProtectionEngine, _back, _beyond, release_threshold
from emulator.firmware.profile import FirmwareProfile, load_firmware_profile

PROFILE = load_firmware_profile()


def power_cycle_releases(profile: FirmwareProfile) -> FirmwareProfile:
    """``profile`` with two rows (one tripping above, one below) released only by a power cycle."""
    data = profile.model_dump(mode="json")
    for row in ("cell_over_voltage", "cell_under_voltage"):
        data["protections"][row]["release"] = {"power_cycle": True}
    return FirmwareProfile.model_validate(data)


def comparisons(engine: ProtectionEngine, q: dict[str, float]) -> list[bool]:
    """Every level's trip condition and release condition, as update() states them."""
    out = []
    for rs in engine.rows:
        for lv in rs.row.levels():
            v = q[rs.row.quantity]
            out += [_beyond(v, lv.threshold, rs.row.trips),
                    _back(v, release_threshold(rs.row, lv.threshold), rs.row.trips)]
    return out


def values(engine: ProtectionEngine) -> dict[str, list[float]]:
    """Per quantity: values on, next to and between its thresholds, and nan and infinities."""
    out: dict[str, list[float]] = {}
    for rs in engine.rows:
        for lv in rs.row.levels():
            for t in (lv.threshold, release_threshold(rs.row, lv.threshold)):
                if math.isfinite(t):
                    out.setdefault(rs.row.quantity, []).extend(
                        [t, math.nextafter(t, -math.inf), math.nextafter(t, math.inf), t - 0.5, t + 0.5])
    return {name: v + [math.nan, math.inf, -math.inf] for name, v in out.items()}


def measurements(engine: ProtectionEngine, rng: random.Random, n: int) -> list[dict[str, float]]:
    return [{name: rng.choice(v) for name, v in values(engine).items()} for _ in range(n)]


@pytest.mark.parametrize("profile", [PROFILE, power_cycle_releases(PROFILE)], ids=["conforming", "power_cycle"])
def test_equal_conditions_iff_equal_comparisons(profile):
    """Two measurements that differ in one quantity, over every value of it worth trying."""
    engine = ProtectionEngine(profile)
    rng = random.Random(7)
    for a in measurements(engine, rng, 30):
        for name, candidates in values(engine).items():
            for v in candidates:
                b = a | {name: v}
                same = comparisons(engine, a) == comparisons(engine, b)
                assert (engine.conditions(a) == engine.conditions(b)) == same, (name, a[name], v)


@pytest.mark.parametrize("profile", [PROFILE, power_cycle_releases(PROFILE)], ids=["conforming", "power_cycle"])
def test_no_trip_condition_means_update_has_nothing_to_do(profile):
    engine = ProtectionEngine(profile)
    rng = random.Random(8)
    for q in measurements(engine, rng, 2000):
        trips = [c for i, c in enumerate(comparisons(engine, q)) if i % 2 == 0]
        assert engine._any_trips(q) == any(trips)
