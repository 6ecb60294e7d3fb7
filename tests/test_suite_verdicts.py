"""The test suite's verdicts: green on the conforming firmware, the same each run, and red —
naming the broken requirement — on a firmware broken in that requirement.

Each case edits one line of the conforming firmware profile (a buggy build), runs the test
cases of that requirement in a pytest subprocess against the emulated bench, and checks that a
test fails with the requirement's id in its failure message.
"""
from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.firmware.profile import CONFORMING_PROFILE
from rig.recorder import read_samples

ROOT = Path(__file__).resolve().parents[1]
TESTCASES = ROOT / "testcases"


def run_testcases(*args: str, cwd: Path, run_dir: Path | None = None) -> subprocess.CompletedProcess:
    """The test cases in a pytest child; its run folder (recordings, manifest) in ``run_dir``,
    default a fresh ``cwd/run-<n>``: never in the repository's reports/."""
    if run_dir is None:
        run_dir = cwd / f"run-{len(list(cwd.glob('run-*')))}"
    # plots only for failed tests: a verdict is what these check (tests/test_plots.py the plots)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--run-dir", str(run_dir), "--plots", "failed", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=900)


def outcomes(junit: Path) -> dict[str, str]:
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        verdict = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                verdict = child.tag
        result[f"{case.get('classname')}::{case.get('name')}"] = verdict
    return result


def test_whole_suite_passes_on_the_conforming_firmware_and_twice_the_same(tmp_path):
    runs = []
    for name in ("first", "second"):
        junit = tmp_path / f"{name}.xml"
        done = run_testcases(str(TESTCASES), "-n", "2", f"--junitxml={junit}", cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:]
        runs.append(outcomes(junit))
    assert runs[0] == runs[1]
    assert sum(v == "passed" for v in runs[0].values()) >= 150


#: (what is broken: old line -> new line in the profile, the tests to run, the requirement named)
BROKEN = {
    "cell OV L2 threshold": (("l2 = { threshold = 3.60, delay_s = 1.0 }", "l2 = { threshold = 3.63, delay_s = 1.0 }"),
                             ["test_protections.py", "-k", "cell_over_voltage and L2"], "REQ-PROT-COV"),
    "pack UV L1 defeated": (("l1 = { threshold = 48.0, delay_s = 2.0 }",
                             "l1 = { threshold = 48.0, delay_s = 2.0, enabled = false }"),
                            ["test_protections.py", "-k", "pack_under_voltage and L1"], "REQ-PROT-PUV"),
    "charge OT alarm bit swapped": (('can_alarm = "AlarmHighTemperature"', 'can_alarm = "AlarmLowTemperature"'),
                                    ["test_protections.py", "-k", "level1 and charge_over_temperature"],
                                    "REQ-PROT-COT"),
    "discharge OC L2 slower": (("l2 = { threshold = 96.0, delay_s = 3.0 }", "l2 = { threshold = 96.0, delay_s = 3.6 }"),
                               ["test_protections.py", "-k", "discharge_over_current and L2"], "REQ-PROT-DOC"),
    "relay 1 failure missed": (('[failures.relay1]\nfailure_bit = "FailureRelay1"',
                                '[failures.relay1]\nfailure_bit = "FailureRelay1"\ndetect = false'),
                               ["test_failures.py", "-k", "relay1"], "REQ-FAIL-R1"),
    "short circuit never cut": (("[short_circuit]\nenabled = true", "[short_circuit]\nenabled = false"),
                                ["test_protections.py", "-k", "short_circuit"], "REQ-PROT-SC"),
    "activation window too wide": (("max_v = 60.0", "max_v = 62.0"), ["test_activation.py"], "REQ-ACT-2.2"),
    "power-off flickers twice": (("flicker_count = 3", "flicker_count = 2"),
                                 ["test_power.py", "-k", "turns_the_pack_off"], "REQ-POFF-6.3"),
    "PCS alarm late": (("alarm_after_s = 30.0", "alarm_after_s = 60.0"),
                       ["test_power.py", "-k", "raises_alm"], "REQ-PCS-6.3"),
    "wrong manufacturer": (('manufacturer = "PYLON   "', 'manufacturer = "PYLONTEC"'),
                           ["test_normal_operation.py", "-k", "manufacturer"], "REQ-CAN-6"),
    "parallel join flickers thrice": (("success_flicker_count = 5", "success_flicker_count = 3"),
                                      ["test_parallel.py", "-k", "join"], "REQ-PAR-5"),
    "ALM flicker too slow": (("alm_flicker_period_s = 1.0", "alm_flicker_period_s = 2.0"),
                             ["test_lights_soc.py", "-k", "low_soc"], "REQ-LED-6.1"),
    "RS485 polls every 2 s": (("rs485_poll_period_s = 1.0", "rs485_poll_period_s = 2.0"),
                              ["test_rs485_pair.py", "-k", "polls"], "REQ-RS485-7"),
    "0x47 charge low temperature wrong": (("l1 = { threshold = 5.0, delay_s = 5.0 }",
                                           "l1 = { threshold = 3.0, delay_s = 5.0 }"),
                                          ["test_rs485_console.py", "-k", "system_parameters"], "REQ-RS485-7"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_firmware_fails_naming_its_requirement(tmp_path, case):
    (old, new), selection, requirement = BROKEN[case]
    text = CONFORMING_PROFILE.read_text()
    assert old in text, f"test setup: {old!r} is not in the conforming profile"
    broken = tmp_path / "broken.toml"
    broken.write_text(text.replace(old, new, 1))
    file, *select = selection
    done = run_testcases(str(TESTCASES / file), *select, "--firmware", str(broken), "-x", cwd=tmp_path)
    assert done.returncode == 1, f"the suite did not fail on '{case}':\n{done.stdout[-2000:]}"
    failures = re.findall(r"^E\s+.*$", done.stdout, re.M)
    assert any(requirement in line for line in failures), \
        f"no failure names {requirement} for '{case}':\n" + "\n".join(failures[:10])


CHARGE_TEST = '''
import pytest

@pytest.mark.pack_state(soc=98)
def test_charge_relies_on_the_bms_to_stop(spec, bench, pack, pcs):
    """IEC 62619 8.2.2 conditions with nothing but the BMS to stop the charge."""
    upper = spec.ratings.groups * spec.protections.cell_over_voltage.l3.threshold
    pack.power_on()
    pack.charge(spec.ratings.standard_charge_current_a, spec.iec62619.overcharge_voltage_factor * upper)
    pcs.wait_until("ChargeEnable", 0, within=3600.0, what="the BMS to stop the charge")
'''


def test_a_build_whose_over_voltage_never_cuts_is_stopped_by_the_supervisor(tmp_path):
    """Every over-voltage level defeated: the charge test fails, the supervisor stopped the charge
    at the rig's group limit (3.76 V, PACK_SPEC.md 5), and the failure message says so."""
    text = CONFORMING_PROFILE.read_text()
    for row in ("cell_over_voltage", "pack_over_voltage"):
        start = text.index(f"[protections.{row}]")
        end = text.index("[protections.", start + 1)
        section = re.sub(r"delay_s = ([0-9.]+) \}", r"delay_s = \1, enabled = false }", text[start:end])
        text = text[:start] + section + text[end:]
    broken = tmp_path / "no-over-voltage.toml"
    broken.write_text(text)
    (tmp_path / "test_charge.py").write_text(CHARGE_TEST)
    run_dir = tmp_path / "run"
    done = run_testcases(str(tmp_path / "test_charge.py"), "--firmware", str(broken), cwd=tmp_path, run_dir=run_dir)
    assert done.returncode != 0, done.stdout[-2000:]
    trip = re.search(r"SAFETY TRIP at t=[0-9.]+ s: group (\d+) voltage \(cell tap\) = ([0-9.]+) beyond 3.76 V",
                     done.stdout)
    assert trip, f"the failure does not name the supervisor's group limit:\n{done.stdout[-2000:]}"
    recording = next((run_dir / "recordings").glob("*test_charge_relies_on_the_bms_to_stop.samples.csv"))
    taps = [float(row["value"]) for row in read_samples(recording)
            if re.fullmatch(r"group\d+_v", str(row["name"]))]
    # sampled every supervisor period: the excursion it caught is the first sample above the limit
    assert max(taps) == float(trip.group(2)) and max(taps) < 3.76 + 0.02
