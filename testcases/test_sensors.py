"""Each sensor and each rule on its own (PACK_SPEC.md 4, 6; manual 7.4).

The protection suite drives every row through its quantity as a whole; this file takes the rules
apart, so that a firmware that gets one of them wrong cannot hide behind another:

- which temperature sensors each row compares, and which 0x356's mean temperature is made of: each
  of T1-T5 (T5 the power stage) driven past the threshold alone (the spec names the sensors of
  each row, ``sensors``, and of 0x356, ``can.temperature_sensors``);
- the level-2 hold: the relays open ``open_relays_if_current_for_s`` after the level-2 trip as the
  pack reports it on CAN (not after the stimulus, which adds the trip delay), and, with a level 2
  standing and no current, the hold after the current starts;
- a level 3 latches until its release is reached *with no current*: with current still flowing
  (relays welded shut) it stays latched past its release value;
- each level releases at its own margin (a temperature row's three releases, one at a time);
- SOH learned over a full discharge (pack spec ``[soh]``).
"""
from __future__ import annotations

import math

import pytest

from rig.files.rows import PROTECTIONS
from testcases.kit.observe import seconds_until
from testcases.kit import rules
from testcases.kit.reports import LEVELS, level_signal
from testcases.pair import half_step

pytestmark = pytest.mark.protection

SENSORS = ("T1", "T2", "T3", "T4", "T5")
#: C a sensor is moved by for the 0x356 check: clear of the BMS's resolution, below every alarm.
NUDGE_C = 8.0
#: s; how often the rig looks at the bus or its read-backs while timing.
POLL_S = 0.01


def _row(name: str):
    """A protection row as a test parameter, carrying its requirement."""
    return pytest.param(name, id=name, marks=pytest.mark.requirement(f"protections.{name}", manual="2.2, 7.4"))


def _temperature_rows(spec) -> list[str]:
    return [n for n in PROTECTIONS if getattr(spec.protections, n).quantity in ("max_temperature", "min_temperature")]


def _levels_over(pcs, clock, name: str, seconds: float) -> list[int]:
    """The row's level in every report of the next ``seconds``."""
    since = pcs.received("DetailProtection")[-1].t
    clock.sleep(seconds)
    return [LEVELS.index(r.signals[level_signal(name)]) for r in pcs.received("DetailProtection") if r.t > since]


def _level_now(pcs, name: str) -> int:
    return LEVELS.index(pcs.signal(level_signal(name), frame="DetailProtection"))


def _wait_level(pcs, name: str, level: int, within: float) -> int:
    try:
        pcs.wait_until(level_signal(name), LEVELS[level], within=within, frame="DetailProtection")
    except Exception:  # WaitTimeout: the level as last reported goes to the measurement
        pass
    return _level_now(pcs, name)


# --- which sensors --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [_row(n) for n in ("charge_over_temperature", "discharge_over_temperature",
                                                     "charge_under_temperature", "discharge_under_temperature")])
def test_temperature_row_reads_its_sensors_and_no_other(name, spec, bench, pack, pcs, measure):
    """Each of T1-T5 in turn, alone, held two tolerances past the row's level-1 threshold for longer
    than its delay: the row trips on the sensors the spec names for it and on no other."""
    row, clock = getattr(spec.protections, name), bench.clock
    assert name in _temperature_rows(spec) and row.sensors, f"{row.id}: the pack spec names no sensors for it"
    lv = row.l1
    value = rules.unsafe(spec, row, lv.threshold)
    pack.power_on()
    for index, sensor in enumerate(SENSORS):
        pack.force_temperature(index + 1, value)
        seen = max(_levels_over(pcs, clock, name, rules.shows_within(spec, lv.delay_s)), default=math.nan)
        if sensor in row.sensors:
            measure(f"level with only {sensor} at {value:g} C", seen, req=row.id, at_least=1)
        else:
            measure(f"level with only {sensor} at {value:g} C ({sensor} is not one of the row's)", seen, req=row.id,
                    equals=0)
        pack.force_temperature(index + 1, None)
        _wait_level(pcs, name, 0, rules.shows_within(spec, 0.0))


@pytest.mark.requirement("can", manual="2.2")
def test_mean_temperature_is_made_of_the_cell_sensors(spec, bench, pack, pcs, measure):
    """0x356's mean cell temperature moves by 1/n of a change on each of the spec's n sensors and
    not at all on the others (T5, the power stage), and equals the mean of the sensors as the rig
    knows them (the case thermocouples for those it left alone, the forced value for the one it
    moved)."""
    can, clock, req = spec.can, bench.clock, spec.can.id
    pack.power_on()
    clock.sleep(2 * can.period_s)
    case = pack.case_temperatures()
    case_c = sum(case) / len(case)
    base = pcs.signal("Temperature", frame="PackMeasurements")
    n = len(can.temperature_sensors)
    for index, sensor in enumerate(SENSORS):
        pack.force_temperature(index + 1, case_c + NUDGE_C)
        clock.sleep(2 * can.period_s)
        mean = pcs.signal("Temperature", frame="PackMeasurements")
        used = sensor in can.temperature_sensors
        # the untouched sensors' readings cancel; the forced one carries its own offset: its
        # tolerance, shared by n, and the frame's resolution
        measure(f"0x356 Temperature change with {sensor} raised {NUDGE_C:g} C", mean - base, req=req, unit="C",
                nominal=NUDGE_C / n if used else 0.0,
                tolerance=spec.tolerance.temperature_c / n + 2 * half_step("PackMeasurements", "Temperature"))
        expected = case_c + (NUDGE_C / n if used else 0.0)
        measure(f"0x356 Temperature with {sensor} raised, against the rig's sensors", mean, req=req, unit="C",
                nominal=expected, tolerance=spec.tolerance.temperature_c)
        pack.force_temperature(index + 1, None)
        clock.sleep(2 * can.period_s)


# --- the level-2 hold --------------------------------------------------------------------------------
HOLD_ROWS = [_row(n) for n in ("cell_over_voltage", "cell_under_voltage", "discharge_over_current",
                                "cell_voltage_difference")]


def _flowing(bench, pack, spec) -> None:
    """Wait (a few polls at most) until the rig's read-back shows the current it started."""
    seconds_until(bench.clock, lambda: abs(pack.current()), lambda a: a > spec.tolerance.current_a, 10 * POLL_S,
                  poll=POLL_S)


def _seconds_until_cut(bench, pack, spec, within: float) -> float:
    """Seconds until the rig's read-back shows no current (the relays opened); inf if not within."""
    return seconds_until(bench.clock, lambda: abs(pack.current()), lambda a: a <= spec.tolerance.current_a,
                         within=within, poll=POLL_S)


@pytest.mark.parametrize("name", HOLD_ROWS)
def test_level2_opens_the_relays_the_hold_after_its_reported_trip(name, spec, bench, pack, pcs, measure):
    """With current flowing the row's way, the quantity is put past the L2 threshold at an instant
    chosen so that a CAN report falls just after the earliest trip; the relays open (the rig sees
    the current cut) the hold after the trip as reported: no earlier than the hold after the last
    report without the trip, no later than the hold plus the tolerance after the first with it."""
    row, clock, period = getattr(spec.protections, name), bench.clock, spec.can.period_s
    lv, hold, late = row.l2, spec.levels.l2.open_relays_if_current_for_s, spec.tolerance.delay_late_s
    pack.power_on()
    if row.quantity not in ("charge_current", "discharge_current"):
        pack.flow(row.direction)
        clock.sleep(2 * period)
    seen_t, seen_at = pack.reports.fresh(POLL_S)
    offset = seen_at - seen_t                      # rig time of a frame time, within one poll
    clock.sleep((-(lv.delay_s + 2 * POLL_S)) % period)   # a report falls just after the earliest trip
    pack.drive(row.quantity, rules.unsafe(spec, row, lv.threshold))
    _flowing(bench, pack, spec)   # a current row's stimulus is the current itself: seen flowing first
    cut = _seconds_until_cut(bench, pack, spec, lv.delay_s + hold + 2 * late + period)
    cut_at = clock.now() if cut < math.inf else math.inf
    reports = pcs.received("DetailProtection")
    first = next((i for i, r in enumerate(reports) if LEVELS.index(r.signals[level_signal(name)]) >= 2), None)
    measure("L2 reported on CAN", first is not None, req=row.id, equals=True)
    at, before = reports[first].t + offset, reports[first - 1].t + offset
    measure("relays open (current cut, rig read-back) after the last report without the L2", cut_at - before,
            req=row.id, unit="s", at_least=hold)
    measure("relays open (current cut, rig read-back) after the first report with the L2", cut_at - at,
            req=row.id, unit="s", at_most=hold + late + POLL_S)


@pytest.mark.parametrize("name", [p for p in HOLD_ROWS if p.id != "discharge_over_current"])
def test_level2_standing_opens_the_relays_the_hold_after_current_starts(name, spec, bench, pack, pcs, measure):
    """A level 2 tripped with no current keeps the relays closed (the DMM sees the pack for longer
    than the hold); current then started the row's way, the relays open the hold after it starts
    (the rig's own clock on both ends)."""
    row, clock, period = getattr(spec.protections, name), bench.clock, spec.can.period_s
    lv, hold, late = row.l2, spec.levels.l2.open_relays_if_current_for_s, spec.tolerance.delay_late_s
    pack.power_on()
    pack.drive(row.quantity, rules.unsafe(spec, row, lv.threshold))
    measure("level reported past the L2 threshold", _wait_level(pcs, name, 2, rules.shows_within(spec, lv.delay_s)),
            req=row.id, equals=2)
    clock.sleep(hold + late)
    measure("DMM with an L2 standing and no current", pack.terminal_voltage(), req=row.id, unit="V",
            at_least=spec.power_off.terminals_off_max_v)
    measure("main relays with an L2 standing and no current",
            pcs.latest("DetailStatus")["Relay1Closed"], req=row.id, equals=1)
    pack.flow(row.direction)
    started = clock.now()
    _flowing(bench, pack, spec)
    cut = _seconds_until_cut(bench, pack, spec, hold + late + period)
    measure("relays open (current cut) after the current started", clock.now() - started if cut < math.inf
            else math.inf, req=row.id, unit="s", at_least=hold, at_most=hold + late + POLL_S)


# --- a level 3 with current still flowing -------------------------------------------------------------
@pytest.mark.requirement("protections.discharge_over_temperature", manual="7.4")
def test_level3_stays_latched_while_current_still_flows(spec, bench, pack, pcs, faults, measure):
    """PACK_SPEC 4: a level 3 latches until its release value is reached *with no current*. The
    main relays welded shut (fault insertion), a discharge flowing, the row's L3 trips: the relays
    are commanded open, the current goes on. The sensor back far past the release value, the
    level stays latched while the rig still sees current; the e-load off, it releases."""
    name = "discharge_over_temperature"
    row, clock = spec.protections.discharge_over_temperature, bench.clock
    pack.power_on()
    for relay in ("relay1", "relay2"):
        faults.relay_stuck(0, relay, True)
    amps = pack.flow("discharge")
    pack.drive(row.quantity, rules.unsafe(spec, row, row.l3.threshold))
    measure("level reported past the L3 threshold", _wait_level(pcs, name, 3, rules.shows_within(spec, row.l3.delay_s)),
            req=row.id, equals=3)
    released_at = rules.beyond(row, row.l3.threshold, -row.release.margin - rules.margin(spec, row))
    pack.drive(row.quantity, released_at)
    held = _levels_over(pcs, clock, name, 3 * spec.can.period_s)
    measure("current still flowing (rig read-back, relays welded)", -pack.current(), req=row.id, unit="A",
            nominal=amps, tolerance=spec.tolerance.current_a)
    measure(f"lowest level reported back at {released_at:g} C with current flowing", min(held, default=math.nan),
            req=row.id, equals=3)
    pack.stop()
    measure("level reported once no current flows",
            _wait_level(pcs, name, 0, rules.shows_within(spec, 0.0)), req=row.id, at_most=2)


# --- each level's own margin --------------------------------------------------------------------------
@pytest.mark.parametrize("name", [_row(n) for n in ("charge_over_temperature", "charge_under_temperature")])
def test_each_level_releases_at_its_own_margin(name, spec, bench, pack, pcs, measure):
    """A row released by margin: L3, L2 and L1 each release the margin back from their own
    threshold. From past L3, the quantity walks back: just short of L3's release, L3 holds; just
    past it, L2 is what is left, and so on down to no level."""
    row, clock = getattr(spec.protections, name), bench.clock
    m = rules.margin(spec, row)
    pack.power_on()
    pack.drive(row.quantity, rules.beyond(row, row.l3.threshold, m))
    measure("level reported past the L3 threshold", _wait_level(pcs, name, 3, rules.shows_within(spec, row.l3.delay_s)),
            req=row.id, equals=3)
    for level in (3, 2, 1):
        release = rules.beyond(row, getattr(row, f"l{level}").threshold, -row.release.margin)
        short, past = rules.beyond(row, release, m), rules.beyond(row, release, -m)
        pack.drive(row.quantity, short)
        measure(f"lowest level at {short:g} C (short of L{level}'s release {release:g} C)",
                min(_levels_over(pcs, clock, name, rules.shows_within(spec, 0.0)), default=math.nan), req=row.id,
                equals=level)
        pack.drive(row.quantity, past)
        measure(f"level at {past:g} C (past L{level}'s release {release:g} C)",
                _wait_level(pcs, name, level - 1, rules.shows_within(spec, 0.0)), req=row.id, equals=level - 1)


# --- SOH ----------------------------------------------------------------------------------------------
#: % SOC the bulk of the full discharge is conditioned to at once where the bench has fault
#: insertion (its conditioning counts the charge it moved, as a bench's discharge would); the rest,
#: down to the alarm, is discharged for real at the continuous current.
CONDITIONED_TO_PCT = 10.0


@pytest.mark.slow
@pytest.mark.pack_state(soc=100)
@pytest.mark.requirement("soh", manual="2.1")
def test_soh_is_learned_over_a_full_discharge(spec, bench, pack, pcs, fault_unit, measure):
    """Pack spec ``[soh]``: charged full (0x355 SOC recalibrated to 100 %), then discharged down to
    the cell under-voltage alarm: the SOH the pack reports is the charge the rig counted out, in %
    of the nominal capacity. The rig counts on its e-load read-back; where the bench has fault
    insertion, the bulk of the discharge is a conditioning step (to ``CONDITIONED_TO_PCT``) that
    reports the charge it moved, the rest a real discharge at the continuous current."""
    soh, clock, ratings = spec.soh, bench.clock, spec.ratings
    pack.power_on()
    pack.charge(ratings.standard_charge_current_a)
    pcs.wait_until("SOC", spec.soc.full_soc_pct, within=spec.storage_recharge.max_duration_s,
                   frame="StateOfCharge", what="full (100 %)", poll=10.0)
    pack.stop()
    counted = -fault_unit.set_soc(0, CONDITIONED_TO_PCT) if fault_unit is not None else 0.0
    alarm = spec.protections.cell_under_voltage.can_alarm
    pack.discharge(ratings.continuous_discharge_current_a)
    look = 5.0
    deadline = clock.now() + 1.1 * ratings.nominal_capacity_ah / ratings.continuous_discharge_current_a * 3600
    while clock.now() < deadline and not pcs.signal(alarm, frame="ProtectionsAlarms"):
        amps = pack.current()
        clock.sleep(look)
        counted += -amps * look / 3600.0
    measure(f"0x359 {alarm} at the end of the discharge", pcs.signal(alarm, frame="ProtectionsAlarms"),
            req=soh.id, equals=1)
    pack.stop()
    clock.sleep(2 * spec.can.period_s)
    measure(f"0x355 SOH after a full discharge of {counted:.1f} Ah (rig count)",
            pcs.signal("SOH", frame="StateOfCharge"), req=soh.id, unit="%",
            nominal=min(counted / ratings.nominal_capacity_ah * 100, 100.0), tolerance=soh.tolerance_pct)
