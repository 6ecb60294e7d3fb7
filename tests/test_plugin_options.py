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
