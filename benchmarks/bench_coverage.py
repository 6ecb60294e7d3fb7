"""Coverage of the emulated BMS model by the test suite (goal: >= 98 % of statements, >= 95 % of branches).

Run: ``python benchmarks/bench_coverage.py [-n WORKERS] [--missing] [pytest args ...]`` — runs
``pytest testcases -n 2`` against the default (emulated) bench under coverage.py, restricted to
the modules that are the BMS's firmware (:data:`BMS_MODULES`), and prints statement and branch
coverage per module, the total against the goal, and with ``--missing`` the lines and branches
the suite never runs (each is either given a test or listed with its reason in the README).

The pytest-xdist workers are separate processes: coverage follows them through its subprocess
patch (``[run] patch = subprocess``, ``parallel = true``, one data file per process) and the
files are combined before the report; the figure says how many were, so a run in which the
workers went unmeasured (one file, and 0 % of the BMS: every test runs in a worker) shows.
The emulator's servers run in threads of the same processes (``concurrency = thread``). The
run folder and coverage's data go to a temporary folder, never into ``reports/``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The emulated BMS: what a firmware build decides (states, protections, failures, SOC, lights, the
#: parallel link's rules and polls, what it says on CAN and RS485). Not the BMS: the physics and the
#: world stepping them (world.py, physics.py, thermal.py, circuit.py), the instruments, the
#: transports (socketcand.py, rs485_bus.py, rig_bus.py) and fault insertion (faults.py).
BMS_MODULES = ("emulator/pack/bms.py", "emulator/pack/protections.py", "emulator/pack/parallel.py",
               "emulator/pack/can_reports.py", "emulator/pack/rs485_responder.py", "emulator/pack/lights.py")
GOAL_STATEMENTS_PCT, GOAL_BRANCHES_PCT = 98.0, 95.0

RCFILE = """\
[run]
branch = true
parallel = true
patch = subprocess
concurrency = thread
data_file = {data}
include =
{include}
"""


def measure(workers: int, pytest_args: list[str], tmp: Path) -> tuple[dict, int, float, str]:
    """Run the suite under coverage; returns (coverage.py's JSON report, data files combined,
    wall seconds, pytest's summary line)."""
    rc = tmp / "coveragerc"
    rc.write_text(RCFILE.format(data=tmp / ".coverage",
                                include="\n".join(f"    {ROOT / m}" for m in BMS_MODULES)))
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-n", str(workers), "--run-dir", str(tmp / "run"), "--no-plots",  # plots are the rig's, not the BMS's
         *(pytest_args or [str(ROOT / "testcases")])],
        cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = next((line.strip("= ") for line in reversed(run.stdout.splitlines())
                    if " passed" in line or " failed" in line), run.stdout[-300:])
    data_files = len(list(tmp.glob(".coverage.*")))
    subprocess.run([sys.executable, "-m", "coverage", "combine", f"--rcfile={rc}", "-q"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "-m", "coverage", "json", f"--rcfile={rc}", "-q", "-o", str(tmp / "cov.json")],
                   cwd=ROOT, check=True)
    return json.loads((tmp / "cov.json").read_text()), data_files, wall, summary


def _pct(done: int, total: int) -> float:
    return 100.0 * done / total if total else 100.0


def report(data: dict, show_missing: bool) -> tuple[float, float]:
    """Print the table; returns the total (statements %, branches %)."""
    files = {str(Path(name).resolve().relative_to(ROOT)): f for name, f in data["files"].items()}
    print(f"{'module':34} {'stmts':>6} {'miss':>5} {'stmt %':>7} {'branch':>7} {'miss':>5} {'branch %':>8}")
    totals = [0, 0, 0, 0]
    for module in BMS_MODULES:
        s = files.get(module, {"summary": {}})["summary"]
        stmts, covered = s.get("num_statements", 0), s.get("covered_lines", 0)
        branches, covered_b = s.get("num_branches", 0), s.get("covered_branches", 0)
        totals = [a + b for a, b in zip(totals, (stmts, covered, branches, covered_b))]
        print(f"{module:34} {stmts:6d} {stmts - covered:5d} {_pct(covered, stmts):6.1f}% {branches:7d} "
              f"{branches - covered_b:5d} {_pct(covered_b, branches):7.1f}%")
    stmt_pct, branch_pct = _pct(totals[1], totals[0]), _pct(totals[3], totals[2])
    print(f"{'BMS model':34} {totals[0]:6d} {totals[0] - totals[1]:5d} {stmt_pct:6.1f}% {totals[2]:7d} "
          f"{totals[2] - totals[3]:5d} {branch_pct:7.1f}%   (goal >= {GOAL_STATEMENTS_PCT:g} % / "
          f">= {GOAL_BRANCHES_PCT:g} %)")
    if show_missing:
        for module in BMS_MODULES:
            f = files.get(module)
            if f and (f["missing_lines"] or f.get("missing_branches")):
                branches = ", ".join(f"{a}->{'exit' if b < 0 else b}" for a, b in f.get("missing_branches", []))
                print(f"\n{module}\n  lines never run: {_ranges(f['missing_lines'])}\n"
                      f"  branches never taken: {branches or 'none'}")
    return stmt_pct, branch_pct


def _ranges(lines: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    out, start = [], None
    for i, n in enumerate(lines):
        if start is None:
            start = n
        if i + 1 == len(lines) or lines[i + 1] != n + 1:
            out.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(out) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    parser.add_argument("--missing", action="store_true", help="list the lines and branches never run")
    parser.add_argument("pytest_args", nargs="*", help="what pytest runs (default: testcases/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packrig-coverage-") as tmp:
        data, files, wall, summary = measure(args.workers, args.pytest_args, Path(tmp))
    print(f"BMS model coverage by the suite ({summary}; {wall:.1f} s wall under coverage, "
          f"{args.workers} workers; {files} coverage data files combined)")
    report(data, args.missing)


if __name__ == "__main__":
    main()
