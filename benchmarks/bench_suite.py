"""Wall time of the whole test suite on the emulated bench (goal: < 60 s on 2 cores).

Run: ``python benchmarks/bench_suite.py`` — runs ``pytest testcases -n 2`` against the default
(emulated) bench, prints the wall time and the outcome counts.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                           str(ROOT / "testcases")], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = re.findall(r"^=*\s*(\d+ passed.*?)\s*=*$", done.stdout, re.M)
    print(f"test suite on the emulated bench, 2 workers: {wall:.1f} s wall "
          f"({summary[-1] if summary else done.stdout[-300:]}) (goal < 60 s)")


if __name__ == "__main__":
    main()
