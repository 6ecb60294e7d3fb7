"""Mutants classified per minute by ``packrig mutate`` on this machine (goal: >= 100 generated
mutants classified in <= 10 minutes of wall time on 2 cores).

Run: ``python benchmarks/bench_mutate.py [N]`` — takes N mutants (default 100) spread evenly over
the whole generated set of the conforming profile (every k-th by name, so every requirement and
operator kind is in the sample), runs them with 2 workers as ``packrig mutate`` does (targets
first, the whole suite only for a survivor), and prints the wall time, mutants per minute, the
kill table's counts and the time the full set would take at that rate.
"""
from __future__ import annotations

import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rig.files.bench_file import EMULATED_BENCH, load_bench  # noqa: E402
from emulator.firmware.profile import CONFORMING_PROFILE  # noqa: E402
from rig.files.pack_spec import load_pack_spec  # noqa: E402
from rig.mutate.operators import generate  # noqa: E402
from rig.mutate.runner import MutationRun  # noqa: E402


def main() -> None:
    wanted = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    bench = load_bench(EMULATED_BENCH)
    base = tomllib.loads(CONFORMING_PROFILE.read_text(encoding="utf-8"))
    everything = sorted(generate(base, load_pack_spec(bench.pack_spec_path)), key=lambda m: m.name)
    step = max(1, len(everything) // wanted)
    sample = everything[::step][:wanted]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcomes = MutationRun(base, Path(tmp), bench=bench.path, workers=2).run(sample)
        wall = time.perf_counter() - started
    counts = Counter(o.status for o in outcomes)
    per_minute = 60.0 * len(sample) / wall
    print(f"packrig mutate, 2 workers: {len(sample)} of {len(everything)} generated mutants classified in "
          f"{wall:.0f} s wall = {per_minute:.1f} mutants/minute ({dict(counts)}); "
          f"the full set of {len(everything)} at that rate: {len(everything) / per_minute:.1f} min "
          f"(goal: >= 100 mutants in <= 10 min)")


if __name__ == "__main__":
    main()
