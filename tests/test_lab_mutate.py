"""``packrig mutate --lab``: mutants spread over a lab's free emulated places (issue 18).

An emulated place serves an emulator launcher beside its own emulator: each test's emulator is
started by the place with the holder's firmware profile, in the holder's virtual time
(:mod:`rig.lab.emulator_launcher`, :mod:`rig.lab.launched_emulator`). The first tests use a
launcher on its own (no coordinator); the last runs ``packrig mutate --lab`` on a coordinator with
two served places, as a CI farm would.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lab_harness import ROOT, Lab, one_pack_bench, place_acquired, text, wait_for, wait_for_resources
from emulator.firmware.profile import CONFORMING_PROFILE
from rig.lab.emulator_launcher import EmulatorLauncher
from rig.lab.place_bench import write_launcher_bench

PACK_SPEC = ROOT / "testcases" / "pack_spec.toml"
#: the cell over-voltage trip tests of L1, L2 and L3: 3 tests, a few virtual seconds each
COV_TRIPS = "test_holds_short_of_the_threshold_then_trips_in_time and cell_over_voltage"


@pytest.fixture
def launcher(tmp_path):
    bench = one_pack_bench(tmp_path, "emulated-subprocess.toml")
    server = EmulatorLauncher(bench).start()
    try:
        yield server
    finally:
        server.close()


def _ask(address: str, request: dict | bytes) -> tuple[socket.socket, dict]:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n")
    return sock, json.loads(sock.makefile("rb").readline())


def _alive(pid: int) -> bool:
    from rig.lab.guard import alive
    return alive(pid)


def test_a_launcher_refuses_a_bad_request_in_one_line(launcher):
    firmware = CONFORMING_PROFILE.read_text(encoding="utf-8")
    for request, said in ((b"not json\n", "Expecting value"), (b"[1]\n", "a launch request is a JSON object"),
                          ({"op": "shutdown"}, "unknown op 'shutdown'"),
                          ({"op": "launch"}, "'firmware': the firmware profile's TOML text is missing"),
                          ({"op": "launch", "firmware": firmware, "seed": "7"}, "'seed' must be a number"),
                          ({"op": "launch", "firmware": firmware, "packs": 1.5}, "'packs' must be a number (whole)"),
                          ({"op": "launch", "firmware": firmware, "clock": "sundial"}, "'clock' must be"),
                          ({"op": "launch", "firmware": "[meta]\nname = 3\n"}, "packrig emulate stopped before it served")):
        sock, reply = _ask(launcher.address, request)
        sock.close()
        assert reply["ok"] is False and said in reply["error"], (request, reply)
        assert "\n" not in reply["error"]
    wait_for("no emulator left", lambda: not launcher.children, 10)


def test_a_launched_emulator_lives_as_long_as_its_holder_lets_it(launcher, tmp_path):
    """Closing the launch connection stops the emulator (a holder that died closes it too); a
    shutdown over the control port ends it, and the launcher says it reached its safe state."""
    request = {"op": "launch", "firmware": CONFORMING_PROFILE.read_text(encoding="utf-8"), "clock": "virtual",
               "packs": 1, "seed": 3, "soc": 40.0, "temperature": 25.0}
    sock, reply = _ask(launcher.address, request)
    assert reply["ok"] and reply["endpoints"]["clock"] == "virtual" and _alive(reply["pid"])
    sock.close()  # the holder let go without a word
    wait_for("the emulator stopped", lambda: not _alive(reply["pid"]) and not launcher.children, 15)

    from rig.errors import EmulatorRefused
    from rig.lab.launched_emulator import LaunchedEmulator
    emulator = LaunchedEmulator(launcher.address, request)
    assert emulator.call("status")["ok"] and emulator.died() is None
    emulator.call("shutdown")  # as if it stopped on its own: died() names how it ended
    died = emulator.died(10.0)
    assert died is not None and died.pid == emulator.process.pid and died.returncode == 0
    assert "reached by the emulator before it exited" in died.safe_state and "PSU output off" in died.safe_state
    emulator.close()
    with pytest.raises(EmulatorRefused, match="unknown op"):
        LaunchedEmulator(launcher.address, {"op": "nothing"})


def test_a_bench_file_at_a_launcher_runs_the_suite_with_the_holders_firmware(launcher, tmp_path):
    params = {"bench": "one", "emulator_launcher": launcher.address,
              "emulated_bench_json": json.dumps(tomllib.loads(launcher.bench.read_text(encoding="utf-8")))}
    bench = write_launcher_bench(params, tmp_path / "client", PACK_SPEC, CONFORMING_PROFILE)
    data = tomllib.loads(bench.read_text(encoding="utf-8"))
    assert data["emulator"]["process"] == "launcher" and data["bench"]["clock"] == "virtual"
    broken = tmp_path / "broken.toml"  # cell over-voltage L2 switched off: its trip test must fail
    profile = tomllib.loads(CONFORMING_PROFILE.read_text(encoding="utf-8"))
    profile["protections"]["cell_over_voltage"]["l2"]["enabled"] = False
    import tomli_w
    broken.write_text(tomli_w.dumps(profile), encoding="utf-8")
    runs = {}
    for name, firmware in (("conforming", CONFORMING_PROFILE), ("broken", broken)):
        runs[name] = subprocess.run(
            [sys.executable, "-m", "pytest", "testcases", "--bench", str(bench), "--firmware", str(firmware),
             "-k", COV_TRIPS, "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--plots", "none",
             "--run-dir", str(tmp_path / name)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert runs["conforming"].returncode == 0, runs["conforming"].stdout[-3000:]
    assert "3 passed" in runs["conforming"].stdout
    assert runs["broken"].returncode == 1 and "1 failed, 2 passed" in runs["broken"].stdout, runs["broken"].stdout[-3000:]
    manifest = json.loads((tmp_path / "broken" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["firmware"]["path"] == str(broken)
    assert not launcher.children  # every test's emulator stopped with its test


def test_bad_lab_input_is_one_line_before_any_coordinator_is_asked(tmp_path, capsys):
    from rig.cli import main
    from rig.errors import ConfigError
    from rig.files.bench_file import load_bench

    narrow = ["mutate", "--only", "REQ-PROT-COV", "--operator", "disabled", "--out", str(tmp_path / "m")]
    for args, said in ((["--want", "packs=1"], "--want needs --lab HOST:PORT"),
                       (["--lab", "nowhere"], "--lab 'nowhere': expected HOST:PORT"),
                       (["--lab", "127.0.0.1:1", "--want", "packs"], "--want 'packs': expected TAG=VALUE"),
                       (["--lab", "127.0.0.1:1", "--bench", "rig/benches/emulated.toml"], "--bench and --lab"),
                       (["--lab", "127.0.0.1:1", "--lab-timeout", "0"], "--lab-timeout must be more than 0 s"),
                       (["--lab", "127.0.0.1:1", "--workers", "0"], "--workers must be 1 or more")):
        assert main(narrow + args) == 4, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], (args, err)
    assert not (tmp_path / "m").exists()
    bench = one_pack_bench(tmp_path, "emulated-subprocess.toml")
    bench.write_text(bench.read_text(encoding="utf-8").replace('process = "subprocess"', 'process = "launcher"'),
                     encoding="utf-8")
    with pytest.raises(ConfigError, match='process = "launcher" and launcher = "HOST:PORT" go together'):
        load_bench(bench)


def test_a_bench_no_longer_ours_takes_no_more_runs(tmp_path, capsys):
    """The pool of benches (one per place held): a place released under the run is not taken
    again, the runs go on the others; with none left the run stops (NoBenchLeft)."""
    from rig.files.bench_file import EMULATED_BENCH
    from rig.files.pack_spec import load_pack_spec
    from rig.mutate.operators import generate
    from rig.mutate.runner import MutationRun, NoBenchLeft

    base = tomllib.loads(CONFORMING_PROFILE.read_text(encoding="utf-8"))
    mutants = [m for m in generate(base, load_pack_spec(PACK_SPEC), only="REQ-PROT-COV") if m.operator == "disabled"]
    narrow = ("-k", COV_TRIPS + " and L2")
    run = MutationRun(base, tmp_path / "one", bench=EMULATED_BENCH, workers=2, pytest_args=narrow,
                      benches={"place-a": EMULATED_BENCH, "place-b": EMULATED_BENCH},
                      usable=lambda place: place != "place-b")
    assert run.baseline() == (0, []) and run.baseline_ran_on == ["place-a"]
    outcomes = run.run(mutants)
    assert {p for o in outcomes for p in o.ran_on} == {"place-a"} and run.dropped == ["place-b"]
    assert [o.status for o in outcomes].count("killed") == 1  # L2's own; -k leaves L1 and L3 unseen
    assert "place-b is no longer ours: no more runs on it" in capsys.readouterr().err
    gone = MutationRun(base, tmp_path / "none", bench=EMULATED_BENCH, workers=2, pytest_args=narrow,
                       benches={"place-a": EMULATED_BENCH, "place-b": EMULATED_BENCH}, usable=lambda place: False)
    with pytest.raises(NoBenchLeft, match="place-a, place-b no longer usable"):
        gone.baseline()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("labgrid", reason="labgrid is not installed (the optional extra packrig[lab])")
    folder = tmp_path_factory.mktemp("lab")
    lab = Lab(folder)
    try:
        bench = one_pack_bench(folder, "emulated-subprocess.toml")
        for place in ("place-a", "place-b"):
            lab.serve(bench, place, tag="farm=mutants")
        wait_for_resources(lab.address, 2)
        yield lab
    finally:
        lab.stop()


def test_mutate_spreads_the_mutants_over_the_free_places_and_releases_them(lab):
    out, log = lab.folder / "mutants", lab.folder / "mutate.out"
    cmd = [sys.executable, "-m", "rig.cli", "mutate", "--lab", lab.address, "--want", "farm=mutants",
           "--want", "packs=1", "--only", "REQ-PROT-COV", "--operator", "disabled", "-k", COV_TRIPS,
           "--workers", "3", "--lab-timeout", "60", "--out", str(out)]
    with open(log, "w") as stdout:
        done = subprocess.run(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT, timeout=600,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    said = text(log)
    assert done.returncode == 0, said[-4000:]
    result = json.loads((out / "mutants.json").read_text(encoding="utf-8"))
    # three of three asked, two places held (the third worker had no place), both used
    assert sorted(p["place"] for p in result["lab_places"]) == ["place-a", "place-b"] and result["workers"] == 2
    assert result["baseline_ran_on"] and result["baseline_ran_on"][0] in ("place-a", "place-b")
    used = {place for m in result["mutants"] for place in m["ran_on"]}
    assert used == {"place-a", "place-b"}, [(m["name"], m["ran_on"]) for m in result["mutants"]]
    # the kill table: each level's switched-off protection killed by its own trip test
    table = {m["name"]: m for m in result["mutants"]}
    assert len(table) == 3 and result["counts"] == {"killed": 3}
    for level in ("l1", "l2", "l3"):
        m = table[f"REQ-PROT-COV:protections.cell_over_voltage.{level}.enabled:disabled"]
        assert m["stage"] == "targets" and m["killed_by_requirements"] == ["REQ-PROT-COV"]
        assert len(m["killed_by"]) == 1 and f"cell_over_voltage-{level.upper()}" in m["killed_by"][0], m
    assert "kill rate: 3/3" in said.splitlines()
    assert "place place-a released" in said and "place place-b released" in said
    assert place_acquired(lab.address, "place-a") is None and place_acquired(lab.address, "place-b") is None
    # the places' launchers started one emulator per test run: the baseline's 3, then each mutant's
    # trip tests up to the first failure (L1: 1, L2: 2, L3: 3); each ended in its safe state
    logs = [text(lab.places[place]["log"]) for place in ("place-a", "place-b")]
    assert [said.count(" launched for ") > 0 for said in logs] == [True, True]
    assert sum(said.count(" launched for ") for said in logs) == 3 + 1 + 2 + 3, logs
    for said in logs:
        assert said.count(" launched for ") == said.count(" ended (") == said.count(
            "safe state: PSU output off, e-load input off, e-load short off, every relay open, chamber standby"), said


def test_a_killed_mutation_run_leaves_its_places_free_and_no_emulator_running(lab):
    """SIGKILL in the middle of the mutants: the guard of each place stops the pytest runs left
    behind and releases its place (each its own: a guard leaves the other guards alone); every
    emulator the places launched for the run ended in its safe state."""
    from rig.lab.guard import alive, children_of

    out, log = lab.folder / "mutants-killed", lab.folder / "mutate-killed.out"
    cmd = [sys.executable, "-m", "rig.cli", "mutate", "--lab", lab.address, "--want", "farm=mutants",
           "--only", "REQ-PROT-COV", "-k", COV_TRIPS, "--workers", "2", "--out", str(out)]
    with open(log, "w") as stdout:
        run = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        wait_for("the first mutant's verdict", lambda: " [1/" in text(log) or run.poll() is not None, 300, 0.2)
        assert run.poll() is None, text(log)[-3000:]
        left = children_of(run.pid)  # two guards and the pytest runs under way
        assert place_acquired(lab.address, "place-a") and place_acquired(lab.address, "place-b")
        run.kill()
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
    for place in ("place-a", "place-b"):
        wait_for(f"{place} released by its guard", lambda place=place: place_acquired(lab.address, place) is None,
                 90, 0.5, lambda: text(log)[-3000:])
    wait_for("every process of the run gone", lambda: not any(alive(p) for p in left), 60, 0.2)

    def all_ended():
        logs = [text(lab.places[place]["log"]) for place in ("place-a", "place-b")]
        return all(said.count(" launched for ") == said.count(" ended (") for said in logs)
    wait_for("every launched emulator ended", all_ended, 30, 0.2)
    for place in ("place-a", "place-b"):
        said = text(lab.places[place]["log"])
        assert said.count(" ended (") == said.count("safe state: PSU output off, e-load input off, e-load short off, "
                                                    "every relay open, chamber standby"), said[-3000:]
    assert not (out / "mutants.json").exists()


def test_a_place_released_under_a_mutation_run_takes_no_more_mutants(lab):
    """``labgrid-client release --kick`` of one place mid-run: the run under way there ends, no
    other starts there, the rest go to the other place; the kick is recorded in mutants.json."""
    out, log = lab.folder / "mutants-kicked", lab.folder / "mutate-kicked.out"
    cmd = [sys.executable, "-m", "rig.cli", "mutate", "--lab", lab.address, "--want", "farm=mutants",
           "--only", "REQ-PROT-COV", "--operator", "disabled", "--operator", "delay_late", "-k", COV_TRIPS,
           "--workers", "2", "--out", str(out)]
    with open(log, "w") as stdout:
        run = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        wait_for("the baseline passed", lambda: "base profile: the suite passes" in text(log) or run.poll() is not None,
                 300, 0.1)
        kick = subprocess.run([str(Path(sys.executable).parent / "labgrid-client"), "-x", lab.address, "-p",
                               "place-b", "release", "--kick"], env={**os.environ, "LG_USERNAME": "another-engineer"},
                              capture_output=True, text=True, timeout=30)
        assert kick.returncode == 0, kick.stdout + kick.stderr
        assert run.wait(300) in (0, 1), text(log)[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
    said = text(log).splitlines()
    result = json.loads((out / "mutants.json").read_text(encoding="utf-8"))
    assert result["lab_places_lost"] == ["place-b"] and len(result["mutants"]) == 6
    assert all(m["status"] in ("killed", "survived") for m in result["mutants"]), result["mutants"]
    lost = said.index("packrig mutate: place-b is no longer ours: no more runs on it")
    later_on_b = [line for line in said[lost:] if line.endswith("[place-b]")]
    assert len(later_on_b) <= 1, said  # at most the run that was under way there when it was kicked
    assert "packrig mutate: place place-a released" in said and place_acquired(lab.address, "place-a") is None
    assert place_acquired(lab.address, "place-b") is None
