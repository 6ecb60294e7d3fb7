"""The run folder seen from pytest: where recordings go, ``manifest.json``, the progress feed.

Registered by :mod:`rig.pytest_plugin`. A session is a *rig run* when ``--run-dir DIR`` is given
(``packrig run`` always gives it) or when its tests use the ``bench`` fixture; then it writes
into ONE run folder (default ``<rootdir>/reports/runs/<UTC time>-<id>/``) and nowhere else.
``pytest tests`` (the framework's own tests) uses no bench, so it writes nothing.

Under pytest-xdist the controller (the process that started the run) owns the folder: it names
it, hands it to the workers (``workerinput``), writes the manifest and the feed. A worker puts
each test's facts (requirement ids, measurements, virtual time, recording paths) on the test's
reports as ``report.packrig``, a JSON-safe dict that xdist carries to the controller with the
report (pytest serialises a report's extra attributes).

The progress feed (``--progress-feed FILE``, given by ``packrig run``) is a JSON-lines file:
``collected`` (how many tests), ``start`` of each test and ``clock`` (the virtual time it reached,
every half second of wall time) from the process running it, ``end`` (outcome, message) from the
controller. Each event is one short ``write`` in append mode, so lines never interleave.
``packrig run`` draws it live (:mod:`rig.report.progress`).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from rig import run_folder
from rig.report import manifest as mf

#: a test's facts, built up over its setup, call and teardown (worker side)
_FACTS = pytest.StashKey[dict]()
KEEP_EVERY_S = 2.0  # wall seconds between two rewrites of the manifest during the run
_OK_EXITS = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)


def uses_bench(item) -> bool:
    """The test uses the rig's ``bench`` fixture (not a fixture of that name of its own)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get("bench") if info is not None else None
    return bool(defs) and getattr(defs[-1].func, "__module__", "") == "rig.fixtures"


class RunSession:
    """The pytest plugin object of a run folder (one per pytest process)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.worker = hasattr(config, "workerinput")
        given = config.getoption("--run-dir")
        if self.worker:
            folder = config.workerinput.get("packrig_run_dir")
        else:
            folder = given or run_folder.default_run_dir(Path(config.rootpath) / "reports")
        self.run_dir: Path | None = Path(folder).resolve() if folder else None
        self.explicit = bool(given)
        self.feed_path = (config.workerinput.get("packrig_feed") if self.worker
                          else config.getoption("--progress-feed"))
        self.started = False
        self.manifest: dict | None = None
        self.tests: dict[str, dict] = {}
        self.interrupted: str | None = None
        self._feed_lock = threading.Lock()
        self._kept_at = time.monotonic()

    # --- where things go ------------------------------------------------------------------------------
    @property
    def recordings(self) -> Path:
        return self.run_dir / run_folder.RECORDINGS

    def relative(self, path) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).resolve().relative_to(self.run_dir).as_posix()
        except ValueError:
            return str(path)

    # --- controller: the folder and the manifest ---------------------------------------------------
    def check_folder(self) -> None:
        """``--run-dir`` refuses a folder that holds a started run (its manifest), before any test."""
        if self.worker or not self.explicit:
            return
        if (self.run_dir / run_folder.MANIFEST).exists() and not self.config.getoption("--run-dir-overwrite"):
            raise pytest.UsageError(f"packrig: {self.run_dir} already holds a run; give another --run-dir "
                                    "or add --run-dir-overwrite")
        why = run_folder.writable(self.run_dir)
        if why:
            raise pytest.UsageError(f"packrig: cannot write the run folder {self.run_dir}: {why}")

    def start(self) -> None:
        if self.started or self.worker:
            return
        self.started = True
        from rig.pytest_plugin import run_facts  # the plugin knows the files in use
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            run_folder.mark_incomplete(self.run_dir, "running")
        except OSError as exc:
            raise pytest.UsageError(f"packrig: cannot write the run folder {self.run_dir}: "
                                    f"{exc.strerror or exc}") from None
        self.manifest = mf.header(run_id=self.run_dir.name, command=_command(), **run_facts(self.config))
        identity = os.environ.get("PACKRIG_PACK_IDENTITY")
        if identity:
            self.manifest["pack_identity"] = json.loads(identity)
        self.write_manifest()

    def set_pack_identity(self, identity: dict | None) -> None:
        if self.manifest is not None and identity:
            self.manifest["pack_identity"] = identity
            self.write_manifest()

    def _keep_so_far(self) -> None:
        """The manifest with the tests finished so far, every 2 s at most: a killed controller
        leaves them on disk (``complete`` stays false)."""
        now = time.monotonic()
        if now - self._kept_at < KEEP_EVERY_S:
            return
        self._kept_at = now
        tests = sorted(self.tests.values(), key=lambda t: t["nodeid"])
        self.manifest.update(tests=tests, counts=mf.counts(tests))
        self.write_manifest()

    def write_manifest(self) -> None:
        run_folder.write_json(self.run_dir / run_folder.MANIFEST, self.manifest)

    def _finish(self, exitstatus) -> None:
        complete = exitstatus in _OK_EXITS and self.interrupted is None
        why = None if complete else (self.interrupted or f"pytest ended with exit code {int(exitstatus)}")
        tests = sorted(self.tests.values(), key=lambda t: t["nodeid"])
        for t in tests:
            if t["outcome"] is None:  # set up, never called: the run stopped under it
                t["outcome"], t["message"] = "error", t["message"] or f"did not finish: {why or 'run stopped'}"
        mf.finish(self.manifest, tests, complete=complete, why=why)
        self.write_manifest()
        results = getattr(self.config.option, "allure_report_dir", None)
        if results and Path(results).is_dir():
            (Path(results) / "environment.properties").write_text(mf.environment_properties(self.manifest),
                                                                 encoding="utf-8")
        if complete:
            run_folder.mark_complete(self.run_dir)
        else:
            run_folder.mark_incomplete(self.run_dir, why)

    # --- hooks --------------------------------------------------------------------------------------
    def pytest_sessionstart(self, session) -> None:
        if self.explicit:
            self.start()

    def pytest_collection_finish(self, session) -> None:
        if self.worker or self.config.option.collectonly:
            return
        self._feed({"event": "collected", "count": len(session.items)})
        if any(uses_bench(i) for i in session.items):
            self.start()

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        # said by the process that runs the test, which knows its xdist worker id
        if self.worker or not self.config.pluginmanager.has_plugin("dsession"):
            self._feed({"event": "start", "nodeid": nodeid})

    def pytest_runtest_logreport(self, report) -> None:
        if self.worker:
            return
        facts = getattr(report, "packrig", None)
        if not self.started and not (facts and facts.get("bench")):
            return  # not a rig run (yet): e.g. the framework's own tests
        self.start()
        entry = self.tests.setdefault(report.nodeid, mf.new_test(report.nodeid))
        _merge(entry, report, facts)
        if report.when not in ("setup", "call"):  # teardown, or xdist's report of a crashed worker
            self._keep_so_far()
            self._feed({"event": "end", "nodeid": report.nodeid, "outcome": entry["outcome"],
                        "message": entry["message"], "duration_s": round(entry["duration_s"], 3),
                        "virtual_s": entry["virtual_s"], "requirements": entry["requirements"]})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        outcome.get_result().packrig = self._facts(item, call.when)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        """While the test runs, the virtual time it reached goes to the feed every 0.5 s of wall time."""
        bench = getattr(item, "funcargs", {}).get("bench") if self.feed_path and uses_bench(item) else None
        stop = threading.Event()
        if bench is not None and getattr(bench.clock, "kind", "") == "virtual":
            def tick():
                while not stop.wait(0.5):
                    self._feed({"event": "clock", "nodeid": item.nodeid, "virtual_s": round(bench.clock.now(), 1)})
            threading.Thread(target=tick, name="packrig progress", daemon=True).start()
        try:
            yield
        finally:
            stop.set()

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        from rig import exits
        problems = exits.make_all_safe()  # again (it is idempotent): the plugin's hook did it first
        self.interrupted = "interrupted (Ctrl-C or SIGTERM): " + (
            f"bench NOT made safe: {'; '.join(problems)}" if problems else "bench made safe")
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and not self.worker:
            reporter.write("\n")  # after the progress dots
            reporter.write_line(f"packrig: {self.interrupted.split(': ', 1)[1]}, run interrupted", red=True, bold=True)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        if self.worker or not self.started:
            return
        if session.shouldstop and self.interrupted is None and exitstatus not in _OK_EXITS:
            self.interrupted = str(session.shouldstop)
        self._finish(exitstatus)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.worker or not self.started or self.config.getoption("--no-run-summary"):
            return
        from rig.report.summary import summary_text
        paths = {"run folder": self.run_dir, "manifest": self.run_dir / run_folder.MANIFEST,
                 "recordings": self.recordings}
        terminalreporter.write(summary_text(self.manifest, paths))

    # --- worker: a test's facts ---------------------------------------------------------------------
    def _facts(self, item, when: str) -> dict:
        facts = item.stash.get(_FACTS, None)
        if facts is None:
            facts = item.stash[_FACTS] = {"bench": uses_bench(item), "title": _title(item),
                                          "requirements": _declared(item),
                                          "virtual_s": None, "measurements": [],
                                          "recordings": {"can": None, "samples": None, "plot": None}}
        bench = getattr(item, "funcargs", {}).get("bench") if facts["bench"] else None
        if bench is not None and when != "teardown":
            if getattr(bench.clock, "kind", "") == "virtual":
                facts["virtual_s"] = round(bench.clock.now(), 3)
            recorder = getattr(bench, "recorder", None)
            if recorder is not None:
                facts["recordings"].update(can=self.relative(recorder.can_path),
                                           samples=self.relative(recorder.samples_path))
                facts["_plot"] = str(getattr(recorder, "plot_path", None) or recorder.can_path.with_suffix(".png"))
        taken = _measurements(item)
        if taken:
            facts["measurements"] = taken
            for m in taken:
                if m.get("requirement") and m["requirement"] not in facts["requirements"]:
                    facts["requirements"].append(m["requirement"])
        if when == "teardown" and facts.get("_plot") and Path(facts["_plot"]).is_file():
            facts["recordings"]["plot"] = self.relative(facts["_plot"])
        out = {k: v for k, v in facts.items() if not k.startswith("_")}
        return json.loads(json.dumps(out, default=str))  # JSON-safe: xdist and the manifest carry it

    def _feed(self, event: dict) -> None:
        if not self.feed_path:
            return
        line = json.dumps({**event, "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                           "t": round(time.time(), 3)}) + "\n"
        with self._feed_lock:
            try:
                with open(self.feed_path, "a", encoding="utf-8") as f:
                    f.write(line)  # one write of a short line with O_APPEND: lines never interleave
            except OSError:
                pass  # the feed only draws the progress; the run goes on without it


class XdistHooks:
    """Registered only where pytest-xdist is installed (its hook is unknown otherwise)."""

    def __init__(self, session: RunSession):
        self.session, self.counted = session, False

    def pytest_configure_node(self, node) -> None:
        node.workerinput["packrig_run_dir"] = str(self.session.run_dir)
        node.workerinput["packrig_feed"] = self.session.feed_path

    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        if not self.counted:  # every worker collects the same tests
            self.counted = True
            self.session._feed({"event": "collected", "count": len(ids)})


def _merge(entry: dict, report, facts: dict | None) -> None:
    """One phase's report into the test's manifest entry (outcomes as pytest counts them)."""
    if facts:
        entry.update({k: v for k, v in facts.items() if k in ("title", "requirements", "measurements")})
        if facts.get("virtual_s") is not None:
            entry["virtual_s"] = facts["virtual_s"]
        entry["recordings"].update({k: v for k, v in facts["recordings"].items() if v})
    entry["duration_s"] = round(entry["duration_s"] + (report.duration or 0.0), 3)
    wasxfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if report.failed:
            entry["outcome"] = "failed"
        elif report.skipped:
            entry["outcome"] = "skipped"
            entry["message"] = f"xfail: {report.wasxfail}" if wasxfail else _message(report)
        else:
            entry["outcome"] = "passed"
    elif report.failed:  # setup or teardown
        if entry["outcome"] != "failed":
            entry["outcome"] = "error"
    elif report.skipped and entry["outcome"] is None:
        entry["outcome"] = "skipped"
        entry["message"] = _message(report)
    if report.failed and entry["message"] is None:
        entry["message"] = _message(report)


def _message(report) -> str | None:
    """The first line of a failure or the reason of a skip, without the exception's class name."""
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        lines = crash.message.strip().splitlines()
    else:  # a string (e.g. an xdist worker that crashed): its last line says what happened
        lines = str(longrepr).strip().splitlines()[-1:]
    first = lines[0].strip() if lines else ""
    head, sep, rest = first.partition(": ")
    if sep and head.replace(".", "").replace("_", "").isalnum() and head[:1].isalpha() and " " not in head:
        first = rest  # "rig.measure.RequirementFailed: REQ-...: ..." -> "REQ-...: ..."
    return first or None


def _title(item) -> str:
    """The docstring's first sentence (else the test's name in words), with the parameters."""
    doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip()
    name = getattr(item, "originalname", item.name).removeprefix("test_").replace("_", " ")
    sentence = " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".")
    title = sentence if 0 < len(sentence) <= 160 else name
    callspec = getattr(item, "callspec", None)
    return f"{title} [{callspec.id}]" if callspec is not None else title


def _declared(item) -> list[str]:
    from rig.pytest_plugin import requirement_of
    try:
        found = requirement_of(item)
    except pytest.UsageError:
        return []
    return [found[0]] if found else []


def _measurements(item) -> list[dict]:
    from rig import measure
    key = getattr(measure, "MEASUREMENTS", None)
    taken = getattr(item.stash.get(key, None), "taken", None) if key is not None else None
    if not taken:
        return []
    return [m.as_dict() if hasattr(m, "as_dict") else _as_dict(m) for m in taken]


def _as_dict(m) -> dict:
    """The contract's dict of a measurement, for a :class:`rig.measure.Measurement` without ``as_dict``."""
    limits = getattr(m, "limits", None)
    return {"requirement": m.requirement, "name": m.name, "value": m.value,
            "unit": getattr(limits, "unit", "") if limits else "",
            "low": getattr(limits, "low", None), "high": getattr(limits, "high", None),
            "expected": m.expected, "tolerance": None, "outcome": "passed" if m.passed else "failed",
            "at_s": m.at, "stimulus": getattr(m, "stimulus", None)}


def _command() -> list[str]:
    given = os.environ.get("PACKRIG_COMMAND")
    if given:
        return json.loads(given)
    program = Path(sys.argv[0]).name
    return ["pytest" if program in ("__main__.py", "pytest", "py.test") else program, *sys.argv[1:]]
