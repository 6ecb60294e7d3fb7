"""Recorded checks that several procedures share: a report against the spec's rules, the
lights, the relays, a pack powered off.

Each check records every measurement it takes (``measure``, :mod:`rig.measure`): the checks of
one thing that do not depend on each other are taken together, so one failure hides no other.
Measurement names are stable: run reports, ``packrig compare`` and the traceability matrix key
on them.
"""
from __future__ import annotations

import math

from testcases.kit import rules

#: A, half a step of 0x351's current limits (PACK_SPEC 6: 0.1 A per bit).
LIMIT_RESOLUTION_A = 0.05
#: the 0x351 limit and 0x35C enable signal of each direction
DIRECTIONS = (("charge", "ChargeCurrentLimit", "ChargeEnable"),
              ("discharge", "DischargeCurrentLimit", "DischargeEnable"))
#: a light's kind (rig.light_reader) for each ALM pattern the spec names
ALM_KIND = {"off": "off", "alm_on": "on", "alm_flicker": "flickering"}


def report(measure, pack, rep, *, req: str, when: str) -> None:
    """0x359 bits, 0x351 limits and 0x35C enable bits of one report (``rep``, a
    :class:`~testcases.kit.reports.Report`), against what the spec says follows from every level
    and failure the same report gives."""
    spec = pack.spec
    with measure.together():  # every bit and limit of the report, each on its own
        for bit, want in rules.expected_bits(spec, rep.levels, rep.failed).items():
            if want is not None:
                measure(f"0x359 {bit} {when}", rep["ProtectionsAlarms"][bit], req=req, equals=want)
        for direction, limit, enable in DIRECTIONS:
            normal = getattr(spec.can, f"{direction}_current_limit_a")
            expected = normal * rules.limit_factor(spec, rep.levels, rep.failed, direction)
            measure(f"0x351 {limit} {when}", rep["ChargeLimits"][limit], req=req, unit="A",
                    nominal=expected, tolerance=LIMIT_RESOLUTION_A)
            measure(f"0x35C {enable} {when}", rep["ChargeRequest"][enable], req=req, equals=int(expected > 0))


def lights(measure, pack, alm: str, *, req: str) -> None:
    """ALM as expected ("off", "alm_on", "alm_flicker" with the spec's period) and RUN: on when
    ALM is off, dark when ALM shows (ALM overrides RUN)."""
    spec = pack.spec
    period = spec.lights.alm_flicker_period_s
    seen = pack.observe_lights(2 * period + pack.lights.sample_period)
    with measure.together():
        measure("ALM light", seen["alm"].kind, req=req, equals=ALM_KIND[alm])
        measure("RUN light", seen["run"].kind, req=req, equals="on" if alm == "off" else "off")
        if alm == "alm_flicker":
            measure("ALM flicker period", seen["alm"].period_s or math.nan, req=req, unit="s", nominal=period,
                    tolerance=period * spec.tolerance.flicker_period_rel)


def lights_follow(measure, pack, rep, *, req: str) -> None:
    """The lights the spec's rules give for the levels and failures of one report."""
    lights(measure, pack, rules.expected_alm(pack.spec, rep.levels, rep.failed), req=req)


def relays(measure, pack, *, closed: bool, req: str) -> None:
    """Both main relays as the pack last reported them (DetailStatus)."""
    status = pack.pcs.latest("DetailStatus")
    with measure.together():
        for relay in ("Relay1Closed", "Relay2Closed"):
            measure(f"DetailStatus {relay}", status[relay], req=req, equals=int(closed))


def relays_close(measure, pack, *, req: str) -> None:
    """The pack closes its relays again (pre-charge, then relay 1) and the DMM sees it."""
    spec = pack.spec
    within = spec.power_on.relays_closed_within_s + spec.can.period_s
    closed = pack.reports.wait_bit("Relay1Closed", within=within)
    measure(f"DetailStatus Relay1Closed within {within:g} s", closed, req=req, equals=1)
    connected(measure, pack, "terminal voltage (DMM): the pack connected again", req=req)


def connected(measure, pack, name: str, *, req: str) -> None:
    """The DMM sees the pack at its terminals (its relays closed)."""
    measure(name, pack.terminal_voltage(), req=req, unit="V", at_least=pack.spec.power_off.terminals_off_max_v)


def cut_off(measure, pack, name: str, *, req: str) -> None:
    """0 V at the terminals on the DMM (the relays open, or the pack off)."""
    measure(name, pack.terminal_voltage(), req=req, unit="V", at_most=pack.spec.power_off.terminals_off_max_v)


def powered_off(measure, pack, *, req: str) -> None:
    """Powered off (PACK_SPEC 2): once the power-off sequence is over, 0 V at the terminals, no CAN
    frame and every light off."""
    spec = pack.spec
    po = spec.power_off
    pack.clock.sleep(po.flicker_count * po.flicker_period_s + spec.tolerance.delay_late_s)
    with measure.together():
        cut_off(measure, pack, "terminal voltage (DMM) after the power-off sequence", req=req)
        since = pack.reports.last_time()
        seen = pack.observe_lights(2 * spec.can.period_s)
        measure("CAN reports from the powered-off pack", pack.reports.count_since(since), req=req, equals=0)
        lit = sorted(name for name, state in seen.items() if state.kind != "off")
        measure("lights not off", lit, req=req, equals=[])


def tripped(measure, pack, name: str, level: int, *, within: float, exactly: bool = False):
    """Wait up to ``within`` s for a report with the row at ``level`` or above; the report marked
    on the plot ("L2 on CAN", its frame time) and the level it gives measured: at least ``level``,
    or ``exactly`` it. Returns the :class:`~testcases.kit.reports.Seen` report."""
    row = getattr(pack.spec.protections, name)
    trip = pack.reports.wait_level(name, lambda k: k >= level, within=within)
    measure.mark(f"L{trip.level} on CAN", at=trip.at)  # frame time: the first report showing it
    limit = {"equals": level} if exactly else {"at_least": level}
    measure(f"level reported past the L{level} threshold", trip.level, req=row.id, **limit)
    return trip
