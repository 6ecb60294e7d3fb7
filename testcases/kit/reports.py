"""The pack's CAN reports, as a test reads them: one report's levels, bits and limits, and waits.

The pack sends one *report* a CAN period: a burst of frames (0x351 limits, 0x359 bits, 0x35C
enables, its detail frames). A report's frames share one frame time, so the frames of the report
sent at ``t`` are found by time, and a level change is bracketed by two reports: after the last
one without it, at or before the first one with it (:class:`Seen`).

Frame times are the pack's clock (on a real bench, the CAN interface's), not the rig clock's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rig.errors import WaitTimeout
from rig.files.rows import PROTECTIONS
from rig.pcs import CanCheckFailed
from testcases.kit import rules

#: The level values of the DetailProtection signals, index = level.
LEVELS = ("None", "L1", "L2", "L3")
#: The frames of one CAN report that a level shows in.
FRAMES = ("DetailProtection", "DetailStatus", "ProtectionsAlarms", "ChargeLimits", "ChargeRequest")


def level_signal(name: str) -> str:
    """cell_over_voltage -> CellOverVoltageLevel (DetailProtection)."""
    return "".join(word.capitalize() for word in name.split("_")) + "Level"


@dataclass(frozen=True)
class Report:
    """The frames of one CAN report (``report["ChargeLimits"]["ChargeCurrentLimit"]``), sent at
    frame time ``t``; ``levels`` (row -> 0..3) and ``failed`` (the failure bits set) read from it."""

    t: float
    frames: dict[str, dict]
    levels: dict[str, int]
    failed: set[str]

    def __getitem__(self, frame: str) -> dict:
        return self.frames[frame]


@dataclass(frozen=True)
class Seen:
    """The report a wait stopped at: the row's level in it, its frame time, the frame time of
    the report before it (the change happened in between)."""

    level: int
    at: float
    before: float


class Reports:
    """The reports the PCS stand-in has received from the pack, and waits on new ones."""

    def __init__(self, pcs, spec, clock):
        self.pcs, self.spec, self.clock = pcs, spec, clock

    def at(self, t: float) -> Report:
        """The report sent at frame time ``t`` (a report is one burst)."""
        frames = {}
        for frame in FRAMES:
            reception = min(self.pcs.received(frame), key=lambda r: abs(r.t - t))
            if abs(reception.t - t) > self.spec.can.period_s / 2:
                raise CanCheckFailed(f"no {frame} frame in the report of t={t:.3f} s "
                                     f"(nearest at t={reception.t:.3f} s)")
            frames[frame] = reception.signals
        levels = {name: LEVELS.index(frames["DetailProtection"][level_signal(name)]) for name in PROTECTIONS}
        failed = {bit for bit in rules.failure_bits(self.spec) if frames["DetailStatus"][bit]}
        return Report(t, frames, levels, failed)

    def last(self) -> Report:
        """The last report received."""
        return self.at(self.pcs.received("DetailStatus")[-1].t)

    def last_time(self) -> float:
        """Frame time of the last report received; minus infinity before the first."""
        try:
            return self.pcs.received("DetailProtection")[-1].t
        except CanCheckFailed:
            return -math.inf

    def count_since(self, t: float) -> int:
        """How many reports were sent after frame time ``t``."""
        return sum(r.t > t for r in self.pcs.received("DetailProtection"))

    def levels_over(self, name: str, seconds: float) -> list[int]:
        """The row's level in every report of the next ``seconds``."""
        since = self.last_time()
        self.clock.sleep(seconds)
        seen = [LEVELS.index(r.signals[level_signal(name)]) for r in self.pcs.received("DetailProtection")
                if r.t > since]
        if not seen:
            raise CanCheckFailed(f"no DetailProtection frame in the {seconds:g} s after t={since:.3f} s")
        return seen

    def wait_level(self, name: str, until, *, within: float) -> Seen:
        """The first report whose level of the row satisfies ``until(level)`` (the last one if
        none does within ``within`` s)."""
        signal = level_signal(name)
        try:
            _, t = self.pcs.wait_until(signal, lambda v: until(LEVELS.index(v)), within=within,
                                       frame="DetailProtection")
        except WaitTimeout:
            t = None
        reports = self.pcs.received("DetailProtection")
        i = len(reports) - 1 if t is None else max(k for k, r in enumerate(reports) if r.t == t)
        before = reports[i - 1].t if i else -math.inf
        return Seen(LEVELS.index(reports[i].signals[signal]), reports[i].t, before)

    def wait_bit(self, bit: str, *, within: float) -> int:
        """A DetailStatus bit once set within ``within`` s, else its last value."""
        try:
            value, _ = self.pcs.wait_until(bit, 1, within=within, frame="DetailStatus")
        except WaitTimeout:
            value = self.pcs.signal(bit, frame="DetailStatus")
        return value

    def fresh(self, poll: float) -> tuple[float, float]:
        """Wait for the next report; returns its frame time and the rig time it was seen at
        (within ``poll``): the pair that puts a rig instant on the pack's clock."""
        last, period = self.last_time(), self.spec.can.period_s
        t = self.clock.wait_for(self.last_time, timeout=2 * period, poll=poll, until=lambda x: x > last,
                                what="a fresh CAN report")
        return t, self.clock.now()
