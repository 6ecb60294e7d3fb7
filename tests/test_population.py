"""``packrig run --population N``: the tests against N drawn emulated packs, margins from the manifests.

The populations here are short (one or two packs, one or two short tests, no HTML) in tmp_path;
the figures of a real population are benchmarks/bench_population.py's.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from emulator.firmware.profile import CONFORMING_PROFILE
from rig.cli import main
from rig.files.bench_file import BENCHES
from rig.files.loader import read_toml
from rig.files.pack_spec import DEFAULT_PACK_SPEC, load_pack_spec
from rig.report.population import margin_of, pack_measurements

ROOT = Path(__file__).resolve().parents[1]
ABOVE_MIN = "testcases/test_activation.py::test_activation_window_edges[above-min]"
STORAGE = "testcases/test_storage_recharge.py"
QUICK = ["--plain", "--no-html", "--workers", "0"]


def _population(folder: Path) -> dict:
    return json.loads((folder / "population.json").read_text(encoding="utf-8"))


def _manifests(folder: Path, population: dict) -> dict[int, dict]:
    return {p["pack"]: json.loads((folder / p["run"] / "manifest.json").read_text(encoding="utf-8"))
            for p in population["packs"]}


def _expected_margin(m: dict) -> float:
    sides = [d for d in ((m["value"] - m["low"]) if m["low"] is not None else None,
                         (m["high"] - m["value"]) if m["high"] is not None else None) if d is not None]
    return min(sides)


def test_two_packs_margins_are_value_minus_limit_of_their_own_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = tmp_path / "pop"
    code = main(["run", "--population", "2", "--reports", str(folder), *QUICK, ABOVE_MIN, STORAGE])
    out = capsys.readouterr().out
    pop = _population(folder)
    manifests = _manifests(folder, pop)
    assert pop["schema"] == "packrig-population/1" and pop["complete"] and pop["population_seed"] == 1000
    assert [p["seed"] for p in pop["packs"]] == [1000, 1001]
    any_failed = any(t["outcome"] != "passed" for m in manifests.values() for t in m["tests"])
    assert code == pop["exit_code"] == (1 if any_failed else 0)

    # each pack: its own physics file, named by its own bench file, and an ordinary run folder
    physics = [(folder / p["physics"]).read_text() for p in pop["packs"]]
    assert physics[0] != physics[1]
    for p in pop["packs"]:
        assert read_toml(folder / p["bench"])["emulator"]["physics"] == str(folder / p["physics"])
        assert manifests[p["pack"]]["complete"] and manifests[p["pack"]]["bench"]["path"] == str(folder / p["bench"])
        assert (folder / p["run"] / "requirements.csv").is_file()
        assert [t["nodeid"] for t in manifests[p["pack"]]["tests"]] == [
            ABOVE_MIN, "testcases/test_storage_recharge.py::test_recharge_after_long_storage"]

    # every limited measurement of every run is in population.json with margin = value - limit
    rows = {(m["requirement"], m["name"]): m for m in pop["measurements"]}
    checked = 0
    for k, manifest in manifests.items():
        for test in manifest["tests"]:
            for m in test["measurements"]:
                row = rows[(m["requirement"], m["name"])]
                entry = next(e for e in row["packs"] if e["pack"] == k)
                assert entry["value"] == m["value"] and entry["outcome"] == m["outcome"]
                if m["low"] is None and m["high"] is None:
                    assert row["kind"] == "exact" and entry["margin"] is None
                elif math.isfinite(m["value"]):
                    assert entry["margin"] == pytest.approx(_expected_margin(m), abs=1e-12)
                    checked += 1
    assert checked >= 2 * 6
    for row in pop["measurements"]:
        finite = sorted(e["margin"] for e in row["packs"] if e["margin"] is not None)
        if row["kind"] == "limits" and finite:
            assert row["margin"]["min"] == finite[0] and row["margin"]["max"] == finite[-1]
        assert row["packs_failing"] == sum(e["outcome"] == "failed" for e in row["packs"])
    for t in pop["tests"]:
        assert t["passed"] == sum(any(x["nodeid"] == t["nodeid"] and x["outcome"] == "passed" for x in m["tests"])
                                  for m in manifests.values())

    # the long-storage recharge line: the spec's id and success voltage, from the same rows
    spec = load_pack_spec(DEFAULT_PACK_SPEC)
    sr = pop["storage_recharge"]
    assert sr["requirement"] == spec.storage_recharge.id and sr["packs_measured"] == 2
    for e in sr["packs"]:
        assert e["measurement"].startswith(f"pack voltage after the {spec.storage_recharge.rest_s:g} s rest")
        assert e["margin"] == pytest.approx(e["value"] - spec.storage_recharge.min_rest_voltage_v, abs=1e-12)
    margins = [e["margin"] for e in sr["packs"]]
    want = ("fails" if min(margins) < 0 else "holds without margin" if min(margins) < spec.tolerance.pack_voltage_v
            else "holds with margin")
    assert sr["verdict"] == want
    assert (folder / "storage-recharge-margin.png").stat().st_size > 1000
    assert "population seed 1000" in out and f"long-storage recharge: {spec.storage_recharge.id}" in out
    assert not (folder / "INCOMPLETE").exists()


def test_a_pack_that_fails_is_exit_1_with_a_negative_margin(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    late = tmp_path / "late-activation.toml"   # wakes from 46 V only: the 45.5 V probe leaves it off
    late.write_text(CONFORMING_PROFILE.read_text().replace("min_v = 45.0", "min_v = 46.0", 1))
    folder = tmp_path / "pop"
    code = main(["run", "--population", "1", "--population-seed", "7", "--firmware", str(late),
                 "--reports", str(folder), *QUICK, ABOVE_MIN])
    capsys.readouterr()
    pop = _population(folder)
    assert code == 1 == pop["exit_code"] and pop["packs"][0]["seed"] == 7
    row = next(m for m in pop["measurements"] if m["name"] == "terminal voltage after 45.5 V applied and removed")
    assert row["packs_failing"] == 1 and row["margin"]["max"] < 0
    assert pop["tests"][0]["failed"] == 1 and pop["tests"][0]["failed_packs"] == [1]


def _bad(tmp: Path) -> dict[str, tuple[list[str], str]]:
    held = tmp / "held"
    held.mkdir()
    (held / "population.json").write_text("{}")
    return {
        "no packs": (["--population", "0"], "--population"),
        "too many packs": (["--population", "201"], "--population"),
        "not a number": (["--population", "some"], "--population"),
        "bad seed": (["--population", "2", "--population-seed", "-1"], "--population-seed"),
        "seed alone": (["--population-seed", "3"], "--population-seed"),
        "real bench": (["--population", "2", "--bench", str(BENCHES / "example-real.toml")], "--population"),
        "shard": (["--population", "2", "--shard", "1/2"], "--shard"),
        "no such test file": (["--population", "2", "testcases/test_nothing.py"], "test_nothing.py"),
        "population held": (["--population", "2", "--reports", str(held)], "--overwrite"),
    }


@pytest.mark.parametrize("case", ["no packs", "too many packs", "not a number", "bad seed", "seed alone",
                                  "real bench", "shard", "no such test file", "population held"])
def test_bad_population_input_is_exit_4_in_one_line_before_any_pack(tmp_path, capsys, case, monkeypatch):
    monkeypatch.chdir(ROOT)
    args, said = _bad(tmp_path)[case]
    if "--reports" not in args:
        args = [*args, "--reports", str(tmp_path / "pop")]
    assert main(["run", *QUICK, *args]) == 4
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and said in err, err
    assert out == "" and not (tmp_path / "pop").exists()


def test_margin_is_the_signed_distance_to_the_nearer_limit_and_a_pack_keeps_its_worst_reading():
    assert margin_of({"value": 52.3, "low": 52.0, "high": None}) == pytest.approx(0.3)
    assert margin_of({"value": 3.7, "low": None, "high": 3.66}) == pytest.approx(-0.04)
    assert margin_of({"value": 10.0, "low": 9.0, "high": 10.5}) == pytest.approx(0.5)
    assert margin_of({"value": math.inf, "low": None, "high": 100.0}) is None   # failed, no finite margin
    assert margin_of({"value": 1, "low": None, "high": None, "expected": 1}) is None
    reading = lambda v, outcome="passed": {"requirement": "R", "name": "x", "value": v, "low": 1.0,  # noqa: E731
                                           "high": None, "unit": "V", "outcome": outcome}
    manifest = {"tests": [{"nodeid": "a", "measurements": [reading(1.5), reading(1.2)]},
                          {"nodeid": "b", "measurements": [reading(math.nan, "failed")]}]}
    worst = pack_measurements(manifest)[("R", "x")]
    assert worst["outcome"] == "failed" and worst["readings"] == 3 and worst["tests"] == ["a", "b"]


def test_a_population_cut_short_keeps_its_figures_and_is_taken_over_only_with_overwrite(tmp_path, capsys,
                                                                                         monkeypatch):
    """Ctrl-C during the second pack: population.json has the first pack's figures, the folder
    says INCOMPLETE, exit code 2; the folder is refused until --overwrite, which empties it."""
    import rig.population_pack as one_pack

    monkeypatch.chdir(ROOT)
    real_run_pack, calls = one_pack.run_pack, []

    def run_pack(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_pack(*args, **kwargs)

    monkeypatch.setattr(one_pack, "run_pack", run_pack)
    folder = tmp_path / "pop"
    assert main(["run", "--population", "3", "--reports", str(folder), *QUICK, ABOVE_MIN]) == 2
    assert "population interrupted" in capsys.readouterr().err
    pop = _population(folder)
    assert not pop["complete"] and pop["incomplete_reason"].startswith("interrupted") and pop["exit_code"] == 2
    assert [p["pack"] for p in pop["packs"]] == [1, 2] and pop["packs"][0]["counts"]["passed"] == 1
    assert (folder / "INCOMPLETE").is_file() and len(calls) == 2

    monkeypatch.setattr(one_pack, "run_pack", real_run_pack)
    assert main(["run", "--population", "1", "--reports", str(folder), *QUICK, ABOVE_MIN]) == 4
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", "--population", "1", "--reports", str(folder), "--overwrite", *QUICK, ABOVE_MIN]) == 0
    pop = _population(folder)
    assert pop["complete"] and len(pop["packs"]) == 1 and not (folder / "pack002").exists()
    assert not (folder / "INCOMPLETE").exists()
