"""Measurements checked against a requirement: a failing pack is an outcome with a clear record.

A test case says what it measured, in which unit, against which requirement and which limits
(from the pack spec, never literals)::

    measure("trip delay", elapsed, unit="s", req=row.id, at_least=row.l2.delay_s,
            at_most=row.l2.delay_s + spec.tolerance.delay_late_s)

The measurement is recorded (the recorder's CSV, the Allure report) with the limit printed
beside the value, pass or fail; a failure raises :class:`RequirementFailed` whose message
names the requirement, the measured value, the expected value with its tolerance and the time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rig.clock import Clock
from rig.errors import RigError


class RequirementFailed(RigError, AssertionError):
    """A measurement outside its requirement's limits: the pack failed (not the rig)."""


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
    requirement: str
    name: str
    value: object
    limits: Limits | None
    expected: object
    at: float
    passed: bool

    def __str__(self) -> str:
        want = self.limits if self.limits is not None else repr(self.expected)
        verdict = "PASS" if self.passed else "FAIL"
        value = f"{self.value:.6g}" if isinstance(self.value, float) else repr(self.value)
        unit = f" {self.limits.unit}" if self.limits and self.limits.unit else ""
        return f"{self.requirement}: {self.name} = {value}{unit}, expected {want}, at t={self.at:.3f} s [{verdict}]"


class Measurements:
    """The measuring side of one test: records every measurement, raises on a failed one."""

    def __init__(self, clock: Clock, recorder=None):
        self.clock, self.recorder = clock, recorder
        self.taken: list[Measurement] = []

    def __call__(self, name: str, value, *, req: str, unit: str = "", at_least: float | None = None,
                 at_most: float | None = None, nominal: float | None = None, tolerance: float | None = None,
                 equals=None) -> Measurement:
        """Check ``value`` against the limits given; see the module docstring.

        :param req: the requirement id from the pack spec (``spec.protections.cell_over_voltage.id``).
        :param nominal: with ``tolerance``: ``nominal ± tolerance``.
        :param equals: an exact expected value (a state, a bit, a light pattern).
        :raises RequirementFailed: the value is outside its limits.
        """
        if nominal is not None:
            limits = Limits.around(nominal, tolerance or 0.0, unit)
        elif at_least is not None or at_most is not None:
            limits = Limits(at_least, at_most, unit)
        else:
            limits = None
        passed = limits.holds(value) if limits is not None else value == equals
        m = Measurement(req, name, value, limits, equals, self.clock.now(), passed)
        self.taken.append(m)
        self._record(m)
        if not passed:
            raise RequirementFailed(str(m))
        return m

    def _record(self, m: Measurement) -> None:
        if self.recorder is not None:
            self.recorder.record_sample(m.at, **{f"measure:{m.requirement}:{m.name}": m.value})
        try:
            import allure
            with allure.step(str(m)):
                pass
        except Exception:  # noqa: BLE001 - the report is optional; the measurement is not
            pass
