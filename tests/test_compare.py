"""packrig compare and trend on run folders: verdicts, drift, CAN divergence, bad input."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import can
import pytest

from rig.cli import main
from rig.report.compare import compare, first_divergence, verdict_change
from rig.report.runs import load_run

SPEC = {"path": "testcases/pack_spec.toml", "name": "pack", "sha256": "ab" * 32}


def _measurement(req, name, value, low, high, outcome="passed"):
    return {"requirement": req, "name": name, "value": value, "unit": "s", "low": low, "high": high,
            "expected": None, "tolerance": (high - low) / 2, "outcome": outcome, "at_s": 1.0, "stimulus": None}


def _manifest(run_id: str, start: str, *, cov_delay=1.25, cov_outcome="passed", firmware="conforming",
              seed=1, spec=SPEC) -> dict:
    cov_passed = cov_outcome == "passed"
    tests = [
        {"nodeid": "testcases/test_protections.py::test_cell_over_voltage[L2]", "title": "COV L2",
         "requirements": ["REQ-PROT-COV"], "outcome": cov_outcome,
         "message": None if cov_passed else "REQ-PROT-COV: trip delay = 2.1 s, expected 1.25 ± 0.25 s",
         "duration_s": 0.5, "virtual_s": 10.0, "recordings": {"can": None, "samples": None, "plot": None},
         "measurements": [_measurement("REQ-PROT-COV", "L2 trip delay", cov_delay, 1.0, 1.5,
                                       "passed" if cov_passed else "failed")]},
        {"nodeid": "testcases/test_power.py::test_power_on", "title": "power on",
         "requirements": ["REQ-PON-6.2"], "outcome": "passed", "message": None, "duration_s": 0.3,
         "virtual_s": 5.0, "recordings": {"can": None, "samples": None, "plot": None},
         "measurements": [_measurement("REQ-PON-6.2", "terminal voltage", 52.0, 51.0, 53.0),
                          {"requirement": "REQ-PON-6.2", "name": "state", "value": "Run", "unit": "",
                           "low": None, "high": None, "expected": "Run", "tolerance": None,
                           "outcome": "passed", "at_s": 2.0, "stimulus": None}]},
    ]
    counts = {"passed": sum(t["outcome"] == "passed" for t in tests),
              "failed": sum(t["outcome"] == "failed" for t in tests), "skipped": 0, "error": 0, "total": 2}
    return {"schema": "packrig-run/1", "run_id": run_id, "complete": True, "packrig_version": "0.1.0",
            "git": {"revision": None, "dirty": None}, "wall_start": start, "wall_end": start,
            "bench": {"path": "emulated.toml", "name": "emulated", "sha256": "cd" * 32, "clock": "virtual",
                      "emulated": True},
            "pack_spec": spec, "firmware": {"path": f"{firmware}.toml", "name": firmware, "sha256": "ef" * 32},
            "seed": seed, "counts": counts, "tests": tests}


def _run(tmp_path: Path, name: str, manifest: dict) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_two_identical_runs_compare_clean(tmp_path, capsys):
    a = _run(tmp_path, "a", _manifest("20261205T100000Z-aaaaaa", "2026-12-05T10:00:00Z"))
    b = _run(tmp_path, "b", _manifest("20261205T110000Z-bbbbbb", "2026-12-05T11:00:00Z"))
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out
    result = json.loads((b / "compare-20261205T100000Z-aaaaaa" / "compare.json").read_text())
    assert result["verdicts"] == [] and result["summary"]["flagged_drifts"] == 0
    assert result["summary"]["measurements_compared"] == 2   # the two numeric ones; a state has no drift
    assert (b / "compare-20261205T100000Z-aaaaaa" / "compare.html").read_text().startswith("<!doctype html>")


def test_a_failed_threshold_regresses_naming_its_requirement(tmp_path, capsys):
    a = _run(tmp_path, "a", _manifest("A", "2026-12-05T10:00:00Z"))
    b = _run(tmp_path, "b", _manifest("B", "2026-12-05T11:00:00Z", cov_delay=2.1, cov_outcome="failed",
                                      firmware="cov-slow"))
    assert main(["compare", "--baseline", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "REQ-PROT-COV" in out
    result = json.loads((b / "compare-A" / "compare.json").read_text())
    assert [(v["change"], v["requirements"]) for v in result["verdicts"]] == [("regressed", ["REQ-PROT-COV"])]
    assert result["requirements"] == [{"requirement": "REQ-PROT-COV", "before": "passed", "after": "failed",
                                       "change": "regressed"}]
    assert result["summary"]["regressed_requirements"] == ["REQ-PROT-COV"]


def test_a_drift_within_the_limits_is_flagged(tmp_path, capsys):
    # 1.25 -> 1.45 s in a 1.0..1.5 s window: still passes, but moved 0.8 of the 0.25 s tolerance
    a = _run(tmp_path, "a", _manifest("A", "2026-12-05T10:00:00Z"))
    b = _run(tmp_path, "b", _manifest("B", "2026-12-05T11:00:00Z", cov_delay=1.45))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 1
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["verdicts"] == []
    drift = next(d for d in result["drifts"] if d["requirement"] == "REQ-PROT-COV")
    assert drift["flagged"] and drift["drift"] == pytest.approx(0.8)
    assert drift["margin_before"] == pytest.approx(1.0) and drift["margin_after"] == pytest.approx(0.2)
    assert "REQ-PROT-COV" in capsys.readouterr().out
    # the same move under a looser threshold is not a regression
    assert main(["compare", str(a), str(b), "--drift", "0.9", "--out", str(tmp_path / "cmp2")]) == 0


@pytest.mark.parametrize("make, expected", [
    (lambda t: [str(t / "missing"), str(t / "b")], "no such folder"),
    (lambda t: [str(t), str(t / "b")], "no manifest.json"),
    (lambda t: [str(t / "other"), str(t / "b")], "different pack specs"),
    (lambda t: [str(t / "broken"), str(t / "b")], "unreadable manifest"),
    (lambda t: [str(t / "unfinished"), str(t / "b")], "did not finish"),
    (lambda t: [str(t / "b")], "takes two runs"),
])
def test_bad_input_is_one_line_and_exit_4(tmp_path, capsys, make, expected):
    _run(tmp_path, "b", _manifest("B", "2026-12-05T11:00:00Z"))
    _run(tmp_path, "other", _manifest("O", "2026-12-05T09:00:00Z", spec={**SPEC, "sha256": "99" * 32}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_bytes(b"\xff{not json")
    _run(tmp_path, "unfinished", {**_manifest("U", "2026-12-05T09:00:00Z"), "complete": False})
    assert main(["compare", *make(tmp_path)]) == 4
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1


def test_verdict_changes_are_named():
    assert verdict_change("passed", "failed") == "regressed"
    assert verdict_change("failed", "passed") == "fixed"
    assert verdict_change(None, "failed") == "new failing"
    assert verdict_change(None, "passed") == "new"
    assert verdict_change("passed", None) == "removed"
    assert verdict_change("passed", "skipped") == "ran -> skipped"
    assert verdict_change("skipped", "passed") == "skipped -> ran"
    assert verdict_change("failed", "error") is None


def test_a_requirement_whose_only_test_disappeared_lost_coverage(tmp_path):
    a = load_run(_run(tmp_path, "a", _manifest("A", "2026-12-05T10:00:00Z")))
    m = _manifest("B", "2026-12-05T11:00:00Z")
    m["tests"] = m["tests"][1:]
    b = load_run(_run(tmp_path, "b", m))
    result = compare(a, b)
    assert {"requirement": "REQ-PROT-COV", "before": "passed", "after": None,
            "change": "lost coverage"} in result["requirements"]
    assert result["regressed"]


def _asc(path: Path, frames) -> Path:
    with can.ASCWriter(str(path)) as writer:
        for t, arb, data in frames:
            writer.on_message_received(can.Message(timestamp=t, arbitration_id=arb, data=data,
                                                   is_extended_id=False, channel=1))
    return path


def test_the_first_frame_where_two_same_seed_logs_part(tmp_path):
    common = [(0.0, 0x351, b"\x30\x02\xe8\x03\xe8\x03\xd0\x01"), (1.0, 0x355, b"\x32\x00\x64\x00")]
    a = _asc(tmp_path / "a.asc", common + [(2.0, 0x359, b"\x00\x00\x00\x00\x02PN")])
    b = _asc(tmp_path / "b.asc", common + [(2.0, 0x359, b"\x02\x00\x02\x00\x02PN")])
    same = _asc(tmp_path / "same.asc", common + [(2.0, 0x359, b"\x00\x00\x00\x00\x02PN")])
    where = first_divergence(a, b)
    assert where["index"] == 2 and where["a"]["id"] == "0x359"
    assert where["a"]["data"] == "00 00 00 00 02 50 4E" and where["b"]["data"] == "02 00 02 00 02 50 4E"
    assert first_divergence(a, same) is None
    shorter = _asc(tmp_path / "short.asc", common)
    assert first_divergence(a, shorter)["b"] is None


def test_compare_reads_the_can_logs_of_both_runs(tmp_path):
    ma, mb = _manifest("A", "2026-12-05T10:00:00Z"), _manifest("B", "2026-12-05T11:00:00Z")
    a, b = _run(tmp_path, "a", ma), _run(tmp_path, "b", mb)
    for folder, byte in ((a, 0), (b, 2)):
        (folder / "recordings").mkdir()
        _asc(folder / "recordings" / "cov.asc", [(0.5, 0x359, bytes([byte, 0, 0, 0, 2, 0x50, 0x4E]))])
    for m, folder in ((ma, a), (mb, b)):
        m["tests"][0]["recordings"]["can"] = "recordings/cov.asc"
        (folder / "manifest.json").write_text(json.dumps(m))
    result = compare(load_run(a), load_run(b))
    assert result["frames_compared"]
    assert [(d["nodeid"].split("::")[1], d["index"]) for d in result["divergences"]] == [
        ("test_cell_over_voltage[L2]", 0)]
    # other seeds: the logs are not expected to agree, so they are not compared
    mb2 = copy.deepcopy(mb)
    mb2["seed"] = 2
    (b / "manifest.json").write_text(json.dumps(mb2))
    assert compare(load_run(a), load_run(b))["frames_compared"] is False


def test_trend_orders_runs_by_time_and_shows_the_worst_margin(tmp_path, capsys):
    runs = [_run(tmp_path, name, _manifest(name, start, cov_delay=delay))
            for name, start, delay in (("r3", "2026-12-05T12:00:00Z", 1.45),
                                       ("r1", "2026-12-05T10:00:00Z", 1.25),
                                       ("r2", "2026-12-05T11:00:00Z", 1.35))]
    assert main(["trend", *map(str, runs), "--out", str(tmp_path / "trend")]) == 0
    table = json.loads((tmp_path / "trend" / "trend.json").read_text())
    assert [r["run_id"] for r in table["runs"]] == ["r1", "r2", "r3"]
    cov = next(r for r in table["requirements"] if r["requirement"] == "REQ-PROT-COV")
    assert cov["margins"] == pytest.approx([1.0, 0.6, 0.2])
    assert cov["change"] == pytest.approx(-0.8)
    assert table["requirements"][0]["requirement"] == "REQ-PROT-COV"   # closest to failing first
    assert (tmp_path / "trend" / "trend.png").stat().st_size > 10_000
    assert "REQ-PROT-COV" in capsys.readouterr().out
