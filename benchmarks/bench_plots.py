"""What the plot of every test costs (goal: the whole suite with plots within 20 % of its wall time
without).

Run: ``python benchmarks/bench_plots.py [--pairs N] [--workers N] [-k EXPR]``. It runs the suite
(``pytest testcases -n 2``, each run in its own temporary run folder) alternately without plots
(``--no-plots``) and with them, ``--pairs`` times, so that both see the same machine; prints each
wall time, the medians and the ratio. Then it draws again every recording of the last run with
plots, in this process, and prints what one plot costs (CPU ms: the first one, with the figure
made; the median and the worst of the others; reading the recording apart), against what one
test costs (the suite's CPU time per test without plots).
"""
from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_suite(run_dir: Path, plots: bool, workers: int, keyword: str | None) -> tuple[float, float, str]:
    """One suite run: (wall s, CPU s of pytest and its workers, pytest's summary line)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--run-dir", str(run_dir),
           str(ROOT / "testcases")]
    if workers:
        cmd += ["-n", str(workers)]
    if keyword:
        cmd += ["-k", keyword]
    if not plots:
        cmd.append("--no-plots")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?)\s*=*$", done.stdout, re.M)
    return wall, cpu, summary[-1] if summary else done.stdout[-300:]


def plot_costs(recordings: Path) -> dict[str, float]:
    """Draw every recording of ``recordings`` again, here: CPU ms per plot and per read."""
    from rig.report.plot_data import read_recording
    from rig.report.plots import draw
    logs = sorted(recordings.glob("*.asc")) + sorted(recordings.glob("*.blf"))
    reads, plots = [], []
    with tempfile.TemporaryDirectory() as out:
        for log in logs:
            started = time.process_time()
            rec = read_recording(log, log.parent / f"{log.stem}.samples.csv")
            reads.append(time.process_time() - started)
            started = time.process_time()
            draw(rec, Path(out) / f"{log.stem}.png", title=log.stem)
            plots.append(time.process_time() - started)
    if not plots:
        return {}
    rest = plots[1:] or plots
    return {"plots": len(plots), "first_ms": plots[0] * 1e3, "median_ms": statistics.median(rest) * 1e3,
            "worst_ms": max(rest) * 1e3, "read_median_ms": statistics.median(reads) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="runs without and with plots, alternately (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2; 0: none)")
    parser.add_argument("-k", dest="keyword", default=None, help="only the tests matching EXPR (pytest -k)")
    args = parser.parse_args()
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        last = None
        for pair in range(args.pairs):
            for plots in (False, True):
                run_dir = Path(tmp) / f"run-{pair}-{'plots' if plots else 'no-plots'}"
                wall, cpu, summary = run_suite(run_dir, plots, args.workers, args.keyword)
                walls[plots].append(wall)
                cpus[plots].append(cpu)
                pngs = len(list((run_dir / "recordings").glob("*.png")))
                print(f"suite {'with plots   ' if plots else 'without plots'}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
                      f"{pngs} PNG ({summary})", flush=True)
                if plots:
                    last = run_dir / "recordings"
        without, with_ = statistics.median(walls[False]), statistics.median(walls[True])
        print(f"median wall: {without:.1f} s without plots, {with_:.1f} s with: +{(with_ / without - 1) * 100:.0f} % "
              f"(goal: within 20 %)")
        print(f"median CPU: {statistics.median(cpus[False]):.1f} s without plots, {statistics.median(cpus[True]):.1f} s with")
        costs = plot_costs(last) if last is not None else {}
    if costs:
        print(f"one plot, drawn again here from the {costs['plots']} recordings: first {costs['first_ms']:.0f} ms CPU "
              f"(figure made), then median {costs['median_ms']:.0f} ms, worst {costs['worst_ms']:.0f} ms; reading a "
              f"recording {costs['read_median_ms']:.1f} ms")


if __name__ == "__main__":
    main()
