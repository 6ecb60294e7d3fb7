"""A test's title for people: its function name in words, with its parameters in words.

``test_holds_short_of_the_threshold_then_trips_in_time[cell_over_voltage-L2]`` reads
``Holds short of the threshold then trips in time · cell over voltage, L2``. The Allure report
and the traceability matrix both title tests this way, so a test is found by the same words in each.
"""
from __future__ import annotations


def test_title(name: str) -> str:
    """The title of a test from its name or node id (``path::test_x[param-id]`` or ``test_x``)."""
    name = name.rsplit("::", 1)[-1]
    function, _, params = name.partition("[")
    words = function.removeprefix("test_").replace("_", " ").strip() or function
    title = words[0].upper() + words[1:]
    params = params.removesuffix("]")
    if params:
        title += " · " + ", ".join(part.replace("_", " ") for part in params.split("-"))
    return title


test_title.__test__ = False  # a helper, not a test, whatever pytest collects it with
