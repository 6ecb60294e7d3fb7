"""The emulated BMS reproduces every protection row of PACK_SPEC.md 4, level by level.

Each test drives one quantity through one level's threshold on the emulated pack (below the
transports): no trip on the safe side, a trip after the delay (not earlier, not later than the
delay plus the spec's tolerance), the CAN bits and levels, the current limits and enable bits,
the ALM light, the relays, and the release. A second family changes the firmware profile in
that row and checks the behaviour follows the profile, not the spec.
"""
from __future__ import annotations

import pytest

from model_harness import PackModel, modified
from emulator.pack.can_reports import LEVEL_SIGNALS
from emulator.firmware.profile import load_firmware_profile
from rig.files.pack_spec import load_pack_spec
from rig.files.rows import PROTECTIONS

SPEC = load_pack_spec()
PROFILE = load_firmware_profile()
#: How far beyond (or short of) a threshold the tests drive a quantity: twice the spec tolerance.
MARGIN = {"V": 2 * SPEC.tolerance.group_voltage_v, "A": 2 * SPEC.tolerance.current_a,
          "C": 2 * SPEC.tolerance.temperature_c}
REST_GROUP_V = 3.20


def margin(row_name: str) -> float:
    row = getattr(SPEC.protections, row_name)
    if row.quantity == "pack_voltage":
        return 2 * SPEC.tolerance.pack_voltage_v
    return MARGIN[row.unit]


def drive(m: PackModel, quantity: str, value: float) -> None:
    """Put the quantity a protection watches at ``value`` (fault insertion or instruments)."""
    if quantity in ("max_group_voltage", "min_group_voltage"):
        m.faults.force_group(0, 5, value)
    elif quantity == "group_voltage_difference":
        # one group low and one high by half the difference each, around the plateau, so the
        # other voltage rows stay as far from their thresholds as an LFP window allows
        for g in range(16):
            m.faults.force_group(0, g, REST_GROUP_V)
        m.faults.force_group(0, 5, REST_GROUP_V - value / 2)
        m.faults.force_group(0, 6, REST_GROUP_V + value / 2)
    elif quantity == "pack_voltage":
        for g in range(16):
            m.faults.force_group(0, g, value / 16)
    elif quantity == "charge_current":
        m.charge(value, volts=60.0)
    elif quantity == "discharge_current":
        m.discharge(value)
    elif quantity in ("max_temperature", "min_temperature"):
        m.faults.force_temperature(0, 0, value)
    else:
        raise ValueError(quantity)


def beyond(row, threshold: float, by: float) -> float:
    return threshold + by if row.trips == "above" else threshold - by


def expected_factor(levels: dict[str, int], direction: str) -> float:
    """PACK_SPEC.md 4: each tripped row scales its direction's limit by its level's factor; any L3
    opens the relays (limit 0). Rows interact: at -7 C, charge under-temperature L3 has opened
    the relays while discharge under-temperature is only at L1."""
    if any(level == 3 for level in levels.values()):
        return 0.0
    factor = 1.0
    for name, level in levels.items():
        if level and getattr(SPEC.protections, name).direction in (direction, "both"):
            factor = min(factor, getattr(SPEC.levels, f"l{level}").current_limit_factor)
    return factor


ROWS_LEVELS = [(name, level) for name in PROTECTIONS for level in (1, 2, 3)]


@pytest.mark.parametrize("name,level", ROWS_LEVELS, ids=[f"{n}-L{k}" for n, k in ROWS_LEVELS])
def test_row_level_trips_at_threshold_after_delay_and_acts(name, level):
    row = getattr(PROFILE.protections, name)
    lv = getattr(row, f"l{level}")
    m = PackModel()
    m.power_on()
    d = margin(name)
    # the safe side: held for longer than the delay, the level never trips
    drive(m, row.quantity, beyond(row, lv.threshold, -d))
    m.sleep(lv.delay_s + 1.0)
    assert m.bms.report.levels[name] < level, f"{name} tripped L{level} on the safe side"
    # beyond the threshold: trips no earlier than the delay, no later than delay + tolerance
    drive(m, row.quantity, beyond(row, lv.threshold, d))
    elapsed = m.wait_level(name, level, timeout=lv.delay_s + 2.0, step=0.01)
    assert lv.delay_s <= elapsed <= lv.delay_s + SPEC.tolerance.delay_late_s
    m.sleep(1.0)
    detail = m.last("DetailProtection", 2)
    assert detail[LEVEL_SIGNALS[name]] == f"L{level}"
    if row.l3.action == "power_off" and level == 3:
        m.sleep(5.0)
        assert m.bms.state == "Off"
        assert m.plant.dmm.measured_v < 1.0 or m.bms.relays == (False, False, False)
        return
    bits = m.last("ProtectionsAlarms")
    assert bits[row.can_alarm if level == 1 else row.can_protection] == 1
    limits, flags = m.last("ChargeLimits"), m.last("ChargeRequest")
    for direction, base, limit, enable in (
            ("charge", PROFILE.can.charge_current_limit_a, "ChargeCurrentLimit", "ChargeEnable"),
            ("discharge", PROFILE.can.discharge_current_limit_a, "DischargeCurrentLimit", "DischargeEnable")):
        if row.direction in (direction, "both"):
            expected = base * expected_factor(m.bms.report.levels, direction)
            assert limits[limit] == pytest.approx(expected, abs=0.05)
            assert flags[enable] == int(expected > 0)
    if level >= 2:
        alm_periods = m.light_periods("alm", window_s=4.0)
        if row.light == "alm_on":
            assert m.lit("alm") and not alm_periods
        else:
            assert alm_periods and all(abs(p - PROFILE.lights.alm_flicker_period_s) < 0.06 for p in alm_periods)
        assert not m.lit("run")  # ALM overrides RUN
    if level == 3:
        assert m.bms.relays[:2] == (False, False)
        assert m.bms.state == "Fault"


@pytest.mark.parametrize("name", PROTECTIONS)
def test_row_releases_by_its_rule(name):
    """After L2, the row releases as PACK_SPEC.md 4 says, and the pack returns to normal."""
    row = getattr(PROFILE.protections, name)
    m = PackModel()
    m.power_on()
    drive(m, row.quantity, beyond(row, row.l2.threshold, margin(name)))
    m.wait_level(name, 2, timeout=row.l2.delay_s + 2.0)
    rel = row.release
    if rel.after_cut_s is not None:
        drive(m, row.quantity, 0.0)
        m.sleep(rel.after_cut_s - 1.0)
        assert m.bms.report.levels[name] == 2, "released before the time after the cut"
        m.wait_level(name, 0, timeout=2.0 + PROFILE.bms.sample_period_s)
    else:
        # value: one release value for the row; margin: that far back from the tripped level
        back = rel.value if rel.value is not None else beyond(row, row.l2.threshold, -rel.margin)
        # between the release value and the trip: still held (hysteresis)
        drive(m, row.quantity, beyond(row, back, margin(name)))
        m.sleep(2.0)
        assert m.bms.report.levels[name] >= 1, "released before reaching the release value"
        drive(m, row.quantity, beyond(row, back, -margin(name)))
        m.wait_level(name, 1 if rel.margin is not None else 0, timeout=2.0)
        if rel.margin is not None:  # L1 has tripped meanwhile; it releases its margin below L1
            drive(m, row.quantity, beyond(row, row.l1.threshold, -rel.margin - margin(name)))
            m.wait_level(name, 0, timeout=2.0)
    m.faults.clear()
    m.sleep(2.0)
    assert m.last("DetailProtection", 2)[LEVEL_SIGNALS[name]] == "None"


# --- the model follows the profile, not the spec ---------------------------------------------

@pytest.mark.parametrize("name", PROTECTIONS)
def test_moved_threshold_moves_the_trip(name):
    """A build whose L1 sits further out does not trip where the spec says it must."""
    row = getattr(PROFILE.protections, name)
    d = margin(name)
    moved = beyond(row, row.l1.threshold, 3 * d)
    if (row.trips == "above") != (moved < row.l2.threshold):
        moved = (row.l1.threshold + row.l2.threshold) / 2  # stay below L2 for the ordering rule
    m = PackModel(modified(PROFILE, f"protections.{name}.l1.threshold", moved))
    m.power_on()
    drive(m, row.quantity, beyond(row, row.l1.threshold, d))
    m.sleep(row.l1.delay_s + 1.0)
    assert m.bms.report.levels[name] == 0


@pytest.mark.parametrize("name", PROTECTIONS)
def test_disabled_level_never_trips_and_the_next_one_acts(name):
    """UL 1973-style single fault: L2 defeated, L3 still acts."""
    row = getattr(PROFILE.protections, name)
    m = PackModel(modified(PROFILE, f"protections.{name}.l2.enabled", False))
    m.power_on()
    drive(m, row.quantity, beyond(row, row.l2.threshold, margin(name)))
    m.sleep(row.l2.delay_s + 1.0)
    assert m.bms.report.levels[name] <= 1
    drive(m, row.quantity, beyond(row, row.l3.threshold, margin(name)))
    m.wait_level(name, 3, timeout=row.l3.delay_s + 2.0)


def test_slower_delay_is_slower():
    m = PackModel(modified(PROFILE, "protections.cell_over_voltage.l2.delay_s", 3.0))
    m.power_on()
    drive(m, "max_group_voltage", 3.62)
    assert m.wait_level("cell_over_voltage", 2, timeout=5.0, step=0.01) >= 3.0


def test_swapped_can_bit_is_what_goes_on_the_bus():
    m = PackModel(modified(PROFILE, "protections.cell_over_voltage.can_alarm", "AlarmLowVoltage"))
    m.power_on()
    drive(m, "max_group_voltage", 3.57)
    m.wait_level("cell_over_voltage", 1, timeout=3.0)
    m.sleep(1.5)
    bits = m.last("ProtectionsAlarms")
    assert bits["AlarmLowVoltage"] == 1 and bits["AlarmHighVoltage"] == 0


def test_wrong_light_is_what_the_panel_shows():
    m = PackModel(modified(PROFILE, "protections.cell_over_voltage.light", "alm_flicker"))
    m.power_on()
    drive(m, "max_group_voltage", 3.62)
    m.wait_level("cell_over_voltage", 2, timeout=3.0)
    assert m.light_periods("alm", window_s=4.0)
