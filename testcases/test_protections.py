"""Protections (PACK_SPEC.md 4; manual 2.2, 7.4): every row of the pack spec, every level.

The procedure is the manual's, run on each row of ``spec.protections`` and each of its levels:

1. **Trip value and delay.** The protected quantity is held two tolerances short of the level's
   threshold for longer than its delay: no trip. Two tolerances past it, the level trips no
   earlier than its delay and no later than delay + ``spec.tolerance.delay_late_s``.
2. **What the level does.** L1: the CAN alarm bit, that direction's current limit halved, no
   light. L2: the protection bit, that direction's limit 0 and its enable bit cleared, ALM, and
   the relays open once current has kept flowing that way for ``open_relays_if_current_for_s``.
   L3: the relays open at once; a level-3 under voltage powers the pack off.
3. **Release.** Held between the release value and the trip, released past it; a current row
   releases a fixed time after the cut; level 3 latches until released with no current; a
   level 3 that is a failure latches until a power cycle.

Then the short circuit (through the bench's short-circuit contactor) and the 0 V cell.

**Timing on CAN.** The pack reports once a CAN period, so its reports only bracket the instant a
level changed: after the last report without it, at or before the first report with it. The
checks take the side of the bracket a conforming pack can never fail, and each timing test
places its stimulus in the period so that a report falls where the tolerance ends: just after
delay + tolerance (a late trip misses it), or just before the delay (an early trip shows in it).
Report times are the pack's clock (on a real bench, the CAN interface's); the stimulus is put on
that clock from a fresh report the rig saw within one poll. What the rig measures itself (the
current cut on the PSU/e-load read-back, 0 V on the DMM, the lights) is timed on the rig clock.

**Rows act together.** Driving one quantity can trip other rows: 16 groups at the cell threshold
are a pack at the pack threshold, 57 C is over temperature for charge and for discharge. The
expected limits, bits, lights and relays are therefore worked out from every level and failure
the pack reports in the same CAN report, by the spec's rules; the firmware profile is never read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from rig.errors import WaitTimeout
from rig.files.rows import PROTECTIONS
from rig.measure import note_mark
from rig.pcs import CanCheckFailed
from testcases.observe import seconds_until
from testcases.stimulus import beyond, can_step, drive, flow, margin, power_cycle, power_on

pytestmark = pytest.mark.protection

#: The level values of the DetailProtection signals, index = level.
LEVELS = ("None", "L1", "L2", "L3")
#: The quantities that are the current itself: their stimulus *is* the flow.
CURRENTS = ("charge_current", "discharge_current")
#: The frames of one CAN report that a level shows in.
REPORT = ("DetailProtection", "DetailStatus", "ProtectionsAlarms", "ChargeLimits", "ChargeRequest")
#: s; how often the rig looks at the bus while placing a stimulus against the reports: the
#: resolution of every CAN timing below.
CAN_POLL_S = 0.01
#: s; how often the rig reads its own instruments while waiting for a cut.
RIG_POLL_S = 0.05
#: A, half a step of 0x351's current limits (PACK_SPEC 6: 0.1 A per bit).
LIMIT_RESOLUTION_A = 0.05

#: Where a certification standard tests the same protection (labels in the report).
STANDARDS = {
    "cell_over_voltage": {"iec": "8.2.2", "ul": "Overcharge Test"},
    "pack_over_voltage": {"iec": "8.2.2", "ul": "Overcharge Test"},
    "cell_under_voltage": {"ul": "Overdischarge Protection Test"},
    "pack_under_voltage": {"ul": "Overdischarge Protection Test"},
    "charge_over_current": {"iec": "8.2.3", "ul": "Overcharge Test"},
    "discharge_over_current": {"ul": "Temperature and Operating Limits Check Test"},
    "charge_over_temperature": {"iec": "8.2.4", "ul": "Temperature and Operating Limits Check Test"},
    "discharge_over_temperature": {"iec": "8.2.4", "ul": "Temperature and Operating Limits Check Test"},
    "charge_under_temperature": {"ul": "Temperature and Operating Limits Check Test"},
    "discharge_under_temperature": {"ul": "Temperature and Operating Limits Check Test"},
    "cell_voltage_difference": {"ul": "Imbalanced Charging Test"},
}


def _requirement(name: str):
    return pytest.mark.requirement(f"protections.{name}", manual="2.2, 7.4", **STANDARDS[name])


ROW_LEVELS = [pytest.param(name, level, marks=_requirement(name), id=f"{name}-L{level}")
              for name in PROTECTIONS for level in (1, 2, 3)]
ROWS = [pytest.param(name, marks=_requirement(name), id=name) for name in PROTECTIONS]


# --- 1. trip value and delay ----------------------------------------------------------------------

@pytest.mark.parametrize("name,level", ROW_LEVELS)
def test_holds_short_of_the_threshold_then_trips_in_time(name, level, bench, pack, pcs, spec, measure, fault_unit):
    """Manual 7.4, PACK_SPEC 4: two tolerances short of the level's threshold, held longer than
    its delay, the level does not trip; two tolerances past it, it trips no later than its delay
    plus the spec's tolerance (a report falls just after that instant)."""
    row, lv = _row(spec, name, level)
    _need_a_step(bench, fault_unit, row)
    power_on(pack)
    short = beyond(row, lv.threshold, -margin(spec, row))
    drive(bench, pack, fault_unit, row.quantity, short)
    held = _levels_reported(pcs, bench.clock, name, _shows_within(spec, lv.delay_s))
    measure(f"highest level reported, held at {short:g} {row.unit}", max(held), req=row.id, at_most=level - 1)

    late = lv.delay_s + spec.tolerance.delay_late_s
    stimulus = _step(bench, pack, pcs, fault_unit, row, beyond(row, lv.threshold, margin(spec, row)),
                     report_after=late + 2 * CAN_POLL_S)
    trip = _wait_level(pcs, name, lambda k: k >= level, within=_shows_within(spec, lv.delay_s) + spec.can.period_s)
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    measure(f"level reported past the L{level} threshold", trip.level, req=row.id, at_least=level)
    measure(f"L{level} trip: last report without it, after the stimulus", trip.before - stimulus.latest,
            req=row.id, unit="s", at_most=late, tolerance=spec.tolerance.delay_late_s)


@pytest.mark.parametrize("name,level", ROW_LEVELS)
def test_does_not_trip_before_its_delay(name, level, bench, pack, pcs, spec, measure, fault_unit):
    """PACK_SPEC 4: past the threshold, a level trips no earlier than its delay (a report falls
    just before the delay ends: an early trip would show in it)."""
    row, lv = _row(spec, name, level)
    _need_a_step(bench, fault_unit, row)
    power_on(pack)
    stimulus = _step(bench, pack, pcs, fault_unit, row, beyond(row, lv.threshold, margin(spec, row)),
                     report_after=lv.delay_s - CAN_POLL_S)
    trip = _wait_level(pcs, name, lambda k: k >= level, within=_shows_within(spec, lv.delay_s) + spec.can.period_s)
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    measure(f"level reported past the L{level} threshold", trip.level, req=row.id, at_least=level)
    measure(f"L{level} trip: first report with it, after the stimulus", trip.at - stimulus.earliest,
            req=row.id, unit="s", at_least=lv.delay_s, tolerance=spec.tolerance.delay_late_s)


# --- 2. what each level does ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ROWS)
def test_level1_alarms_on_can_halves_the_limit_and_changes_no_light(name, bench, pack, pcs, spec, measure, fault_unit):
    """Manual 7.4, PACK_SPEC 3-4: at L1 the pack sets its CAN alarm bit and halves the current
    limit of the row's direction; it shows no light (RUN stays on) and keeps its relays closed."""
    row, lv = _row(spec, name, 1)
    power_on(pack)
    drive(bench, pack, fault_unit, row.quantity, beyond(row, lv.threshold, margin(spec, row)))
    trip = _wait_level(pcs, name, lambda k: k >= 1, within=_shows_within(spec, lv.delay_s))
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    measure("level reported past the L1 threshold", trip.level, req=row.id, equals=1)
    report = _report_at(pcs, spec, trip.at)
    _check_report(measure, spec, row.id, report, "at L1")
    levels, failed = _levels(report), _failed(spec, report)
    _check_lights(measure, spec, pack, row.id, _expected_alm(spec, levels, failed))
    closed = not failed and 3 not in levels.values()  # another row's level 3 may hold them open
    _check_relays(measure, pcs, row.id, closed)
    if closed:
        measure("terminal voltage (DMM): the pack stays connected", pack.terminal_voltage(), req=row.id,
                unit="V", at_least=spec.power_off.terminals_off_max_v)


@pytest.mark.parametrize("name", ROWS)
def test_level2_protects_and_opens_the_relays_if_current_keeps_flowing(name, bench, pack, pcs, spec, measure,
                                                                      fault_unit):
    """Manual 7.4, PACK_SPEC 3-4: at L2 the pack sets its CAN protection bit, sets the row's
    current limit to 0 and clears its enable bit, and shows ALM (RUN dark); current kept flowing
    that way (the rig plays a PCS that ignores the limit), the relays open after the hold time:
    the rig sees the current cut on its own read-back."""
    row, lv = _row(spec, name, 2)
    _need_a_step(bench, fault_unit, row)
    power_on(pack)
    direction = _flow_for(pack, row)
    start = bench.clock.now()
    drive(bench, pack, fault_unit, row.quantity, beyond(row, lv.threshold, margin(spec, row)))
    hold, late = spec.levels.l2.open_relays_if_current_for_s, spec.tolerance.delay_late_s
    cut = _seconds_until_cut(bench, pack, spec, start, flowing=True, within=lv.delay_s + hold + 2 * late)
    trip = _wait_level(pcs, name, lambda k: k >= 2, within=_shows_within(spec, lv.delay_s))
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    measure("level reported past the L2 threshold", trip.level, req=row.id, equals=2)
    report = _report_at(pcs, spec, trip.at)
    _check_report(measure, spec, row.id, report, "at L2")
    _check_lights(measure, spec, pack, row.id, _expected_alm(spec, _levels(report), _failed(spec, report)))
    since = _levels(_report_at(pcs, spec, _last_report(pcs)))  # another row's level 3 may have cut first
    measure("current cut (rig read-back), after the stimulus", cut, req=row.id, unit="s",
            at_least=_earliest_cut(spec, since, direction), at_most=lv.delay_s + hold + 2 * late)
    _check_relays(measure, pcs, row.id, closed=False)


@pytest.mark.parametrize("name", ROWS)
def test_level3_opens_the_relays_at_once(name, bench, pack, pcs, spec, measure, fault_unit):
    """Manual 7.4, PACK_SPEC 3-4: at L3 the relays open at once (the rig sees the current cut, or
    0 V on the DMM), the CAN protection bit is set and both limits are 0, ALM shows; a level-3
    under voltage powers the pack off (0 V at the terminals, no CAN, lights off), a level 3 that
    is a failure sets its failure bit.

    A row whose level 2 would open the relays first (its level 3 waits longer than level 2 plus
    the hold) is tripped with no current: its cut shows as 0 V on the DMM."""
    row, lv = _row(spec, name, 3)
    _need_a_step(bench, fault_unit, row)
    power_on(pack)
    hold, late = spec.levels.l2.open_relays_if_current_for_s, spec.tolerance.delay_late_s
    flowing = row.quantity in CURRENTS or lv.delay_s < row.l2.delay_s + hold
    direction = _flow_for(pack, row) if flowing else None
    start = bench.clock.now()
    drive(bench, pack, fault_unit, row.quantity, beyond(row, lv.threshold, margin(spec, row)))
    cut = _seconds_until_cut(bench, pack, spec, start, flowing=flowing, within=lv.delay_s + late)
    trip = _wait_level(pcs, name, lambda k: k >= 3, within=_shows_within(spec, 0.0))
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    measure("level reported past the L3 threshold", trip.level, req=row.id, equals=3)
    report = _report_at(pcs, spec, trip.at)
    _check_report(measure, spec, row.id, report, "at L3")
    what = "current cut (rig read-back)" if flowing else "0 V at the terminals (DMM)"
    measure(f"{what}, after the stimulus", cut, req=row.id, unit="s",
            at_least=_earliest_cut(spec, _levels(report), direction), at_most=lv.delay_s + late)
    _check_relays(measure, pcs, row.id, closed=False)
    if lv.action == "power_off":
        _check_powered_off(measure, spec, bench, pack, pcs, row.id)
        return
    if lv.action == "failure":
        bit = getattr(spec.failures, name).failure_bit
        measure(f"DetailStatus {bit}", pcs.signal(bit, frame="DetailStatus"), req=row.id, equals=1)
    _check_lights(measure, spec, pack, row.id, _expected_alm(spec, _levels(report), _failed(spec, report)))


# --- 3. release ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,level", ROW_LEVELS)
def test_releases_by_its_rule(name, level, bench, pack, pcs, spec, measure, fault_unit):
    """Manual 7.4, PACK_SPEC 4: a tripped level releases by the row's rule. Release value or
    margin: held between the release value and the trip, released past it (a level 3 keeps the
    relays open until then, and closes them again after). Current rows: released a fixed time
    after the cut, not before. A level 3 that powers the pack off: it stays off, and powers on
    normally above the release value. A level 3 that is a failure: latched past the release
    value until a power cycle."""
    row, lv = _row(spec, name, level)
    power_on(pack)
    drive(bench, pack, fault_unit, row.quantity, beyond(row, lv.threshold, margin(spec, row)))
    trip = _wait_level(pcs, name, lambda k: k >= level, within=_shows_within(spec, lv.delay_s))
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    measure(f"level reported past the L{level} threshold", trip.level, req=row.id, at_least=level)
    if level == 3 and lv.action == "power_off":
        _release_by_power_on(measure, spec, bench, pack, pcs, fault_unit, row, name)
    elif level == 3 and lv.action == "failure":
        _release_by_power_cycle(measure, spec, bench, pack, pcs, fault_unit, row, name)
    elif row.release.after_cut_s is not None:
        _release_after_the_cut(measure, spec, pack, pcs, row, name, level, trip)
    else:
        _release_past_its_value(measure, spec, bench, pack, pcs, fault_unit, row, name, level)


def _release_past_its_value(measure, spec, bench, pack, pcs, faults, row, name, level):
    lv, m = getattr(row, f"l{level}"), margin(spec, row)
    release = row.release.value if row.release.value is not None else beyond(row, lv.threshold, -row.release.margin)
    held_at, past = beyond(row, release, m), beyond(row, release, -m)
    drive(bench, pack, faults, row.quantity, held_at)
    held = _levels_reported(pcs, bench.clock, name, _shows_within(spec, lv.delay_s))
    measure(f"lowest level reported, back at {held_at:g} {row.unit} (short of the release {release:g})",
            min(held), req=row.id, at_least=level)
    if level == 3:
        _check_relays(measure, pcs, row.id, closed=False)
        measure("terminal voltage (DMM): latched open", pack.terminal_voltage(), req=row.id, unit="V",
                at_most=spec.power_off.terminals_off_max_v)
    drive(bench, pack, faults, row.quantity, past)
    released = _wait_level(pcs, name, lambda k: k < level, within=_shows_within(spec, lv.delay_s))
    measure.mark(f"release: L{released.level} on CAN", at=released.at)  # frame time
    measure(f"level reported past the release ({past:g} {row.unit})", released.level, req=row.id, at_most=level - 1)
    if level == 3:
        report = _report_at(pcs, spec, released.at)
        if not _failed(spec, report) and 3 not in _levels(report).values():  # nothing else holds them open
            _check_relays_close(measure, spec, pack, pcs, row.id)


def _release_after_the_cut(measure, spec, pack, pcs, row, name, level, trip):
    # "the cut" is the level's own: its limit cut (L1 halved, L2 to 0) or the relays (L3), all at
    # the trip; the release is timed from the trip's reports
    after, late = row.release.after_cut_s, spec.tolerance.delay_late_s
    pack.stop()  # a PCS that obeys the limit: no more current (a level 3 has cut it already)
    released = _wait_level(pcs, name, lambda k: k < level, within=after + _shows_within(spec, 0.0) + spec.can.period_s)
    measure.mark(f"release: L{released.level} on CAN", at=released.at)  # frame time
    measure(f"level reported {after:g} s after the cut", released.level, req=row.id, at_most=level - 1)
    measure(f"L{level} release: first report without it, after the last report before the trip",
            released.at - trip.before, req=row.id, unit="s", at_least=after, tolerance=late)
    measure(f"L{level} release: last report with it, after the first report of the trip",
            released.before - trip.at, req=row.id, unit="s", at_most=after + late, tolerance=late)


def _release_by_power_on(measure, spec, bench, pack, pcs, faults, row, name):
    _check_powered_off(measure, spec, bench, pack, pcs, row.id)
    past = beyond(row, row.release.value, -margin(spec, row))
    drive(bench, pack, faults, row.quantity, past)
    since = _last_report(pcs)
    bench.clock.sleep(_shows_within(spec, 0.0))
    measure(f"CAN reports from the powered-off pack, back at {past:g} {row.unit}", _reports_since(pcs, since),
            req=row.id, equals=0)
    power_on(pack)
    released = _wait_level(pcs, name, lambda k: k == 0, within=_shows_within(spec, 0.0))
    measure.mark(f"release: L{released.level} on CAN", at=released.at)  # frame time
    measure("level reported after power on above the release value", released.level, req=row.id, equals=0)


def _release_by_power_cycle(measure, spec, bench, pack, pcs, faults, row, name):
    bit = getattr(spec.failures, name).failure_bit
    drive(bench, pack, faults, row.quantity, beyond(row, row.release.value, -margin(spec, row)))
    bench.clock.sleep(_shows_within(spec, row.l3.delay_s))
    measure(f"DetailStatus {bit}, past the release value", pcs.signal(bit, frame="DetailStatus"),
            req=row.id, equals=1)
    measure("terminal voltage (DMM): latched open", pack.terminal_voltage(), req=row.id, unit="V",
            at_most=spec.power_off.terminals_off_max_v)
    power_cycle(pack)
    bench.clock.sleep(_shows_within(spec, 0.0))
    measure(f"DetailStatus {bit} after a power cycle", pcs.signal(bit, frame="DetailStatus"), req=row.id, equals=0)


# --- short circuit and 0 V cell -----------------------------------------------------------------

@pytest.mark.needs(has_short_circuit_contactor=True)
@pytest.mark.requirement("short_circuit", manual="2.2, 7.4", ul="Short Circuit Test")
def test_short_circuit_is_cut_and_latched_until_a_power_cycle(bench, pack, pcs, spec, measure):
    """Manual 7.4, PACK_SPEC 4: a short across the terminals (the bench's short-circuit contactor,
    closed for the rig's short-circuit window, no longer) is cut by the pack: once the contactor
    is open again the DMM reads 0 V. The pack sets its failure and protection bits, shows ALM and
    stays cut until a power cycle.

    A DMM cannot resolve the spec's 1 ms; the short lasts the shorter of delay + tolerance and
    the rig's own short-circuit window (bench limits), so a pack that has not cut by then fails."""
    sc = spec.short_circuit
    power_on(pack)
    window = min(sc.delay_s + spec.tolerance.delay_late_s, bench.limits.short_circuit_max_for_s)
    with bench.supervisor.short_circuit_step():
        bench.output("short_circuit", True)
        try:
            bench.clock.sleep(window)
        finally:
            bench.output("short_circuit", False)
    bench.clock.sleep(RIG_POLL_S)  # the contactor open again: the DMM sees the pack, or 0 V if it cut
    measure(f"terminal voltage (DMM) after a short of {window * 1000:g} ms", pack.terminal_voltage(), req=sc.id,
            unit="V", at_most=spec.power_off.terminals_off_max_v)
    bench.clock.sleep(_shows_within(spec, 0.0))
    report = _report_at(pcs, spec, pcs.received("DetailStatus")[-1].t)
    measure(f"DetailStatus {sc.failure_bit}", report["DetailStatus"][sc.failure_bit], req=sc.id, equals=1)
    measure(f"0x359 {sc.can_protection}", report["ProtectionsAlarms"][sc.can_protection], req=sc.id, equals=1)
    _check_lights(measure, spec, pack, sc.id, sc.light)
    # latched: longer than any timed release of the spec, still cut
    bench.clock.sleep(max(getattr(spec.protections, n).release.after_cut_s or 0.0 for n in PROTECTIONS))
    _check_relays(measure, pcs, sc.id, closed=False)
    measure("terminal voltage (DMM): latched open", pack.terminal_voltage(), req=sc.id, unit="V",
            at_most=spec.power_off.terminals_off_max_v)
    power_cycle(pack)
    bench.clock.sleep(_shows_within(spec, 0.0))
    measure(f"DetailStatus {sc.failure_bit} after a power cycle", pcs.signal(sc.failure_bit, frame="DetailStatus"),
            req=sc.id, equals=0)
    _check_relays(measure, pcs, sc.id, closed=True)


@pytest.mark.requirement("zero_volt_cell", manual="2.2")
def test_a_zero_volt_cell_powers_the_pack_off(bench, pack, pcs, spec, measure, faults):
    """Manual 2.2, PACK_SPEC 2 and 4: a group below the 0 V-cell threshold (two tolerances below,
    at the BMS's sense line) powers the pack off: the failure bit is reported, then 0 V at the
    terminals, no CAN, every light off."""
    zv = spec.zero_volt_cell
    power_on(pack)
    faults.force_group(pack.number - 1, 0, zv.threshold_v - 2 * spec.tolerance.group_voltage_v)
    measure.stimulate(f"group 1 driven to {zv.threshold_v - 2 * spec.tolerance.group_voltage_v:g} V (fault insertion)")
    try:
        value, _ = pcs.wait_until(zv.failure_bit, 1, within=_shows_within(spec, 0.0), frame="DetailStatus")
    except WaitTimeout:
        value = pcs.signal(zv.failure_bit, frame="DetailStatus")
    measure(f"DetailStatus {zv.failure_bit}", value, req=zv.id, equals=1)
    _check_powered_off(measure, spec, bench, pack, pcs, zv.id)


# --- what the spec says follows from the levels reported --------------------------------------------

def _expected_factor(spec, levels: dict[str, int], failed: set[str], direction: str) -> float:
    """PACK_SPEC 4: each tripped row scales its direction's limit by its level's factor; a level 3
    or a failure opens the relays, so no current either way (limit 0)."""
    if failed or 3 in levels.values():
        return 0.0
    factor = 1.0
    for name, level in levels.items():
        if level and getattr(spec.protections, name).direction in (direction, "both"):
            factor = min(factor, getattr(spec.levels, f"l{level}").current_limit_factor)
    return factor


def _expected_bits(spec, levels: dict[str, int], failed: set[str]) -> dict[str, int | None]:
    """PACK_SPEC 4 and 6: each 0x359 bit the spec names: 1 required, 0 forbidden, None either (a
    row past L1 may keep its alarm bit: the spec does not say)."""
    rows = {name: getattr(spec.protections, name) for name in PROTECTIONS}
    required, either = set(), set()
    for name, level in levels.items():
        if level:
            row = rows[name]
            kind = getattr(spec.levels, f"l{level}").can
            required.add(row.can_alarm if kind == "alarm" else row.can_protection)
            either.add(row.can_alarm)
    if failed:
        required.add(spec.failure_response.can_protection)
    for failure in _failures(spec):
        if failure.failure_bit in failed and failure.can_alarm:
            required.add(failure.can_alarm)
    if spec.short_circuit.failure_bit in failed:
        required.add(spec.short_circuit.can_protection)
    named = {bit for row in rows.values() for bit in (row.can_alarm, row.can_protection)}
    named |= {spec.failure_response.can_protection, spec.short_circuit.can_protection}
    return {bit: 1 if bit in required else None if bit in either else 0 for bit in sorted(named)}


def _expected_alm(spec, levels: dict[str, int], failed: set[str]) -> str:
    """PACK_SPEC 3: "off" (L1 changes no light), or the light of the rows at L2/L3 ("alm_on",
    "alm_flicker"); a failure shows the failure light. Mixed: the steady light (project reading)."""
    if failed:
        return spec.failure_response.light
    shown = {getattr(spec.protections, name).light for name, level in levels.items() if level >= 2}
    if not shown:
        return "off"
    return shown.pop() if len(shown) == 1 else "alm_on"


def _earliest_cut(spec, levels: dict[str, int], direction: str | None) -> float:
    """The earliest, after a stimulus that moved every row at once, that the spec lets the relays
    open given the levels reported: a level 3 at its delay, a level 2 of the direction the current
    flows in at its delay plus the hold."""
    hold = spec.levels.l2.open_relays_if_current_for_s
    times = [math.inf]
    for name, level in levels.items():
        row = getattr(spec.protections, name)
        if level == 3:
            times.append(row.l3.delay_s)
        if level >= 2 and direction is not None and row.direction in (direction, "both"):
            times.append(row.l2.delay_s + hold)
    return min(times)


# --- checks -----------------------------------------------------------------------------------

def _check_report(measure, spec, req, report, when):
    """0x359 bits, 0x351 limits and 0x35C enable bits of one report, against what the spec says
    follows from every level and failure the same report gives."""
    levels, failed = _levels(report), _failed(spec, report)
    with measure.together():  # every bit and limit of the report, each on its own
        for bit, want in _expected_bits(spec, levels, failed).items():
            if want is not None:
                measure(f"0x359 {bit} {when}", report["ProtectionsAlarms"][bit], req=req, equals=want)
        for direction, normal, limit, enable in (
                ("charge", spec.can.charge_current_limit_a, "ChargeCurrentLimit", "ChargeEnable"),
                ("discharge", spec.can.discharge_current_limit_a, "DischargeCurrentLimit", "DischargeEnable")):
            expected = normal * _expected_factor(spec, levels, failed, direction)
            measure(f"0x351 {limit} {when}", report["ChargeLimits"][limit], req=req, unit="A",
                    nominal=expected, tolerance=LIMIT_RESOLUTION_A)
            measure(f"0x35C {enable} {when}", report["ChargeRequest"][enable], req=req, equals=int(expected > 0))


def _check_lights(measure, spec, pack, req, alm: str):
    """ALM as expected ("off", "alm_on", "alm_flicker" with the spec's period) and RUN: on when
    ALM is off, dark when ALM shows (ALM overrides RUN)."""
    period = spec.lights.alm_flicker_period_s
    seen = pack.observe_lights(2 * period + pack.lights.sample_period)
    kind = {"off": "off", "alm_on": "on", "alm_flicker": "flickering"}[alm]
    with measure.together():
        measure("ALM light", seen["alm"].kind, req=req, equals=kind)
        measure("RUN light", seen["run"].kind, req=req, equals="on" if alm == "off" else "off")
        if alm == "alm_flicker":
            measure("ALM flicker period", seen["alm"].period_s or math.nan, req=req, unit="s", nominal=period,
                    tolerance=period * spec.tolerance.flicker_period_rel)


def _check_relays(measure, pcs, req, closed: bool):
    status = pcs.latest("DetailStatus")
    with measure.together():
        for relay in ("Relay1Closed", "Relay2Closed"):
            measure(f"DetailStatus {relay}", status[relay], req=req, equals=int(closed))


def _check_relays_close(measure, spec, pack, pcs, req):
    """The pack closes its relays again (pre-charge, then relay 1) and the DMM sees it."""
    within = spec.power_on.relays_closed_within_s + spec.can.period_s
    try:
        closed, _ = pcs.wait_until("Relay1Closed", 1, within=within, frame="DetailStatus")
    except WaitTimeout:
        closed = pcs.signal("Relay1Closed", frame="DetailStatus")
    measure(f"DetailStatus Relay1Closed within {within:g} s", closed, req=req, equals=1)
    measure("terminal voltage (DMM): the pack connected again", pack.terminal_voltage(), req=req, unit="V",
            at_least=spec.power_off.terminals_off_max_v)


def _check_powered_off(measure, spec, bench, pack, pcs, req):
    """Powered off (PACK_SPEC 2): once the power-off sequence is over, 0 V at the terminals, no CAN
    frame and every light off."""
    po = spec.power_off
    bench.clock.sleep(po.flicker_count * po.flicker_period_s + spec.tolerance.delay_late_s)
    with measure.together():
        measure("terminal voltage (DMM) after the power-off sequence", pack.terminal_voltage(), req=req, unit="V",
                at_most=po.terminals_off_max_v)
        since = _last_report(pcs)
        seen = pack.observe_lights(2 * spec.can.period_s)
        measure("CAN reports from the powered-off pack", _reports_since(pcs, since), req=req, equals=0)
        lit = sorted(name for name, state in seen.items() if state.kind != "off")
        measure("lights not off", lit, req=req, equals=[])


# --- reading the pack ------------------------------------------------------------------------

@dataclass(frozen=True)
class Stimulus:
    """When a stimulus took effect, on the pack's clock (CAN frame times): between the two."""

    earliest: float
    latest: float


@dataclass(frozen=True)
class Seen:
    """The report a wait stopped at: the row's level in it, its frame time, the frame time of
    the report before it (the change happened in between)."""

    level: int
    at: float
    before: float


def _row(spec, name: str, level: int):
    row = getattr(spec.protections, name)
    return row, getattr(row, f"l{level}")


def _signal(name: str) -> str:
    """cell_over_voltage -> CellOverVoltageLevel (DetailProtection)."""
    return "".join(word.capitalize() for word in name.split("_")) + "Level"


def _levels(report) -> dict[str, int]:
    return {name: LEVELS.index(report["DetailProtection"][_signal(name)]) for name in PROTECTIONS}


def _failures(spec):
    return [getattr(spec.failures, name) for name in type(spec.failures).model_fields]


def _failed(spec, report) -> set[str]:
    """The failure bits set in the report's DetailStatus (those the spec says open the relays)."""
    bits = {f.failure_bit for f in _failures(spec)} | {spec.short_circuit.failure_bit, spec.zero_volt_cell.failure_bit}
    return {bit for bit in bits if report["DetailStatus"][bit]}


def _shows_within(spec, delay_s: float) -> float:
    """By when a level with this delay shows on CAN at the latest: its delay, the tolerance and
    one report period."""
    return delay_s + spec.tolerance.delay_late_s + spec.can.period_s + spec.can.period_tolerance_s


def _need_a_step(bench, faults, row):
    if not can_step(bench, faults, row.quantity):
        pytest.skip(f"{row.id}: this bench moves the {row.quantity.replace('_', ' ')} only by a chamber soak; "
                    "a trip cannot be timed from it (needs fault insertion)")


def _flow_for(pack, row) -> str | None:
    """A current in the row's direction, unless the row's stimulus is the current itself; returns
    the direction the current flows in."""
    if row.quantity in CURRENTS:
        return row.quantity.removesuffix("_current")
    flow(pack, row.direction)
    return "discharge" if row.direction == "both" else row.direction


def _report_at(pcs, spec, t: float) -> dict[str, dict]:
    """The frames of the CAN report sent at frame time ``t`` (a report is one burst)."""
    out = {}
    for frame in REPORT:
        reception = min(pcs.received(frame), key=lambda r: abs(r.t - t))
        if abs(reception.t - t) > spec.can.period_s / 2:
            raise CanCheckFailed(f"no {frame} frame in the report of t={t:.3f} s (nearest at t={reception.t:.3f} s)")
        out[frame] = reception.signals
    return out


def _levels_reported(pcs, clock, name: str, seconds: float) -> list[int]:
    """The row's level in every report of the next ``seconds``."""
    since = _last_report(pcs)
    clock.sleep(seconds)
    seen = [LEVELS.index(r.signals[_signal(name)]) for r in pcs.received("DetailProtection") if r.t > since]
    if not seen:
        raise CanCheckFailed(f"no DetailProtection frame in the {seconds:g} s after t={since:.3f} s")
    return seen


def _last_report(pcs) -> float:
    """Frame time of the last report received; minus infinity before the first."""
    try:
        return pcs.received("DetailProtection")[-1].t
    except CanCheckFailed:
        return -math.inf


def _reports_since(pcs, since: float) -> int:
    return sum(r.t > since for r in pcs.received("DetailProtection"))


def _wait_level(pcs, name: str, until, within: float) -> Seen:
    """The first report whose level of the row satisfies ``until`` (the last one if none does)."""
    signal = _signal(name)
    try:
        _, t = pcs.wait_until(signal, lambda v: until(LEVELS.index(v)), within=within, frame="DetailProtection")
    except WaitTimeout:
        t = None
    reports = pcs.received("DetailProtection")
    i = len(reports) - 1 if t is None else max(k for k, r in enumerate(reports) if r.t == t)
    before = reports[i - 1].t if i else -math.inf
    return Seen(LEVELS.index(reports[i].signals[signal]), reports[i].t, before)


def _step(bench, pack, pcs, faults, row, value: float, report_after: float) -> Stimulus:
    """Drive the row's quantity to ``value`` at an instant such that a CAN report falls
    ``report_after`` seconds later (within one poll); returns when, on the pack's clock."""
    clock, period = bench.clock, pack.spec.can.period_s
    last = _last_report(pcs)
    fresh = clock.wait_for(lambda: _last_report(pcs), timeout=2 * period, poll=CAN_POLL_S,
                           until=lambda t: t > last, what="a fresh CAN report")
    seen = clock.now()  # within one poll of the report
    clock.sleep((-report_after) % period)
    before = clock.now()
    drive(bench, pack, faults, row.quantity, value)
    after = clock.now()
    return Stimulus(fresh + (before - seen), fresh + (after - seen) + CAN_POLL_S)


def _seconds_until_cut(bench, pack, spec, since: float, flowing: bool, within: float) -> float:
    """Seconds from ``since`` until the rig sees the pack cut off: the current gone on the PSU/e-load
    read-back while a current is driven (once the rig has seen it flow), else 0 V at the terminals
    on the DMM; infinity if not by ``since + within`` (plus one rig poll)."""
    clock = bench.clock
    if flowing:
        read, limit = (lambda: abs(pack.current())), spec.tolerance.current_a
        seconds_until(clock, read, lambda amps: amps > limit, RIG_POLL_S)
    else:
        read, limit = pack.terminal_voltage, spec.power_off.terminals_off_max_v
    already = clock.now() - since
    cut = already + seconds_until(clock, read, lambda x: x <= limit, max(within + RIG_POLL_S - already, 0.0))
    if math.isfinite(cut):
        note_mark(bench, "cut measured (rig)", at=since + cut)
    return cut
