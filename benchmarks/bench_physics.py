"""Time the emulated pack's physics as the rig calls it: one step plus the readings a BMS and
the DC-bus solver take, for 1 and 2 packs.

The rig calls this 3600-7200 times per virtual hour, so it must stay well under 30 us a call.
The constants of a step length are cached per distinct dt; the last column is a step whose dt
was never seen before (an event-stepped caller pays it for each new length).
Run: ``python benchmarks/bench_physics.py`` (prints microseconds per call, best of several runs,
so that a busy machine's noise is left out).
"""
from __future__ import annotations

import timeit

import numpy as np

from emulator.pack.physics import PackPhysics
from emulator.pack.physics_params import load_physics

CALLS = 5000
REPEATS = 15


def bench(packs: int) -> tuple[float, float, float]:
    """Microseconds per step, per step + thevenin + group_voltages + temperatures, and per step
    of a new length."""
    phys = PackPhysics(load_physics(), packs=packs, seed=1, initial_soc=0.5)
    charge, discharge = np.full(packs, 40.0), np.full(packs, -40.0)

    def step_only():
        # Alternate directions so the SOC stays mid-range however long the benchmark runs.
        phys.step(1.0, charge, 25.0)
        phys.step(1.0, discharge, 25.0)

    def with_readings():
        for i in (charge, discharge):
            phys.step(1.0, i, 25.0)
            phys.thevenin()
            phys.group_voltages(i)
            phys.temperatures()

    lengths = iter(1.0 + np.arange(2 * CALLS * REPEATS) * 1e-6)

    def new_lengths():
        phys.step(next(lengths), charge, 25.0)
        phys.step(next(lengths), discharge, 25.0)

    per_call = [min(timeit.repeat(f, number=CALLS, repeat=REPEATS)) / CALLS / 2 * 1e6
                for f in (step_only, with_readings, new_lengths)]
    return per_call[0], per_call[1], per_call[2]


def main() -> None:
    for packs in (1, 2):
        step_us, full_us, new_dt_us = bench(packs)
        print(f"{packs} pack{'s' if packs > 1 else ' '}: step {step_us:5.1f} us, "
              f"step + thevenin + group_voltages + temperatures {full_us:5.1f} us, "
              f"step of a new dt {new_dt_us:5.1f} us")


if __name__ == "__main__":
    main()
