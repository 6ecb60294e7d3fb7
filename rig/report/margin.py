"""How far inside its limits a measurement was, as a fraction of its tolerance.

One function, shared by the traceability matrix and the comparison of runs, so that both say
the same thing about the same measurement (see /work/notes/run-contract.md):

    margin = signed distance from the value to the nearer limit (positive inside, negative
             outside) / tolerance

With two-sided limits the tolerance is half their width, so 1.0 is the nominal value, 0.0 a
value on a limit and -0.5 a value half a tolerance outside. A one-sided limit has a margin only
when the test gave the tolerance it is read against (``measure(..., at_most=x, tolerance=t)``).
An exact expectation (a bit, a state, a light) has none.
"""
from __future__ import annotations

import math


def margin(measurement: dict) -> float | None:
    """The margin of one measurement, from its ``Measurement.as_dict()`` form.

    :param measurement: a dict with ``value``, ``low``, ``high`` and ``tolerance`` (missing keys
        count as None).
    :return: the margin, or None when the value is not a finite number, there is no limit, or
        the tolerance is unknown or not positive.
    """
    value, tolerance = measurement.get("value"), measurement.get("tolerance")
    low, high = measurement.get("low"), measurement.get("high")
    if not _number(value) or not _number(tolerance) or tolerance <= 0:
        return None
    distances = [d for d in ((value - low) if _number(low) else None,
                             (high - value) if _number(high) else None) if d is not None]
    if not distances:
        return None
    return min(distances) / tolerance


def worst(margins) -> float | None:
    """The smallest of ``margins`` that is known (None when none is)."""
    known = [m for m in margins if m is not None]
    return min(known) if known else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
