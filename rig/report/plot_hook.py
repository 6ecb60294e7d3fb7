"""Every test with a bench leaves a plot, and its report carries the plot, the CAN log and the CSV.

The ``bench`` fixture calls :func:`make_plot` once its recorder is closed: the plot
(:mod:`rig.report.plots`) goes beside the recording as ``<stem>.png`` and ``recorder.plot_path``
names it. :func:`attach_recordings`, called from ``pytest_runtest_makereport`` at teardown (the
test's Allure result is the open one then), attaches the PNG, the CAN log and the samples CSV.

A plot is a help to read a verdict, never a part of it: whatever goes wrong while plotting is
logged and attached as text ("plot failed"), and the test's outcome stays its own.
"""
from __future__ import annotations

import gc
import logging
import time
import traceback
from pathlib import Path

import pytest

from rig.files.rows import PROTECTIONS
from rig.recorder import RECORDING, Recorder

log = logging.getLogger(__name__)

#: Why a test has no plot (the error's text), for the attachment.
PLOT_ERROR = pytest.StashKey[str]()
#: Seconds the plot took (wall, and CPU of this process), for the benchmark and the curious.
PLOT_SECONDS = pytest.StashKey[float]()
PLOT_CPU_SECONDS = pytest.StashKey[float]()
#: The test's own outcome and first line of its failure, noted when its call is reported.
CALL_OUTCOME = pytest.StashKey[tuple[str, str]]()


def note_outcome(item: pytest.Item, report: pytest.TestReport) -> None:
    """Keep the outcome of the test's call (and its first failure line) for the plot's subtitle."""
    if report.when in ("setup", "call") and (report.failed or report.when == "call"):
        message = ""
        if report.failed:
            lines = str(getattr(report.longrepr, "reprcrash", None) and report.longrepr.reprcrash.message
                        or report.longreprtext).strip().splitlines()
            message = lines[0] if lines else ""
            kind, colon, rest = message.partition(": ")
            if colon and " " not in kind:  # "rig.measure.RequirementFailed: ..." -> what failed
                message = rest
        item.stash[CALL_OUTCOME] = (report.outcome if report.when == "call" else "error", message)


def wants_plot(item: pytest.Item) -> bool:
    """Whether ``item`` gets a plot: ``--plots all`` (the default), ``failed`` (a test that failed
    or errored), ``none`` (or ``--no-plots``)."""
    config = item.config
    mode = "none" if config.getoption("--no-plots", default=False) else config.getoption("--plots", default="all")
    if mode == "failed":
        return item.stash.get(CALL_OUTCOME, ("", ""))[0] in ("failed", "error")
    return mode == "all"


def make_plot(item: pytest.Item, recorder: Recorder) -> Path | None:
    """Draw the plot of ``item`` from its closed recording; never raises (see the module docstring).

    :return: the PNG's path (also ``recorder.plot_path``), or None if it could not be made.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    gc.disable()
    try:
        from rig.measure import MEASUREMENTS
        from rig.report.plots import plot_test
        measurements = item.stash.get(MEASUREMENTS, None)
        taken = list(getattr(measurements, "taken", ()))
        marks = getattr(measurements, "marks", None)
        protection, subtitle = _requirement(item, taken)
        png = recorder.can_path.with_suffix(".png")
        recorder.plot_path = plot_test(recorder.can_path, recorder.samples_path, png, title=_title(item),
                                       subtitle=subtitle, protection=protection, measurements=taken,
                                       marks=list(marks) if marks else None)
        return recorder.plot_path
    except Exception as error:  # noqa: BLE001 - a plot must never fail or hide the verdict
        text = f"no plot of {item.nodeid}: {type(error).__name__}: {error}\n\n{traceback.format_exc()}"
        log.warning("%s", text.splitlines()[0])
        item.stash[PLOT_ERROR] = text
        return None
    finally:
        gc.enable()
        item.stash[PLOT_SECONDS] = time.perf_counter() - started
        item.stash[PLOT_CPU_SECONDS] = time.process_time() - cpu_started


def attach_recordings(item: pytest.Item) -> None:
    """Attach the plot (or why there is none), the CAN log and the samples CSV to the test's
    Allure result. Nothing happens without allure-pytest or a recording."""
    recorder = item.stash.get(RECORDING, None)
    if recorder is None:
        return
    try:
        import allure
    except ImportError:
        return
    if not item.config.pluginmanager.has_plugin("allure_listener"):
        return
    try:
        if recorder.plot_path is not None and recorder.plot_path.is_file():
            allure.attach.file(str(recorder.plot_path), name=f"plot {recorder.plot_path.name}",
                               attachment_type=allure.attachment_type.PNG)
        elif PLOT_ERROR in item.stash:
            allure.attach(item.stash[PLOT_ERROR], name="plot failed", attachment_type=allure.attachment_type.TEXT)
        if recorder.can_path.is_file():
            allure.attach.file(str(recorder.can_path), name=f"CAN log {recorder.can_path.name}",
                               attachment_type=allure.attachment_type.TEXT if recorder.can_format == "asc" else None,
                               extension=recorder.can_format)
        if recorder.samples_path.is_file():
            allure.attach.file(str(recorder.samples_path), name=f"samples {recorder.samples_path.name}",
                               attachment_type=allure.attachment_type.CSV)
    except Exception as error:  # noqa: BLE001 - the report's attachments never change a verdict
        log.warning("attachments of %s: %s: %s", item.nodeid, type(error).__name__, error)


def _title(item: pytest.Item) -> str:
    try:
        from rig.report.allure_outcomes import title_of
        return title_of(item)
    except ImportError:
        return item.nodeid


def _requirement(item: pytest.Item, taken: list):
    """The protection row the test checks (or None) and the plot's subtitle: requirement id,
    title, manual and standard clauses, and the measurements' outcome."""
    from rig.pytest_plugin import requirement_of, spec_for
    from rig.report.plots import Protection
    protection, parts = None, []
    found = requirement_of(item)
    if found is not None:
        req, refs = found
        spec = spec_for(item.config)
        for name in PROTECTIONS:
            row = getattr(spec.protections, name, None)
            if row is not None and getattr(row, "id", None) == req:
                protection = Protection(name, row)
        title = getattr(protection.row, "title", "") if protection else ""
        parts.append(f"{req} {title}".strip())
        for key, label in (("manual", "manual"), ("iec", "IEC 62619"), ("ul", "UL 1973")):
            if key in refs:
                parts.append(f"{label} {refs[key]}")
    outcome, message = item.stash.get(CALL_OUTCOME, ("", ""))
    if outcome in ("failed", "error"):
        parts.insert(0, f"{outcome.upper()}: {message}" if message else outcome.upper())
    if taken:
        failed = sum(not m.passed for m in taken)
        parts.append(f"{len(taken)} measurements: {len(taken) - failed} passed" + (f", {failed} FAILED" if failed else ""))
    else:
        parts.append("no measurement taken")
    return protection, "  ·  ".join(parts)
