"""A labgrid lab on one machine for the tests: a coordinator on 127.0.0.1 (an OS-picked port) and
places served by ``packrig export --labgrid BENCH --serve``, each an emulated bench (issue 18).
Used by tests/test_lab_places.py and tests/test_lab_mutate.py.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "rig" / "benches"


def wait_for(what: str, check, timeout_s: float, poll_s: float = 0.2, explain=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}" + (f"\n{explain()}" if explain else ""))


def text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def one_pack_bench(folder: Path, source: str = "emulated-wall.toml") -> Path:
    """``source`` (emulated-wall.toml) with one pack (a place's pack persists between holders, as a real one)
    and the watchdogs at 5 s, the envelope's longest (as emulated-subprocess.toml): a 1-s PSU
    watchdog armed at the bench's start can latch on a loaded machine before the supervisor's first
    sample feeds it, and then refuses the test's first OUTP ON."""
    data = tomllib.loads((BENCHES / source).read_text(encoding="utf-8"))
    data["emulator"]["packs"] = 1
    data["features"]["parallel_packs"] = 1
    for name in ("psu", "eload", "io"):
        data["instruments"][name]["watchdog_s"] = 5.0
    data["bench"]["pack_spec"] = str((BENCHES / data["bench"]["pack_spec"]).resolve())
    data["emulator"]["firmware"] = str((BENCHES / data["emulator"]["firmware"]).resolve())
    data["recording"]["directory"] = str(folder / "recordings")
    path = folder / f"one-pack-{Path(source).stem}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


class Lab:
    """The coordinator and the served places; stopped at the end of the module."""

    def __init__(self, folder: Path):
        self.folder, self.procs, self.places = folder, [], {}
        log = folder / "coordinator.log"
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "labgrid.remote.coordinator", "-l", "127.0.0.1:0"], cwd=folder,
            stdout=open(log, "w"), stderr=subprocess.STDOUT))  # noqa: SIM115 - closed with the process
        line = wait_for("the coordinator's port", lambda: next(
            (x for x in text(log).splitlines() if x.startswith("listening on ")), None), 30)
        self.address = line.split()[-1]

    def serve(self, bench: Path, place: str, tag: str = "lab=test") -> None:
        log = self.folder / f"{place}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "rig.cli", "export", "--labgrid", str(bench), "--place", place,
             "--tag", tag, "--serve", self.address, "--out", str(self.folder / f"{place}-exporter.yaml")],
            cwd=ROOT, stdout=open(log, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT)
        self.procs.append(proc)

        def served():
            assert proc.poll() is None, f"packrig export --serve stopped: {text(log)}"
            return next((x.split()[2].rstrip(",") for x in text(log).splitlines() if "exporter file" in x), None)
        config = wait_for(f"place {place} served", served, 60)
        import yaml
        self.places[place] = {"log": log, "config": Path(config),
                              "params": yaml.safe_load(Path(config).read_text())[place]["PackrigBench"]}

    def exporter_log(self, place: str) -> str:
        return text(self.places[place]["config"].with_suffix(".log"))

    def stop(self) -> None:
        for proc in reversed(self.procs):  # exporters first (their emulators go safe), the coordinator last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_resources(address: str, count: int) -> None:
    """Until ``count`` PackrigBench resources are published at the coordinator."""
    from rig.lab.labgrid_backend import LabgridBackend
    client = LabgridBackend(address)
    try:
        wait_for(f"{count} bench resources", lambda: client._look(lambda: sum(
            1 for exporter in client.session.resources.values() for group in exporter.values()
            for r in group.values() if r.cls == "PackrigBench" and r.avail) == count), 30)
    finally:
        client.close()


def place_acquired(address: str, place: str) -> str | None:
    """Who holds ``place`` (``host/user``), or None."""
    from rig.lab.labgrid_backend import LabgridBackend
    client = LabgridBackend(address)
    try:
        return client._look(lambda: client.session.places[place].acquired)
    finally:
        client.close()
