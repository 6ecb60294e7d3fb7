"""The packrig command: `check` validates the user's files and says what is wrong."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from rig.cli import main
from rig.files.bench_file import BENCHES, EMULATED_BENCH
from emulator.firmware.profile import CONFORMING_PROFILE
from rig.files.pack_spec import DEFAULT_PACK_SPEC


def test_check_accepts_every_shipped_file(capsys):
    files = [str(p) for p in sorted(BENCHES.glob("*.toml"))] + [str(DEFAULT_PACK_SPEC), str(CONFORMING_PROFILE)]
    assert main(["check", *files]) == 0
    out = capsys.readouterr().out
    assert "(bench)" in out and "(spec)" in out and "(firmware)" in out


def test_check_names_file_field_and_range(tmp_path, capsys):
    bad = tmp_path / "bench.toml"
    bad.write_text(EMULATED_BENCH.read_text().replace("chamber_max_c = 70.0", "chamber_max_c = 700.0"))
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: limits.chamber_max_c" in err and "[-80.0, 200.0]" in err


def test_check_refuses_a_file_of_unknown_kind(tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text("[something]\nx = 1\n")
    assert main(["check", str(other)]) == 1
    assert "not a bench file" in capsys.readouterr().err


# --- packrig run: bad input is one line and exit code 4, before anything runs --------------------

def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments of `packrig run`, what the one line must say)."""
    bad_bench = tmp / "bad-bench.toml"
    bad_bench.write_text(EMULATED_BENCH.read_text().replace("chamber_max_c = 70.0", "chamber_max_c = 700.0"))
    bad_fw = tmp / "bad-firmware.toml"
    bad_fw.write_text(CONFORMING_PROFILE.read_text().replace(
        "l2 = { threshold = 3.60, delay_s = 1.0 }", "l2 = { threshold = 3.60, delay_s = -1.0 }"))
    bad_spec = tmp / "bad-spec.toml"
    bad_spec.write_text(DEFAULT_PACK_SPEC.read_text().replace("groups = 16", "groups = -16", 1))
    in_the_way = tmp / "a-file"
    in_the_way.write_text("")
    return {
        "bench missing": (["--bench", str(tmp / "nowhere.toml")], "nowhere.toml"),
        "bench invalid": (["--bench", str(bad_bench)], "limits.chamber_max_c"),
        "firmware missing": (["--firmware", str(tmp / "nofw.toml")], "nofw.toml"),
        "firmware invalid": (["--firmware", str(bad_fw)], "bad-firmware.toml"),
        "pack spec invalid": (["--pack-spec", str(bad_spec)], "ratings.groups"),
        "marker expression": (["-m", "protection and"], "bad -m expression"),
        "keyword expression": (["-k", "L2 and ("], "bad -k expression"),
        "workers": (["--workers", "many"], "--workers"),
        "report folder unwritable": (["--reports", str(in_the_way / "run")], "is a file"),
    }


BAD_INPUTS = ["bench missing", "bench invalid", "firmware missing", "firmware invalid", "pack spec invalid",
              "marker expression", "keyword expression", "workers", "report folder unwritable"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_run_refuses_bad_input_in_one_line_before_anything_runs(tmp_path, capsys, case):
    args, said = _bad_inputs(tmp_path)[case]
    folder = tmp_path / "run"
    if "--reports" not in args:
        args = [*args, "--reports", str(folder)]
    assert main(["run", "--plain", *args]) == 4
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and said in err, err
    assert "Traceback" not in out + err and out == ""  # nothing started: not even the run folder's line
    assert not folder.exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"packrig \d+\.\d+\S*( \(git [0-9a-f]{12}\))?\n", capsys.readouterr().out)
