"""IEC 62619 clause 8 (functional safety of the BMS), as named procedures (PACK_SPEC.md 5).

- 8.2.2 Overcharge control of voltage: a charger set to 110 % of the upper charge voltage, at
  the maximum charge current; the BMS must stop the charge before the upper limit is exceeded,
  and logging goes on for a while after the stop with the pack stable.
- 8.2.3 Overcharge control of current: a charge at 120 % of the maximum charge current; the BMS
  must cut it as its charge over-current row says.
- 8.2.4 Overheating control: the pack at the maximum operating temperature + 5 C, charged at the
  maximum charge current; the BMS must stop the charge as its charge over-temperature row says.

The values come from the pack spec: the upper charge voltage is the groups times the cell
over-voltage L3 threshold (the limit no group may pass), the maximum charge current the
standard charge current, the temperatures the operating range and ``spec.iec62619``. The rig
judges with its own instruments: the cell taps (no group above the upper limit plus the group
tolerance), the PSU read-back (the charge current cut), the case thermocouples. The bench's
absolute limits (PACK_SPEC.md 5) are sized for these procedures; the pre-flight checks confirm it.
"""
from __future__ import annotations

import math

import pytest

from rig.light_reader import FLICKER_WINDOW_S

pytestmark = [pytest.mark.certification, pytest.mark.physics]

#: Seconds between two looks at the cell taps and the current while a charge is driven towards
#: a cut: a group near the top rises a few mV/s at the standard current, so a peak is missed by
#: a millivolt at most.
LOOK_S = 0.5
#: Seconds between two records in the logging period after the stop (the supervisor samples more
#: often on its own; this is the test's own record of the pack staying stable).
LOG_EVERY_S = 10.0


def _cutting_level(spec, row, value: float):
    """The highest level of ``row`` that ``value`` passes by more than the spec's threshold
    tolerance and that opens the relays, with the earliest and latest time after the crossing the
    BMS may cut the current (PACK_SPEC.md 4: the level's delay, then its hold while current keeps
    flowing; each late by at most the timing tolerance). None if no such level."""
    tol = {"V": spec.tolerance.group_voltage_v, "A": spec.tolerance.current_a,
           "C": spec.tolerance.temperature_c}[row.unit]
    found = None
    for name in ("l1", "l2", "l3"):
        threshold = getattr(row, name).threshold
        passed = value > threshold + tol if row.trips == "above" else value < threshold - tol
        hold = getattr(spec.levels, name).open_relays_if_current_for_s
        if passed and hold is not None:
            delay = getattr(row, name).delay_s
            found = (name, delay, delay + hold + 2 * spec.tolerance.delay_late_s)
    return found


def _charge_until_cut(pack, within: float, look: float = LOOK_S, give_up_above_v: float = math.inf):
    """Watch the charge until the current is cut (PSU read-back within the current tolerance of
    zero): (seconds until the cut or inf, highest cell tap seen, highest current seen). Gives up
    at once when a cell tap passes ``give_up_above_v``: the test has failed, and the charge stops
    (at the test's end) before the safety supervisor has to trip the bench."""
    clock, tol = pack.clock, pack.spec.tolerance.current_a
    started, peak_v, peak_a = clock.now(), 0.0, 0.0
    flowing = False
    while clock.now() - started < within and peak_v <= give_up_above_v:
        clock.sleep(look)
        amps = pack.current()
        peak_v, peak_a = max(peak_v, max(pack.group_voltages())), max(peak_a, amps)
        flowing = flowing or amps > tol
        if flowing and amps <= tol:
            return clock.now() - started, peak_v, peak_a
    return math.inf, peak_v, peak_a


@pytest.mark.slow
@pytest.mark.pack_state(soc=98)
@pytest.mark.requirement("iec62619", manual="2.2", iec="8.2.2")
def test_iec62619_8_2_2_overcharge_control_of_voltage(spec, bench, pack, pcs, measure):
    """IEC 62619 8.2.2: charger at 110 % of the upper charge voltage (the groups times the cell
    over-voltage L3), standard charge current; the BMS stops the charge before any group passes
    the upper limit; the charger stays connected and logging goes on for an hour: no group above
    the limit, case temperature within the operating range.

    The standard asks that the BMS control the voltage, not that no current ever flows again: a
    real LFP pack relaxes after the stop (to about 3.40 V/cell within the hour), crosses the cell
    over-voltage release and may take charge again until the next stop; that is allowed as long
    as every group stays under the limit."""
    iec, req, tol, clock = spec.iec62619, spec.iec62619.id, spec.tolerance, bench.clock
    cell_upper = spec.protections.cell_over_voltage.l3.threshold
    charger_v = iec.overcharge_voltage_factor * spec.ratings.groups * cell_upper
    amps = spec.ratings.standard_charge_current_a
    pack.power_on()
    pack.charge(amps, charger_v)
    # the longest a charge could take: a whole empty pack at this current
    bound_s = spec.ratings.nominal_capacity_ah / amps * 3600
    cut_s, peak_v, _ = _charge_until_cut(pack, bound_s, give_up_above_v=cell_upper + tol.group_voltage_v)
    measure("highest group voltage (cell taps) up to the stop", peak_v, req=req, unit="V",
            at_most=cell_upper + tol.group_voltage_v, tolerance=tol.group_voltage_v)
    measure("charge stopped by the BMS (rig: PSU current cut) after", cut_s, req=req, unit="s", at_most=bound_s)
    clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
    measure(f"0x359 {spec.protections.cell_over_voltage.can_protection} after the stop",
            pcs.signal(spec.protections.cell_over_voltage.can_protection, frame="ProtectionsAlarms"),
            req=req, equals=1)
    measure("0x35C ChargeEnable after the stop", pcs.signal("ChargeEnable"), req=req, equals=0)

    # logging after the stop, the charger still connected at its set-point
    stopped, most_v, hottest = clock.now(), 0.0, -math.inf
    while clock.now() - stopped < iec.log_after_s - 1e-9:
        clock.sleep(min(LOG_EVERY_S, stopped + iec.log_after_s - clock.now()))
        most_v = max(most_v, max(pack.group_voltages()))
        hottest = max(hottest, max(pack.case_temperatures()))
    span = f"in the {iec.log_after_s:g} s after the stop"
    with measure.together():  # quantities logged over the same hour
        measure(f"highest group voltage (cell taps) {span}", most_v, req=req, unit="V",
                at_most=cell_upper + tol.group_voltage_v, tolerance=tol.group_voltage_v)
        measure(f"highest case temperature {span}", hottest, req=req, unit="C",
                at_most=spec.ratings.operating_max_c, tolerance=tol.temperature_c)


@pytest.mark.requirement("iec62619", manual="2.2", iec="8.2.3")
def test_iec62619_8_2_3_overcharge_control_of_current(spec, bench, pack, pcs, measure):
    """IEC 62619 8.2.3: a charge at 120 % of the standard charge current (76.8 A); the BMS cuts it
    as its charge over-current row says (PACK_SPEC.md 4: the level the current passes, after that
    level's delay and, with current still flowing, its hold), and reports that level on CAN."""
    iec, row, tol, clock = spec.iec62619, spec.protections.charge_over_current, spec.tolerance, bench.clock
    amps = iec.overcharge_current_factor * spec.ratings.standard_charge_current_a
    cutting = _cutting_level(spec, row, amps)
    assert cutting is not None, (f"{iec.id}: no level of {row.id} opens the relays at {amps:g} A: "
                                 "the pack spec cannot meet IEC 62619 8.2.3")
    level, earliest, latest = cutting
    pack.power_on()
    clock.sleep(2 * spec.can.period_s)
    pack.charge(amps)
    cut_s, _, peak_a = _charge_until_cut(pack, latest + spec.can.period_s, look=LOOK_S / 5)
    measure("highest charge current (PSU read-back)", peak_a, req=row.id, unit="A",
            nominal=amps, tolerance=tol.current_a)
    measure(f"over-current charge cut (rig: PSU current) after ({level.upper()})", cut_s, req=row.id,
            unit="s", at_least=earliest, at_most=latest)
    clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
    measure(f"0x359 {row.can_protection} after the cut",
            pcs.signal(row.can_protection, frame="ProtectionsAlarms"), req=row.id, equals=1)
    measure("DetailProtection.ChargeOverCurrentLevel after the cut",
            pcs.signal("ChargeOverCurrentLevel", pack_address=2), req=row.id, equals=level.upper())


@pytest.fixture
def soaked_above_overheat(request, spec) -> float:
    """IEC 62619 8.2.4's temperature (maximum operating + 5 C), plus two temperature tolerances
    so that the BMS's sensors surely read it: the pack starts soaked there (pack_state)."""
    celsius = (spec.ratings.operating_max_c + spec.iec62619.overheat_margin_c
               + 2 * spec.tolerance.temperature_c)
    request.node.add_marker(pytest.mark.pack_state(temperature_c=celsius))
    return celsius


@pytest.mark.slow
@pytest.mark.needs(has_chamber=True)
@pytest.mark.requirement("iec62619", manual="2.2", iec="8.2.4")
def test_iec62619_8_2_4_overheating_control(soaked_above_overheat, spec, bench, chamber, pack, pcs, lights,
                                            measure):
    """IEC 62619 8.2.4: the chamber at the maximum operating temperature + 5 C (50 C), the pack
    soaked there (two temperature tolerances above, so that its sensors surely read it), charged
    at the standard charge current; the BMS stops the charge as its charge over-temperature row
    says, and shows it (ALM red, the 0x359 protection bit, charge disabled on 0x35C)."""
    iec, row, tol, clock = spec.iec62619, spec.protections.charge_over_temperature, spec.tolerance, bench.clock
    chamber.run(spec.ratings.operating_max_c + iec.overheat_margin_c)
    cases = pack.case_temperatures()
    measure("case temperature at the start (thermocouples' mean)", sum(cases) / len(cases), req=iec.id,
            unit="C", nominal=soaked_above_overheat, tolerance=tol.temperature_c)
    cutting = _cutting_level(spec, row, soaked_above_overheat)
    assert cutting is not None, (f"{iec.id}: no level of {row.id} opens the relays at "
                                 f"{soaked_above_overheat:g} C: the pack spec cannot meet IEC 62619 8.2.4")
    level, _, latest = cutting
    pack.power_on()
    pack.charge(spec.ratings.standard_charge_current_a)
    # the level may have tripped before the charge began (the pack is hot from the start): the
    # cut is due within the level's hold once current flows, and no later than delay + hold
    cut_s, _, _ = _charge_until_cut(pack, latest + spec.can.period_s, look=LOOK_S / 5)
    measure(f"over-temperature charge cut (rig: PSU current) after the charge began ({level.upper()})",
            cut_s, req=row.id, unit="s", at_most=latest)
    clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
    measure(f"0x359 {row.can_protection} after the cut",
            pcs.signal(row.can_protection, frame="ProtectionsAlarms"), req=row.id, equals=1)
    measure("0x35C ChargeEnable after the cut", pcs.signal("ChargeEnable"), req=row.id, equals=0)
    seen = pack.observe_lights(FLICKER_WINDOW_S / 4)
    measure("ALM light after the cut", seen["alm"].kind, req=row.id,
            equals="on" if row.light == "alm_on" else "flickering")
