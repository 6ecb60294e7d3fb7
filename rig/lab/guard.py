"""The guard of a run on a lab place: the place is released even when the run's process dies.

An acquired labgrid place has no lifetime: a holder that vanished (SIGKILL, a crash, a machine
that lost power) keeps it until someone runs ``labgrid-client release --kick``. ``packrig run
--lab`` therefore starts this small process beside itself (in a session of its own, so a Ctrl-C
at the terminal does not reach it). It watches the run's process and remembers its children; when
the run's process is gone, it

1. asks each child the run left behind (the pytest process driving the bench) to stop, as Ctrl-C
   does (SIGINT: the rig makes the bench safe), then insists (SIGTERM, SIGKILL), so nothing
   drives the bench once it is given back;
2. releases the place, only if the same holder still has it, and drops the reservation;
3. removes the run's lab folder (the place's bench file written for the run).

The exporter then makes the bench safe once more (:mod:`rig.lab.exporter`). A run that ends
normally releases the place itself and stops its guard with SIGTERM. Linux: children are found in
``/proc``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

#: s between two looks at the run's process
LOOK_S = 0.2
#: how long each child is given after SIGINT, SIGTERM (the safe state takes a moment)
STOP_STEPS = ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))


def children_of(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (from ``/proc/*/stat``)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie is gone for our purpose
        text = stat.read_text()
        return text[text.rfind(")") + 2:].split()[0] != "Z"
    except OSError:
        return False


def stop_left_behind(pids: set[int]) -> None:
    """Stop each process the run left behind, gently first (module docstring)."""
    for sig, wait_s in STOP_STEPS:
        living = [p for p in pids if alive(p)]
        if not living:
            return
        for pid in living:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(alive(p) for p in living):
            time.sleep(0.1)


def is_guard(pid: int) -> bool:
    """Whether ``pid`` is a guard (``packrig mutate --lab`` starts one per place it holds)."""
    try:
        return b"rig.lab.guard" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def watch(owner_pid: int) -> set[int]:
    """Until the run's process is gone; returns the children it had last, other guards of the
    same run left out (each releases its own place)."""
    kids: set[int] = set()
    guards: set[int] = {os.getpid()}
    while alive(owner_pid):
        new = children_of(owner_pid) - kids - guards
        guards |= {pid for pid in new if is_guard(pid)}
        kids |= new - guards
        time.sleep(LOOK_S)
    return kids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rig.lab.guard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--owner-pid", type=int, required=True, help="the run's process")
    p.add_argument("--lab", required=True, help="coordinator HOST:PORT")
    p.add_argument("--place", required=True)
    p.add_argument("--holder", required=True, help="the holder as the coordinator names it (host/user)")
    p.add_argument("--token", default="", help="the reservation to drop")
    p.add_argument("--folder", help="the run's lab folder, removed at the end")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the run's end or SIGTERM ends the guard
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    left = watch(args.owner_pid)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # now finish the job
    stop_left_behind(left)
    from rig.lab.backend import Lease
    from rig.lab.labgrid_backend import LabgridBackend

    backend = LabgridBackend(args.lab)
    try:
        backend.release(Lease("labgrid", args.lab, args.place, args.holder, args.token))
    finally:
        backend.close()
        if args.folder:
            shutil.rmtree(args.folder, ignore_errors=True)
    print(f"packrig lab guard: run {args.owner_pid} is gone; place {args.place} released", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
