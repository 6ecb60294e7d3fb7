"""The spec's rules, written once: the suite's oracle (PACK_SPEC.md 3, 4, 6).

Given the levels and failures a pack reports, what PACK_SPEC says must follow: the current
limits, the 0x359 bits, the ALM light, the earliest the relays may open; and how a test reads a
row: which side of a threshold is unsafe, how far past it to drive, by when a level must show.

Every expectation of the suite comes from here and from ``spec`` (``testcases/pack_spec.toml``)
alone. The BMS model in ``emulator/pack/`` keeps its own copy of the same rules: that copy is
the thing under test (``packrig mutate`` breaks it through firmware profiles), this one is the
judge. So this module never reads a firmware profile and never imports the emulator, and the
emulator never imports it (``testcases/`` is above both).
"""
from __future__ import annotations

import math

from rig.files.rows import PROTECTIONS

#: how far past the spec's threshold tolerance a test drives, as a fraction of it: a pack that
#: meets "a threshold is met within the tolerance" trips a quarter-tolerance past it whatever its
#: own measuring error, and a pack whose threshold is off by more than the tolerance is caught
#: (a threshold off by 2 tolerances, `packrig mutate`'s threshold mutants, used to pass)
PAST_TOLERANCE = 1.25


# --- reading a row ---------------------------------------------------------------------------------

def row_level(spec, name: str, level: int):
    """The protection row ``name`` and its level ``level`` (1..3) of the spec."""
    row = getattr(spec.protections, name)
    return row, getattr(row, f"l{level}")


def beyond(row, value: float, by: float) -> float:
    """``value`` moved ``by`` to the unsafe side of the row (above for rows that trip above);
    a negative ``by`` moves it to the safe side."""
    return value + by if row.trips == "above" else value - by


def margin(spec, row) -> float:
    """How far short of, or past, a threshold a test drives the quantity, in the row's unit: just
    past the spec's threshold tolerance (:data:`PAST_TOLERANCE`), so a conforming BMS's measuring
    error cannot decide, and a threshold off by more than the tolerance shows."""
    tol = spec.tolerance
    if row.quantity == "pack_voltage":
        return PAST_TOLERANCE * tol.pack_voltage_v
    return PAST_TOLERANCE * {"V": tol.group_voltage_v, "A": tol.current_a, "C": tol.temperature_c}[row.unit]


def unsafe(spec, row, value: float) -> float:
    """``value`` (a threshold, a release value) moved the test's margin to the row's unsafe side."""
    return beyond(row, value, margin(spec, row))


def safe(spec, row, value: float) -> float:
    """``value`` moved the test's margin to the row's safe side."""
    return beyond(row, value, -margin(spec, row))


def release_value(row, level: int) -> float:
    """Where a tripped level releases: the row's release value, or its level's threshold moved
    the release margin to the safe side."""
    if row.release.value is not None:
        return row.release.value
    return beyond(row, getattr(row, f"l{level}").threshold, -row.release.margin)


def shows_within(spec, delay_s: float) -> float:
    """By when a level with this delay shows on CAN at the latest: its delay, the tolerance and
    one report period."""
    return delay_s + spec.tolerance.delay_late_s + spec.can.period_s + spec.can.period_tolerance_s


def relays_hold_s(spec) -> float:
    """How long current may keep flowing past a level 2 before the relays open."""
    return spec.levels.l2.open_relays_if_current_for_s


# --- what follows from the levels and failures reported -------------------------------------------

def failures(spec) -> list:
    """Every failure row of the spec (``spec.failures.<name>``)."""
    return [getattr(spec.failures, name) for name in type(spec.failures).model_fields]


def failure_bits(spec) -> set[str]:
    """The DetailStatus bits of the failures that open the relays: every failure row, the short
    circuit and the 0 V cell."""
    return {f.failure_bit for f in failures(spec)} | {spec.short_circuit.failure_bit,
                                                        spec.zero_volt_cell.failure_bit}


def level_bit(spec, row, level: int) -> str:
    """The 0x359 bit a row's level raises: its alarm bit or its protection bit, by the level's kind."""
    return row.can_alarm if getattr(spec.levels, f"l{level}").can == "alarm" else row.can_protection


def limit_factor(spec, levels: dict[str, int], failed: set[str], direction: str) -> float:
    """PACK_SPEC 4: each tripped row scales its direction's limit by its level's factor; a level 3
    or a failure opens the relays, so no current either way (limit 0)."""
    if failed or 3 in levels.values():
        return 0.0
    factor = 1.0
    for name, level in levels.items():
        if level and getattr(spec.protections, name).direction in (direction, "both"):
            factor = min(factor, getattr(spec.levels, f"l{level}").current_limit_factor)
    return factor


def expected_bits(spec, levels: dict[str, int], failed: set[str]) -> dict[str, int | None]:
    """PACK_SPEC 4 and 6: each 0x359 bit the spec names: 1 required, 0 forbidden, None either (a
    row past L1 may keep its alarm bit: the spec does not say)."""
    rows = {name: getattr(spec.protections, name) for name in PROTECTIONS}
    required, either = set(), set()
    for name, level in levels.items():
        if level:
            required.add(level_bit(spec, rows[name], level))
            either.add(rows[name].can_alarm)
    if failed:
        required.add(spec.failure_response.can_protection)
    for failure in failures(spec):
        if failure.failure_bit in failed and failure.can_alarm:
            required.add(failure.can_alarm)
    if spec.short_circuit.failure_bit in failed:
        required.add(spec.short_circuit.can_protection)
    named = {bit for row in rows.values() for bit in (row.can_alarm, row.can_protection)}
    named |= {spec.failure_response.can_protection, spec.short_circuit.can_protection}
    return {bit: 1 if bit in required else None if bit in either else 0 for bit in sorted(named)}


def expected_alm(spec, levels: dict[str, int], failed: set[str]) -> str:
    """PACK_SPEC 3: "off" (L1 changes no light), or the light of the rows at L2/L3 ("alm_on",
    "alm_flicker"); a failure shows the failure light. Mixed: the steady light (project reading)."""
    if failed:
        return spec.failure_response.light
    shown = {getattr(spec.protections, name).light for name, level in levels.items() if level >= 2}
    if not shown:
        return "off"
    return shown.pop() if len(shown) == 1 else "alm_on"


def relays_stay_closed(levels: dict[str, int], failed: set[str]) -> bool:
    """Whether the relays may stay closed: no failure and no level 3 stands."""
    return not failed and 3 not in levels.values()


def earliest_cut(spec, levels: dict[str, int], direction: str | None) -> float:
    """The earliest, after a stimulus that moved every row at once, that the spec lets the relays
    open given the levels reported: a level 3 at its delay, a level 2 of the direction the current
    flows in (None: no current) at its delay plus the hold."""
    times = [math.inf]
    for name, level in levels.items():
        row = getattr(spec.protections, name)
        if level == 3:
            times.append(row.l3.delay_s)
        if level >= 2 and direction is not None and row.direction in (direction, "both"):
            times.append(row.l2.delay_s + relays_hold_s(spec))
    return min(times)
