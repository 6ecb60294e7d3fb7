"""Time the emulated pack's physics as the rig calls it: one step plus the readings a BMS and
the DC-bus solver take, for 1 and 2 packs.

The rig calls this 3600-7200 times per virtual hour, so it must stay well under 30 us a call.
Run: ``python benchmarks/bench_physics.py`` (prints microseconds per call, best of several runs,
so that a busy machine's noise is left out).
"""
from __future__ import annotations

import timeit

import numpy as np

from rig.emulator.physics import PackPhysics
from rig.emulator.physics_params import load_physics

CALLS = 5000
REPEATS = 15


def bench(packs: int) -> tuple[float, float]:
    """Microseconds per (step) and per (step + thevenin + group_voltages + temperatures)."""
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

    per_call = [min(timeit.repeat(f, number=CALLS, repeat=REPEATS)) / CALLS / 2 * 1e6
                for f in (step_only, with_readings)]
    return per_call[0], per_call[1]


def main() -> None:
    for packs in (1, 2):
        step_us, full_us = bench(packs)
        print(f"{packs} pack{'s' if packs > 1 else ' '}: step {step_us:5.1f} us, "
              f"step + thevenin + group_voltages + temperatures {full_us:5.1f} us")


if __name__ == "__main__":
    main()
