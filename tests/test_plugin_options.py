"""The pytest plugin as a user meets it: options, feature skips with their reason, bad files."""
from __future__ import annotations

import pytest

from rig.files.bench_file import BENCHES

pytest_plugins = ["pytester"]

REAL_BENCH = BENCHES / "example-real.toml"

FEATURE_TESTS = """
import pytest

@pytest.mark.needs(parallel_packs=2)
def test_parallel(bench_file):
    assert bench_file.file.features.parallel_packs == 2

@pytest.mark.needs(has_fault_insertion=True)
def test_fault(bench_file):
    assert bench_file.file.features.has_fault_insertion

def test_spec_loaded(spec):
    assert spec.activation.min_v < spec.activation.max_v
"""


def test_emulated_bench_has_every_feature(pytester):
    pytester.makepyfile(FEATURE_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_real_bench_skips_what_it_lacks_with_the_reason(pytester):
    pytester.makepyfile(FEATURE_TESTS)
    result = pytester.runpytest("--bench", str(REAL_BENCH), "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "*lab-bench-1* lacks: parallel_packs (test needs 2, bench has 1)*",
        "*lab-bench-1* lacks: has_fault_insertion (test needs True, bench has False)*",
    ])


def test_firmware_fixture_skips_on_a_real_bench(pytester):
    pytester.makepyfile("def test_fw(firmware):\n    assert firmware.meta.name\n")
    result = pytester.runpytest("--bench", str(REAL_BENCH), "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*is real: it has no firmware profile*"])


def test_bad_bench_file_is_a_usage_error_naming_file_and_field(pytester):
    bad = pytester.path / "bad.toml"
    bad.write_text(REAL_BENCH.read_text().replace("eload_max_current_a = 160.0",
                                                  "eload_max_current_a = 0"))
    pytester.makepyfile(FEATURE_TESTS)
    result = pytester.runpytest("--bench", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad.toml: limits.eload_max_current_a: *> 0.0 and <= 5000.0*"])


def test_firmware_option_refused_on_a_real_bench(pytester):
    pytester.makepyfile(FEATURE_TESTS)
    result = pytester.runpytest("--bench", str(REAL_BENCH), "--seed", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*emulated bench only*"])


def test_unknown_feature_name_is_a_usage_error(pytester):
    pytester.makepyfile("import pytest\n@pytest.mark.needs(has_teleporter=True)\ndef test_x():\n    pass\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["*unknown bench feature*has_chamber*"])
    assert result.ret != 0


# --- plain pytest: bad input is one line and exit code 4, before any test, also under xdist --------

def _one_line_usage_error(result) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:] + result.stderr.str()[-2000:]
    err = result.stderr.str().strip()
    everything = result.stdout.str() + err
    assert "Traceback" not in everything and "INTERNALERROR" not in everything, everything[-3000:]
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("case", ["bench missing", "firmware invalid", "pack spec invalid", "marker expression",
                                  "keyword expression", "run folder holds a run"])
def test_bad_input_is_one_line_and_exit_4_under_xdist(pytester, tmp_path, case):
    from emulator.firmware.profile import CONFORMING_PROFILE
    from rig.files.pack_spec import DEFAULT_PACK_SPEC

    bad_fw, bad_spec, held = tmp_path / "fw.toml", tmp_path / "spec.toml", tmp_path / "held"
    bad_fw.write_text(CONFORMING_PROFILE.read_text().replace("[bms]", "[bms]\nnot_a_field = 1", 1))
    bad_spec.write_text(DEFAULT_PACK_SPEC.read_text().replace("groups = 16", "groups = 0", 1))
    held.mkdir()
    (held / "manifest.json").write_text("{}")
    args, said = {
        "bench missing": (["--bench", str(tmp_path / "nowhere.toml")], "nowhere.toml: file not found"),
        "firmware invalid": (["--firmware", str(bad_fw)], "bms.not_a_field"),
        "pack spec invalid": (["--pack-spec", str(bad_spec)], "ratings.groups"),
        "marker expression": (["-m", "protection and"], "Wrong expression passed to '-m'"),
        "keyword expression": (["-k", "L2 and ("], "Wrong expression passed to '-k'"),
        "run folder holds a run": (["--run-dir", str(held)], "already holds a run"),
    }[case]
    pytester.makepyfile("def test_uses_the_bench(bench):\n    raise AssertionError('must not run')\n")
    if case != "run folder holds a run":
        args += ["--run-dir", str(tmp_path / "run")]
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", *args)
    assert said in _one_line_usage_error(result)
    assert "must not run" not in result.stdout.str()
    assert not (tmp_path / "run").exists()
