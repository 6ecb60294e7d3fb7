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
timers and tells when the next one expires, so the world can land exactly on it.

Times are integer nanoseconds of the world's clock.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from emulator.firmware.profile import FirmwareProfile, FirmwareProtection
from rig.files.rows import PROTECTIONS

_NS = 1_000_000_000


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


def quantity_values(groups_v, pack_v: float, current_a: float, temps_c) -> dict[str, float]:
    """The quantities a protection can watch, from one BMS measurement.

    :param groups_v: measured group voltages, V; :param pack_v: measured pack voltage, V;
    :param current_a: measured current, A, + = charge; :param temps_c: cell sensors T1-T4, C.
    """
    # a voltage front-end that never answered leaves nan: no comparison with nan is true, so
    # nothing trips or releases on readings the BMS does not have
    groups, temps = np.asarray(groups_v).tolist(), np.asarray(temps_c).tolist()  # lists: quicker max/min
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


class ProtectionEngine:
    """Timers of every enabled protection row of a firmware profile."""

    def __init__(self, profile: FirmwareProfile):
        self.profile = profile
        self.rows = [RowState(name, getattr(profile.protections, name)) for name in PROTECTIONS]
        # The same conditions as update() decides on, for the world to compare two instants
        # cheaply. Each is "v > threshold" (trip of a row that trips above, release of one that
        # trips below) or "v < threshold" (the other two), so for each quantity the conditions
        # are all told by how many of its ">" thresholds lie below v and how many of its "<"
        # thresholds lie at or below v: two bisections (nan counts as below none and above all,
        # as every comparison with it is false).
        over: dict[str, list[float]] = {}         # quantity -> thresholds of its "v > t" conditions
        under: dict[str, list[float]] = {}        # quantity -> thresholds of its "v < t" conditions
        trip_over: dict[str, list[float]] = {}    # the same, of the trip conditions only
        trip_under: dict[str, list[float]] = {}
        for rs in self.rows:
            q = rs.row.quantity
            for lv in rs.row.levels():
                trip, release = lv.threshold, self._release_threshold(rs.row, lv.threshold)
                if rs.row.trips == "above":  # trips when v > trip, released when v < release
                    over.setdefault(q, []).append(trip)
                    trip_over.setdefault(q, []).append(trip)
                    under.setdefault(q, []).append(release)
                else:                        # trips when v < trip, released when v > release
                    under.setdefault(q, []).append(trip)
                    trip_under.setdefault(q, []).append(trip)
                    over.setdefault(q, []).append(release)
        names = sorted(over.keys() | under.keys())
        self._watch = [(q, sorted(over.get(q, [])), sorted(under.get(q, []))) for q in names]
        # any trip condition holds: v above the lowest ">" trip threshold or below the highest "<" one
        self._trip_bounds = [(q, min(trip_over.get(q, [math.inf])), max(trip_under.get(q, [-math.inf])))
                             for q in sorted(trip_over.keys() | trip_under.keys())]
        # The world asks for the conditions of one measurement twice (its step check, then the
        # sample), so the last one is kept; and the timers' state is summed up once per change.
        self._conditions_of: tuple = (None, ())
        self._busy = False            # a level pending or tripped: update() has work to do
        self._deadline: int | None = None
        self._levels: dict[str, int] = {rs.name: 0 for rs in self.rows}

    @staticmethod
    def _release_threshold(row: FirmwareProtection, threshold: float) -> float:
        r = row.release
        if r.value is not None:
            return r.value
        if r.margin is not None:
            return threshold - r.margin if row.trips == "above" else threshold + r.margin
        if r.after_cut_s is not None:
            return threshold
        return -np.inf if row.trips == "above" else np.inf  # power cycle: never by value

    def conditions(self, q: dict[str, float]) -> tuple[tuple[int, int], ...]:
        """What the timers depend on (the trip and release condition of each level), summed up;
        equal at two instants means no timer could have started, stopped or released in between."""
        if self._conditions_of[0] is not q:
            self._conditions_of = (q, tuple([(bisect_left(over, q[name]), bisect_right(under, q[name]))
                                             for name, over, under in self._watch]))
        return self._conditions_of[1]

    def _any_trips(self, q: dict[str, float]) -> bool:
        """A trip condition of some level holds."""
        return any([q[name] > lowest or q[name] < highest for name, lowest, highest in self._trip_bounds])

    def _released(self, rs: RowState, i: int, v: float) -> bool:
        release, row = rs.row.release, rs.row
        if release.value is not None:
            return _back(v, release.value, row.trips)
        if release.margin is not None:
            threshold = row.levels()[i].threshold
            return _back(v, threshold - release.margin if row.trips == "above"
                         else threshold + release.margin, row.trips)
        if release.after_cut_s is not None:
            return not _beyond(v, row.levels()[i].threshold, row.trips)
        return False  # power_cycle

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
                        if t_ns - st.since_ns >= round(level.delay_s * _NS):
                            st.tripped_ns, st.since_ns = t_ns, None
                            changes.append((rs.name, i + 1, "trip"))
                    else:
                        st.since_ns = None
                elif self._may_release(rs, i, v, t_ns, no_current):
                    rs.levels[i] = LevelState()
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
        return after is None or t_ns - rs.levels[i].tripped_ns >= round(after * _NS)

    def next_deadline_ns(self) -> int | None:
        """The earliest instant a pending trip or a timed release falls due."""
        return self._deadline

    def _timers_changed(self) -> None:
        """Sum the timers up again: busy, next deadline, levels (after update or reset)."""
        self._busy = any(s.since_ns is not None or s.tripped_ns is not None for rs in self.rows for s in rs.levels)
        self._deadline = self._earliest_deadline()
        self._levels = {rs.name: rs.level for rs in self.rows}

    def _earliest_deadline(self) -> int | None:
        times = []
        for rs in self.rows:
            for i, level in enumerate(rs.row.levels()):
                st = rs.levels[i]
                if st.since_ns is not None:
                    times.append(st.since_ns + round(level.delay_s * _NS))
                if st.tripped_ns is not None and rs.row.release.after_cut_s is not None:
                    times.append(st.tripped_ns + round(rs.row.release.after_cut_s * _NS))
        return min(times, default=None)

    def levels(self) -> dict[str, int]:
        """Row name -> highest tripped level (0..3)."""
        return dict(self._levels)

    def reset(self) -> None:
        """A power cycle: every timer and latch cleared."""
        for rs in self.rows:
            rs.levels = [LevelState() for _ in range(3)]
        self._timers_changed()
