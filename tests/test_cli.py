"""The packrig command: `check` validates the user's files and says what is wrong."""
from __future__ import annotations

from rig.cli import main
from rig.files.bench_file import BENCHES, EMULATED_BENCH
from rig.files.firmware_profile import CONFORMING_PROFILE
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
