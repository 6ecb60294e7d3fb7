"""Fixtures of the test suite itself (the rig's fixtures come from the packrig plugin).

``pack`` and ``pack2`` are the rig's packs in the kit's terms (:class:`testcases.kit.pack.Pack`):
the manual's actions, plus ``drive`` through the bench's fault-insertion unit and the pack's CAN
``reports``.
"""
from __future__ import annotations

import pytest

from testcases.kit.pack import Pack


@pytest.fixture
def pack(pack, fault_insertion) -> Pack:
    """The pack under test (the one on the CAN bus), in the kit's terms."""
    return Pack(pack, fault_insertion)


@pytest.fixture
def pack2(pack2, fault_insertion) -> Pack:
    """The second pack of a parallel bench, in the kit's terms."""
    return Pack(pack2, fault_insertion)


@pytest.fixture
def fault_unit(request):
    """The emulator's faults (``faults``: the role and the emulator-only faults), or None where
    the bench has none (there ``faults`` skips)."""
    try:
        return request.getfixturevalue("faults")
    except pytest.skip.Exception:
        return None
