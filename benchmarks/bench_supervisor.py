"""The safety supervisor's reaction time on the wall-clock emulated bench (goal <= 100 ms).

Excursion to outputs off: the pack charges at 20 A on the emulated bench running in real time
(supervisor period 50 ms, as a real bench); at a random instant one group is overcharged in the
emulated physics (its cell tap reads ~3.9 V); the time is taken until the emulated PSU's output
is off. Repeated 10 times; prints each, the median and the worst.

Run: ``python benchmarks/bench_supervisor.py``
"""
from __future__ import annotations

import random
import statistics
import time

from rig.bench import Bench
from rig.errors import SafetyTrip
from rig.files.bench_file import BENCHES, load_bench
from rig.supervisor import Supervisor


def once(rng: random.Random) -> float:
    with Bench(load_bench(BENCHES / "emulated-wall.toml")) as bench:
        Supervisor(bench).start()
        plant = bench.emulator.world.plant
        bench.output("breaker", True)
        bench.output("power_button", True)
        bench.clock.sleep(2.0)
        bench.output("power_button", False)
        bench.clock.sleep(1.5)
        bench.psu.apply(55.0, 20.0)
        bench.psu.output_on()
        bench.clock.sleep(0.5 + rng.random() * 0.2)
        with plant.lock:
            bench.emulator.world.physics.set_group_soc(0, 6, 1.03)
        started = time.monotonic()
        while plant.psu.on:
            if time.monotonic() - started > 5.0:
                raise RuntimeError("the supervisor did not turn the PSU off within 5 s")
            time.sleep(0.001)
        reaction = time.monotonic() - started
        try:
            bench.clock.sleep(0.2)
        except SafetyTrip:
            pass
        return reaction


def main() -> None:
    rng = random.Random(1)
    times = [once(rng) * 1000 for _ in range(10)]
    print("reaction times, ms:", ", ".join(f"{t:.0f}" for t in times))
    print(f"supervisor reaction (excursion to PSU output off): median {statistics.median(times):.0f} ms, "
          f"worst {max(times):.0f} ms (goal <= 100 ms)")


if __name__ == "__main__":
    main()
