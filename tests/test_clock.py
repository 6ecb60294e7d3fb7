"""The one clock: virtual time is exact and cheap, every wait has a timeout that explains itself."""
from __future__ import annotations

import random
import threading
import time

import pytest

from rig.clock import VirtualClock, WallClock, make_clock
from rig.errors import SafetyTrip, WaitTimeout


class RecordingWorld:
    """An emulated world that only records the times it was advanced to."""

    def __init__(self):
        self.times: list[int] = []

    def advance_to(self, t_ns: int) -> None:
        assert not self.times or t_ns > self.times[-1], "time went backwards"
        self.times.append(t_ns)


def test_virtual_hour_wait_costs_milliseconds():
    clock = VirtualClock()
    started = time.perf_counter()
    clock.sleep(3600.0)
    assert clock.now() == 3600.0
    assert time.perf_counter() - started < 0.05


def test_virtual_sleep_advances_attached_world_to_exact_target():
    clock, world = VirtualClock(), RecordingWorld()
    clock.attach(world)
    for _ in range(10):
        clock.sleep(0.1)
    # integer nanoseconds: ten 0.1 s sleeps land on exactly 1 s, no float drift
    assert world.times[-1] == 1_000_000_000
    assert clock.now_ns == 1_000_000_000


def test_wait_for_returns_value_once_condition_holds():
    clock = VirtualClock()
    value = clock.wait_for(lambda: clock.now(), until=lambda t: t >= 42.0, timeout=60.0, poll=1.0,
                           what="t >= 42 s")
    assert value == 42.0


def test_wait_for_timeout_names_what_and_last_value():
    clock = VirtualClock()
    readings = iter(range(1000))
    with pytest.raises(WaitTimeout) as info:
        clock.wait_for(lambda: next(readings), until=lambda v: v > 10_000, timeout=5.0, poll=1.0,
                       what="pack voltage above 52 V")
    message = str(info.value)
    assert "pack voltage above 52 V" in message
    assert "5 s" in message
    assert "last value seen: 5" in message  # reads at t = 0, 1, 2, 3, 4, 5 s
    assert clock.now() == 5.0


def test_wait_for_needs_a_timeout():
    with pytest.raises(ValueError):
        VirtualClock().wait_for(lambda: True, timeout=None)


def test_periodic_tasks_run_at_exact_virtual_times_in_due_order():
    clock, world = VirtualClock(), RecordingWorld()
    clock.attach(world)
    seen: list[tuple[str, int]] = []
    clock.every(0.5, lambda: seen.append(("fast", clock.now_ns)), "fast")
    clock.every(1.0, lambda: seen.append(("slow", clock.now_ns)), "slow")
    clock.sleep(2.0)
    assert seen == [("fast", 0), ("slow", 0), ("fast", 500_000_000), ("fast", 1_000_000_000),
                    ("slow", 1_000_000_000), ("fast", 1_500_000_000), ("fast", 2_000_000_000),
                    ("slow", 2_000_000_000)]
    # the world was brought to each task's time before the task ran
    assert 500_000_000 in world.times and 1_500_000_000 in world.times


def test_cancelled_periodic_task_stops():
    clock = VirtualClock()
    runs = []
    task = clock.every(1.0, lambda: runs.append(clock.now()), "sampler")
    clock.sleep(2.0)
    task.cancel()
    task.cancel()  # twice is harmless
    clock.sleep(5.0)
    assert runs == [0.0, 1.0, 2.0]


def test_exception_in_periodic_task_surfaces_in_the_sleeping_test():
    clock = VirtualClock()

    def supervisor():
        if clock.now() >= 3.0:
            raise SafetyTrip("group 7 voltage", 3.77, "3.76 V", clock.now())

    clock.every(0.5, supervisor, "supervisor")
    with pytest.raises(SafetyTrip) as info:
        clock.sleep(3600.0)
    assert info.value.at == 3.0
    assert clock.now() == 3.0  # time stopped at the trip


def test_same_inputs_same_run():
    def run(seed: int) -> list[tuple[int, float]]:
        rng = random.Random(seed)
        clock, log = VirtualClock(), []
        clock.every(0.25, lambda: log.append((clock.now_ns, rng.random())), "noise")
        for _ in range(50):
            clock.sleep(rng.uniform(0.0, 2.0))
        return log

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_wall_clock_wait_for_and_timeout():
    clock = WallClock()
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    assert clock.wait_for(flag.is_set, timeout=2.0, poll=0.01, what="flag") is True
    with pytest.raises(WaitTimeout, match="never"):
        clock.wait_for(lambda: False, timeout=0.05, poll=0.01, what="never")


def test_wall_clock_trip_wakes_a_long_sleep_at_once():
    clock = WallClock()

    def supervisor():
        if clock.now() > 0.05:
            raise SafetyTrip("pack voltage", 61.0, "60.2 V", clock.now())

    clock.every(0.01, supervisor, "supervisor")
    started = time.monotonic()
    with pytest.raises(SafetyTrip):
        clock.sleep(30.0)
    assert time.monotonic() - started < 1.0


def test_make_clock_by_name():
    assert make_clock("virtual").kind == "virtual"
    assert make_clock("wall").kind == "wall"
    with pytest.raises(ValueError, match="choices"):
        make_clock("fast")
