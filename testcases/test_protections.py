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
the pack reports in the same CAN report, by the spec's rules (:mod:`testcases.kit.rules`, the
suite's oracle); the firmware profile is never read.

The procedures speak the kit's terms (:mod:`testcases.kit`): ``pack`` acts and drives,
``pack.reports`` reads the CAN reports, ``rules`` says what the spec expects, ``checks`` and
``measure`` record the outcome.
"""
from __future__ import annotations

import pytest

from rig.files.rows import PROTECTIONS
from testcases.kit import checks, rules
from testcases.kit.pack import CAN_POLL_S, RIG_POLL_S
from testcases.kit.stimulus import CURRENTS

pytestmark = pytest.mark.protection

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
def test_holds_short_of_the_threshold_then_trips_in_time(name, level, pack, spec, measure):
    """Manual 7.4, PACK_SPEC 4: two tolerances short of the level's threshold, held longer than
    its delay, the level does not trip; two tolerances past it, it trips no later than its delay
    plus the spec's tolerance (a report falls just after that instant)."""
    row, lv = rules.row_level(spec, name, level)
    pack.need_a_step(row)
    pack.power_on()
    short = rules.safe(spec, row, lv.threshold)
    pack.drive(row.quantity, short)
    held = pack.reports.levels_over(name, rules.shows_within(spec, lv.delay_s))
    measure(f"highest level reported, held at {short:g} {row.unit}", max(held), req=row.id, at_most=level - 1)

    late = lv.delay_s + spec.tolerance.delay_late_s
    stimulus = pack.step(row.quantity, rules.unsafe(spec, row, lv.threshold), report_after=late + 2 * CAN_POLL_S)
    trip = checks.tripped(measure, pack, name, level, within=rules.shows_within(spec, lv.delay_s) + spec.can.period_s)
    measure(f"L{level} trip: last report without it, after the stimulus", trip.before - stimulus.latest,
            req=row.id, unit="s", at_most=late, tolerance=spec.tolerance.delay_late_s)


@pytest.mark.parametrize("name,level", ROW_LEVELS)
def test_does_not_trip_before_its_delay(name, level, pack, spec, measure):
    """PACK_SPEC 4: past the threshold, a level trips no earlier than its delay (a report falls
    just before the delay ends: an early trip would show in it)."""
    row, lv = rules.row_level(spec, name, level)
    pack.need_a_step(row)
    pack.power_on()
    stimulus = pack.step(row.quantity, rules.unsafe(spec, row, lv.threshold), report_after=lv.delay_s - CAN_POLL_S)
    trip = checks.tripped(measure, pack, name, level, within=rules.shows_within(spec, lv.delay_s) + spec.can.period_s)
    measure(f"L{level} trip: first report with it, after the stimulus", trip.at - stimulus.earliest,
            req=row.id, unit="s", at_least=lv.delay_s, tolerance=spec.tolerance.delay_late_s)


# --- 2. what each level does ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ROWS)
def test_level1_alarms_on_can_halves_the_limit_and_changes_no_light(name, pack, spec, measure):
    """Manual 7.4, PACK_SPEC 3-4: at L1 the pack sets its CAN alarm bit and halves the current
    limit of the row's direction; it shows no light (RUN stays on) and keeps its relays closed."""
    row, lv = rules.row_level(spec, name, 1)
    pack.power_on()
    pack.drive(row.quantity, rules.unsafe(spec, row, lv.threshold))
    trip = checks.tripped(measure, pack, name, 1, within=rules.shows_within(spec, lv.delay_s), exactly=True)
    report = pack.reports.at(trip.at)
    checks.report(measure, pack, report, req=row.id, when="at L1")
    checks.lights_follow(measure, pack, report, req=row.id)
    closed = rules.relays_stay_closed(report.levels, report.failed)  # another row's L3 may hold them open
    checks.relays(measure, pack, closed=closed, req=row.id)
    if closed:
        checks.connected(measure, pack, "terminal voltage (DMM): the pack stays connected", req=row.id)


@pytest.mark.parametrize("name", ROWS)
def test_level2_protects_and_opens_the_relays_if_current_keeps_flowing(name, pack, spec, measure):
    """Manual 7.4, PACK_SPEC 3-4: at L2 the pack sets its CAN protection bit, sets the row's
    current limit to 0 and clears its enable bit, and shows ALM (RUN dark); current kept flowing
    that way (the rig plays a PCS that ignores the limit), the relays open after the hold time:
    the rig sees the current cut on its own read-back."""
    row, lv = rules.row_level(spec, name, 2)
    pack.need_a_step(row)
    pack.power_on()
    direction = pack.flow_for(row)
    start = pack.clock.now()
    pack.drive(row.quantity, rules.unsafe(spec, row, lv.threshold))
    latest = lv.delay_s + rules.relays_hold_s(spec) + 2 * spec.tolerance.delay_late_s
    cut = pack.seconds_until_cut(start, flowing=True, within=latest)
    trip = checks.tripped(measure, pack, name, 2, within=rules.shows_within(spec, lv.delay_s), exactly=True)
    report = pack.reports.at(trip.at)
    checks.report(measure, pack, report, req=row.id, when="at L2")
    checks.lights_follow(measure, pack, report, req=row.id)
    since = pack.reports.last().levels  # another row's level 3 may have cut first
    measure("current cut (rig read-back), after the stimulus", cut, req=row.id, unit="s",
            at_least=rules.earliest_cut(spec, since, direction), at_most=latest)
    checks.relays(measure, pack, closed=False, req=row.id)


@pytest.mark.parametrize("name", ROWS)
def test_level3_opens_the_relays_at_once(name, pack, spec, measure):
    """Manual 7.4, PACK_SPEC 3-4: at L3 the relays open at once (the rig sees the current cut, or
    0 V on the DMM), the CAN protection bit is set and both limits are 0, ALM shows; a level-3
    under voltage powers the pack off (0 V at the terminals, no CAN, lights off), a level 3 that
    is a failure sets its failure bit.

    A row whose level 2 would open the relays first (its level 3 waits longer than level 2 plus
    the hold) is tripped with no current: its cut shows as 0 V on the DMM."""
    row, lv = rules.row_level(spec, name, 3)
    pack.need_a_step(row)
    pack.power_on()
    flowing = row.quantity in CURRENTS or lv.delay_s < row.l2.delay_s + rules.relays_hold_s(spec)
    direction = pack.flow_for(row) if flowing else None
    start = pack.clock.now()
    pack.drive(row.quantity, rules.unsafe(spec, row, lv.threshold))
    latest = lv.delay_s + spec.tolerance.delay_late_s
    cut = pack.seconds_until_cut(start, flowing=flowing, within=latest)
    trip = checks.tripped(measure, pack, name, 3, within=rules.shows_within(spec, 0.0), exactly=True)
    report = pack.reports.at(trip.at)
    checks.report(measure, pack, report, req=row.id, when="at L3")
    what = "current cut (rig read-back)" if flowing else "0 V at the terminals (DMM)"
    measure(f"{what}, after the stimulus", cut, req=row.id, unit="s",
            at_least=rules.earliest_cut(spec, report.levels, direction), at_most=latest)
    checks.relays(measure, pack, closed=False, req=row.id)
    if lv.action == "power_off":
        checks.powered_off(measure, pack, req=row.id)
        return
    if lv.action == "failure":
        bit = getattr(spec.failures, name).failure_bit
        measure(f"DetailStatus {bit}", pack.pcs.signal(bit, frame="DetailStatus"), req=row.id, equals=1)
    checks.lights_follow(measure, pack, report, req=row.id)


# --- 3. release ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,level", ROW_LEVELS)
def test_releases_by_its_rule(name, level, pack, spec, measure):
    """Manual 7.4, PACK_SPEC 4: a tripped level releases by the row's rule. Release value or
    margin: held between the release value and the trip, released past it (a level 3 keeps the
    relays open until then, and closes them again after). Current rows: released a fixed time
    after the cut, not before. A level 3 that powers the pack off: it stays off, and powers on
    normally above the release value. A level 3 that is a failure: latched past the release
    value until a power cycle."""
    row, lv = rules.row_level(spec, name, level)
    pack.power_on()
    pack.drive(row.quantity, rules.unsafe(spec, row, lv.threshold))
    trip = checks.tripped(measure, pack, name, level, within=rules.shows_within(spec, lv.delay_s))
    if level == 3 and lv.action == "power_off":
        _release_by_power_on(measure, pack, name)
    elif level == 3 and lv.action == "failure":
        _release_by_power_cycle(measure, pack, name)
    elif row.release.after_cut_s is not None:
        _release_after_the_cut(measure, pack, name, level, trip=trip)
    else:
        _release_past_its_value(measure, pack, name, level)


def _release_past_its_value(measure, pack, name, level):
    spec = pack.spec
    row, lv = rules.row_level(spec, name, level)
    release = rules.release_value(row, level)
    held_at, past = rules.unsafe(spec, row, release), rules.safe(spec, row, release)
    pack.drive(row.quantity, held_at)
    held = pack.reports.levels_over(name, rules.shows_within(spec, lv.delay_s))
    measure(f"lowest level reported, back at {held_at:g} {row.unit} (short of the release {release:g})",
            min(held), req=row.id, at_least=level)
    if level == 3:
        checks.relays(measure, pack, closed=False, req=row.id)
        checks.cut_off(measure, pack, "terminal voltage (DMM): latched open", req=row.id)
    pack.drive(row.quantity, past)
    released = pack.reports.wait_level(name, lambda k: k < level, within=rules.shows_within(spec, lv.delay_s))
    measure.mark(f"release: L{released.level} on CAN", at=released.at)  # frame time
    measure(f"level reported past the release ({past:g} {row.unit})", released.level, req=row.id, at_most=level - 1)
    if level == 3:
        report = pack.reports.at(released.at)
        if rules.relays_stay_closed(report.levels, report.failed):  # nothing else holds them open
            checks.relays_close(measure, pack, req=row.id)


def _release_after_the_cut(measure, pack, name, level, *, trip):
    # "the cut" is the level's own: its limit cut (L1 halved, L2 to 0) or the relays (L3), all at
    # the trip; the release is timed from the trip's reports
    spec, row = pack.spec, getattr(pack.spec.protections, name)
    after, late = row.release.after_cut_s, spec.tolerance.delay_late_s
    pack.stop()  # a PCS that obeys the limit: no more current (a level 3 has cut it already)
    released = pack.reports.wait_level(name, lambda k: k < level,
                                       within=after + rules.shows_within(spec, 0.0) + spec.can.period_s)
    measure.mark(f"release: L{released.level} on CAN", at=released.at)  # frame time
    measure(f"level reported {after:g} s after the cut", released.level, req=row.id, at_most=level - 1)
    measure(f"L{level} release: first report without it, after the last report before the trip",
            released.at - trip.before, req=row.id, unit="s", at_least=after, tolerance=late)
    measure(f"L{level} release: last report with it, after the first report of the trip",
            released.before - trip.at, req=row.id, unit="s", at_most=after + late, tolerance=late)


def _release_by_power_on(measure, pack, name):
    spec, row = pack.spec, getattr(pack.spec.protections, name)
    checks.powered_off(measure, pack, req=row.id)
    past = rules.safe(spec, row, row.release.value)
    pack.drive(row.quantity, past)
    since = pack.reports.last_time()
    pack.clock.sleep(rules.shows_within(spec, 0.0))
    measure(f"CAN reports from the powered-off pack, back at {past:g} {row.unit}", pack.reports.count_since(since),
            req=row.id, equals=0)
    pack.power_on()
    released = pack.reports.wait_level(name, lambda k: k == 0, within=rules.shows_within(spec, 0.0))
    measure.mark(f"release: L{released.level} on CAN", at=released.at)  # frame time
    measure("level reported after power on above the release value", released.level, req=row.id, equals=0)


def _release_by_power_cycle(measure, pack, name):
    spec, row = pack.spec, getattr(pack.spec.protections, name)
    bit = getattr(spec.failures, name).failure_bit
    pack.drive(row.quantity, rules.safe(spec, row, row.release.value))
    pack.clock.sleep(rules.shows_within(spec, row.l3.delay_s))
    measure(f"DetailStatus {bit}, past the release value", pack.pcs.signal(bit, frame="DetailStatus"),
            req=row.id, equals=1)
    checks.cut_off(measure, pack, "terminal voltage (DMM): latched open", req=row.id)
    pack.power_cycle()
    pack.clock.sleep(rules.shows_within(spec, 0.0))
    measure(f"DetailStatus {bit} after a power cycle", pack.pcs.signal(bit, frame="DetailStatus"),
            req=row.id, equals=0)


# --- short circuit and 0 V cell -----------------------------------------------------------------

@pytest.mark.needs(has_short_circuit_contactor=True)
@pytest.mark.requirement("short_circuit", manual="2.2, 7.4", ul="Short Circuit Test")
def test_short_circuit_is_cut_and_latched_until_a_power_cycle(pack, spec, measure):
    """Manual 7.4, PACK_SPEC 4: a short across the terminals (the bench's short-circuit contactor,
    closed for the rig's short-circuit window, no longer) is cut by the pack: once the contactor
    is open again the DMM reads 0 V. The pack sets its failure and protection bits, shows ALM and
    stays cut until a power cycle.

    A DMM cannot resolve the spec's 1 ms; the short lasts the shorter of delay + tolerance and
    the rig's own short-circuit window (bench limits), so a pack that has not cut by then fails."""
    sc = spec.short_circuit
    pack.power_on()
    window = min(sc.delay_s + spec.tolerance.delay_late_s, pack.bench.limits.short_circuit_max_for_s)
    pack.short_circuit(window)
    pack.clock.sleep(RIG_POLL_S)  # the contactor open again: the DMM sees the pack, or 0 V if it cut
    checks.cut_off(measure, pack, f"terminal voltage (DMM) after a short of {window * 1000:g} ms", req=sc.id)
    pack.clock.sleep(rules.shows_within(spec, 0.0))
    report = pack.reports.last()
    measure(f"DetailStatus {sc.failure_bit}", report["DetailStatus"][sc.failure_bit], req=sc.id, equals=1)
    measure(f"0x359 {sc.can_protection}", report["ProtectionsAlarms"][sc.can_protection], req=sc.id, equals=1)
    checks.lights(measure, pack, sc.light, req=sc.id)
    # latched: longer than any timed release of the spec, still cut
    pack.clock.sleep(max(getattr(spec.protections, n).release.after_cut_s or 0.0 for n in PROTECTIONS))
    checks.relays(measure, pack, closed=False, req=sc.id)
    checks.cut_off(measure, pack, "terminal voltage (DMM): latched open", req=sc.id)
    pack.power_cycle()
    pack.clock.sleep(rules.shows_within(spec, 0.0))
    measure(f"DetailStatus {sc.failure_bit} after a power cycle",
            pack.pcs.signal(sc.failure_bit, frame="DetailStatus"), req=sc.id, equals=0)
    checks.relays(measure, pack, closed=True, req=sc.id)


@pytest.mark.requirement("zero_volt_cell", manual="2.2")
def test_a_zero_volt_cell_powers_the_pack_off(pack, spec, measure):
    """Manual 2.2, PACK_SPEC 2 and 4: a group below the 0 V-cell threshold (two tolerances below,
    at the BMS's sense line) powers the pack off: the failure bit is reported, then 0 V at the
    terminals, no CAN, every light off."""
    zv = spec.zero_volt_cell
    pack.power_on()
    pack.force_group(1, zv.threshold_v - 2 * spec.tolerance.group_voltage_v)
    value = pack.reports.wait_bit(zv.failure_bit, within=rules.shows_within(spec, 0.0))
    measure(f"DetailStatus {zv.failure_bit}", value, req=zv.id, equals=1)
    checks.powered_off(measure, pack, req=zv.id)
