"""The plot of every test with a bench: made from its recording after the test, attached to the
test's Allure result with the CAN log and the samples CSV, never a part of the verdict.

Two ways in: real test cases of the suite run in a child pytest against the emulated bench
(``--run-dir`` and ``--alluredir`` in tmp_path), and a short recording made here with the rig's
recorder, whose figure is inspected artist by artist.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rig.clock import VirtualClock
from rig.files.pack_spec import load_pack_spec
from rig.measure import Limits, Measurement
from rig.protocol.can_frames import encode
from rig.recorder import Recorder, file_stem, read_can, read_samples
from rig.report import plots
from rig.report.plot_data import last_window, read_recording, runs

ROOT = Path(__file__).resolve().parents[1]
PROTECTION = ("testcases/test_protections.py::"
              "test_level2_protects_and_opens_the_relays_if_current_keeps_flowing[cell_over_voltage]")
LIGHTS = "testcases/test_lights_soc.py::test_soc_lights_charging[charging-26-50pct]"


def _run(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[Path, Path, subprocess.CompletedProcess]:
    run, results = tmp_path / "run", tmp_path / "allure-results"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--run-dir", str(run),
                           "--alluredir", str(results), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    return run / "recordings", results, done


def _results(results: Path) -> list[dict]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in results.glob("*-result.json")]


def _attached(results: Path, result: dict) -> dict[str, Path]:
    return {a["type"]: results / a["source"] for a in result.get("attachments", [])}


def test_a_protection_test_and_a_light_test_have_their_plot_can_log_and_csv_attached(tmp_path):
    recordings, results, done = _run(tmp_path, PROTECTION, LIGHTS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = _results(results)
    assert len(tests) == 2
    for node_id in (PROTECTION, LIGHTS):
        stem = file_stem(node_id)
        png, log, csv = (recordings / f"{stem}{suffix}" for suffix in (".png", ".asc", ".samples.csv"))
        with Image.open(png) as image:
            assert (image.format, image.size) == ("PNG", plots.SIZE_PX)
        (result,) = [r for r in tests if f"plot {stem}.png" in [a["name"] for a in r.get("attachments", [])]]
        assert result["status"] == "passed"
        attached = _attached(results, result)
        assert set(attached) == {"image/png", "text/plain", "text/csv"}, result.get("attachments")
        assert attached["image/png"].read_bytes() == png.read_bytes()
        assert attached["text/plain"].read_bytes() == log.read_bytes()
        assert attached["text/csv"].read_bytes() == csv.read_bytes()
    # the light test recorded its lights (the lanes of its plot), the protection test's log has
    # the rig's own heartbeat as Tx and its level changes on CAN
    light_rows = [r for r in read_samples(recordings / f"{file_stem(LIGHTS)}.samples.csv") if r["name"].startswith("light:")]
    assert {r["name"] for r in light_rows} >= {f"light:{n}" for n in ("run", "alm", "led1", "led2", "led3", "led4")}
    rec = read_recording(recordings / f"{file_stem(LIGHTS)}.asc", recordings / f"{file_stem(LIGHTS)}.samples.csv")
    assert {on for _, _, on in runs(rec.lights["led2"].t, rec.lights["led2"].v, None, 0.05)} == {True, False}
    frames = read_can(recordings / f"{file_stem(PROTECTION)}.asc")
    assert {m.arbitration_id for m in frames if not m.is_rx} == {0x305}
    rec = read_recording(recordings / f"{file_stem(PROTECTION)}.asc", recordings / f"{file_stem(PROTECTION)}.samples.csv")
    assert max(rec.bms["CellOverVoltageLevel"].v) == 2.0  # the L2 the plot draws, as the pack reported it
    manifest = json.loads((recordings.parent / "manifest.json").read_text())
    assert all(t["recordings"]["plot"] == f"recordings/{file_stem(t['nodeid'])}.png" for t in manifest["tests"])


BROKEN_PLOTS = """
import rig.report.plots

def _broken(*args, **kwargs):
    raise RuntimeError("the plotter broke")

rig.report.plots.plot_test = _broken
"""


def test_a_plot_that_fails_is_attached_as_its_error_and_the_verdict_stands(tmp_path):
    (tmp_path / "broken_plots.py").write_text(BROKEN_PLOTS, encoding="utf-8")
    recordings, results, done = _run(tmp_path, "-p", "broken_plots", LIGHTS,
                                     env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = _results(results)
    assert result["status"] == "passed"
    by_name = {a["name"]: results / a["source"] for a in result["attachments"]}
    assert "RuntimeError: the plotter broke" in by_name["plot failed"].read_text()
    assert any(n.startswith("CAN log") for n in by_name) and any(n.startswith("samples") for n in by_name)
    assert not list(recordings.glob("*.png"))


def test_no_plots_leaves_the_can_log_and_csv_attached(tmp_path):
    recordings, results, done = _run(tmp_path, "--no-plots", LIGHTS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = _results(results)
    assert set(_attached(results, result)) == {"text/plain", "text/csv"}
    assert not list(recordings.glob("*.png")) and len(list(recordings.glob("*.asc"))) == 1


# --- the figure, artist by artist, from a recording made here -------------------------------------

def _recording(tmp_path: Path, can_format: str = "asc") -> Recorder:
    """Nine virtual seconds of a cell over-voltage trip: group 16 driven at 3 s, L2 reported at
    5 s, the current cut at 6 s; lights watched from 6 s."""
    clock = VirtualClock()
    recorder = Recorder(tmp_path, "testcases/test_x.py::test_trip[cell_over_voltage]", can_format, clock=clock)
    for t in range(10):
        driven = 3.63 if t >= 3 else 3.30
        level = 2 if t >= 5 else 0
        current = 16.0 if t < 6 else 0.0
        frames = [encode("PackMeasurements", {"Voltage": 52.8, "Current": current, "Temperature": 25.0}),
                  encode("DetailSummary", {"Temperature5PowerStage": 26.0, "MinGroupVoltage": 3.30,
                                           "MaxGroupVoltage": driven, "RemainingCapacity": 60.0}, pack_address=2),
                  encode("DetailGroupVoltages13to16", {f"Group{g}Voltage": driven if g == 16 else 3.30
                                                       for g in (13, 14, 15, 16)}, pack_address=2)]
        levels = {s.name: 0 for s in plots.can_frames.dbc_message("DetailProtection", 2).signals}
        frames.append(encode("DetailProtection", {**levels, "CellOverVoltageLevel": level}, pack_address=2))
        for msg in frames:
            msg.timestamp = float(t)
            recorder.on_message_received(msg)
        recorder.record_sample(float(t), pack_v=52.8, psu_a=current, eload_a=0.0,
                               **{f"group{g}_v": 3.30 for g in range(1, 17)}, case1_c=25.0)
    for k in range(60):  # lights every 0.05 s from 6 s: ALM on, LED1 flickering at 1 s
        t = 6.0 + 0.05 * k
        recorder.record_sample(t, **{"light:run": 0, "light:alm": 1, "light:led1": int((t % 1.0) < 0.5)})
    recorder.record_sample(3.0, mark="stimulus: group 16 driven to 3.63 V")
    recorder.record_sample(5.0, mark="on CAN: L2 reported")
    recorder.record_sample(6.0, mark="cut: current 0 A on the PSU read-back")
    recorder.close()
    return recorder


def test_the_figure_shows_thresholds_windows_marks_lanes_and_the_driven_group(tmp_path):
    recorder = _recording(tmp_path)
    spec = load_pack_spec()
    row = spec.protections.cell_over_voltage
    taken = [Measurement(row.id, "current cut (rig read-back), after the stimulus", 3.0, Limits(2.5, 4.0, "s"), None,
                         9.0, True, unit="s"),
             Measurement(row.id, "group 16 voltage (rig tap)", 3.5, Limits(None, 3.45, "V"), None, 8.0, False, unit="V")]
    rec = read_recording(recorder.can_path, recorder.samples_path)
    fig = plots.render(rec, title="Trip · cell over voltage", subtitle="REQ-PROT-COV", measurements=taken,
                       protection=plots.Protection("cell_over_voltage", row))
    assert tuple(fig.get_size_inches() * fig.dpi) == plots.SIZE_PX
    axes = dict(zip(("pack", "current", "groups", "temps", "status", "lights"), fig.axes))
    labels = {name: ax.get_legend_handles_labels()[1] for name, ax in axes.items()}
    # thresholds and release of the row, on the group panel, named with value and delay
    assert [label for label in labels["groups"] if label.startswith(("L1", "L2", "L3", "release"))] == [
        "L1: > 3.55 V for 2 s", "L2: > 3.6 V for 1 s", "L3: > 3.65 V for 0.5 s",
        "release 3.4 V"]
    # the driven group, named by the stimulus, from the rig's tap and from the BMS's report
    assert {"group 16, driven (rig tap)", "group 16, driven (BMS)"} <= set(labels["groups"])
    bms16 = next(line for line in axes["groups"].lines if line.get_label() == "group 16, driven (BMS)")
    assert max(bms16.get_ydata()) == pytest.approx(3.63, abs=1e-3)
    # the level on CAN steps to L2 at 5 s
    level = next(line for line in axes["status"].lines if "level" in line.get_label())
    assert list(zip(level.get_xdata(), level.get_ydata())) == [(0.0, 0.0), (5.0, 2.0), (9.0, 2.0)]
    # the window of the timed measurement: from 3 + 2.5 s to 3 + 4 s, measured at 6 s
    spans = [p.get_x() for p in axes["pack"].patches]
    assert spans and spans[0] == pytest.approx(5.5)
    # the marks: one collection per panel, black (stimulus), blue (on CAN), red (cut)
    marks = [c for c in axes["pack"].collections if c.get_transform() is not axes["pack"].transData]
    assert [tuple(seg[0]) for seg in marks[-1].get_segments()] == [(3.0, 0.0), (5.0, 0.0), (6.0, 0.0)]
    # the failed reading as a cross on the group panel, at its time
    (cross,) = [line for line in axes["groups"].lines if line.get_marker() == "X"]
    assert (cross.get_xdata()[0], cross.get_ydata()[0]) == (8.0, 3.5)
    # light lanes with the reader's own classification beside them
    lanes = [t.get_text() for t in axes["lights"].texts]
    assert "ALM on" in lanes and any(t.startswith("LED1 flickering, T = 1.00 s") for t in lanes)
    # every panel's key sits right of the panels, over no data, each label once
    fig.canvas.draw()
    right = max(ax.get_window_extent().x1 for ax in fig.axes)
    keys = [t for t in fig.texts if t.get_text() in labels["groups"]]
    assert sorted(t.get_text() for t in keys) == sorted(labels["groups"])
    assert all(t.get_window_extent().x0 > right for t in keys)


@pytest.mark.parametrize("can_format", ["asc", "blf"])
def test_the_png_is_written_beside_the_recording_from_either_log(tmp_path, can_format):
    recorder = _recording(tmp_path, can_format)
    rec = read_recording(recorder.can_path, recorder.samples_path)
    assert rec.bms["CellOverVoltageLevel"].t == [0.0, 5.0, 9.0]  # on the rig clock, from either log
    assert rec.frames == 40 and (rec.start_s, rec.end_s) == (0.0, 9.0)
    png = plots.plot_test(recorder.can_path, recorder.samples_path, recorder.can_path.with_suffix(".png"),
                          title="Trip")
    with Image.open(png) as image:
        assert image.size == plots.SIZE_PX and png.name == f"{recorder.stem}.png"


def test_runs_hold_each_sample_and_break_where_no_one_looked():
    t = [0.0, 0.05, 0.10, 0.15, 5.0, 5.05]
    v = [1, 1, 0, 0, 1, 1]
    assert runs(t, v, None, 0.05) == [(0.0, 0.10, True), (0.10, 0.20, False), (5.0, 5.10, True)]


def test_the_last_window_of_a_light_is_its_last_unbroken_observation():
    series = plots.Series([0.0, 0.05, 3.0, 3.05, 3.1], [1, 0, 0, 1, 1])
    assert last_window(series, 0.05) == [(3.0, False), (3.05, True), (3.1, True)]


def test_plots_failed_draws_only_the_test_that_failed(tmp_path):
    """``--plots failed``: a quick run keeps the plot where it explains something. A firmware whose
    cell over-voltage L2 waits 3 s instead of 1 s fails the L2 test; the light test passes."""
    conforming = (ROOT / "emulator" / "firmware" / "conforming.toml").read_text(encoding="utf-8")
    slow = tmp_path / "slow-l2.toml"
    slow.write_text(conforming.replace("l2 = { threshold = 3.60, delay_s = 1.0 }",
                                       "l2 = { threshold = 3.60, delay_s = 3.0 }", 1), encoding="utf-8")
    recordings, results, done = _run(tmp_path, "--plots", "failed", "--firmware", str(slow), PROTECTION, LIGHTS)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert [p.name for p in recordings.glob("*.png")] == [f"{file_stem(PROTECTION)}.png"]
    by_status = {r["status"]: r for r in _results(results)}
    assert set(by_status) == {"failed", "passed"}
    assert "image/png" in _attached(results, by_status["failed"])
    assert set(_attached(results, by_status["passed"])) == {"text/plain", "text/csv"}


def test_the_tests_own_readings_come_from_the_step_rows():
    from rig.report.plot_data import _READING, _readings
    assert _readings(1.5, "psu", "MEAS:VOLT?;:MEAS:CURR?", "+5.23398E+01;+1.60000E+01") == [
        (1.5, "psu_v_read", "+5.23398E+01"), (1.5, "psu_a_read", "+1.60000E+01")]
    assert _readings(2.0, "dmm", "READ?", "+5.234E+01") == [(2.0, "dmm_v_read", "+5.234E+01")]
    assert _readings(2.0, "eload", "MEAS:VOLT?;:MEAS:CURR?", "52.3") == []  # reply and queries do not pair
    assert _READING.match('4.05,step,eload,,MEAS:VOLT?;:MEAS:CURR?,52.34018;0,,0.00014')
    assert not _READING.match('4.0,step,psu,,VOLT 56,,,0.0001')  # a set-up command
    assert not _READING.match('4.0,step,scanner,,"MEAS:VOLT:DC? 10,DEF,(@101:116)","+3.26E+00",,0.0002')


def test_a_long_series_is_thinned_without_losing_a_spike():
    from rig.report.plot_data import _thin
    flat = plots.Series([float(t) for t in range(10_000)], [0.0] * 10_000)
    flat.v[5123] = 9.0  # one sample of a current spike in an emulated hour and more
    thin = _thin(flat, 100)
    assert len(thin.t) <= 200 and (5123.0, 9.0) in zip(thin.t, thin.v)
    assert thin.t == sorted(thin.t)
