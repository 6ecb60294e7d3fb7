"""Sharded runs merged into one: the same outcomes as one run; the split is deterministic."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rig.shard import durations, parse, split

ROOT = Path(__file__).resolve().parents[1]
#: a few protection tests: short, and several per requirement
SELECTION = "cell_over_voltage and (L1 or L2)"


def test_split_deals_every_test_once_longest_first():
    ids = [f"t{i}" for i in range(7)]
    seconds = {"t0": 10.0, "t1": 1.0, "t2": 1.0, "t3": 5.0, "t4": 5.0, "t5": 1.0}   # t6 unknown: median
    shards = split(ids, 2, seconds)
    assert sorted(shards[0] + shards[1]) == ids
    assert shards == split(list(reversed(ids)), 2, seconds), "the order of collection does not matter"
    loads = [sum(seconds.get(t, 1.0) for t in s) for s in shards]
    assert abs(loads[0] - loads[1]) <= 2.0
    assert split(ids, 3, {}) == split(ids, 3, {}) and len(split(ids, 3, {})[2]) == 2


@pytest.mark.parametrize("spec", ["0/2", "3/2", "a/b", "1", "1/0"])
def test_a_bad_shard_is_refused(spec):
    with pytest.raises(ValueError, match="--shard"):
        parse(spec)


def test_durations_come_from_a_run_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"tests": [{"nodeid": "a", "duration_s": 2.5}]}))
    assert durations(str(tmp_path)) == {"a": 2.5}
    with pytest.raises(ValueError, match="not a run's manifest"):
        durations(str(tmp_path / "nope"))


def _packrig(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_two_shards_merged_give_the_outcomes_of_one_run(tmp_path):
    common = ["run", "-k", SELECTION, "--workers", "0", "--no-html", "--plain", "--plots", "none"]
    whole = _packrig(*common, "--reports", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    for i in (1, 2):
        shard = _packrig(*common, "--shard", f"{i}/2", "--reports", str(tmp_path / f"shard{i}"))
        assert shard.returncode == 0, shard.stdout[-2000:] + shard.stderr[-2000:]
    merged = _packrig("merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                      "--reports", str(tmp_path / "merged"), "--no-html")
    assert merged.returncode == 0, merged.stdout[-2000:] + merged.stderr[-2000:]

    def outcomes(name):
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        return manifest, {t["nodeid"]: t["outcome"] for t in manifest["tests"]}

    m_whole, whole_outcomes = outcomes("whole")
    m1, o1 = outcomes("shard1")
    m2, o2 = outcomes("shard2")
    m_merged, merged_outcomes = outcomes("merged")
    assert o1 and o2 and not set(o1) & set(o2), "each shard ran a part, none twice"
    assert m1["shard"] == "1/2" and m2["shard"] == "2/2"
    assert merged_outcomes == whole_outcomes and len(whole_outcomes) >= 4
    assert m_merged["counts"] == m_whole["counts"]
    assert [s["shard"] for s in m_merged["merged_from"]] == ["1/2", "2/2"]
    assert (tmp_path / "merged" / "requirements.csv").exists()
    assert not (tmp_path / "merged" / "INCOMPLETE").exists()
    junit = (tmp_path / "merged" / "junit.xml").read_text()
    assert junit.count("<testcase ") == len(whole_outcomes)
    # same seed, same tests: the merged run compares clean with the whole one, CAN logs included
    compared = _packrig("compare", str(tmp_path / "whole"), str(tmp_path / "merged"),
                        "--out", str(tmp_path / "cmp"))
    assert compared.returncode == 0, compared.stdout[-3000:]
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["frames_compared"] and result["divergences"] == []
    # merging the same shard twice is refused in one line
    again = _packrig("merge", str(tmp_path / "shard1"), str(tmp_path / "shard1"), "--reports", str(tmp_path / "x"))
    assert again.returncode == 4 and "ran in two shards" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
