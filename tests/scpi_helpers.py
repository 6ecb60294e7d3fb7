"""Helpers of the emulated-instrument tests: a hand-moved world clock, a short wall-clock wait."""
from __future__ import annotations

import time


class FakeClock:
    """The world's clock, moved by hand: ``plant.now_ns`` for watchdogs and list starts."""

    def __init__(self, t_ns: int = 5_000_000_000):
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


def eventually(condition, within_s: float = 2.0) -> None:
    """The server answers on its own thread: wait (briefly, on the wall clock) for a condition."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
