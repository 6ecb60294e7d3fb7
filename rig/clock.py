"""One clock for the whole rig: every wait, every period, every timestamp goes through it.

A real bench runs on :class:`WallClock` (monotonic seconds since the clock started). The emulated
bench runs on :class:`VirtualClock`: time stands still until someone sleeps, and a sleep moves
the emulated world forward to the exact target time, so a 60-minute wait costs what the world
needs to compute, not 60 minutes, and the same seed gives the same run.

Three things every clock offers:

- ``now()`` and ``sleep(seconds)``;
- ``wait_for(read, timeout=..., poll=..., until=..., what=...)``: the one way to wait for
  something. It has a timeout, always, and a timeout raises :class:`~rig.errors.WaitTimeout`
  naming what was awaited and the last value seen;
- ``every(period, fn, name)``: a periodic task (the safety supervisor samples through it). On
  the virtual clock it runs inline at its exact virtual times while someone sleeps; on the wall
  clock it runs in its own thread, so it keeps running while a test is blocked in a query.

An exception from a periodic task (a safety trip) is raised out of the ``sleep``/``wait_for``
of the test: inline on the virtual clock, at the next sleep on the wall clock, which a trip also
wakes at once.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from rig.errors import ClockMisuse, WaitTimeout

#: Nanoseconds in a second: the rig's clock and the emulated world count time in integer ns.
NS = 1_000_000_000


def ns(seconds: float) -> int:
    """A duration in integer nanoseconds, rounded to the nearest.

    :raises ValueError: NaN or negative (a programming mistake).
    """
    if seconds != seconds or seconds < 0:
        raise ValueError(f"a duration must be >= 0 s, got {seconds!r}")
    return round(seconds * NS)


class Periodic:
    """Handle of a periodic task; :meth:`cancel` stops it (safe to call twice)."""

    def __init__(self, period_s: float, fn: Callable[[], Any], name: str):
        self.period_ns = ns(period_s)
        if self.period_ns <= 0:
            raise ValueError(f"period of {name!r} must be > 0 s")
        self.fn, self.name = fn, name
        self.cancelled = False
        self.order = 0

    def cancel(self) -> None:
        self.cancelled = True


class Clock(ABC):
    """What every clock offers; see the module docstring."""

    #: "wall" or "virtual", as named in the bench file.
    kind: str = ""

    def __init__(self) -> None:
        self._pending: BaseException | None = None
        self._pending_lock = threading.Lock()

    @abstractmethod
    def now(self) -> float:
        """Seconds since the clock started."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass; raises a pending periodic-task exception (e.g. a safety trip)."""

    @abstractmethod
    def every(self, period_s: float, fn: Callable[[], Any], name: str) -> Periodic:
        """Run ``fn`` every ``period_s`` seconds from now on until the handle is cancelled."""

    def wait_for(self, read: Callable[[], Any], *, timeout: float, poll: float = 0.1,
                 until: Callable[[Any], bool] = bool, what: str = "") -> Any:
        """Poll ``read()`` until ``until(value)`` holds; return that value.

        :param read: returns the value watched (a voltage, a state, a bool ...).
        :param timeout: seconds to wait at most; required, every wait has one.
        :param poll: seconds between two reads.
        :param until: predicate on the value read; default: the value is truthy.
        :param what: what is awaited, for the timeout message.
        :raises WaitTimeout: names ``what``, the timeout and the last value read.
        """
        if timeout is None or poll <= 0:
            raise ValueError("wait_for needs a timeout and a poll period > 0")
        deadline = self.now() + timeout
        while True:
            value = read()
            if until(value):
                return value
            remaining = deadline - self.now()
            if remaining <= 1e-12:
                raise WaitTimeout(what or getattr(read, "__name__", "a condition"),
                                  timeout, value, self.now())
            self.sleep(min(poll, remaining))

    def fail_with(self, exc: BaseException) -> None:
        """Record an exception from a periodic task; the test's next sleep raises it."""
        with self._pending_lock:
            if self._pending is None:
                self._pending = exc
        self._wake()

    def raise_pending(self) -> None:
        """Raise (once) the exception a periodic task recorded, if any."""
        with self._pending_lock:
            exc, self._pending = self._pending, None
        if exc is not None:
            raise exc

    def _wake(self) -> None:
        """Interrupt a sleep in progress (wall clock); nothing to do on the virtual clock."""


class WallClock(Clock):
    """Real time: ``time.monotonic`` seconds since construction; periodic tasks in threads."""

    kind = "wall"

    def __init__(self) -> None:
        super().__init__()
        self._t0 = time.monotonic()
        self._wakeup = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep(self, seconds: float) -> None:
        self.raise_pending()
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            # Wait on an event rather than time.sleep so that a safety trip wakes the test now.
            if self._wakeup.wait(left):
                self._wakeup.clear()
                self.raise_pending()
        self.raise_pending()

    def _wake(self) -> None:
        self._wakeup.set()

    def every(self, period_s: float, fn: Callable[[], Any], name: str) -> Periodic:
        task = Periodic(period_s, fn, name)
        thread = threading.Thread(target=self._run_periodic, args=(task,), name=name, daemon=True)
        thread.start()
        return task

    def _run_periodic(self, task: Periodic) -> None:
        # Fixed-rate schedule: the next run is due one period after the previous due time, so a
        # slow run does not make the supervisor drift.
        due = time.monotonic()
        while not task.cancelled:
            try:
                task.fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread, not lost
                task.cancelled = True
                self.fail_with(exc)
                return
            due += task.period_ns / NS
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()


class Advancer(Protocol):
    """Something that lives in virtual time: the emulated world."""

    def advance_to(self, t_ns: int) -> None:
        """Bring the world to virtual time ``t_ns`` nanoseconds (never called with a smaller one)."""


class VirtualClock(Clock):
    """Virtual time in integer nanoseconds; sleeping advances every attached world.

    Integer nanoseconds, not float seconds, so that protection delays, frame periods and light
    toggles land on their exact times however many steps were taken.

    Periodic tasks run inline at their exact due times, after the world has been advanced to
    that time, in the order they are due (ties: in the order they were created), so two runs
    with the same inputs do exactly the same thing.
    """

    kind = "virtual"

    def __init__(self) -> None:
        super().__init__()
        self._t_ns = 0
        self._advancers: list[Advancer] = []
        self._tasks: list[tuple[int, int, Periodic]] = []
        self._seq = itertools.count()
        self._sleeping = False

    def now(self) -> float:
        return self._t_ns / NS

    @property
    def now_ns(self) -> int:
        """Virtual time in integer nanoseconds (exact; use for logs and schedules)."""
        return self._t_ns

    def attach(self, world: Advancer) -> None:
        """Have ``world.advance_to(t_ns)`` called whenever virtual time moves."""
        self._advancers.append(world)

    def detach(self, world: Advancer) -> None:
        if world in self._advancers:
            self._advancers.remove(world)

    def every(self, period_s: float, fn: Callable[[], Any], name: str) -> Periodic:
        task = Periodic(period_s, fn, name)
        task.order = next(self._seq)  # ties at one instant run in creation order
        heapq.heappush(self._tasks, (self._t_ns, task.order, task))
        return task

    def sleep(self, seconds: float) -> None:
        if self._sleeping:
            # A periodic task that sleeps would re-enter the schedule: a programming mistake.
            raise ClockMisuse("VirtualClock.sleep called from inside a periodic task")
        self.raise_pending()
        target = self._t_ns + ns(seconds)
        self._sleeping = True
        try:
            while self._tasks and self._tasks[0][0] <= target:
                due, _, task = heapq.heappop(self._tasks)
                if task.cancelled:
                    continue
                self._move_to(due)
                heapq.heappush(self._tasks, (due + task.period_ns, task.order, task))
                task.fn()
            self._move_to(target)
        finally:
            self._sleeping = False

    def _move_to(self, t_ns: int) -> None:
        if t_ns > self._t_ns:
            for world in self._advancers:
                world.advance_to(t_ns)
            self._t_ns = t_ns


def make_clock(kind: str) -> Clock:
    """The clock named in a bench file: ``"wall"`` or ``"virtual"``."""
    if kind == "wall":
        return WallClock()
    if kind == "virtual":
        return VirtualClock()
    raise ValueError(f"unknown clock kind {kind!r}; choices: 'wall', 'virtual'")
