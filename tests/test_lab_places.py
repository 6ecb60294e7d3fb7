"""A lab on one machine: a labgrid coordinator, two exporters each serving an emulated bench, and
``packrig run --lab`` runs sharing them (issue 18).

The coordinator (``labgrid-coordinator``) listens on 127.0.0.1 on a port the OS picks; each place
is ``packrig export --labgrid BENCH --serve`` (its emulator in wall-clock time, labgrid's exporter
with the packrig bench resource). The module's tests run in order on the same lab:

1. two runs at once with the same tags both finish, on different places, and a third waits until
   one of them is released (first contact and the preflight checks: the places' packs stay
   untouched for the next tests);
2. a place released under a running test (``labgrid-client release --kick``) leaves the emulated
   bench's outputs off, and the run stops the Ctrl-C way (exit code 2);
3. a run killed with SIGKILL leaves nothing driving the bench: its guard stops the pytest child it
   left, releases the place, and the outputs read off.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("labgrid", reason="labgrid is not installed (the optional extra packrig[lab]; CI installs it)")

from lab_harness import ROOT, Lab, one_pack_bench, place_acquired, text, wait_for, wait_for_resources  # noqa: E402

TAGS = ["--want", "lab=test", "--want", "pack=6.5kWh-16S"]
CHARGE_TEST = "test_standard_charge_current_runs_without_alarm"  # PSU on at 64 A for a few minutes


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    lab = Lab(folder)
    try:
        bench = one_pack_bench(folder)
        for place in ("place-a", "place-b"):
            lab.serve(bench, place)
        wait_for_resources(lab.address, 2)  # both exporters have published their bench resource
        yield lab
    finally:
        lab.stop()


def _run(lab: Lab, name: str, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    out, log = lab.folder / name, lab.folder / f"{name}.out"
    cmd = [sys.executable, "-m", "rig.cli", "run", "--lab", lab.address, *TAGS, "--plain", "--no-html",
           "--plots", "none", "--reports", str(out), "--lab-timeout", "120", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT), out, log  # noqa: SIM115


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def _scpi(resource: str, query: str) -> str:
    import pyvisa
    rm = pyvisa.ResourceManager("@py")
    try:
        inst = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=10000)
        try:
            return inst.query(query).strip()
        finally:
            inst.close()
    finally:
        rm.close()


def _outputs(lab: Lab, place: str) -> tuple[str, str]:
    params = lab.places[place]["params"]
    return _scpi(params["psu"], "OUTP?"), _scpi(params["eload"], "INP?")


def _place_acquired(lab: Lab, place: str) -> str | None:
    return place_acquired(lab.address, place)


def test_two_runs_share_the_lab_and_a_third_waits_for_a_released_place(lab):
    """Three runs with the same tags started together on a lab of two places: two hold a place
    each at once, the third waits (its progress line naming both holders) and gets the place of
    the first to finish, after that run had released it."""
    from rig.lab.labgrid_backend import LabgridBackend

    watcher = LabgridBackend(lab.address)  # the coordinator's own view: who holds which place, when
    held_together = []
    try:
        runs = [_run(lab, f"run-{n}", "-m", "preflight") for n in "abc"]
        while any(proc.poll() is None for proc, _, _ in runs):
            holders = watcher._look(lambda: {n: p.acquired for n, p in watcher.session.places.items()})
            if all(holders.get(n) for n in ("place-a", "place-b")):
                held_together.append(holders)
            time.sleep(0.1)
    finally:
        watcher.close()
    codes = [proc.wait(180) for proc, _, _ in runs]
    assert codes == [0, 0, 0], "\n".join(text(log)[-2000:] for _, _, log in runs)
    manifests = [_manifest(out) for _, out, _ in runs]
    waited = [i for i, (_, _, log) in enumerate(runs) if "waiting for a place" in text(log)]
    assert len(waited) == 1, [m["lab_place"] for m in manifests]
    third = manifests[waited[0]]
    first, second = (m for i, m in enumerate(manifests) if i != waited[0])
    # the two ran at once, on different places
    assert {first["lab_place"]["place"], second["lab_place"]["place"]} == {"place-a", "place-b"}
    assert held_together, "the two places were never held at the same time"
    # the third waited while both were held, then ran where one of them had finished
    line = next(x for x in text(runs[waited[0]][2]).splitlines() if "waiting for a place" in x)
    assert "waiting for a place with lab=test pack=6.5kWh-16S: 2 matching, place-a " in line, line
    assert "place-b " in line and line.count(" held by ") + line.count(" reserved") == 2, line
    before = first if third["lab_place"]["place"] == first["lab_place"]["place"] else second
    assert third["lab_place"]["waited_s"] > 0
    assert third["wall_start"] >= before["wall_end"], "the third run started before its place was released"
    for m in manifests:
        assert m["lab_place"]["tags"]["lab"] == "test" and m["lab_place"]["engine"] == "labgrid"
        assert m["lab_place"]["kind"] == "emulated" and m["counts"]["passed"] > 0 and m["counts"]["failed"] == 0
    for _, _, log in runs:
        assert "first contact with bench" in text(log) and text(log).splitlines()[-1].endswith(" released")
    assert _place_acquired(lab, "place-a") is None and _place_acquired(lab, "place-b") is None


def test_a_place_released_mid_test_leaves_the_bench_outputs_off(lab):
    run, run_dir, log = _run(lab, "run-kicked", "--want", "name=place-a", "-k", CHARGE_TEST)
    wait_for("the PSU charging", lambda: _outputs(lab, "place-a")[0] == "1" or run.poll() is not None, 90, 0.5)
    assert run.poll() is None, text(log)[-3000:]
    kick = subprocess.run([str(Path(sys.executable).parent / "labgrid-client"), "-x", lab.address, "-p", "place-a",
                           "release", "--kick"], env={**os.environ, "LG_USERNAME": "another-engineer"},
                          capture_output=True, text=True, timeout=30)
    assert kick.returncode == 0, kick.stdout + kick.stderr
    # the coordinator answers the release once the exporter has: the exporter made the bench safe
    # by then, before the client (still running its test, and holding its instruments) knows
    assert _outputs(lab, "place-a") == ("0", "0"), lab.exporter_log("place-a")[-3000:]
    assert run.poll() is None, text(log)[-3000:]
    assert run.wait(90) == 2, text(log)[-3000:]
    assert "place place-a was released under this run: stopping it" in text(log)
    assert "bench made safe, run interrupted" in text(log)
    assert _outputs(lab, "place-a") == ("0", "0")
    assert "place released; safe state: psu: output off" in lab.exporter_log("place-a")
    manifest = _manifest(run_dir)
    assert manifest["complete"] is False and manifest["lab_place"]["place"] == "place-a"
    assert (run_dir / "INCOMPLETE").exists()


def test_a_killed_run_is_released_by_its_guard_and_nothing_drives_the_bench(lab):
    from rig.lab.guard import alive, children_of

    run, run_dir, log = _run(lab, "run-killed", "--want", "name=place-b", "-k", CHARGE_TEST)
    wait_for("the PSU charging", lambda: _outputs(lab, "place-b")[0] == "1" or run.poll() is not None, 90, 0.5)
    assert run.poll() is None, text(log)[-3000:]
    left = children_of(run.pid)  # the pytest child driving the bench, and the guard
    assert _place_acquired(lab, "place-b")
    run.send_signal(signal.SIGKILL)
    run.wait()
    wait_for("the place released by the guard", lambda: _place_acquired(lab, "place-b") is None, 60, 0.5,
              lambda: text(log)[-3000:])
    wait_for("every process of the run gone", lambda: not any(alive(p) for p in left), 30, 0.2,
              lambda: f"{left}: {[p for p in left if alive(p)]} alive\n{text(log)[-3000:]}")
    assert _outputs(lab, "place-b") == ("0", "0"), lab.exporter_log("place-b")[-3000:]
    bench_file = Path(_manifest(run_dir)["bench"]["path"])  # the place's bench, written for the run
    assert bench_file.name == "place-bench.toml" and not bench_file.parent.exists(), "lab folder left behind"
    assert "place released; safe state: psu: output off" in lab.exporter_log("place-b")
