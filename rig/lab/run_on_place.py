"""``packrig run --lab HOST:PORT --want TAG=VALUE...``: the run on a place of a shared lab.

1. The lab arguments and the run's own (``-m``, ``-k``, ``--workers`` ...) are checked before
   anything is asked of the coordinator: bad input is one line, exit code 4.
2. A place whose tags include every ``--want`` is reserved and acquired (:class:`LabBackend`),
   waiting with one progress line (which places match, who holds them) up to ``--lab-timeout``;
   none in time: one line, exit code 4. Ctrl-C while waiting cancels the reservation (exit 2).
3. The bench is built from the place's resource (:func:`~rig.lab.place_bench.write_place_bench`:
   its bench file in lab form, this machine's pack spec), and ``packrig run`` goes on as on any
   bench: first contact, the test cases, the reports. The manifest records the place
   (``lab_place``: coordinator, place, holder, reservation, tags, the wait).
4. The place is released on every way out: a finished run, a failure, Ctrl-C, SIGTERM, an error
   of packrig itself; a guard process (:mod:`rig.lab.guard`) releases it if this process dies.
   While the run goes, the place is watched: released under the run (``labgrid-client release
   --kick``), the run is stopped the Ctrl-C way (bench made safe, exit code 2).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rig.errors import ConfigError
from rig.lab.backend import LabBackend, LabError, Lease, parse_address, parse_wants

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PACK_SPEC = ROOT / "testcases" / "pack_spec.toml"
USAGE, INTERRUPTED = 4, 2
#: s between two looks at whether the place is still ours
WATCH_S = 1.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("lab (a labgrid coordinator's places; needs packrig[lab])")
    g.add_argument("--lab", metavar="HOST:PORT", help="run on a place of this labgrid coordinator")
    g.add_argument("--want", action="append", default=[], metavar="TAG=VALUE",
                   help="a tag the place must have (repeatable), e.g. packs=2 chamber=yes")
    g.add_argument("--lab-timeout", type=float, default=600.0, metavar="S",
                   help="wait at most this long for a matching place (default 600 s)")


def run_on_lab(args: argparse.Namespace, argv: list[str], run, backend_factory=None) -> int:
    """Reserve, run with ``run(args, argv)``, release; returns the run's exit code.

    :param backend_factory: ``address -> LabBackend`` (default: labgrid's).
    """
    try:
        if not args.lab:
            raise ValueError("--want needs --lab HOST:PORT (the coordinator)")
        address = parse_address(args.lab)
        want = parse_wants(args.want)
        _precheck(args, argv)
    except ValueError as exc:
        return _usage(str(exc))
    try:
        backend: LabBackend = (backend_factory or _labgrid)(address)
    except LabError as exc:
        return _usage(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="packrig-lab-"))
    lease = guard = None
    try:
        progress = _Progress()
        try:
            lease = backend.reserve(want, args.lab_timeout, progress)
        except LabError as exc:
            progress.done()
            return _usage(str(exc))
        except KeyboardInterrupt:
            progress.done()
            print("packrig run: interrupted while waiting for a place (reservation cancelled)", file=sys.stderr)
            return INTERRUPTED
        progress.done()
        guard = _start_guard(lease, folder)
        return _run_holding(backend, lease, args, argv, run, folder)
    finally:
        # the guard goes only once the place is back: a release that failed, or a second Ctrl-C
        # during it, leaves the guard to release the place when this process has ended
        if lease is not None and _release(backend, lease) and guard is not None:
            _stop_guard(guard)
        backend.close()
        shutil.rmtree(folder, ignore_errors=True)


def _run_holding(backend, lease: Lease, args, argv, run, folder: Path) -> int:
    from rig.lab.place_bench import write_place_bench

    try:
        try:
            params = backend.endpoints(lease)
            bench = write_place_bench(params, folder, Path(args.pack_spec or DEFAULT_PACK_SPEC))
        except (LabError, ConfigError) as exc:
            return _usage(f"place {lease.place}: {exc}")
        args.bench = str(bench)
        os.environ["PACKRIG_LAB_PLACE"] = json.dumps({**lease.as_dict(), "bench": params.get("bench"),
                                                      "kind": params.get("kind")})
        tags = " ".join(f"{k}={v}" for k, v in sorted(lease.tags.items()))
        print(f"packrig run: place {lease.place} ({tags}) held by {lease.owner} after {lease.waited_s:.0f} s; "
              f"bench {params.get('bench')!r} ({params.get('kind')})", flush=True)
        watcher = _Watch(backend, lease)
        try:
            return run(args, argv)
        finally:
            watcher.stop()
    finally:
        os.environ.pop("PACKRIG_LAB_PLACE", None)


def _precheck(args, argv: list[str]) -> None:
    """What would stop the run later, said before a place is taken."""
    if any(a == "--bench" or a.startswith("--bench=") for a in argv):
        raise ValueError("--bench and --lab: the place gives the bench; choose it with --want")
    if args.firmware or args.seed is not None:
        raise ValueError("--firmware and --seed apply to an emulated bench in this process; a lab place's "
                         "bench is driven over its addresses (its emulator, if any, runs at the place)")
    if args.lab_timeout <= 0:
        raise ValueError(f"--lab-timeout must be more than 0 s, got {args.lab_timeout:g}")
    for flag, text in (("-m", args.markers), ("-k", args.keyword)):
        if text:
            try:
                from _pytest.mark.expression import Expression
                Expression.compile(text)
            except ImportError:
                pass
            except SyntaxError as exc:
                raise ValueError(f"bad {flag} expression {text!r}: {exc.msg} (column {exc.offset})") from None
    if args.workers != "auto" and not args.workers.isdigit():
        raise ValueError(f"--workers must be 'auto' or a number of workers (0: none), got {args.workers!r}")


def _labgrid(address: str) -> LabBackend:
    from rig.lab.labgrid_backend import LabgridBackend
    return LabgridBackend(address)


def _release(backend: LabBackend, lease: Lease, who: str = "packrig run") -> bool:
    """Give the place back; returns whether that worked (if not, the guard will, after us)."""
    try:
        backend.release(lease)
    except LabError as exc:
        print(f"{who}: place {lease.place} NOT released ({exc}); its guard will retry when this process "
              f"ends, or: labgrid-client -x {lease.address} -p {lease.place} release", file=sys.stderr)
        return False
    print(f"{who}: place {lease.place} released", flush=True)
    return True


def _start_guard(lease: Lease, folder: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rig.lab.guard", "--owner-pid", str(os.getpid()), "--lab", lease.address,
           "--place", lease.place, "--holder", lease.owner, "--token", lease.token, "--folder", str(folder)]
    return subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)


def _stop_guard(guard: subprocess.Popen) -> None:
    if guard.poll() is None:
        guard.terminate()
    try:
        guard.wait(10.0)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


class _Watch:
    """Stops the run the Ctrl-C way when the place is no longer ours (module docstring)."""

    def __init__(self, backend: LabBackend, lease: Lease):
        self.backend, self.lease = backend, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-place-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WATCH_S):
            try:
                held = self.backend.held(self.lease)
            except NotImplementedError:
                return  # this engine cannot tell: the instruments' watchdogs and the exporter act alone
            except LabError:
                continue  # the coordinator out of reach for a moment is not a release
            if not held:
                print(f"packrig run: place {self.lease.place} was released under this run: stopping it "
                      "(bench made safe)", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGINT)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


class _Progress:
    """One progress line while waiting: rewritten in place in a terminal, every 10 s elsewhere."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.shown = False

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        if self.tty:
            print(f"\r\033[Kpackrig run: {text}", end="", file=sys.stderr, flush=True)
            self.shown = True
        elif now - self.last >= 10.0:
            print(f"packrig run: {text}", file=sys.stderr, flush=True)
            self.last = now


    def done(self) -> None:
        """End the rewritten line (terminal only)."""
        if self.shown:
            print(file=sys.stderr, flush=True)
            self.shown = False


def _usage(message: str) -> int:
    print(f"packrig run: {message}", file=sys.stderr)
    return USAGE
