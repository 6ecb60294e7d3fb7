"""Loading the user's files: the shipped ones load; each kind of mistake is named precisely.

Every rejection must name the file, the field (dotted path) and what is allowed, the way a user
editing the TOML by hand needs it. The bad files are made the way a user makes them: by editing
the text of a shipped file.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.files.bench_file import BENCHES, EMULATED_BENCH, load_bench
from emulator.firmware.profile import CONFORMING_PROFILE, load_firmware_profile
from rig.files.pack_spec import DEFAULT_PACK_SPEC, load_pack_spec
from rig.files.rows import FAILURES, PROTECTIONS


def edited(tmp_path: Path, original: Path, old: str, new: str, count: int = 1) -> Path:
    """A copy of ``original`` with one textual edit."""
    text = original.read_text()
    assert old in text, f"test setup: {old!r} not in {original.name}"
    target = tmp_path / original.name
    target.write_text(text.replace(old, new, count))
    return target


def rejects(loader, path: Path, field: str, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loader(path)
    err = info.value
    assert err.file == str(path), err
    assert err.field == field, err
    for fragment in fragments:
        assert fragment in str(err), f"{fragment!r} missing from: {err}"
    return err


# --- the shipped files --------------------------------------------------------------------------

def test_shipped_pack_spec_has_every_row_of_pack_spec_md():
    spec = load_pack_spec()
    assert spec.protections.cell_over_voltage.l3.threshold == 3.65
    assert spec.protections.discharge_over_current.l3.delay_s == 0.2
    assert spec.protections.charge_over_temperature.release.margin == 5.0
    assert spec.protections.charge_over_current.release.after_cut_s == 30.0
    assert spec.short_circuit.threshold_a == 500.0
    assert spec.activation.min_v == 45.0 and spec.activation.max_v == 60.0
    assert spec.can.discharge_voltage_limit_v == 46.4
    assert [b.soc for b in spec.lights.charging] == [(0, 25), (26, 50), (51, 75), (76, 99), (100, 100)]
    assert spec.lights.charging[3].leds == (4.0, 3.0, 2.0, 1.0)
    assert spec.storage_recharge.min_rest_voltage_v == 52.0
    assert set(type(spec.protections).model_fields) == set(PROTECTIONS)
    assert set(type(spec.failures).model_fields) == set(FAILURES)


def test_conforming_profile_matches_the_pack_spec_row_by_row():
    """The conforming firmware does what the spec requires: same thresholds, delays, releases, bits."""
    spec, fw = load_pack_spec(), load_firmware_profile()
    for name in PROTECTIONS:
        req, does = getattr(spec.protections, name), getattr(fw.protections, name)
        for level in ("l1", "l2", "l3"):
            r, d = getattr(req, level), getattr(does, level)
            assert (r.threshold, r.delay_s) == (d.threshold, d.delay_s), f"{name}.{level}"
            assert d.enabled
        assert req.l3.action == does.l3.action, name
        assert req.release == does.release, name
        assert (req.can_alarm, req.can_protection, req.light) == (
            does.can_alarm, does.can_protection, does.light), name
        assert (req.quantity, req.trips, req.direction) == (does.quantity, does.trips, does.direction)
    assert spec.levels == fw.levels
    assert spec.lights.charging == fw.lights.charging
    assert spec.lights.discharging == fw.lights.discharging
    for name in FAILURES:
        assert getattr(spec.failures, name).failure_bit == getattr(fw.failures, name).failure_bit


@pytest.mark.parametrize("path", sorted(BENCHES.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_bench_files_load(path):
    bench = load_bench(path)
    assert bench.pack_spec_path.exists()
    if bench.emulated:
        assert bench.firmware_path.exists()
    else:
        assert bench.file.bench.clock == "wall"
        assert not bench.file.features.has_fault_insertion


# --- each kind of bad input, for each file kind -------------------------------------------------

def test_missing_file(tmp_path):
    rejects(load_bench, tmp_path / "nope.toml", "", "file not found")


@pytest.mark.parametrize("loader,original", [(load_bench, EMULATED_BENCH),
                                             (load_pack_spec, DEFAULT_PACK_SPEC),
                                             (load_firmware_profile, CONFORMING_PROFILE)])
def test_not_toml(tmp_path, loader, original):
    path = edited(tmp_path, original, "[meta]" if "[meta]" in original.read_text() else "[bench]",
                  "[meta")
    rejects(loader, path, "", "not valid TOML", "line")


def test_bench_value_out_of_range(tmp_path):
    path = edited(tmp_path, EMULATED_BENCH, "psu_max_voltage_v = 64.5", "psu_max_voltage_v = -64.5")
    rejects(load_bench, path, "limits.psu_max_voltage_v", "> 0.0 and <= 1000.0", "-64.5")


def test_bench_unknown_key(tmp_path):
    path = edited(tmp_path, EMULATED_BENCH, "psu_max_current_a = 80.0", "psu_max_curent_a = 80.0")
    err = rejects(load_bench, path, "limits.psu_max_curent_a", "unknown key", "psu_max_current_a")
    assert "required but missing" in str(err)  # and the real key is reported missing


def test_bench_wrong_choice(tmp_path):
    path = edited(tmp_path, EMULATED_BENCH, 'clock = "virtual"', 'clock = "fast"')
    rejects(load_bench, path, "bench.clock", "'wall' or 'virtual'", "'fast'")


def test_bench_missing_field(tmp_path):
    path = edited(tmp_path, EMULATED_BENCH, "pack_max_v = 60.2\n", "")
    rejects(load_bench, path, "limits.pack_max_v", "required but missing")


def test_bench_inconsistent_limits(tmp_path):
    path = edited(tmp_path, EMULATED_BENCH, "pack_min_v = 38.0", "pack_min_v = 61.0")
    rejects(load_bench, path, "limits", "pack_min_v (61.0) must be below pack_max_v (60.2)")


def test_bench_wrong_io_channel_name(tmp_path):
    path = edited(tmp_path, EMULATED_BENCH, "power_button = 1", "power = 1")
    rejects(load_bench, path, "instruments.io.outputs.power", "'power_button'", "'short_circuit'")


def test_bench_virtual_clock_without_emulator(tmp_path):
    text = EMULATED_BENCH.read_text()
    section = re.search(r"\[emulator\].*?\n\n", text, re.S).group(0)
    path = edited(tmp_path, EMULATED_BENCH, section, "")
    rejects(load_bench, path, "", "clock 'virtual' needs an [emulator] section")


def test_spec_wrong_type(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, "l2 = { threshold = 3.60, delay_s = 1.0 }",
                  'l2 = { threshold = "3.60 V", delay_s = 1.0 }')
    rejects(load_pack_spec, path, "protections.cell_over_voltage.l2.threshold",
            "valid number", "[-60.0, 2500.0]")


def test_spec_levels_out_of_order(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, "l2 = { threshold = 3.60, delay_s = 1.0 }",
                  "l2 = { threshold = 3.70, delay_s = 1.0 }")
    rejects(load_pack_spec, path, "protections.cell_over_voltage", "stricter from l1 to l3",
            "3.55, 3.7, 3.65")


def test_spec_release_ambiguous(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, "release = { value = 3.40 }",
                  "release = { value = 3.40, margin = 0.1 }")
    rejects(load_pack_spec, path, "protections.cell_over_voltage.release",
            "exactly one of value, margin, after_cut_s, power_cycle")


def test_spec_light_band_gap(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, "soc = [51, 75]", "soc = [52, 75]")
    rejects(load_pack_spec, path, "lights.charging", "should start at 51 %")


def test_spec_bad_light_state(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, 'leds = [2.0, 1.0, "off", "off"]',
                  'leds = [2.0, 1.0, "blink", "off"]')
    rejects(load_pack_spec, path, "lights.charging.1.leds.2", "'on' or 'off'", "valid number")


def test_spec_unknown_protection_row(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, "[protections.cell_over_voltage]",
                  "[protections.cell_overvoltage]")
    rejects(load_pack_spec, path, "protections.cell_overvoltage", "unknown key", "cell_over_voltage")


def test_spec_bad_requirement_id(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, 'id = "REQ-ACT-2.2"', 'id = "activation"')
    rejects(load_pack_spec, path, "activation.id", "REQ-")


def test_spec_can_signal_not_in_dbc(tmp_path):
    path = edited(tmp_path, DEFAULT_PACK_SPEC, 'can_alarm = "AlarmHighVoltage"',
                  'can_alarm = "AlarmHighVoltag"')
    rejects(load_pack_spec, path, "protections.cell_over_voltage.can_alarm",
            "not in the DBC", "AlarmHighVoltage")


def test_profile_wrong_type_for_enabled(tmp_path):
    path = edited(tmp_path, CONFORMING_PROFILE, "l2 = { threshold = 3.60, delay_s = 1.0 }",
                  'l2 = { threshold = 3.60, delay_s = 1.0, enabled = "maybe" }')
    rejects(load_firmware_profile, path, "protections.cell_over_voltage.l2.enabled", "boolean")


def test_profile_value_out_of_range(tmp_path):
    path = edited(tmp_path, CONFORMING_PROFILE, "sample_period_s = 0.1", "sample_period_s = 0")
    rejects(load_firmware_profile, path, "bms.sample_period_s", "> 0.0 and <= 5.0")


def test_profile_wrong_choice(tmp_path):
    path = edited(tmp_path, CONFORMING_PROFILE, "rs485_baudrate = 115200", "rs485_baudrate = 1200")
    rejects(load_firmware_profile, path, "parallel.rs485_baudrate", "115200", "1200")


def test_profile_unknown_key(tmp_path):
    path = edited(tmp_path, CONFORMING_PROFILE, "wake_enabled = true", "wake_enabeld = true")
    rejects(load_firmware_profile, path, "power_on.wake_enabeld", "unknown key", "wake_enabled")


def test_profile_swapped_bit_must_still_be_a_dbc_signal(tmp_path):
    path = edited(tmp_path, CONFORMING_PROFILE, 'failure_bit = "FailureRelay1"',
                  'failure_bit = "FailureRelay3"')
    rejects(load_firmware_profile, path, "failures.relay1.failure_bit", "not in the DBC",
            "FailureRelay2")


def test_profile_describes_a_buggy_build(tmp_path):
    """A one-line edit gives a different, still valid, firmware: that is what a buggy build is."""
    path = edited(tmp_path, CONFORMING_PROFILE, "l2 = { threshold = 3.60, delay_s = 1.0 }",
                  "l2 = { threshold = 3.60, delay_s = 1.0, enabled = false }")
    fw = load_firmware_profile(path)
    assert fw.protections.cell_over_voltage.l2.enabled is False
    assert fw.protections.cell_over_voltage.l3.enabled is True
