"""``packrig run``: the test cases against a bench, everything of the run in ONE run folder.

1. Bad input stops here, in one line, exit code 4, before any test starts: the bench file, the
   pack spec, the firmware profile (file, field, range), ``-m`` and ``-k`` expressions, the
   worker count, a run folder that holds a run (without ``--overwrite``) or cannot be written.
2. On a real bench, first contact (:mod:`rig.first_contact`): the table of what answered; an
   instrument that did not is named and the run stops (exit 4).
3. pytest runs the test cases in a child process, writing into the run folder (``--run-dir``):
   JUnit XML, Allure results, recordings, ``manifest.json``. In a terminal, a live display
   (rich) follows it and pytest's own output goes to ``pytest-output.txt``; elsewhere (CI)
   pytest's output comes through as usual.
4. The traceability matrix and the HTML report (Allure 3, this run only, into an empty folder)
   are written; ``reports/latest`` names the run; the summary by requirement ends the output,
   with the path of the HTML page that shows this run.

Ctrl-C: the child makes the bench safe and stops; the folder keeps what was recorded and is
marked INCOMPLETE; "bench made safe, run interrupted", exit code 2. A run the child stopped
itself (a safety trip: 2, a crash: 3) is marked INCOMPLETE with the child's reason, and what ran
is still reported (matrix, HTML, summary). Exit codes are pytest's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rig import run_folder
from rig.errors import ConfigError

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"
USAGE, INTERRUPTED = 4, 2
COMPLETE_EXITS = (0, 1, 5)


class BadInput(Exception):
    """One line for the user; exit code 4."""


def add_arguments(p: argparse.ArgumentParser, default_bench: str) -> None:
    p.add_argument("--bench", default=default_bench, help="bench file (default: the emulated bench)")
    p.add_argument("--pack-spec", help="pack spec to assert against (default: the one the bench file names)")
    p.add_argument("--firmware", help="firmware profile to emulate (emulated bench only)")
    p.add_argument("--seed", type=int, help="seed of the emulated pack (emulated bench only)")
    p.add_argument("-m", dest="markers", help="pytest marker expression, e.g. 'protection and not slow'")
    p.add_argument("-k", dest="keyword", help="pytest keyword expression, e.g. 'cell_over_voltage and L2'")
    p.add_argument("--reports", help="put the whole run in this folder (default: reports/runs/<UTC time>-<id>/)")
    p.add_argument("--overwrite", action="store_true", help="reuse a --reports folder that holds a run")
    p.add_argument("--no-html", action="store_true", help="skip rendering the HTML report")
    p.add_argument("--plots", choices=("all", "failed", "none"),
                   help="which tests get a plot (default: all; a plot costs ~0.2 s of CPU per test)")
    p.add_argument("--shard", metavar="i/N", help="run only shard i of N (merge the shards with packrig merge)")
    p.add_argument("--shard-durations", metavar="RUN", help="run folder whose test durations balance the shards")
    p.add_argument("--plain", action="store_true", help="pytest's own output instead of the live display")
    p.add_argument("--workers", default="auto",
                   help="pytest-xdist workers: 'auto' (default; a real bench always runs one test at a "
                        "time), a number, or 0")
    p.add_argument("pytest_args", nargs="*", help="further pytest arguments (after --)")


def _expression(flag: str, text: str | None) -> None:
    if not text:
        return
    try:
        from _pytest.mark.expression import Expression  # what pytest itself parses -m and -k with
    except ImportError:
        return  # pytest will say it, as a usage error too
    try:
        Expression.compile(text)
    except SyntaxError as exc:
        raise BadInput(f"bad {flag} expression {text!r}: {exc.msg} (column {exc.offset})") from None


def validate(args: argparse.Namespace):
    """Every input checked before anything runs; returns the loaded bench file and pack spec
    (the spec the run asserts against, kept for the matrix at the end).

    :raises BadInput: the first bad input, in one line.
    """
    from rig.files.bench_file import load_bench
    from rig.backends import load_firmware
    from rig.files.pack_spec import load_pack_spec

    try:
        bench = load_bench(args.bench)
    except ConfigError as exc:
        raise BadInput(f"bad bench file: {exc}") from None
    if not bench.emulated and (args.firmware or args.seed is not None):
        raise BadInput(f"--firmware and --seed apply to an emulated bench only; {bench.path} is the real "
                       f"bench {bench.file.bench.name!r}")
    try:
        spec = load_pack_spec(Path(args.pack_spec or bench.pack_spec_path))
    except ConfigError as exc:
        raise BadInput(f"bad pack spec: {exc}") from None
    if bench.emulated:
        try:
            load_firmware(Path(args.firmware or bench.firmware_path))
        except ConfigError as exc:
            raise BadInput(f"bad firmware profile: {exc}") from None
    if args.seed is not None and args.seed < 0:
        raise BadInput(f"--seed must be 0 or more, got {args.seed}")
    _expression("-m", args.markers)
    if args.shard or args.shard_durations:
        from rig.shard import durations, parse
        try:
            parse(args.shard or "")
            durations(args.shard_durations)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    _expression("-k", args.keyword)
    if args.workers != "auto" and not (args.workers.isdigit()):
        raise BadInput(f"--workers must be 'auto' or a number of workers (0: none), got {args.workers!r}")
    return bench, spec


def _run_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    """The run folder, claimed (INCOMPLETE), and whether it is the default layout under reports/."""
    folder = Path(args.reports) if args.reports else run_folder.default_run_dir()
    why = run_folder.writable(folder)
    if why:
        raise BadInput(f"cannot write the run folder {folder.resolve()}: {why}")
    try:
        return run_folder.claim(folder, overwrite=args.overwrite), not args.reports
    except run_folder.RunFolderRefused as exc:
        raise BadInput(str(exc)) from None


def pytest_command(args, bench, run_dir: Path, feed: Path | None) -> list[str]:
    import importlib.util

    cmd = [sys.executable, "-m", "pytest", str(TESTCASES), "--bench", str(bench.path),
           "--run-dir", str(run_dir), "--alluredir", str(run_dir / run_folder.ALLURE_RESULTS),
           "--clean-alluredir", "--junitxml", str(run_dir / run_folder.JUNIT), "-p", "no:cacheprovider",
           "--no-run-summary", "--no-first-contact"]
    for flag, value in (("--pack-spec", args.pack_spec), ("--firmware", args.firmware),
                        ("--seed", args.seed), ("-m", args.markers), ("-k", args.keyword),
                        ("--progress-feed", feed), ("--shard", args.shard), ("--plots", args.plots),
                        ("--shard-durations", args.shard_durations)):
        if value is not None:
            cmd += [flag, str(value)]
    workers = args.workers
    if workers == "auto" and not bench.emulated:
        workers = "0"  # one real bench: one test at a time
    if workers != "0" and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", workers]  # each emulated test has its own bench (own emulator, own ports)
    return cmd + list(args.pytest_args)


def _first_contact(bench) -> dict | None:
    from rig.first_contact import first_contact, stop_message, table

    rows, identity = first_contact(bench)
    print(table(rows, bench.file.bench.name), end="", flush=True)
    stop = stop_message(rows, bench.path)
    if stop:
        raise BadInput(stop)
    return identity


def wait_live(child: subprocess.Popen, feed: Path) -> int:
    from rich.console import Console
    from rich.live import Live

    from rig.report.progress import FeedState, render

    state = FeedState(feed)
    with Live(render(state), console=Console(), refresh_per_second=4, transient=True) as live:
        while child.poll() is None:
            time.sleep(0.25)
            state.poll()
            live.update(render(state))
    return child.returncode


def stop_child(child: subprocess.Popen) -> int:
    """After Ctrl-C: the child got SIGINT from the terminal too (same process group); give it time
    to make the bench safe, remind it if it did not hear, and only then insist."""
    for sig, wait_s in ((None, 2.0), (signal.SIGINT, 60.0), (signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if sig is not None and child.poll() is None:
            child.send_signal(sig)
        while True:
            try:
                return child.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                break
            except KeyboardInterrupt:
                continue  # another Ctrl-C: the child is making the bench safe; keep waiting
    return child.wait()


def after_tests(run_dir: Path, spec, args, allure) -> dict[str, Path | None]:
    """The matrix and the HTML report of a run that finished; returns the paths written. Neither
    can undo the run: a failure here is said in one line and the rest is still written."""
    from rig.report.manifest import report_name

    paths: dict[str, Path | None] = {}
    manifest = json.loads((run_dir / run_folder.MANIFEST).read_text(encoding="utf-8"))
    try:
        from rig.report.matrix import write_matrix
        paths["matrix"] = write_matrix(manifest, spec, run_dir)[0]
    except Exception as exc:  # noqa: BLE001 - the run's verdict stands without its matrix
        print(f"packrig run: no traceability matrix: {type(exc).__name__}: {exc}")
    if args.no_html:
        return paths
    if allure is None:
        print("packrig run: no HTML report (the Allure 3 command line is not installed: ./quickstart "
              "installs it with npm into reports/.allure)")
        return paths
    from rig.report.allure_html import render
    index, said = render(run_dir, allure, report_name(manifest))
    if index is None:
        print(f"packrig run: no HTML report: {said}")
    paths["HTML report"] = index
    return paths


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from rig.report.allure_html import allure_cli

    try:
        bench, spec = validate(args)
        identity = None if bench.emulated else _first_contact(bench)
        run_dir, default_layout = _run_dir(args)
    except BadInput as exc:
        print(f"packrig run: {exc}", file=sys.stderr)
        return USAGE
    live = sys.stdout.isatty() and not args.plain and os.environ.get("TERM") != "dumb"
    feed_dir = Path(tempfile.mkdtemp(prefix="packrig-feed-"))
    feed = feed_dir / "progress.jsonl" if live else None
    cmd = pytest_command(args, bench, run_dir, feed)
    env = {**os.environ, "PACKRIG_COMMAND": json.dumps(["packrig", *argv])}
    if identity:
        env["PACKRIG_PACK_IDENTITY"] = json.dumps(identity)
    print(f"packrig run: {run_dir}", flush=True)
    interrupted = False
    output = open(run_dir / "pytest-output.txt", "w", encoding="utf-8") if live else None  # noqa: SIM115
    try:
        child = subprocess.Popen(cmd, cwd=TESTCASES.parent, env=env, stdout=output,
                                 stderr=subprocess.STDOUT if live else None)
        try:
            code = wait_live(child, feed) if live else child.wait()
        except KeyboardInterrupt:
            interrupted = True
            code = stop_child(child)
    finally:
        if output is not None:
            output.close()
        with contextlib.suppress(OSError):
            for f in feed_dir.iterdir():
                f.unlink()
            feed_dir.rmdir()
    if default_layout:
        run_folder.point_latest(run_dir, run_dir.parent.parent)
    if interrupted:
        ensure_incomplete(run_dir, "interrupted (Ctrl-C): bench made safe")
        _print_summary(run_dir, {"recordings": run_dir / run_folder.RECORDINGS})
        print("packrig run: bench made safe, run interrupted", file=sys.stderr)
        return INTERRUPTED
    stopped = None
    if code not in COMPLETE_EXITS:  # a safety trip (2), a crash (3): what ran is still reported
        stopped = ensure_incomplete(run_dir, f"pytest ended with exit code {code}")
        if live:
            _print_tail(run_dir / "pytest-output.txt")
    paths = {}
    try:
        if (run_dir / run_folder.MANIFEST).exists():
            paths = after_tests(run_dir, spec, args, allure_cli(run_folder.REPORTS))
    except KeyboardInterrupt:
        ensure_incomplete(run_dir, "interrupted while writing the reports")
        print("packrig run: run interrupted while writing the reports", file=sys.stderr)
        return INTERRUPTED
    _print_summary(run_dir, {"HTML report": paths.get("HTML report"), "matrix": paths.get("matrix"),
                             "recordings": run_dir / run_folder.RECORDINGS,
                             "manifest": run_dir / run_folder.MANIFEST, "junit": run_dir / run_folder.JUNIT,
                             "pytest output": run_dir / "pytest-output.txt" if live else None})
    if stopped:
        print(f"packrig run: run stopped: {stopped}", file=sys.stderr)
    return code


def ensure_incomplete(run_dir: Path, why: str) -> str:
    """The folder says INCOMPLETE, and so does its manifest, whatever the child managed to write;
    the reason the child gave (a safety trip ...) is kept. Returns the reason in force."""
    path = run_dir / run_folder.MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if manifest is not None:
        if manifest.get("complete") or not manifest.get("incomplete_reason"):
            manifest["complete"] = False
            manifest["incomplete_reason"] = why
            run_folder.write_json(path, manifest)
        why = manifest["incomplete_reason"]
    run_folder.mark_incomplete(run_dir, why)
    return why


def _print_summary(run_dir: Path, paths: dict) -> None:
    from rig.report.summary import summary_text
    try:
        manifest = json.loads((run_dir / run_folder.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"packrig run: no manifest in {run_dir} (the run stopped before its first test)")
        return
    print(summary_text(manifest, {"run folder": run_dir, **paths}), end="", flush=True)


def _print_tail(path: Path, lines: int = 40) -> None:
    with contextlib.suppress(OSError):
        print("".join(path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-lines:]), end="")


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


def install_sigterm() -> None:
    """SIGTERM to ``packrig run`` is handled as Ctrl-C: the child is stopped the same careful way."""
    with contextlib.suppress(ValueError):  # not the main thread: leave the handler as it is
        signal.signal(signal.SIGTERM, _sigterm)
