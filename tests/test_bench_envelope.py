"""A bench file can only tighten the pack's safety envelope (PACK_SPEC.md 5, in the pack spec).

Each bad bench here is a shipped bench (the real example or the emulated one) with ONE field
changed, the way a user edits it: every direction that loosens a limit, watchdogs too long,
zero, switched off or shorter than two supervisor periods, a supervisor period that reaches the
silence limit, limits out of order, a wrong type. Each must be refused in one line that names
the field; a looser value also names the bench's value and the envelope's.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.cli import main
from rig.errors import ConfigError
from rig.files.bench_file import BENCHES, EMULATED_BENCH, load_bench
from rig.files.envelope import RULES, check_bench_against, limits_in_force
from rig.files.pack_spec import DEFAULT_PACK_SPEC, load_pack_spec

REAL_BENCH = BENCHES / "example-real.toml"
ENVELOPE = load_pack_spec().safety_envelope


def with_value(text: str, section: str, key: str, value: str | None) -> str:
    """``text`` (a TOML file) with ``key`` of ``[section]`` set to ``value`` (TOML source), added
    when absent, or removed when ``value`` is None."""
    header = f"[{section}]"
    start = text.index(header) + len(header)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end
    body = text[start:end]
    line = re.compile(rf"^{re.escape(key)}\s*=.*$", re.M)
    if value is None:
        assert line.search(body), f"test setup: no {key} in [{section}]"
        new_body = line.sub("", body, count=1)
    elif line.search(body):
        new_body = line.sub(lambda m: f"{key} = {value}", body, count=1)
    else:
        new_body = f"\n{key} = {value}" + body
    return text[:start] + new_body + text[end:]


def bench_copy(tmp_path: Path, original: Path, section: str, key: str, value: str | None) -> Path:
    """A copy of a shipped bench in ``tmp_path`` with one field changed; its pack spec is the
    project's (an absolute path, since the copy is elsewhere)."""
    text = original.read_text().replace('pack_spec = "../../testcases/pack_spec.toml"',
                                        f'pack_spec = "{DEFAULT_PACK_SPEC}"')
    path = tmp_path / f"{original.stem}-{key}.toml"
    path.write_text(with_value(text, section, key, value))
    return path


def spec_with(tmp_path: Path, field: str, value: str, name: str = "stricter_spec.toml") -> Path:
    """A copy of the project's pack spec whose safety envelope has ``field`` set to ``value``."""
    path = tmp_path / name
    path.write_text(with_value(DEFAULT_PACK_SPEC.read_text(), "safety_envelope", field, value))
    return path


# (bench, section, key, looser value): every envelope field, loosened in its one bad direction
LOOSER = [
    (REAL_BENCH, "limits", "psu_max_voltage_v", "64.6"),
    (REAL_BENCH, "limits", "psu_max_voltage_v", "130.0"),
    (EMULATED_BENCH, "limits", "psu_max_voltage_v", "80"),
    (REAL_BENCH, "limits", "psu_max_current_a", "80.5"),
    (EMULATED_BENCH, "limits", "psu_max_current_a", "150.0"),
    (REAL_BENCH, "limits", "chamber_min_c", "-26.0"),
    (EMULATED_BENCH, "limits", "chamber_min_c", "-40.0"),
    (REAL_BENCH, "limits", "chamber_max_c", "71.0"),
    (EMULATED_BENCH, "limits", "chamber_max_c", "150.0"),
    (REAL_BENCH, "limits", "group_max_v", "3.77"),
    (EMULATED_BENCH, "limits", "group_max_v", "4.2"),
    (REAL_BENCH, "limits", "group_sustained_max_v", "3.66"),
    (EMULATED_BENCH, "limits", "group_sustained_max_v", "3.75"),
    (REAL_BENCH, "limits", "group_sustained_for_s", "61.0"),
    (EMULATED_BENCH, "limits", "group_sustained_for_s", "3600.0"),
    (REAL_BENCH, "limits", "group_min_v", "1.99"),
    (EMULATED_BENCH, "limits", "group_min_v", "0.5"),
    (REAL_BENCH, "limits", "pack_max_v", "60.3"),
    (EMULATED_BENCH, "limits", "pack_max_v", "64.0"),
    (REAL_BENCH, "limits", "pack_min_v", "37.9"),
    (EMULATED_BENCH, "limits", "pack_min_v", "20.0"),
    (REAL_BENCH, "limits", "pack_connected_above_v", "1.5"),
    (EMULATED_BENCH, "limits", "pack_connected_above_v", "30.0"),
    (REAL_BENCH, "limits", "current_max_a", "161.0"),
    (EMULATED_BENCH, "limits", "current_max_a", "1000.0"),
    (REAL_BENCH, "limits", "current_max_for_s", "0.011"),
    (EMULATED_BENCH, "limits", "current_max_for_s", "5.0"),
    (REAL_BENCH, "limits", "short_circuit_max_a", "2001.0"),
    (EMULATED_BENCH, "limits", "short_circuit_max_a", "5000.0"),
    (REAL_BENCH, "limits", "short_circuit_max_for_s", "0.02"),
    (EMULATED_BENCH, "limits", "short_circuit_max_for_s", "1.0"),
    (REAL_BENCH, "limits", "case_max_c", "65.5"),
    (EMULATED_BENCH, "limits", "case_max_c", "120.0"),
    (REAL_BENCH, "limits", "case_min_c", "-25.5"),
    (EMULATED_BENCH, "limits", "case_min_c", "-60.0"),
    (REAL_BENCH, "limits", "instrument_silent_s", "2.5"),
    (EMULATED_BENCH, "limits", "instrument_silent_s", "60.0"),
    (EMULATED_BENCH, "supervisor", "period_s", "1.5"),
    (EMULATED_BENCH, "supervisor", "period_s", "1.9"),
    (REAL_BENCH, "instruments.psu", "watchdog_s", "5.5"),
    (REAL_BENCH, "instruments.psu", "watchdog_s", "60.0"),
    (EMULATED_BENCH, "instruments.psu", "watchdog_s", "60.0"),
    (REAL_BENCH, "instruments.eload", "watchdog_s", "6.0"),
    (EMULATED_BENCH, "instruments.eload", "watchdog_s", "60.0"),
    (REAL_BENCH, "instruments.io", "watchdog_s", "30.0"),
    (EMULATED_BENCH, "instruments.io", "watchdog_s", "60.0"),
]


def _id(case) -> str:
    return f"{case[0].stem}-{case[2]}={case[3]}"


@pytest.mark.parametrize("original,section,key,value", LOOSER, ids=[_id(c) for c in LOOSER])
def test_a_looser_value_is_refused_naming_field_and_both_values(tmp_path, original, section, key, value):
    path = bench_copy(tmp_path, original, section, key, value)
    with pytest.raises(ConfigError) as info:
        load_bench(path)
    err, text = info.value, str(info.value)
    assert "\n" not in text
    assert err.file == str(path)
    assert err.field == f"{section}.{key}", text
    envelope_field = next(e for b, e, _ in RULES if b == f"{section}.{key}")
    assert f"{float(value):g} " in text                                   # the bench's value
    assert f"{getattr(ENVELOPE, envelope_field):g} " in text                # the envelope's
    assert f"safety_envelope.{envelope_field}" in text and "looser" in text


def test_every_envelope_rule_is_tried_in_its_loosening_direction():
    tried = {f"{section}.{key}" for _, section, key, _ in LOOSER}
    # the e-load's cap equals current_max_a in both benches: raising it alone breaks their order
    # first (INCONSISTENT), and the envelope's own rule is tried against a stricter spec below
    assert tried | {"limits.eload_max_current_a"} == {bench for bench, _, _ in RULES}


def test_the_eload_cap_against_a_stricter_envelope(tmp_path):
    spec = spec_with(tmp_path, "eload_max_current_a", "100.0")
    with pytest.raises(ConfigError) as info:
        check_bench_against(load_pack_spec(spec), load_bench(EMULATED_BENCH), spec)
    assert info.value.field == "limits.eload_max_current_a"
    assert "160 A is looser than the pack's safety envelope: at most 100 A" in str(info.value)


# (bench, section, key, value, what the one line says): inconsistent or wrongly typed benches
INCONSISTENT = [
    (REAL_BENCH, "instruments.psu", "watchdog_s", None, "required but missing"),        # off
    (EMULATED_BENCH, "instruments.psu", "watchdog_s", None, "required but missing"),
    (REAL_BENCH, "instruments.psu", "watchdog_s", "0", "greater than 0"),
    (EMULATED_BENCH, "instruments.eload", "watchdog_s", "0.0", "greater than 0"),
    (EMULATED_BENCH, "instruments.io", "watchdog_s", "0", "greater than 0"),
    (REAL_BENCH, "instruments.psu", "watchdog_s", '"off"', "valid number"),
    (REAL_BENCH, "instruments.eload", "watchdog_s", "false", "valid number"),
    (REAL_BENCH, "instruments.psu", "watchdog_s", "-1.0", "greater than 0"),
    (REAL_BENCH, "instruments.psu", "watchdog_s", "0.05", "at least twice supervisor.period_s"),
    (EMULATED_BENCH, "instruments.psu", "watchdog_s", "1.5", "at least twice supervisor.period_s"),
    (EMULATED_BENCH, "instruments.io", "watchdog_s", "1.0", "at least twice supervisor.period_s"),
    (REAL_BENCH, "supervisor", "period_s", "2.0", "must be below limits.instrument_silent_s"),
    (EMULATED_BENCH, "supervisor", "period_s", "2.0", "must be below limits.instrument_silent_s"),
    (REAL_BENCH, "supervisor", "period_s", "5.0", "must be below limits.instrument_silent_s"),
    (REAL_BENCH, "limits", "instrument_silent_s", "0.05", "supervisor.period_s"),
    (EMULATED_BENCH, "limits", "instrument_silent_s", "0.5", "supervisor.period_s"),
    (REAL_BENCH, "supervisor", "period_s", "0", "greater than 0"),
    (REAL_BENCH, "limits", "pack_max_v", "37.5", "pack_min_v (38.0) must be below pack_max_v (37.5)"),
    (REAL_BENCH, "limits", "group_sustained_max_v", "3.76", "group_sustained_max_v (3.76) must be below"),
    (EMULATED_BENCH, "limits", "group_min_v", "3.7", "group_min_v (3.7) must be below"),
    (REAL_BENCH, "limits", "chamber_min_c", "70.0", "chamber_min_c (70.0) must be below chamber_max_c"),
    (EMULATED_BENCH, "limits", "case_min_c", "65.0", "case_min_c (65.0) must be below case_max_c"),
    (REAL_BENCH, "limits", "pack_connected_above_v", "40.0", "pack_connected_above_v (40.0) must be below"),
    (REAL_BENCH, "limits", "psu_max_current_a", "170.0", "psu_max_current_a (170.0) must be at most"),
    (EMULATED_BENCH, "limits", "eload_max_current_a", "5000.0", "eload_max_current_a (5000.0) must be at"),
    (REAL_BENCH, "limits", "short_circuit_max_a", "100.0", "must be at most short_circuit_max_a (100.0)"),
    (REAL_BENCH, "limits", "psu_max_voltage_v", '"64.5"', "valid number"),
    (REAL_BENCH, "limits", "psu_max_voltage_v", "true", "valid number"),
    (EMULATED_BENCH, "limits", "group_max_v", "nan", "group_max_v"),
    (EMULATED_BENCH, "limits", "psu_max_voltage_v", "inf", "psu_max_voltage_v"),
    (REAL_BENCH, "limits", "chamber_min_c", "-inf", "chamber_min_c"),
    (REAL_BENCH, "limits", "pack_min_v", "[38.0]", "valid number"),
    (REAL_BENCH, "limits", "current_max_a", "{ a = 1 }", "valid number"),
    (REAL_BENCH, "limits", "case_max_c", "1979-05-27", "valid number"),
    (REAL_BENCH, "features", "has_chamber", "1", "valid boolean"),
    (REAL_BENCH, "features", "psu_can_sink", '"yes"', "valid boolean"),
    (REAL_BENCH, "instruments.psu", "timeout_s", "true", "valid number"),
]


@pytest.mark.parametrize("original,section,key,value,says", INCONSISTENT,
                         ids=[f"{c[0].stem}-{c[2]}={c[3]}" for c in INCONSISTENT])
def test_an_inconsistent_or_wrongly_typed_bench_is_refused_in_one_line(tmp_path, original, section, key,
                                                                       value, says):
    path = bench_copy(tmp_path, original, section, key, value)
    with pytest.raises(ConfigError) as info:
        load_bench(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert key in text and says in text, text


def test_fifty_bad_benches_at_least():
    assert len(LOOSER) + len(INCONSISTENT) >= 50


# --- the shipped benches, the table, the plugin and the command ----------------------------------

@pytest.mark.parametrize("path", sorted(BENCHES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_benches_fit_the_envelope(path):
    bench = load_bench(path)
    check_bench_against(bench.spec, bench)
    assert bench.file.supervisor.period_s < bench.file.limits.instrument_silent_s
    assert bench.file.supervisor.period_s <= ENVELOPE.supervisor_max_period_s


def test_limits_in_force_show_bench_and_envelope_per_field():
    lines = limits_in_force(load_bench(REAL_BENCH))
    rows = {line.split()[0]: line for line in lines[2:] if line.split()[0] != "and:"}
    assert set(rows) == {bench for bench, _, _ in RULES}
    assert re.search(r"supervisor\.period_s\s+0\.05 s\s+<= 1 s\s+0\.05 s, the bench's \(tighter\)",
                     rows["supervisor.period_s"])
    assert re.search(r"64\.5 V\s+<= 64\.5 V\s+64\.5 V, the envelope's", rows["limits.psu_max_voltage_v"])
    assert ">= 2 V" in rows["limits.group_min_v"]
    assert "none" in rows["instruments.io.watchdog_s"]  # the real DAQ970A has no watchdog of its own


def test_a_stricter_pack_spec_refuses_a_bench_its_own_spec_accepts(tmp_path):
    """--pack-spec OTHER: the bench must fit the envelope of the spec in force, too."""
    stricter = spec_with(tmp_path, "psu_max_voltage_v", "60.0")
    bench = load_bench(REAL_BENCH)
    with pytest.raises(ConfigError) as info:
        check_bench_against(load_pack_spec(stricter), bench, stricter)
    assert info.value.field == "limits.psu_max_voltage_v"
    assert "64.5 V" in str(info.value) and "at most 60 V" in str(info.value)
    assert "stricter_spec.toml" in str(info.value)


def test_an_inconsistent_envelope_is_refused_in_the_pack_spec(tmp_path):
    spec = spec_with(tmp_path, "supervisor_max_period_s", "2.0")
    with pytest.raises(ConfigError) as info:
        load_pack_spec(spec)
    assert info.value.field == "safety_envelope"
    assert "supervisor_max_period_s (2.0) must be below instrument_silent_s (2.0)" in str(info.value)


def test_packrig_check_refuses_a_looser_bench_in_one_line(tmp_path, capsys):
    path = bench_copy(tmp_path, REAL_BENCH, "limits", "eload_max_current_a", "5000.0")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: limits" in err and "eload_max_current_a (5000.0)" in err


def test_packrig_check_shows_the_limits_in_force(capsys):
    assert main(["check", str(REAL_BENCH)]) == 0
    out = capsys.readouterr().out
    assert "limits in force on bench 'lab-bench-1'" in out and "REQ-RIG-5" in out
    assert "instruments.psu.watchdog_s" in out and "<= 5 s" in out


def test_packrig_check_holds_a_bench_to_a_spec_named_beside_it(tmp_path, capsys):
    stricter = spec_with(tmp_path, "watchdog_max_s", "2.0")
    bench = bench_copy(tmp_path, EMULATED_BENCH, "instruments.psu", "watchdog_s", "3.0")
    assert main(["check", str(bench), str(stricter)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "instruments.psu.watchdog_s: 3 s is looser" in err[0] and "at most 2 s" in err[0]


def test_the_pytest_plugin_refuses_a_bench_looser_than_the_pack_spec_in_force(tmp_path):
    stricter = spec_with(tmp_path, "group_max_v", "3.70")
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path),
                           "--bench", str(REAL_BENCH), "--pack-spec", str(stricter)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if "limits.group_max_v" in line]
    assert len(lines) == 1 and "3.76 V is looser" in lines[0] and "at most 3.7 V" in lines[0], done.stderr
