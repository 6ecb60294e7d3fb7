"""The world's timers: one time-ordered queue of named instants (SimPy's shape: schedule, peek, step).

Everything in the emulated world that must happen at an exact instant (a protection delay, the
end of a button hold or of a pre-charge, the power-off flicker, the PCS-loss wait, a CAN report,
an instrument's watchdog) is a timer in this queue, filed under a key by whoever owns it. The
world steps to the earliest one (:meth:`EventQueue.peek`); at the end of that step every part of
the world looks at its state (the BMS samples, devices run), and the timers that fell due are
taken off (:meth:`EventQueue.step`).

A key holds one instant: scheduling it again moves it, :meth:`EventQueue.cancel` removes it. So a
timer that is restarted or stopped as the state changes needs no bookkeeping of its own. Times are
integer nanoseconds of the world's clock.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable


class EventQueue:
    """Named instants in time order."""

    def __init__(self):
        self._heap: list[tuple[int, int, Hashable]] = []   # (t_ns, order scheduled, key)
        self._due: dict[Hashable, tuple[int, int]] = {}     # key -> its live (t_ns, order) entry
        self._order = itertools.count()

    def schedule(self, key: Hashable, t_ns: int | None) -> None:
        """Timer ``key`` falls due at ``t_ns`` (replacing its earlier instant); None cancels it."""
        if t_ns is None:
            self.cancel(key)
            return
        if self._due.get(key, (None,))[0] == t_ns:
            return
        entry = (t_ns, next(self._order))
        self._due[key] = entry
        heapq.heappush(self._heap, (*entry, key))

    def cancel(self, key: Hashable) -> None:
        """Timer ``key`` no longer falls due (nothing if it is not scheduled)."""
        self._due.pop(key, None)

    def when(self, key: Hashable) -> int | None:
        """The instant timer ``key`` falls due, None if it is not scheduled."""
        entry = self._due.get(key)
        return None if entry is None else entry[0]

    def peek(self) -> int | None:
        """The earliest instant a timer falls due, None if none is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def step(self, t_ns: int) -> list[Hashable]:
        """Take off every timer due at or before ``t_ns``; returns their keys, earliest first."""
        due = []
        while self._heap:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > t_ns:
                break
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            due.append(key)
        return due

    def _drop_stale(self) -> None:
        """Pop the entries of timers since moved or cancelled off the top of the heap."""
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][2]) != heap[0][:2]:
            heapq.heappop(heap)

    def __len__(self) -> int:
        return len(self._due)
