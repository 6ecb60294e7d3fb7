"""``packrig export --labgrid BENCH.toml``: a bench as a labgrid place.

Without ``--serve`` it writes the bench PC's exporter file (``--out``, default stdout) and prints
the ``labgrid-client`` commands that create its place with its tags; a real bench file only, whose
addresses another machine can reach (LAN instruments, socketcand, ser2net).

With ``--serve HOST:PORT`` it serves the place at that coordinator until Ctrl-C or SIGTERM: for an
emulated bench it first starts the emulator (``packrig emulate --clock wall``: a place is shared in
real time) and its emulator launcher (:mod:`rig.lab.emulator_launcher`: emulators with the holder's
firmware in the holder's virtual time, for ``packrig mutate --lab``) and publishes their endpoints;
it creates or updates the place (match, tags), writes the
exporter file and runs the exporter (:mod:`rig.lab.exporter`: the bench is made safe whenever the
place is released). An exporter that lost its coordinator is restarted, as labgrid's own service
files do (its exit code 100). On the way out the exporter stops, then the emulator, which makes its
bench safe and says so.

Exit codes: 0 written or stopped as asked; 3 the exporter or emulator died; 4 a bad bench file or
argument, or no coordinator there, in one line.
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
import time
from pathlib import Path

from rig.errors import ConfigError
from rig.lab import exporter_config
from rig.lab.backend import LabError, parse_address, parse_wants
from rig.lab.place_bench import bench_resource, place_tags

ROOT = Path(__file__).resolve().parents[2]
#: the exporter's exit code asking to be started again (coordinator unavailable)
REEXEC = 100
#: s for an emulator to write its endpoints
EMULATOR_READY_S = 60.0
#: the address the exporter and the launcher give (an emulator's ports listen on 127.0.0.1 only)
EXPORTER_HOST = "127.0.0.1"


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="a bench as a labgrid place: its exporter file, or --serve it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labgrid", metavar="BENCH.toml", required=True, help="the bench file to export")
    p.add_argument("--place", help="the place's name (default: the bench's name)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG=VALUE",
                   help="a tag more (e.g. site=lab2); the bench's own come from its features and pack spec")
    p.add_argument("--out", help="write the exporter file here (default: stdout; with --serve: a temporary "
                                 "folder, removed when serving ends; its log is written beside it)")
    p.add_argument("--serve", metavar="HOST:PORT", help="serve the place at this coordinator until stopped")
    p.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    from rig.files.bench_file import load_bench

    try:
        loaded = load_bench(args.labgrid)
        extra = parse_wants(args.tag)
        address = parse_address(args.serve) if args.serve else None
    except (ConfigError, ValueError) as exc:
        return _usage(str(exc).replace("--want", "--tag"))
    place = args.place or loaded.file.bench.name
    tags = place_tags(loaded, extra)
    if address is None:
        try:
            text = exporter_config.exporter_yaml(place, bench_resource(loaded), tags)
        except ConfigError as exc:
            return _usage(str(exc))
        if args.out:
            print(f"packrig export: {exporter_config.write(Path(args.out), text)}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        print("create the place once (packrig export --serve does it itself):\n"
              + exporter_config.place_commands(place, place, tags), file=sys.stderr, end="")
        return 0
    return serve(loaded, place, tags, address, Path(args.out) if args.out else None)


def serve(loaded, place: str, tags: dict[str, str], address: str, out: Path | None) -> int:
    """Serve one place until Ctrl-C / SIGTERM (module docstring); returns the exit code."""
    from rig.lab.labgrid_backend import LabgridBackend

    folder = Path(tempfile.mkdtemp(prefix=f"packrig-place-{place}-"))
    emulator = launcher = None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        backend = LabgridBackend(address)  # the coordinator first: nothing is started for nobody
        try:
            endpoints = None
            if loaded.emulated:
                emulator, endpoints = _start_emulator(loaded, folder)
                from rig.lab.emulator_launcher import EmulatorLauncher
                launcher = EmulatorLauncher(loaded.path, EXPORTER_HOST, say=_say_launcher).start()
            params = bench_resource(loaded, endpoints, launcher.address if launcher else None)
            config = exporter_config.write(out or folder / "exporter.yaml",
                                           exporter_config.exporter_yaml(place, params, tags))
            backend.ensure_place(place, exporter_config.place_match(place, place), tags,
                                 comment=f"packrig bench {params['bench']} ({params['kind']})")
        finally:
            backend.close()
        log = config.with_name(f"{config.stem}.log")  # beside --out, kept; else in the folder removed at the end
        print(f"packrig export: place {place} at {address}: {' '.join(f'{k}={v}' for k, v in tags.items())}\n"
              f"  exporter file {config}, log {log}", flush=True)
        return _run_exporter(address, place, config, log, emulator)
    except (ConfigError, LabError) as exc:
        return _usage(str(exc))
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if launcher is not None:  # the holders' emulators first: each goes to its safe state
            launcher.close()
        if emulator is not None:
            _stop(emulator, signal.SIGTERM, 10.0)
            said = _read_json(folder / "emulator-exit.json")
            print(f"packrig export: emulator stopped; safe state: {said.get('safe_state', 'not reported')}",
                  flush=True)
        shutil.rmtree(folder, ignore_errors=True)


def _start_emulator(loaded, folder: Path):
    """``packrig emulate`` for the place, owned by this process; returns it and its endpoints."""
    ready = folder / "emulator.json"
    cmd = [sys.executable, "-m", "rig.cli", "emulate", "--bench", str(loaded.path), "--clock", "wall",
           "--endpoints-file", str(ready), "--exit-file", str(folder / "emulator-exit.json"),
           "--owner-pid", str(os.getpid()), "--quiet"]
    child = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + EMULATOR_READY_S
    while not ready.exists():
        if child.poll() is not None:
            raise LabError(f"the emulator of {loaded.path} stopped before it was ready (exit code {child.returncode})")
        if time.monotonic() > deadline:
            _stop(child, signal.SIGTERM, 5.0)
            raise LabError(f"the emulator of {loaded.path} was not ready in {EMULATOR_READY_S:g} s")
        time.sleep(0.05)
    return child, json.loads(ready.read_text(encoding="utf-8"))


def _run_exporter(address: str, place: str, config: Path, log: Path, emulator) -> int:
    """The exporter until we are stopped; restarted when it asks to be (lost coordinator)."""
    cmd = [sys.executable, "-m", "rig.lab.exporter", "-c", address, "-n", place, "--hostname", EXPORTER_HOST,
           str(config)]
    with open(log, "a", encoding="utf-8") as out:
        while True:
            child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                while child.poll() is None:
                    if emulator is not None and emulator.poll() is not None:
                        print(f"packrig export: the emulator died (exit code {emulator.returncode}); "
                              "stopping the exporter", file=sys.stderr, flush=True)
                        _stop(child, signal.SIGINT, 10.0)
                        return 3
                    time.sleep(0.2)
            except KeyboardInterrupt:
                _stop(child, signal.SIGINT, 10.0)
                raise
            if child.returncode != REEXEC:
                print(f"packrig export: the exporter stopped (exit code {child.returncode}); see {log}",
                      file=sys.stderr, flush=True)
                return 3
            time.sleep(1.0)  # the coordinator went away: try again, as labgrid's service files do


def _stop(child: subprocess.Popen, sig: int, wait_s: float) -> None:
    if child.poll() is None:
        child.send_signal(sig)
    try:
        child.wait(wait_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _say_launcher(line: str) -> None:
    print(f"packrig export: launcher: {line}", flush=True)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


def _usage(message: str) -> int:
    print(f"packrig export: {message}", file=sys.stderr)
    return 4
