"""Measurements checked against a requirement: a failing pack is an outcome with a clear record.

A test case says what it measured, in which unit, against which requirement and which limits
(from the pack spec, never literals)::

    measure("trip delay", elapsed, unit="s", req=row.id, at_least=row.l2.delay_s,
            at_most=row.l2.delay_s + spec.tolerance.delay_late_s)

As in OpenHTF, a measurement is an *outcome*, pass or fail, recorded whatever it is: a row in
the recorder's CSV, an Allure step whose status is the outcome (a failed one is red) with the
value, limits, unit, requirement and stimulus as its parameters, and an entry in
:attr:`Measurements.taken` (the run's manifest and traceability matrix read it). A failure
raises :class:`RequirementFailed`, whose message names the requirement, the value, the limit,
the stimulus the rig applied last (``after: group 16 driven to 3.63 V``) and the rig time.

**Checks that do not depend on each other** are taken together, so that one failure does not
hide the others::

    with measure.together():
        measure("DetailStatus.Relay1Closed", status["Relay1Closed"], req=req, equals=1)
        measure("DetailStatus.Relay2Closed", status["Relay2Closed"], req=req, equals=1)

Every measurement in the block is recorded; at its end one :class:`RequirementFailed` lists all
that failed.

**Stimuli and marks.** The rig's stimulus helpers (:mod:`rig.pack`, ``testcases.kit.stimulus``)
call :meth:`Measurements.stimulate` with what they did, in the pack's terms; tests and helpers
call :meth:`Measurements.mark` for instants worth drawing ("L2 on CAN", "cut measured"). Both
reach the test's measurements through ``bench.measurements``, which the ``bench`` fixture sets.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from rig.clock import Clock
from rig.errors import RigError

#: Where the fixtures keep a test's :class:`Measurements` (``item.stash[MEASUREMENTS]``), so that
#: report hooks can read them after the test.
MEASUREMENTS = pytest.StashKey["Measurements"]()


class RequirementFailed(RigError, AssertionError):
    """Measurements outside their requirement's limits: the pack failed (not the rig).

    :param measurements: the failed :class:`Measurement` objects, one line each in the message.
    """

    def __init__(self, *measurements: "Measurement"):
        self.measurements = measurements
        if len(measurements) == 1:
            message = measurements[0].line()
        else:
            names = ", ".join(f"{m.requirement} {m.name}" for m in measurements)
            message = f"{len(measurements)} measurements failed: {names}\n" + "\n".join(
                f"  {m.line()}" for m in measurements)
        super().__init__(message)


@dataclass(frozen=True)
class Limits:
    """``low <= x <= high`` (either may be None); prints like the pack spec writes it."""

    low: float | None = None
    high: float | None = None
    unit: str = ""

    @classmethod
    def around(cls, nominal: float, tolerance: float, unit: str = "") -> "Limits":
        return cls(nominal - tolerance, nominal + tolerance, unit)

    def holds(self, value) -> bool:
        if isinstance(value, (int, float)) and math.isnan(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def half_width(self) -> float | None:
        """Half the width of two-sided limits (the tolerance of ``nominal ± tolerance``)."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None:
            mid, tol = (self.low + self.high) / 2, (self.high - self.low) / 2
            return f"{mid:.6g} ± {tol:.3g}{u} [{self.low:.6g}, {self.high:.6g}]"
        if self.low is not None:
            return f">= {self.low:.6g}{u}"
        if self.high is not None:
            return f"<= {self.high:.6g}{u}"
        return "any"


@dataclass(frozen=True)
class Measurement:
    """One measured value and its outcome against a requirement."""

    #: the pack spec's requirement id (``REQ-PROT-COV``).
    requirement: str
    #: what was measured, in the manual's words.
    name: str
    value: object
    #: the limits, or None for an exact expectation (:attr:`expected`).
    limits: Limits | None
    expected: object
    #: rig time of the measurement, s.
    at: float
    passed: bool
    unit: str = ""
    #: the scale of margins: half the width of two-sided limits, or the tolerance the test gave
    #: for a one-sided limit; None if unknown (see :mod:`rig.report.margin`).
    tolerance: float | None = None
    #: the stimulus the rig applied last before the measurement, in the pack's terms.
    stimulus: str | None = None

    def want(self) -> str:
        """The limit or expected value as printed beside the value."""
        return str(self.limits) if self.limits is not None else repr(self.expected)

    def shown(self) -> str:
        """The value with its unit, as printed."""
        value = f"{self.value:.6g}" if isinstance(self.value, float) else repr(self.value)
        return f"{value} {self.unit}" if self.unit else value

    def line(self) -> str:
        """One line for a failure message or a log: requirement, value, limit, stimulus, time."""
        after = f"; after: {self.stimulus}" if self.stimulus else ""
        return (f"{self.requirement}: {self.name} = {self.shown()}, expected {self.want()}{after} "
                f"(t = {self.at:.3f} s)")

    def __str__(self) -> str:
        return f"{self.line()} [{'PASS' if self.passed else 'FAIL'}]"

    def as_dict(self) -> dict:
        """The JSON-safe record the run's manifest keeps (schema: /work/notes/run-contract.md)."""
        limits = self.limits
        return {"requirement": self.requirement, "name": self.name, "value": _json_safe(self.value),
                "unit": self.unit, "low": _json_safe(limits.low) if limits else None,
                "high": _json_safe(limits.high) if limits else None,
                "expected": _json_safe(self.expected) if limits is None else None,
                "tolerance": _json_safe(self.tolerance), "outcome": "passed" if self.passed else "failed",
                "at_s": _json_safe(self.at), "stimulus": self.stimulus}


class Measurements:
    """The measuring side of one test: records every measurement, raises on a failed one."""

    def __init__(self, clock: Clock, recorder=None):
        self.clock, self.recorder = clock, recorder
        #: every measurement taken, in order.
        self.taken: list[Measurement] = []
        #: ``(t_s, label)`` events on the rig clock: stimuli and instants worth drawing.
        self.marks: list[tuple[float, str]] = []
        #: the stimulus applied last (see :meth:`stimulate`).
        self.stimulus: str | None = None
        self._failed_together: list[Measurement] | None = None

    def __call__(self, name: str, value, *, req: str, unit: str = "", at_least: float | None = None,
                 at_most: float | None = None, nominal: float | None = None, tolerance: float | None = None,
                 equals=None) -> Measurement:
        """Check ``value`` against the limits given; see the module docstring.

        :param req: the requirement id from the pack spec (``spec.protections.cell_over_voltage.id``).
        :param at_least: the lower limit (with or without ``at_most``).
        :param at_most: the upper limit.
        :param nominal: with ``tolerance``: ``nominal ± tolerance``.
        :param tolerance: with ``nominal``, the half width of the limits; with a one-sided limit,
            the scale its margin is read against (e.g. the spec's threshold tolerance).
        :param equals: an exact expected value (a state, a bit, a light pattern).
        :raises RequirementFailed: the value is outside its limits (at the end of
            :meth:`together` inside one).
        """
        if nominal is not None:
            limits = Limits.around(nominal, tolerance or 0.0, unit)
        elif at_least is not None or at_most is not None:
            limits = Limits(at_least, at_most, unit)
        else:
            limits = None
        passed = limits.holds(value) if limits is not None else value == equals
        if limits is None:
            scale = None
        elif nominal is not None or limits.half_width is None:
            scale = tolerance
        else:
            scale = limits.half_width
        m = Measurement(req, name, value, limits, equals if limits is None else None, self.clock.now(), passed,
                        unit, scale, self.stimulus)
        self.taken.append(m)
        self._record(m)
        if not passed:
            if self._failed_together is None:
                raise RequirementFailed(m)
            self._failed_together.append(m)
        return m

    @contextmanager
    def together(self):
        """Measurements that do not depend on each other: each is recorded, and at the end of the
        block one :class:`RequirementFailed` lists every one that failed. If the block ends in
        another exception (a wait that timed out), the failures are added to it as a note."""
        outer = self._failed_together
        failed = self._failed_together = []
        try:
            yield self
        except Exception as exc:
            if failed:
                exc.add_note("measurements that failed before it:\n" + "\n".join(f"  {m.line()}" for m in failed))
            raise
        finally:
            self._failed_together = outer
        if failed:
            if outer is not None:  # nested: the outer block reports them
                outer.extend(failed)
            else:
                raise RequirementFailed(*failed)

    def failed(self) -> list[Measurement]:
        """The measurements that failed so far."""
        return [m for m in self.taken if not m.passed]

    def stimulate(self, text: str, at: float | None = None) -> None:
        """Note a stimulus the rig applied, in the pack's terms ("group 16 driven to 3.63 V"):
        a mark, an Allure step, and the ``stimulus`` of the measurements that follow."""
        self.stimulus = text
        self.mark(f"stimulus: {text}", at)
        _allure_step(f"stimulus: {text}", {}, None)

    def mark(self, label: str, at: float | None = None) -> None:
        """Note an instant worth drawing on the test's plot ("L2 on CAN", "cut measured").

        :param at: rig time, s (default: now).
        """
        t = self.clock.now() if at is None else at
        self.marks.append((t, label))
        if self.recorder is not None:
            self.recorder.record_sample(t, mark=label)

    def _record(self, m: Measurement) -> None:
        if self.recorder is not None:
            self.recorder.record_sample(m.at, **{f"measure:{m.requirement}:{m.name}": m.value})
        params = {"value": m.shown(), "expected": m.want(), "requirement": m.requirement,
                  "rig time": f"{m.at:.3f} s"}
        if m.unit:
            params["unit"] = m.unit
        if m.stimulus:
            params["stimulus"] = m.stimulus
        title = f"{m.requirement}: {m.name} = {m.shown()}, expected {m.want()}"
        _allure_step(title, params, None if m.passed else RequirementFailed(m))


def note_stimulus(bench, text: str) -> None:
    """Note a stimulus on the bench's current test, if it has one (see :meth:`Measurements.stimulate`)."""
    measurements = getattr(bench, "measurements", None)
    if measurements is not None:
        measurements.stimulate(text)


def note_mark(bench, label: str, at: float | None = None) -> None:
    """Note a mark on the bench's current test, if it has one (see :meth:`Measurements.mark`)."""
    measurements = getattr(bench, "measurements", None)
    if measurements is not None:
        measurements.mark(label, at)


def _allure_step(title: str, params: dict, failure: RequirementFailed | None) -> None:
    """One finished Allure step, failed (red) when ``failure`` is given: the step is closed with
    it as its exception, as ``with allure.step(...)`` does when its body raises."""
    try:
        from allure_commons._allure import StepContext  # what allure.step() returns, with parameters
    except ImportError:  # the report is optional; the measurement is not
        return
    step = StepContext(title, params)
    step.__enter__()
    step.__exit__(type(failure) if failure else None, failure, None)


def _json_safe(x):
    """``x`` as JSON holds it: numbers, strings, booleans, None, lists; NaN and infinities and
    other objects as their text."""
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, (list, tuple, set, frozenset)):
        items = sorted(x, key=repr) if isinstance(x, (set, frozenset)) else x
        return [_json_safe(i) for i in items]
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        try:
            return _json_safe(x.item())
        except (TypeError, ValueError):
            pass
    return str(x)
