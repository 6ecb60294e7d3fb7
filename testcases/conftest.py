"""Fixtures of the test suite itself (the rig's fixtures come from the packrig plugin)."""
from __future__ import annotations

import pytest


@pytest.fixture
def fault_unit(request):
    """The bench's fault-insertion unit, or None where the rig has none to drive (there the
    ``faults`` fixture skips; a stimulus then goes through the instruments, or skips itself)."""
    try:
        return request.getfixturevalue("faults")
    except pytest.skip.Exception:
        return None
