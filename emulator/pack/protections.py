"""The BMS's protection engine: the rows of PACK_SPEC.md 4 as the firmware profile describes them.

Each row watches one measured quantity and has three levels. A level *trips* when its
condition (quantity beyond the threshold) has held, at every BMS sample, for the level's
delay; it *releases* by the row's rule:

- ``value``: the quantity is back past the release value;
- ``margin``: the quantity is back past that level's threshold by the margin (5 C);
- ``after_cut_s``: that long after the trip, with the condition gone;
- ``power_cycle``: never, until the BMS restarts.

A tripped L3 also waits for "no current" before it releases (PACK_SPEC.md 4: latched until the
release value is reached with no current). What a tripped level *does* (limits, bits, relays,
lights, power-off) is the BMS's business (:mod:`emulator.pack.bms`); this module only keeps the
timers, each pending trip and timed release a timer in the world's event queue
(:mod:`emulator.event_queue`), so the world lands exactly on it.

Times are integer nanoseconds of the world's clock.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from emulator.event_queue import EventQueue
from emulator.firmware.profile import FirmwareProfile, FirmwareProtection
from rig.clock import ns
from rig.files.rows import PROTECTIONS


@dataclass
class LevelState:
    """Timers of one level of one row."""

    since_ns: int | None = None     # first sample the condition held (pending), None: not pending
    tripped_ns: int | None = None   # when it tripped, None: not tripped


@dataclass
class RowState:
    name: str
    row: FirmwareProtection
    levels: list[LevelState] = field(default_factory=lambda: [LevelState() for _ in range(3)])

    @property
    def level(self) -> int:
        """Highest tripped level, 0..3."""
        return max((i + 1 for i, s in enumerate(self.levels) if s.tripped_ns is not None), default=0)


def quantity_values(groups_v: np.ndarray, pack_v: float, current_a: float, temps_c: np.ndarray) -> dict[str, float]:
    """The quantities a protection can watch, from one BMS measurement.

    :param groups_v: measured group voltages, V; :param pack_v: measured pack voltage, V;
    :param current_a: measured current, A, + = charge; :param temps_c: cell sensors T1-T4, C.
    """
    # a voltage front-end that never answered leaves nan: no comparison with nan is true, so
    # nothing trips or releases on readings the BMS does not have
    groups, temps = groups_v.tolist(), temps_c.tolist()  # lists: max and min of floats
    hi, lo = max(groups), min(groups)
    if math.isnan(sum(groups)):  # max/min of a list with nan depend on where the nan is
        hi = lo = math.nan
    return {
        "max_group_voltage": hi, "min_group_voltage": lo, "pack_voltage": pack_v,
        "charge_current": max(current_a, 0.0), "discharge_current": max(-current_a, 0.0),
        "max_temperature": max(temps), "min_temperature": min(temps),
        "group_voltage_difference": hi - lo,
    }


def _beyond(value: float, threshold: float, trips: str) -> bool:
    """Past the threshold on the unsafe side."""
    return value > threshold if trips == "above" else value < threshold


def _back(value: float, threshold: float, trips: str) -> bool:
    """Past the threshold on the safe side."""
    return value < threshold if trips == "above" else value > threshold


def release_threshold(row: FirmwareProtection, threshold: float) -> float:
    """Where a level of ``row`` tripped at ``threshold`` releases (the row's release rule): the
    release value, the threshold less the margin, the threshold itself (a timed release, once the
    condition has gone), or never (power cycle: beyond any value)."""
    r = row.release
    if r.value is not None:
        return r.value
    if r.margin is not None:
        return threshold - r.margin if row.trips == "above" else threshold + r.margin
    if r.after_cut_s is not None:
        return threshold
    return -math.inf if row.trips == "above" else math.inf


def _least_severe(row: FirmwareProtection) -> float:
    """The threshold of ``row`` a rising (``trips == "above"``) or falling quantity passes first."""
    thresholds = [lv.threshold for lv in row.levels()]
    return min(thresholds) if row.trips == "above" else max(thresholds)


class ProtectionEngine:
    """Timers of every enabled protection row of a firmware profile.

    :param timers: the world's event queue; each pending trip and timed release is a timer in it.
    """

    def __init__(self, profile: FirmwareProfile, timers: EventQueue | None = None):
        self.profile = profile
        self.timers = EventQueue() if timers is None else timers
        self.rows = [RowState(name, getattr(profile.protections, name)) for name in PROTECTIONS]
        #: (quantity, trips, least severe threshold) of each row: past it, some level's trip condition holds
        self._first_trips = [(rs.row.quantity, rs.row.trips, _least_severe(rs.row)) for rs in self.rows]
        # The conditions update() decides on, for conditions(). Each is "v > threshold" (trip of a
        # row that trips above, release of one that trips below) or "v < threshold" (the other
        # two), so for each quantity they are all told by how many of its ">" thresholds lie below
        # v and how many of its "<" thresholds lie at or below v: two bisections. (nan counts as
        # below none and above all, as every comparison with it is false.) Kept for speed: testing
        # each level's two conditions in turn costs 12 % on benchmarks/bench_world.py's idle hour
        # (875 k -> 997 k instructions per virtual second, callgrind) and 11 % on its 64 A charge;
        # tests/test_protection_conditions.py holds the two ways equal.
        over: dict[str, list[float]] = {}         # quantity -> thresholds of its "v > t" conditions
        under: dict[str, list[float]] = {}        # quantity -> thresholds of its "v < t" conditions
        for rs in self.rows:
            for lv in rs.row.levels():
                trip, release = lv.threshold, release_threshold(rs.row, lv.threshold)
                above = rs.row.trips == "above"  # trips when v > trip, released when v < release
                over.setdefault(rs.row.quantity, []).append(trip if above else release)
                under.setdefault(rs.row.quantity, []).append(release if above else trip)
        self._watch = [(q, sorted(over[q]), sorted(under[q])) for q in sorted(over)]
        self._busy = False            # a level pending or tripped: update() has work to do
        self._levels: dict[str, int] = {rs.name: 0 for rs in self.rows}

    def conditions(self, q: dict[str, float]) -> tuple[tuple[int, int], ...]:
        """What the timers depend on (the trip and release condition of each level), summed up;
        equal at two instants means no timer could have started, stopped or released in between."""
        return tuple((bisect_left(over, q[name]), bisect_right(under, q[name])) for name, over, under in self._watch)

    def _any_trips(self, q: dict[str, float]) -> bool:
        """A trip condition of some level holds."""
        return any(_beyond(q[quantity], threshold, trips) for quantity, trips, threshold in self._first_trips)

    def _released(self, rs: RowState, i: int, v: float) -> bool:
        row = rs.row
        release = release_threshold(row, row.levels()[i].threshold)
        if row.release.after_cut_s is not None:
            return not _beyond(v, release, row.trips)  # the condition has gone
        return _back(v, release, row.trips)

    def update(self, t_ns: int, q: dict[str, float], no_current: bool) -> list[tuple[str, int, str]]:
        """One BMS sample at ``t_ns``; returns the changes as (row, level 1..3, "trip"|"release")."""
        if not self._busy and not self._any_trips(q):
            return []  # nothing pending, nothing tripped, no condition holds: nothing can change
        changes = []
        for rs in self.rows:
            v = q[rs.row.quantity]
            for i, level in enumerate(rs.row.levels()):
                st = rs.levels[i]
                if not level.enabled:
                    continue
                if st.tripped_ns is None:
                    if _beyond(v, level.threshold, rs.row.trips):
                        if st.since_ns is None:
                            st.since_ns = t_ns
                            self.timers.schedule((self, rs.name, i), t_ns + ns(level.delay_s))
                        if t_ns - st.since_ns >= ns(level.delay_s):
                            st.tripped_ns, st.since_ns = t_ns, None
                            after = rs.row.release.after_cut_s
                            self.timers.schedule((self, rs.name, i), None if after is None else t_ns + ns(after))
                            changes.append((rs.name, i + 1, "trip"))
                    elif st.since_ns is not None:
                        st.since_ns = None
                        self.timers.cancel((self, rs.name, i))
                elif self._may_release(rs, i, v, t_ns, no_current):
                    rs.levels[i] = LevelState()
                    self.timers.cancel((self, rs.name, i))
                    changes.append((rs.name, i + 1, "release"))
        self._timers_changed()
        return changes

    def _may_release(self, rs: RowState, i: int, v: float, t_ns: int, no_current: bool) -> bool:
        if i == 2 and not no_current:
            return False  # L3 latches until the release is reached with no current
        if not self._released(rs, i, v):
            return False
        after = rs.row.release.after_cut_s
        # current rows release a fixed time after the cut, once the condition has gone
        return after is None or t_ns - rs.levels[i].tripped_ns >= ns(after)

    def _timers_changed(self) -> None:
        """Sum the timers up again: busy, levels (after update or reset)."""
        self._busy = any(s.since_ns is not None or s.tripped_ns is not None for rs in self.rows for s in rs.levels)
        self._levels = {rs.name: rs.level for rs in self.rows}

    def levels(self) -> dict[str, int]:
        """Row name -> highest tripped level (0..3)."""
        return dict(self._levels)

    def reset(self) -> None:
        """A power cycle: every timer and latch cleared."""
        for rs in self.rows:
            rs.levels = [LevelState() for _ in range(3)]
            for i in range(3):
                self.timers.cancel((self, rs.name, i))
        self._timers_changed()
