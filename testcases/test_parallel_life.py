"""A joined pair through its whole life (manual 5, 6.2, 6.3, 2.2; PACK_SPEC.md 2, 4, 6, 7).

Two packs joined in parallel run as one system: the pack on the CAN bus (the master) hears the
PCS and reports both; the other (the slave) hears only the master, over RS485. The manual's
procedures, run on a pair:

- with the PCS present, the pair runs for longer than every alarm delay of the spec and neither
  pack raises ALM, a failure bit or an alarm;
- PCS loss (manual 6.3): the master alarms after 30 s, its partner does not (it cannot hear the
  PCS); the alarm clears when the PCS returns; after 60 minutes without the PCS the master turns
  off, and its partner, no longer polled, has a parallel connection failure and turns off too;
- one pack turned off (POWER button, or a fault power-off): its partner notices the silence on the
  RS485 line after three missed polls: parallel connection failure, ALM, fault power-off (manual
  2.2). The bench's breaker joins the pair's bus to the rig: opening it turns neither pack off;
- a protection on one pack: the system frames report it (PACK_SPEC.md 6, the rules written in the
  pack spec under ``[can]``), the other pack goes on.
"""
from __future__ import annotations

import math

import pytest

from rig.files.rows import PROTECTIONS
from testcases.kit import rules
from testcases.kit.observe import frame_count, frames_since, seconds_until
from testcases.kit.reports import level_signal
from testcases.pair import (ADDRESS, PANEL, PREFIX, bits_of, failures_of, half_step, join, last_report_at, levels_of,
                            own_limits, report_at, success_flickers_over)

pytestmark = pytest.mark.needs(parallel_packs=2)


def _quiet_for(spec) -> float:
    """Longer than every alarm delay of the spec: PCS loss, each protection level, the RS485 link."""
    par = spec.parallel
    delays = [spec.pcs_loss.alarm_after_s, par.rs485_missed_polls * par.rs485_poll_period_s]
    delays += [lv.delay_s for name in PROTECTIONS for lv in getattr(spec.protections, name).levels()]
    return max(delays) + spec.tolerance.delay_late_s + spec.can.period_s + spec.can.period_tolerance_s


def _first_lit(clock, lights, names, within: float, *, poll: float) -> dict[str, float]:
    """Watch ``names`` for ``within`` s (every ``poll``); the clock time each was first lit (inf: never)."""
    first = dict.fromkeys(names, math.inf)
    end = clock.now() + within
    while clock.now() < end - 1e-9 and math.inf in first.values():
        clock.sleep(min(poll, end - clock.now()))
        lit = lights.read()
        for name in names:
            if lit[name] and first[name] == math.inf:
                first[name] = clock.now()
    return first


def _went_off_then_alm(spec, clock, lights, turned: int, *, partner: int, within: float) -> tuple[float, float]:
    """Watch both panels: when the ``turned`` pack's lights went dark for good (the end of its
    power-off sequence: dark for longer than a flicker), and when the partner's ALM was first lit.
    Clock times, inf for what did not happen within ``within`` s."""
    look, flicker = lights.sample_period, spec.power_off.flicker_period_s
    mine = [PREFIX[turned] + n for n in PANEL]
    alm = PREFIX[partner] + "alm"
    last_lit, alm_at, end = clock.now(), math.inf, clock.now() + within
    while clock.now() < end - 1e-9:
        clock.sleep(look)
        lit, now = lights.read(), clock.now()
        if any(lit[n] for n in mine):
            last_lit = now
        if lit[alm] and alm_at == math.inf:
            alm_at = now
        if alm_at < math.inf and now - last_lit > flicker + look:
            break
    dark = last_lit + look if clock.now() - last_lit > flicker else math.inf
    return dark, alm_at


def _check_pair_off(measure, req, spec, bench, *, pack, pcs, lights, panels) -> None:
    """After a (fault) power-off sequence: 0 V on the bus, the panels dark, no CAN frame."""
    po = spec.power_off
    bench.clock.sleep(po.flicker_count * po.flicker_period_s + spec.tolerance.delay_late_s)
    measure("bus voltage (DMM) after the power-off", pack.terminal_voltage(), req=req, unit="V",
            at_most=po.terminals_off_max_v)
    lit = lights.read()
    for number in panels:
        measure(f"pack {number} lights lit after the power-off", [n for n in PANEL if lit[PREFIX[number] + n]],
                req=req, equals=[])
    mark = frame_count(pcs, "DetailStatus")
    bench.clock.sleep(2 * spec.can.period_s)
    measure("CAN frames after the power-off", len(frames_since(pcs, "DetailStatus", mark)), req=req, equals=0)


# --- the PCS present ---------------------------------------------------------------------------------
@pytest.mark.requirement("parallel", manual="5, 6.2")
def test_joined_pair_with_the_pcs_present_raises_nothing(spec, bench, pack, pack2, pcs, lights, measure):
    """With the PCS answering every second, a joined pair at rest runs longer than every alarm
    delay of the spec (PCS loss, each protection level, three RS485 polls): neither ALM lights,
    no frame of either pack carries a failure bit or a protection level, 0x359 carries no bit and
    two modules throughout, both packs stay in Standby with their relays closed."""
    req, clock = spec.parallel.id, bench.clock
    join(bench, pack, pack2, pcs, spec=spec)
    marks = {a: frame_count(pcs, "DetailStatus", a) for a in (2, 3)}
    levels_mark = {a: frame_count(pcs, "DetailProtection", a) for a in (2, 3)}
    alarms_mark, beats = frame_count(pcs, "ProtectionsAlarms"), pcs.heartbeats_sent
    quiet = _quiet_for(spec)
    # ALM flickers at 1 s at the shortest: a look every quarter of it cannot miss it
    first = _first_lit(clock, lights, ["alm", "pack2_alm"], quiet, poll=spec.lights.alm_flicker_period_s / 4)
    measure("PCS heartbeats sent while watching", pcs.heartbeats_sent - beats, req=spec.pcs_loss.id,
            at_least=math.floor(quiet) - 1)
    for number, alm in ((1, "alm"), (2, "pack2_alm")):
        measure(f"pack {number} ALM lit with the PCS present", first[alm], req=req, unit="s", equals=math.inf)
    for number, address in ADDRESS.items():
        status = frames_since(pcs, "DetailStatus", marks[address], address)
        measure(f"pack {number} DetailStatus frames while watching", len(status), req=req,
                at_least=math.floor(quiet) - 1)
        measure(f"pack {number} failure bits seen", sorted({b for r in status for b in failures_of(r.signals)}),
                req=req, equals=[])
        measure(f"pack {number} states seen", sorted({r.signals["State"] for r in status}), req=req,
                equals=["Standby"])
        measure(f"pack {number} frames with a main relay open",
                sum(1 for r in status if not (r.signals["Relay1Closed"] and r.signals["Relay2Closed"])),
                req=req, equals=0)
        tripped = {row for r in frames_since(pcs, "DetailProtection", levels_mark[address], address)
                   for row, level in levels_of(r.signals).items() if level}
        measure(f"pack {number} protection rows tripped", sorted(tripped), req=req, equals=[])
    alarms = frames_since(pcs, "ProtectionsAlarms", alarms_mark)
    measure("0x359 bits seen", sorted({b for r in alarms for b in bits_of(r.signals)}), req=req, equals=[])
    measure("0x359 ModuleCount values seen", sorted({r.signals["ModuleCount"] for r in alarms}), req=req,
            equals=[2])


# --- PCS loss ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.requirement("pcs_loss", manual="6.3, 6.2")
def test_pcs_loss_with_a_pair_alarms_clears_and_powers_both_off_after_60_min(
        spec, bench, pack, pack2, pcs, lights, measure):
    """Manual 6.3 on a joined pair. Silence: the master's ALM, 0x359 alarm and failure bit after
    30 s; the slave (which cannot hear the PCS) raises none. The PCS back: all three clear within
    two CAN periods. Silence again for 60 minutes: the master flickers its lights three times and
    turns off; its partner, no longer polled, has a parallel connection failure after three poll
    periods (ALM) and turns off too (manual 2.2): 0 V on the bus, both panels dark."""
    pl, req, clock, period = spec.pcs_loss, spec.pcs_loss.id, bench.clock, spec.can.period_s
    par, po, late, look = spec.parallel, spec.power_off, spec.tolerance.delay_late_s, lights.sample_period
    join(bench, pack, pack2, pcs, spec=spec)
    success_flickers_over(bench, spec)
    marks = {a: frame_count(pcs, "DetailStatus", a) for a in (2, 3)}
    pcs.silence(True)
    silent_since = pcs.last_heartbeat_at
    deadline = silent_since + pl.alarm_after_s + late + period + spec.can.period_tolerance_s
    first = _first_lit(clock, lights, ["alm", "pack2_alm"], deadline - clock.now(), poll=look)
    measure("master ALM on after the last PCS frame", first["alm"] - silent_since, req=req, unit="s",
            at_least=pl.alarm_after_s, at_most=pl.alarm_after_s + late)
    measure("slave ALM lit with the PCS silent", first["pack2_alm"], req=req, unit="s", equals=math.inf)
    status = frames_since(pcs, "DetailStatus", marks[2], 2)
    seen = next((r.t for r in status if r.signals[pl.failure_bit]), math.inf)
    measure(f"master DetailStatus.{pl.failure_bit} seen after the last PCS frame", seen - silent_since, req=req,
            unit="s", at_least=pl.alarm_after_s, at_most=deadline - silent_since)
    measure(f"0x359 {pl.can_alarm} with the PCS silent", pcs.signal(pl.can_alarm, frame="ProtectionsAlarms"),
            req=req, equals=1)
    slave = frames_since(pcs, "DetailStatus", marks[3], 3)
    measure(f"slave DetailStatus frames with {pl.failure_bit}", sum(r.signals[pl.failure_bit] for r in slave),
            req=req, equals=0)

    pcs.silence(False)                        # the inverter back: nothing latches
    back = clock.now()
    within = 2 * period + spec.can.period_tolerance_s
    for signal, frame in ((pl.can_alarm, "ProtectionsAlarms"), (pl.failure_bit, "DetailStatus")):
        cleared = seconds_until(clock, lambda s=signal, f=frame: pcs.signal(s, frame=f), lambda v: v == 0,
                                within=within, poll=look)
        measure(f"{signal} cleared after the PCS returned", cleared, req=req, unit="s", at_most=within)
    lit = lights.read()
    measure("master ALM after the PCS returned", lit["alm"], req=req, equals=False)
    measure("master RUN after the PCS returned", lit["run"], req=req, equals=True)

    pcs.silence(True)                         # and gone for good: the hour counts from here
    silent_since = pcs.last_heartbeat_at
    clock.sleep(silent_since + pl.power_off_after_s - late - clock.now())
    measure("bus voltage just before the hour without PCS frames is up", pack.terminal_voltage(), req=req,
            unit="V", at_least=po.terminals_off_max_v)
    measure("0x359 ModuleCount just before the hour is up", pcs.signal("ModuleCount"), req=req, equals=2)
    # the master's sequence: LED1 (steady at this SOC; RUN is dark under the PCS-loss ALM) goes dark
    # for its first flicker half a period in
    began = seconds_until(clock, lambda: lights.read()["led1"], lambda on: not on,
                          within=2 * late + po.flicker_period_s, poll=look)
    began_at = clock.now() - po.flicker_period_s / 2 if began < math.inf else math.inf
    measure("master power-off sequence began after the last PCS frame", began_at - silent_since, req=req,
            unit="s", at_least=pl.power_off_after_s - look, at_most=pl.power_off_after_s + late)
    watch = po.flicker_count * po.flicker_period_s + (par.rs485_missed_polls + 2) * par.rs485_poll_period_s
    off, alm = _went_off_then_alm(spec, clock, lights, 1, partner=2, within=watch)
    fpo = spec.failures.parallel_connection.id
    measure("slave ALM (parallel failure) after the master turned off", alm - off, req=fpo, unit="s",
            at_least=(par.rs485_missed_polls - 1) * par.rs485_poll_period_s,
            at_most=par.rs485_missed_polls * par.rs485_poll_period_s + late)
    _check_pair_off(measure, spec.fault_power_off.id, spec, bench, pack=pack, pcs=pcs, lights=lights, panels=(1, 2))


# --- one pack of the pair turned off -----------------------------------------------------------------
TURNED_OFF = [pytest.param(2, "button", id="pack2-by-button"), pytest.param(1, "button", id="pack-by-button"),
              pytest.param(2, "zero_volt_cell", id="pack2-by-fault-power-off")]


@pytest.mark.parametrize("turned,how", TURNED_OFF)
@pytest.mark.requirement("failures.parallel_connection", manual="5, 2.2, 6.3")
def test_partner_turned_off_is_a_parallel_failure(turned, how, spec, bench, pack, pack2, pcs, lights, faults,
                                                   measure):
    """One pack of a joined pair turned off -- its POWER button held 2 s, or a fault power-off (a 0 V
    cell, manual 2.2) -- goes silent on RS485 once off. Its partner notices after three missed polls
    (PACK_SPEC.md 7), no sooner, no later: parallel connection failure (ALM red, failure bit on
    CAN where the partner is the pack on the CAN bus) and the fault power-off (manual 2.2)."""
    par, req, clock = spec.parallel, spec.failures.parallel_connection.id, bench.clock
    po, late = spec.power_off, spec.tolerance.delay_late_s
    partner = 1 if turned == 2 else 2
    join(bench, pack, pack2, pcs, spec=spec)
    success_flickers_over(bench, spec)
    mark = frame_count(pcs, "DetailStatus", ADDRESS[partner])
    if how == "button":
        bench.output(PREFIX[turned] + "power_button", True)
        clock.sleep(po.button_hold_s)
        bench.output(PREFIX[turned] + "power_button", False)
    else:
        zv = spec.zero_volt_cell
        faults.force_group(turned - 1, 0, zv.threshold_v - 2 * spec.tolerance.group_voltage_v)
    polls = par.rs485_missed_polls * par.rs485_poll_period_s
    within = po.flicker_count * po.flicker_period_s + polls + late + 2 * po.flicker_period_s
    off, alm = _went_off_then_alm(spec, clock, lights, turned, partner=partner, within=within)
    measure(f"pack {turned} off (its lights dark) after it was turned off", off, req=spec.power_off.id, unit="s",
            at_most=clock.now())
    measure(f"pack {partner} ALM after pack {turned} went off", alm - off, req=req, unit="s",
            at_least=(par.rs485_missed_polls - 1) * par.rs485_poll_period_s, at_most=polls + late)
    if partner == 1:  # the next report, sent while the master runs its fault power-off sequence
        clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
        failure = spec.failures.parallel_connection.failure_bit
        bits = [r.signals[failure] for r in frames_since(pcs, "DetailStatus", mark, 2)]
        measure(f"master DetailStatus.{failure}", max(bits, default=0), req=req, equals=1)
    _check_pair_off(measure, spec.fault_power_off.id, spec, bench, pack=pack, pcs=pcs, lights=lights, panels=(1, 2))


@pytest.mark.requirement("parallel", manual="5, 6.2")
def test_breaker_opened_under_load_leaves_the_pair_joined(spec, bench, pack, pack2, pcs, lights, measure):
    """The bench's breaker joins the pair's common bus to the PCS side (PSU, e-load); opening it
    under load turns neither pack off and breaks no link: after longer than three RS485 polls both
    packs are still joined (two modules, relays closed, no failure bit, no ALM), the DMM on the
    pair's bus still reads the packs, and no current flows on the rig's side."""
    par, req, clock = spec.parallel, spec.parallel.id, bench.clock
    join(bench, pack, pack2, pcs, spec=spec)
    pack.discharge(spec.ratings.standard_charge_current_a / 2)
    clock.sleep(2 * spec.can.period_s)
    pack.open_breaker()
    clock.sleep(par.rs485_missed_polls * par.rs485_poll_period_s + spec.tolerance.delay_late_s + 2 * spec.can.period_s)
    measure("current on the rig's side with the breaker open", pack.current(), req=req, unit="A",
            nominal=0.0, tolerance=spec.tolerance.current_a)
    measure("pair bus voltage (DMM) with the breaker open", pack.terminal_voltage(), req=req, unit="V",
            at_least=spec.ratings.operating_min_v)
    measure("0x359 ModuleCount with the breaker open", pcs.signal("ModuleCount"), req=req, equals=2)
    lit = lights.read()
    for number, address in ADDRESS.items():
        status = pcs.latest("DetailStatus", address)
        measure(f"pack {number} failure bits", failures_of(status), req=req, equals=[])
        measure(f"pack {number} main relays closed", (status["Relay1Closed"], status["Relay2Closed"]), req=req,
                equals=(1, 1))
        measure(f"pack {number} ALM", lit[PREFIX[number] + "alm"], req=req, equals=False)


# --- a protection on one pack --------------------------------------------------------------------------
@pytest.mark.requirement("protections.charge_over_temperature", manual="7.4, 5")
def test_protection_on_one_pack_shows_in_the_system_frames(spec, bench, pack, pack2, pcs, lights, faults,
                                                           measure):
    """A protection row tripping on the slave, level by level (its cell sensor T1 heated, fault
    insertion): the slave reports the level in its own detail frames, the master reports none;
    the system frames carry it as the pack spec's ``[can]`` rules say: the row's 0x359 bit, current
    limits the sum of each pack's own, an enable bit cleared when either pack clears it. L2 and L3
    show ALM on the slave only; L3 opens the slave's relays while the master stays connected."""
    row, clock, can = spec.protections.charge_over_temperature, bench.clock, spec.can
    signal = level_signal("charge_over_temperature")
    join(bench, pack, pack2, pcs, spec=spec)
    success_flickers_over(bench, spec)
    for level in (1, 2, 3):
        lv = getattr(row, f"l{level}")
        faults.force_temperature(1, 0, rules.unsafe(spec, row, lv.threshold))
        shows = rules.shows_within(spec, lv.delay_s)
        pcs.wait_until(signal, f"L{level}", within=shows, frame="DetailProtection", pack_address=3)
        clock.sleep(can.period_s)  # the report after: both packs' frames of one instant
        report = report_at(pcs, spec, last_report_at(pcs))
        when = f"at L{level} on the slave"
        slave, master = report["DetailProtection", 3], report["DetailProtection", 2]
        measure(f"slave {signal} {when}", slave[signal], req=row.id, equals=f"L{level}")
        measure(f"master rows tripped {when}", [r for r, k in levels_of(master).items() if k], req=row.id, equals=[])
        wanted_bit = rules.level_bit(spec, row, level)
        measure(f"0x359 {wanted_bit} {when}", report["ProtectionsAlarms"][wanted_bit], req=can.id, equals=1)
        measure(f"0x359 ModuleCount {when}", report["ProtectionsAlarms"]["ModuleCount"], req=can.id, equals=2)
        own = [own_limits(spec, levels_of(report["DetailProtection", a]), failures_of(report["DetailStatus", a]),
                          bool(report["DetailStatus", a]["Relay1Closed"] and report["DetailStatus", a]["Relay2Closed"]))
               for a in (2, 3)]
        for direction, limit, enable in (("charge", "ChargeCurrentLimit", "ChargeEnable"),
                                         ("discharge", "DischargeCurrentLimit", "DischargeEnable")):
            total = sum(o[direction] for o in own)
            measure(f"0x351 {limit} {when} (sum of each pack's own)", report["ChargeLimits"][limit], req=can.id,
                    unit="A", nominal=total, tolerance=half_step("ChargeLimits", limit))
            measure(f"0x35C {enable} {when} (cleared if either pack's is)", report["ChargeRequest"][enable],
                    req=can.id, equals=int(all(o[direction] > 0 for o in own)))
        lit = lights.read()
        measure(f"master ALM {when}", lit["alm"], req=row.id, equals=False)
        measure(f"slave ALM {when}", lit["pack2_alm"], req=row.id, equals=level >= 2)
        relays = {a: (report["DetailStatus", a]["Relay1Closed"], report["DetailStatus", a]["Relay2Closed"])
                  for a in (2, 3)}
        measure(f"master main relays {when}", relays[2], req=row.id, equals=(1, 1))
        measure(f"slave main relays {when}", relays[3], req=row.id, equals=(0, 0) if level == 3 else (1, 1))
    measure("bus voltage (DMM): the master still connected", pack.terminal_voltage(), req=row.id, unit="V",
            at_least=spec.ratings.operating_min_v)
