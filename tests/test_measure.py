"""Measurements as outcomes (rig/measure.py, rig/report/allure_outcomes.py, rig/report/margin.py).

What they prove: a failed measurement is a red (failed) step in the Allure results while a
passed one is green; independent checks taken ``together()`` are all recorded and fail once,
listing each failure; a failure message names the stimulus the rig applied; the test's Allure
message is its failed measurements with the traceback as an attachment and no empty fixture
steps; ``as_dict()`` is JSON; margins are what the run contract defines.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rig.measure import Measurements, RequirementFailed, note_stimulus
from rig.report.margin import margin, worst

CONTRACT_KEYS = {"requirement", "name", "value", "unit", "low", "high", "expected", "tolerance", "outcome",
                 "at_s", "stimulus"}


class FixedClock:
    def __init__(self, t: float = 12.5):
        self.t = t

    def now(self) -> float:
        return self.t


# --- the Allure results of a small test file, run by pytest in a child process ----------------------

CHILD_TESTS = '''
import pytest
from rig.measure import MEASUREMENTS, Measurements


class Clock:
    def now(self):
        return 1.5


@pytest.fixture
def measure(request):
    request.node.stash[MEASUREMENTS] = taken = Measurements(Clock())  # as the bench fixture does
    yield taken


@pytest.fixture
def broken():
    raise RuntimeError("the fixture broke")


@pytest.mark.parametrize("level", [2])
def test_relays_open_at_level(measure, level):
    measure.stimulate("group 16 driven to 3.63 V")
    with measure.together():
        measure("trip delay", 1.0, req="REQ-A", unit="s", at_most=2.0)
        measure("Relay1Closed", 1, req="REQ-A", equals=0)
        measure("ALM light", "off", req="REQ-B", equals="on")


def test_all_pass(measure):
    measure("pack voltage", 52.0, req="REQ-A", unit="V", nominal=52.0, tolerance=0.5)


def test_with_a_broken_fixture(broken):
    pass


def test_times_out_after_a_stimulus(measure):
    measure.stimulate("POWER held 3 s")
    raise TimeoutError("no DetailStatus frame within 3 s")
'''


@pytest.fixture(scope="module")
def allure_results(tmp_path_factory) -> dict:
    """Run CHILD_TESTS with allure-pytest and our Allure plugin; the results by test name."""
    where = tmp_path_factory.mktemp("allure_child")
    (where / "test_child.py").write_text(CHILD_TESTS)
    results = where / "allure-results"
    done = subprocess.run([sys.executable, "-m", "pytest", "test_child.py", "-q", "-p", "no:cacheprovider",
                           "-p", "no:packrig", "-p", "rig.report.allure_outcomes", "--alluredir", str(results)],
                          cwd=where, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr  # one failed, two broken, one passed
    tests = {}
    for path in results.glob("*-result.json"):
        result = json.loads(path.read_text())
        tests[result["fullName"].rsplit("#", 1)[-1]] = result
    containers = [json.loads(p.read_text()) for p in results.glob("*-container.json")]
    return {"tests": tests, "containers": containers, "dir": results}


def test_a_failed_measurement_step_has_status_failed(allure_results):
    steps = allure_results["tests"]["test_relays_open_at_level"]["steps"]
    by_name = {s["name"].split(" = ")[0]: s for s in steps}
    assert by_name["REQ-A: trip delay"]["status"] == "passed"
    assert by_name["REQ-A: Relay1Closed"]["status"] == "failed"
    assert by_name["REQ-B: ALM light"]["status"] == "failed"
    assert by_name["stimulus: group 16 driven to 3.63 V"]["status"] == "passed"
    params = {p["name"]: p["value"] for p in by_name["REQ-A: Relay1Closed"]["parameters"]}
    assert params == {"value": "1", "expected": "0", "requirement": "REQ-A", "rig time": "1.500 s",
                      "stimulus": "group 16 driven to 3.63 V"}
    delay = {p["name"]: p["value"] for p in by_name["REQ-A: trip delay"]["parameters"]}
    assert delay["unit"] == "s" and delay["expected"] == "<= 2 s" and delay["value"] == "1 s"


def test_the_report_shows_every_failed_measurement_first_and_attaches_the_traceback(allure_results):
    result = allure_results["tests"]["test_relays_open_at_level"]
    assert result["status"] == "failed"
    message = result["statusDetails"]["message"]
    assert message.splitlines() == [
        "2 measurements failed: REQ-A Relay1Closed, REQ-B ALM light",
        "  REQ-A: Relay1Closed = 1, expected 0; after: group 16 driven to 3.63 V (t = 1.500 s)",
        "  REQ-B: ALM light = 'off', expected 'on'; after: group 16 driven to 3.63 V (t = 1.500 s)"]
    assert "trace" not in result["statusDetails"]
    (attachment,) = [a for a in result["attachments"] if a["name"] == "traceback (call)"]
    trace = (allure_results["dir"] / attachment["source"]).read_text()
    assert "test_child.py" in trace and "RequirementFailed" in trace


def test_titles_are_the_test_name_in_words_with_parameters(allure_results):
    assert allure_results["tests"]["test_relays_open_at_level"]["name"] == "Relays open at level · 2"
    assert allure_results["tests"]["test_all_pass"]["name"] == "All pass"


def test_fixture_steps_only_when_they_say_something(allure_results):
    fixtures = [f for c in allure_results["containers"] for f in c.get("befores", []) + c.get("afters", [])]
    assert [(f["name"], f["status"]) for f in fixtures] == [("broken", "broken")]
    broken = allure_results["tests"]["test_with_a_broken_fixture"]
    assert broken["status"] == "broken"
    assert broken["statusDetails"]["message"].startswith("RuntimeError: the fixture broke")


def test_an_error_names_the_stimulus_the_rig_applied_last(allure_results):
    result = allure_results["tests"]["test_times_out_after_a_stimulus"]
    assert result["status"] == "broken"
    assert result["statusDetails"]["message"] == "TimeoutError: no DetailStatus frame within 3 s\nafter: POWER held 3 s"


def test_a_passed_test_has_green_steps_and_no_attachment(allure_results):
    result = allure_results["tests"]["test_all_pass"]
    assert result["status"] == "passed" and [s["status"] for s in result["steps"]] == ["passed"]
    assert not result.get("attachments")


# --- the measurements themselves -------------------------------------------------------------------

def test_together_records_every_check_then_fails_once_listing_each_failure():
    measure = Measurements(FixedClock())
    with pytest.raises(RequirementFailed) as failed:
        with measure.together():
            measure("Relay1Closed", 1, req="REQ-FAIL-R1", equals=0)
            measure("Relay2Closed", 0, req="REQ-FAIL-R1", equals=0)
            measure("terminal voltage (DMM)", 51.2, req="REQ-FAIL-R1", unit="V", at_most=1.0)
    assert [m.name for m in measure.taken] == ["Relay1Closed", "Relay2Closed", "terminal voltage (DMM)"]
    assert [m.name for m in failed.value.measurements] == ["Relay1Closed", "terminal voltage (DMM)"]
    assert str(failed.value).splitlines() == [
        "2 measurements failed: REQ-FAIL-R1 Relay1Closed, REQ-FAIL-R1 terminal voltage (DMM)",
        "  REQ-FAIL-R1: Relay1Closed = 1, expected 0 (t = 12.500 s)",
        "  REQ-FAIL-R1: terminal voltage (DMM) = 51.2 V, expected <= 1 V (t = 12.500 s)"]
    assert [m.name for m in measure.failed()] == ["Relay1Closed", "terminal voltage (DMM)"]


def test_outside_together_the_first_failure_raises_at_once():
    measure = Measurements(FixedClock())
    with pytest.raises(RequirementFailed):
        measure("level", 1, req="REQ-X", at_least=2)
    assert len(measure.taken) == 1


def test_together_passes_quietly_and_nests():
    measure = Measurements(FixedClock())
    with measure.together():
        measure("a", 1, req="REQ-X", equals=1)
    with pytest.raises(RequirementFailed) as failed:
        with measure.together():
            with measure.together():
                measure("inner", 2, req="REQ-X", equals=1)
            measure("outer", 3, req="REQ-X", equals=1)
    assert [m.name for m in failed.value.measurements] == ["inner", "outer"]


def test_an_error_inside_together_carries_the_failures_before_it():
    measure = Measurements(FixedClock())
    with pytest.raises(TimeoutError) as error:
        with measure.together():
            measure("ALM light", "off", req="REQ-X", equals="on")
            raise TimeoutError("no DetailStatus frame within 3 s")
    assert "REQ-X: ALM light = 'off', expected 'on'" in "".join(error.value.__notes__)


def test_the_failure_message_names_the_last_stimulus_the_rig_applied():
    measure = Measurements(FixedClock(40.0))
    bench = SimpleNamespace(measurements=measure)
    note_stimulus(bench, "charge at 25 A up to 56.2 V (PSU)")
    note_stimulus(bench, "every group driven to 3.7 V (fault insertion)")
    with pytest.raises(RequirementFailed) as failed:
        measure("L2 trip after the stimulus", 3.4, req="REQ-PROT-COV", unit="s", at_least=1.0, at_most=2.1)
    assert str(failed.value) == ("REQ-PROT-COV: L2 trip after the stimulus = 3.4 s, expected 1.55 ± 0.55 s "
                                 "[1, 2.1]; after: every group driven to 3.7 V (fault insertion) (t = 40.000 s)")
    assert measure.taken[0].stimulus == "every group driven to 3.7 V (fault insertion)"
    assert measure.marks == [(40.0, "stimulus: charge at 25 A up to 56.2 V (PSU)"),
                             (40.0, "stimulus: every group driven to 3.7 V (fault insertion)")]
    note_stimulus(SimpleNamespace(), "a bench without a test: nothing to note")  # no error


def test_marks_are_kept_and_recorded():
    class Recorder:
        rows = []

        def record_sample(self, t, **values):
            self.rows.append((t, values))

    recorder = Recorder()
    measure = Measurements(FixedClock(3.0), recorder)
    measure.mark("L2 on CAN", at=2.25)
    measure.mark("cut measured")
    assert measure.marks == [(2.25, "L2 on CAN"), (3.0, "cut measured")]
    assert recorder.rows == [(2.25, {"mark": "L2 on CAN"}), (3.0, {"mark": "cut measured"})]


def test_drive_describes_its_stimulus_in_the_packs_terms():
    from rig.files.pack_spec import load_pack_spec
    from testcases.kit.stimulus import ELOAD, FAULT_INSERTION, PSU, described

    spec = load_pack_spec()
    bench = SimpleNamespace(limits=SimpleNamespace(psu_max_current_a=80.0, eload_max_current_a=160.0))
    pack, pack2 = (SimpleNamespace(bench=bench, spec=spec, number=n) for n in (1, 2))
    groups = spec.ratings.groups
    assert described(pack, "max_group_voltage", 3.7, FAULT_INSERTION) == \
        "group 16 driven to 3.7 V, the others to 3.55 V (fault insertion)"
    assert described(pack, "min_group_voltage", 2.7, FAULT_INSERTION) == \
        "group 16 driven to 2.7 V, the others to 2.85 V (fault insertion)"
    assert described(pack, "pack_voltage", 3.7 * groups, FAULT_INSERTION) == \
        f"pack voltage driven to {3.7 * groups:g} V, every group at 3.7 V (fault insertion)"
    assert described(pack, "charge_current", 90.0, PSU) == \
        "charge current driven to 90 A (PSU 80 A, 10 A more through fault insertion)"
    assert described(pack2, "discharge_current", 120.0, ELOAD) == \
        "pack 2: discharge current driven to 120 A (e-load 120 A)"
    assert described(pack, "max_temperature", 57.0, FAULT_INSERTION) == \
        "temperature sensor T1 driven to 57 C (fault insertion)"


def test_as_dict_has_the_contract_keys_and_is_strict_json():
    measure = Measurements(FixedClock())
    measure.stimulate("POWER held 3 s")
    with pytest.raises(RequirementFailed), measure.together():
        measure("numpy value", np.float64(3.25), req="REQ-A", unit="V", nominal=3.2, tolerance=0.1)
        measure("not a number", math.nan, req="REQ-A", unit="s", at_most=2.0, tolerance=0.5)
        measure("infinite", math.inf, req="REQ-A", at_least=0.0)
        measure("bits set", {"b", "a"}, req="REQ-A", equals=set())
        measure("a light pattern", ("on", "off"), req="REQ-A", equals=("on", "off"))
        measure("an object", object(), req="REQ-A", equals=None)
    dicts = [m.as_dict() for m in measure.taken]
    text = json.dumps(dicts, allow_nan=False)  # raises on NaN / inf / objects
    assert all(set(d) == CONTRACT_KEYS for d in json.loads(text))
    first, nan, inf, bits, pattern, obj = dicts
    assert first == {"requirement": "REQ-A", "name": "numpy value", "value": 3.25, "unit": "V",
                     "low": pytest.approx(3.1), "high": pytest.approx(3.3), "expected": None, "tolerance": 0.1,
                     "outcome": "passed", "at_s": 12.5, "stimulus": "POWER held 3 s"}
    assert (nan["value"], nan["outcome"], nan["tolerance"]) == ("nan", "failed", 0.5)
    assert inf["value"] == "inf" and inf["tolerance"] is None
    assert bits["value"] == ["a", "b"] and bits["expected"] == [] and bits["outcome"] == "failed"
    assert pattern["value"] == ["on", "off"] and pattern["outcome"] == "passed"
    assert obj["value"].startswith("<object object")


# --- margins ---------------------------------------------------------------------------------------

def _m(value, low=None, high=None, tolerance=None):
    return {"value": value, "low": low, "high": high, "tolerance": tolerance}


@pytest.mark.parametrize("measured, expected", [
    (_m(52.0, 51.5, 52.5, 0.5), 1.0),        # nominal of two-sided limits
    (_m(52.25, 51.5, 52.5, 0.5), 0.5),       # half way to the upper limit
    (_m(52.5, 51.5, 52.5, 0.5), 0.0),        # on the limit
    (_m(52.75, 51.5, 52.5, 0.5), -0.5),      # half a tolerance outside
    (_m(1.8, None, 2.1, 0.6), 0.5),          # one-sided, read against the tolerance the test gave
    (_m(0.9, 1.0, None, 0.5), -0.2),
    (_m(3, 1, None, 2), 1.0),                # ints
])
def test_margin_is_the_distance_to_the_nearer_limit_in_tolerances(measured, expected):
    assert margin(measured) == pytest.approx(expected)


@pytest.mark.parametrize("measured", [
    _m(1.8, None, 2.1, None),                # one-sided without a tolerance
    _m(1, None, None, 0.5),                  # an exact expectation
    _m("on", 1, 2, 0.5),                     # not a number
    _m(True, 0, 2, 1.0),                     # a bit is not a number here
    _m("nan", 1, 2, 0.5),                    # NaN as as_dict writes it
    _m(math.nan, 1, 2, 0.5),
    _m(1.5, 1, 2, 0.0),                      # no scale to read it against
    {},
])
def test_margin_is_none_when_it_cannot_be_known(measured):
    assert margin(measured) is None


def test_worst_margin_ignores_the_unknown():
    assert worst([0.4, None, -0.1, 1.0]) == -0.1
    assert worst([None, None]) is None


def test_margin_of_a_measurement_as_recorded():
    measure = Measurements(FixedClock())
    taken = measure("trip delay", 1.9, req="REQ-X", unit="s", at_least=1.0, at_most=2.0)
    assert taken.tolerance == pytest.approx(0.5)
    assert margin(taken.as_dict()) == pytest.approx(0.2)


# --- a real test case against a pack that trips late -------------------------------------------------

def test_a_late_trip_is_a_red_step_naming_the_stimulus_in_the_allure_results(tmp_path):
    """testcases/test_protections.py on the emulated bench, with a firmware profile whose cell
    over-voltage L2 waits 3 s instead of 1 s: through the packrig plugin, the timing measurement is
    a failed step, and the test's message is that measurement with the stimulus the rig applied."""
    root = Path(__file__).resolve().parents[1]
    conforming = (root / "emulator/firmware/conforming.toml").read_text(encoding="utf-8")
    line = "l2 = { threshold = 3.60, delay_s = 1.0 }"
    assert conforming.count(line) == 1  # the cell over-voltage row
    late = tmp_path / "late_l2.toml"
    late.write_text(conforming.replace(line, "l2 = { threshold = 3.60, delay_s = 3.0 }"), encoding="utf-8")
    results = tmp_path / "allure-results"
    test = "testcases/test_protections.py::test_holds_short_of_the_threshold_then_trips_in_time[cell_over_voltage-L2]"
    done = subprocess.run([sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider", "--firmware",
                           str(late), "--run-dir", str(tmp_path / "run"), "--alluredir", str(results)],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    from rig.files.pack_spec import load_pack_spec
    spec = load_pack_spec()
    row = spec.protections.cell_over_voltage
    from testcases.kit.rules import margin
    driven = f"group 16 driven to {row.l2.threshold + margin(spec, row):g} V, the others to"
    bound = f"expected <= {row.l2.delay_s + spec.tolerance.delay_late_s:g} s"
    assert result["status"] == "failed"
    assert result["name"] == "Holds short of the threshold then trips in time · cell over voltage, L2"
    failed = [s for s in result["steps"] if s["status"] == "failed"]
    assert [s["name"].split(" = ")[0] for s in failed] == [
        "REQ-PROT-COV: L2 trip: last report without it, after the stimulus"]
    assert {p["name"]: p["value"] for p in failed[0]["parameters"]}["stimulus"].startswith(driven)
    message = result["statusDetails"]["message"]
    assert message.startswith("REQ-PROT-COV: L2 trip: last report without it, after the stimulus = ")
    assert f"{bound}; after: {driven}" in message
    assert any(a["name"] == "traceback (call)" for a in result["attachments"])
    assert any(s["status"] == "passed" for s in result["steps"])  # the checks that held stay green
