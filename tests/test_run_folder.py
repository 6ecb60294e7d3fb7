"""One folder per run, as a user meets it through ``packrig run`` (a child process, all in tmp_path).

Two runs in a row (the conforming firmware, then a build with one threshold moved) give two
folders; the second's manifest (and HTML report, where the Allure 3 command line is installed)
shows its failures; the first is byte for byte untouched. A folder that holds a run is refused;
Ctrl-C leaves the folder marked incomplete with what it recorded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.firmware.profile import CONFORMING_PROFILE
from rig.report.allure_html import allure_cli
from rig.run_folder import REPORTS

ROOT = Path(__file__).resolve().parents[1]
#: the cell over-voltage L2 tests: a handful, a few seconds
SELECTION = ["-k", "test_protections and cell_over_voltage and L2"]
MOVED = ("l2 = { threshold = 3.60, delay_s = 1.0 }", "l2 = { threshold = 3.63, delay_s = 1.0 }")


def packrig_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", "run", "--plain", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def printed(out: str, name: str, path: Path) -> bool:
    """The summary has the line ``<name>  <path>``."""
    return re.search(rf"^\s+{name}\s+{re.escape(str(path))}$", out, re.M) is not None


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_two_runs_give_two_folders_the_second_shows_its_failures_the_first_is_untouched(tmp_path):
    first, second = tmp_path / "runs" / "1-conforming", tmp_path / "runs" / "2-moved"
    done = packrig_run("--reports", str(first), "--workers", "0", *SELECTION)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    before = hashes(first)
    m1 = manifest_of(first)
    assert m1["complete"] and m1["counts"]["passed"] >= 3 and m1["counts"]["failed"] == 0
    assert not (first / "INCOMPLETE").exists()

    text = CONFORMING_PROFILE.read_text()
    assert MOVED[0] in text
    moved = tmp_path / "moved.toml"
    moved.write_text(text.replace(*MOVED))
    done = packrig_run("--reports", str(second), "--firmware", str(moved), "--workers", "2", *SELECTION)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert hashes(first) == before, "the second run changed the first run's folder"

    m2 = manifest_of(second)
    assert m2["complete"] and m2["run_id"] == "2-moved" and m2["firmware"]["path"] == str(moved)
    assert m2["firmware"]["sha256"] == hashlib.sha256(moved.read_bytes()).hexdigest() != m1["firmware"]["sha256"]
    failed = [t for t in m2["tests"] if t["outcome"] == "failed"]
    assert failed and m2["counts"]["failed"] == len(failed)
    for t in failed:  # each failure names its requirement, and its measurements say which failed
        assert "REQ-PROT-COV" in t["requirements"] and "REQ-PROT-COV" in t["message"]
        assert any(m["outcome"] == "failed" for m in t["measurements"]), t
    for t in m2["tests"]:  # every bench test has its recordings in THIS folder
        if t["recordings"]["can"]:
            assert (second / t["recordings"]["can"]).is_file() and (second / t["recordings"]["samples"]).is_file()
    # the terminal: the summary by requirement, the failed requirement with its message, the paths
    assert "REQ-PROT-COV" in done.stdout and "FAIL" in done.stdout and "failed requirements" in done.stdout
    assert printed(done.stdout, "recordings", second / "recordings")
    assert printed(done.stdout, "matrix", second / "requirements.html")
    assert not list((ROOT / "reports").glob("runs/2-moved*"))
    # the Allure environment states the manifest's facts; JUnit beside them
    environment = (second / "allure-results" / "environment.properties").read_text()
    assert f"firmware=conforming ({moved})" in environment and f"firmware.sha256={m2['firmware']['sha256']}" in environment
    assert "run=2-moved" in environment and "seed=1" in environment
    assert (second / "junit.xml").read_text().count("<failure") == len(failed)

    if allure_cli(REPORTS) is None:
        pytest.skip("no Allure 3 command line installed (./quickstart installs it): HTML not checked")
    index = second / "html" / "index.html"
    assert printed(done.stdout, "HTML report", index) and index.is_file()
    summary = json.loads((second / "html" / "summary.json").read_text())
    assert summary["name"] == "packrig 2-moved: firmware conforming (moved.toml) on emulated"
    assert summary["stats"]["failed"] == len(failed) and summary["status"] == "failed"
    # history across the runs beside it: the first run's data point, then this one
    assert len((second / "allure-history.jsonl").read_text().splitlines()) == 2


def test_a_folder_holding_a_run_is_refused_unless_overwrite(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"schema": "packrig-run/1", "run_id": "old"}))
    (folder / "notes.txt").write_text("mine")
    done = packrig_run("--reports", str(folder), "-k", "no_test_has_this_name")
    assert done.returncode == 4
    assert done.stderr.strip().count("\n") == 0 and "already holds a run (old)" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "notes.txt"]

    done = packrig_run("--reports", str(folder), "--overwrite", "-k", "no_test_has_this_name")
    assert done.returncode == 5, done.stdout[-2000:] + done.stderr[-2000:]  # pytest: nothing selected
    manifest = manifest_of(folder)
    assert manifest["run_id"] == "run" and manifest["complete"] and manifest["counts"]["total"] == 0
    assert (folder / "notes.txt").read_text() == "mine", "--overwrite removes the run's files only"


def test_ctrl_c_leaves_the_folder_incomplete_with_what_it_recorded(tmp_path):
    folder = tmp_path / "run"
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from rig.cli import main; sys.exit(main(sys.argv[1:]))")
    process = subprocess.Popen([sys.executable, "-c", code, "run", "--plain", "--reports", str(folder),
                                "--workers", "0", "-m", "protection"], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((folder / "recordings").glob("*.samples.csv")):  # a test has started
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no test started"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, out[-2000:] + err[-2000:]
    assert "bench made safe, run interrupted" in err
    assert (folder / "INCOMPLETE").exists()
    manifest = manifest_of(folder)
    assert manifest["complete"] is False and "interrupted" in manifest["incomplete_reason"]
    assert list((folder / "recordings").glob("*.samples.csv")), "what it recorded is kept"


def test_run_ids_sort_by_start_time_and_latest_names_the_newest(tmp_path):
    import datetime as dt

    from rig import run_folder

    early = run_folder.new_run_id(dt.datetime(2026, 12, 5, 10, 35, 0, tzinfo=dt.timezone.utc))
    late = run_folder.new_run_id(dt.datetime(2026, 12, 5, 10, 35, 1, tzinfo=dt.timezone.utc))
    assert re.fullmatch(r"20261205T103500Z-[0-9a-f]{6}", early) and early < late
    reports = tmp_path / "reports"
    for run_id in (early, late):
        folder = run_folder.claim(run_folder.default_run_dir(reports, run_id))
        assert (folder / "INCOMPLETE").read_text() == "running\n"
        run_folder.point_latest(folder, reports)
    assert (reports / "latest").resolve() == (reports / "runs" / late).resolve()
    assert (reports / "latest.txt").read_text().strip() == str(reports / "runs" / late)
    assert (reports / "runs" / early / "INCOMPLETE").exists(), "the older run is left as it was"
    with pytest.raises(run_folder.RunFolderRefused, match="holds the runs in"):
        run_folder.claim(reports)  # `--reports reports`: the root of the runs is no run folder


def test_in_a_terminal_a_live_display_follows_the_run(tmp_path):
    """stdout a terminal (a pseudo-terminal here): the live display (counts, running tests, virtual
    time reached) instead of pytest's dots, which go to pytest-output.txt; the summary at the end."""
    import pty

    folder = tmp_path / "run"
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "rig.cli", "run", "--reports", str(folder), "--workers", "2",
                                "-k", "test_storage_recharge or (test_protections and cell_over_voltage and L2)"],
                               cwd=ROOT, stdout=slave, stderr=slave,
                               env={**os.environ, "COLUMNS": "160", "TERM": "xterm-256color"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=300)
    os.close(master)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    assert process.returncode == 0, screen[-3000:]
    total = manifest_of(folder)["counts"]["total"]
    assert total >= 5 and f"{total}/{total} tests" in screen and "running test" in screen
    assert re.search(r"gw\d\s+test_storage_recharge\.py::\S+\s+\d+ s\s+\d+ (s|min|h)", screen), \
        "the long test's virtual time was not shown"
    assert f"packrig run run: {total} passed of {total}" in screen
    assert f"{total} passed" in (folder / "pytest-output.txt").read_text()
