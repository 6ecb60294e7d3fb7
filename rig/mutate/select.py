"""A pytest plugin for ``packrig mutate``: run only the tests of some requirements.

``pytest testcases -p rig.mutate.select --requirement REQ-PROT-COV --requirement REQ-PROT-POV``
keeps the tests whose ``requirement`` marker resolves to one of those ids (and deselects the
rest, as ``-k`` would), so a mutant is first tried against the tests meant to catch it.
"""
from __future__ import annotations

import pytest

from rig.pytest_plugin import requirement_of


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("packrig").addoption(
        "--requirement", action="append", default=[], metavar="ID",
        help="run only the tests of this requirement id (repeatable)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--requirement"))
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        found = requirement_of(item)
        (keep if found is not None and found[0] in wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
