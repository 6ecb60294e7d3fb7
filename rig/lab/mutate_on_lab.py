"""``packrig mutate --lab HOST:PORT --want TAG=VALUE...``: mutants spread over a lab's free places.

A mutant is a firmware profile for the emulator, run in the rig's virtual time with fault
insertion; an emulated place launches such emulators for its holder (its emulator launcher,
:mod:`rig.lab.emulator_launcher`). So ``packrig mutate --lab``

1. checks its arguments before asking the coordinator anything (one line, exit code 4);
2. reserves one matching place, waiting up to ``--lab-timeout`` as ``packrig run --lab`` does,
   then as many more as are free at once, up to ``--workers`` (a place another holder has is
   not waited for: the mutants go on the places there are);
3. writes a bench file for each place (:func:`~rig.lab.place_bench.write_launcher_bench`: the
   place's emulated bench, its emulators started by its launcher with each mutant's profile) and
   runs the baseline and the mutants with one worker per place, each run on a place of its own;
   a place released under the run (``labgrid-client release --kick``) takes no more runs (the
   one under way ends; it drives only its own launched emulator), and when none is left the run
   stops with exit code 2;
4. releases every place on every way out (the end, a failure, Ctrl-C, an error of packrig), and
   a guard process per place (:mod:`rig.lab.guard`) releases it if this process dies.

A launched emulator stops when its holder closes its connections, whatever the holder's fate, so
a place's launcher is idle again when its mutation run ends or dies.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from rig.errors import ConfigError
from rig.lab.backend import LabError, LabTimeout, Lease, parse_address, parse_wants
from rig.lab.run_on_place import (DEFAULT_PACK_SPEC, INTERRUPTED, _labgrid, _Progress, _release, _start_guard,
                                  _stop_guard)
from rig.mutate.runner import NoBenchLeft

USAGE = 4
#: s to wait for each place beyond the first: only those free now
MORE_PLACES_WAIT_S = 0.0

#: ``run(benches, places, usable)`` -> exit code: the mutation run on these benches ({place: bench
#: file}), ``places`` the leases as the mutation report records them, ``usable(place)`` whether a
#: place is still ours
Run = Callable[[dict[str, Path], list[dict], Callable[[str], bool]], int]


def check_arguments(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The coordinator's address and the wanted tags; :raises ValueError: one line."""
    if not args.lab:
        raise ValueError("--want needs --lab HOST:PORT (the coordinator)")
    address = parse_address(args.lab)
    want = parse_wants(args.want)
    if args.bench:
        raise ValueError("--bench and --lab: the places give the bench; choose them with --want")
    if args.lab_timeout <= 0:
        raise ValueError(f"--lab-timeout must be more than 0 s, got {args.lab_timeout:g}")
    if args.workers < 1:
        raise ValueError(f"--workers must be 1 or more (places held at most), got {args.workers}")
    return address, want


def mutate_on_lab(args: argparse.Namespace, run: Run, backend_factory=None) -> int:
    """Hold places, ``run`` the mutants on them, release them; returns the exit code."""
    try:
        address, want = check_arguments(args)
    except ValueError as exc:
        return _usage(str(exc))
    try:
        backend = (backend_factory or _labgrid)(address)
    except LabError as exc:
        return _usage(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="packrig-lab-mutate-"))
    held: list[tuple[Lease, object]] = []  # each place and its guard
    try:
        progress = _Progress()
        try:
            lease = backend.reserve(want, args.lab_timeout, progress)
            held.append((lease, _start_guard(lease, folder)))
            while len(held) < args.workers:
                lease = backend.reserve(want, MORE_PLACES_WAIT_S)
                held.append((lease, _start_guard(lease, folder)))
        except LabTimeout:
            if not held:
                progress.done()
                raise
        finally:
            progress.done()
        benches = {}
        for lease, _ in held:
            params = backend.endpoints(lease)
            benches[lease.place] = _bench(params, folder / lease.place, args)
            print(f"packrig mutate: place {lease.place} held by {lease.owner} after {lease.waited_s:.0f} s; "
                  f"its emulators launched at {params['emulator_launcher']}", flush=True)
        leases = {lease.place: lease for lease, _ in held}
        return run(benches, [lease.as_dict() for lease, _ in held], lambda place: _ours(backend, leases[place]))
    except (LabError, ConfigError) as exc:
        return _usage(str(exc))
    except NoBenchLeft as exc:
        print(f"packrig mutate: every place was released under this run: stopped ({exc})", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:
        print("packrig mutate: interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        for lease, guard in held:  # a guard goes once its place is back (else it releases it after us)
            if _release(backend, lease, "packrig mutate"):
                _stop_guard(guard)
        backend.close()
        shutil.rmtree(folder, ignore_errors=True)


def _ours(backend, lease: Lease) -> bool:
    """Whether the place is still held by this run (an engine that cannot tell, or a coordinator
    out of reach for a moment: yes)."""
    try:
        return backend.held(lease)
    except (NotImplementedError, LabError):
        return True


def _bench(params: dict, folder: Path, args: argparse.Namespace) -> Path:
    from rig.lab.place_bench import write_launcher_bench

    try:
        return write_launcher_bench(params, folder, Path(args.pack_spec or DEFAULT_PACK_SPEC), Path(args.base))
    except ConfigError as exc:
        raise LabError(f"place {folder.name}: {exc}") from None


def _usage(message: str) -> int:
    print(f"packrig mutate: {message}", file=sys.stderr)
    return USAGE
