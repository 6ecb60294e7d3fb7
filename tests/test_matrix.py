"""The traceability matrix (rig/report/matrix.py) and the pack spec's requirement ids.

What they prove: the matrix has a row for every requirement id in testcases/pack_spec.toml
(found by reading the TOML itself, independently of the model walk), gaps first and named in
the HTML's gap list; a requirement's status, covering tests, clauses and worst margin come from
the run's tests and measurements; ``python -m rig.report.matrix RUN_DIR`` remakes both files;
a ``[traceability]`` entry for an unknown id is refused when the spec loads.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import tomllib

import pytest

from rig.errors import ConfigError
from rig.files.pack_spec import DEFAULT_PACK_SPEC, load_pack_spec, requirement_ids
from rig.report.matrix import write_matrix


def _ids_in_toml(node) -> set[str]:
    """Every ``id = "..."`` anywhere in the TOML document, read without the pack-spec model."""
    if isinstance(node, dict):
        found = {node["id"]} if isinstance(node.get("id"), str) else set()
        for key, value in node.items():
            if key != "traceability":
                found |= _ids_in_toml(value)
        return found
    if isinstance(node, list):
        return set().union(*(_ids_in_toml(v) for v in node)) if node else set()
    return set()


def _measurement(req, name, value, low=None, high=None, tolerance=None, expected=None, outcome="passed",
                 stimulus=None):
    return {"requirement": req, "name": name, "value": value, "unit": "s", "low": low, "high": high,
            "expected": expected, "tolerance": tolerance, "outcome": outcome, "at_s": 10.0, "stimulus": stimulus}


def _manifest() -> dict:
    return {
        "schema": "packrig-run/1", "run_id": "20261205T103500Z-ab12cd", "complete": True,
        "pack_spec": {"path": str(DEFAULT_PACK_SPEC), "name": "pack_spec", "sha256": None},
        "firmware": {"path": "emulator/firmware/conforming.toml", "name": "conforming", "sha256": "0" * 64},
        "bench": {"name": "emulated", "path": "rig/benches/emulated.toml"}, "seed": 1,
        "wall_start": "2026-12-05T10:35:00Z", "wall_end": "2026-12-05T10:36:00Z",
        "counts": {"passed": 2, "failed": 1, "skipped": 1, "error": 0, "total": 4},
        "tests": [
            {"nodeid": "testcases/test_protections.py::test_l2[cell_over_voltage]", "title": "L2 · cell over voltage",
             "requirements": ["REQ-PROT-COV"], "outcome": "failed", "references": {"manual": "7.4", "ul": "UL X"},
             "measurements": [
                 _measurement("REQ-PROT-COV", "trip delay", 2.3, 1.0, 2.1, 0.55, outcome="failed",
                              stimulus="every group driven to 3.7 V (fault insertion)"),
                 _measurement("REQ-PROT-COV", "cut", 1.2, None, 2.0, 0.5),
                 _measurement("REQ-PROT-COV", "Relay1Closed", 0, expected=0)]},
            {"nodeid": "testcases/test_protections.py::test_l1[cell_over_voltage]", "title": "L1 · cell over voltage",
             "requirements": ["REQ-PROT-COV"], "outcome": "passed",
             "measurements": [_measurement("REQ-PROT-COV", "level", 1.05, 0.9, 1.1, 0.1)]},
            {"nodeid": "testcases/test_normal_operation.py::test_frames", "title": "Frames", "requirements": [],
             "outcome": "passed", "measurements": [_measurement("REQ-CAN-6", "bad frames", 0, expected=0)]},
            {"nodeid": "testcases/test_parallel.py::test_two_packs", "title": "Two packs",
             "requirements": ["REQ-PAR-5"], "outcome": "skipped", "measurements": []},
            {"nodeid": "testcases/test_x.py::test_nothing", "title": "Nothing", "requirements": [],
             "outcome": "passed", "measurements": []},
        ]}


@pytest.fixture(scope="module")
def spec():
    return load_pack_spec()


@pytest.fixture
def written(tmp_path, spec):
    html_path, csv_path = write_matrix(_manifest(), spec, tmp_path)
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return html_path.read_text(encoding="utf-8"), rows


def test_requirement_ids_finds_every_id_of_the_pack_spec(spec):
    in_toml = _ids_in_toml(tomllib.loads(DEFAULT_PACK_SPEC.read_text(encoding="utf-8")))
    assert len(in_toml) >= 30
    assert set(requirement_ids(spec)) == in_toml
    assert requirement_ids(spec)["REQ-PROT-COV"] == "protections.cell_over_voltage"


def test_every_requirement_has_a_traceability_entry(spec):
    """A new section of the pack spec with an ``id`` gets its row in ``[traceability]`` (its manual
    section and certification clauses, or ``{}`` where there are none), so the matrix never guesses."""
    missing = [req for req in requirement_ids(spec) if req not in spec.traceability]
    assert not missing, f"add these ids to [traceability] in testcases/pack_spec.toml: {missing}"


def test_the_matrix_lists_every_id_of_the_pack_spec_with_gaps_first(written, spec):
    page, rows = written
    ids = [r["requirement"] for r in rows]
    in_toml = _ids_in_toml(tomllib.loads(DEFAULT_PACK_SPEC.read_text(encoding="utf-8")))
    assert sorted(ids) == sorted(in_toml)  # every id, each once
    statuses = [r["status"] for r in rows]
    gaps = statuses.count("gap")
    assert gaps == len(in_toml) - 3 and statuses[:gaps] == ["gap"] * gaps  # all gaps on top
    gap_list = page[page.index("<h2>Gaps"):page.index("<h2>Requirements")]
    assert all(r["requirement"] in gap_list for r in rows if r["status"] == "gap")
    assert "REQ-PROT-COV" not in gap_list
    for req in in_toml:
        assert f'<span class="id">{req}</span>' in page


def test_status_tests_and_worst_margin_of_a_requirement(written):
    page, rows = written
    by_id = {r["requirement"]: r for r in rows}
    cov = by_id["REQ-PROT-COV"]
    assert (cov["status"], cov["tests"], cov["passed"], cov["failed"]) == ("failed", "2", "1", "1")
    assert cov["worst_margin"] == f"{(2.1 - 2.3) / 0.55:.3f}"  # the failed trip delay, outside its limit
    assert cov["worst_measurement"] == "trip delay (L2 · cell over voltage)"
    assert "every group driven to 3.7 V" in cov["failed_measurements"]
    assert cov["manual"] == "2.2; 7.4" and cov["iec_62619"] == "8.2.2"
    assert cov["ul_1973"] == "Overcharge Test; UL X"  # the spec's, then what the marker adds
    assert by_id["REQ-CAN-6"]["status"] == "passed"   # covered through a measurement's requirement
    assert by_id["REQ-CAN-6"]["worst_margin"] == ""   # an exact expectation has no margin
    assert by_id["REQ-PAR-5"]["status"] == "skipped"
    assert "test_x.py::test_nothing" in page          # listed as naming no requirement
    assert "-0.36" in page


def test_an_incomplete_run_says_so(tmp_path, spec):
    manifest = {**_manifest(), "complete": False, "incomplete_reason": "interrupted (Ctrl-C)"}
    html_path, _ = write_matrix(manifest, spec, tmp_path)
    assert "INCOMPLETE: interrupted (Ctrl-C)" in html_path.read_text(encoding="utf-8")


def test_the_matrix_of_an_existing_run_folder(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest()))
    done = subprocess.run([sys.executable, "-m", "rig.report.matrix", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "requirements.html"), str(tmp_path / "requirements.csv")]
    missing = subprocess.run([sys.executable, "-m", "rig.report.matrix", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 4 and "manifest.json" in missing.stderr and "Traceback" not in missing.stderr


def test_a_traceability_entry_for_an_unknown_id_is_refused(tmp_path):
    bad = tmp_path / "pack_spec.toml"
    text = DEFAULT_PACK_SPEC.read_text(encoding="utf-8")
    bad.write_text(text.replace("[traceability]\n", '[traceability]\n"REQ-NOT-THERE" = { manual = "9" }\n'))
    with pytest.raises(ConfigError, match=r"traceability\.REQ-NOT-THERE: not the id of a requirement"):
        load_pack_spec(bad)
