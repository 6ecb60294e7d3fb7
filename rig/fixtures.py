"""The pytest fixtures in the pack's terms (registered by :mod:`rig.pytest_plugin`).

Each test gets a fresh bench in a known state: on an emulated bench a new emulator with the
packs the test asks for (``@pytest.mark.needs(parallel_packs=2)`` → two) at the state it asks
for (``@pytest.mark.pack_state(soc=30)``); on a real bench the same instruments, brought to
that state by a conditioning step. Around every test: the safety supervisor running, the PCS
stand-in sending its heartbeat, everything recorded under ``reports/recordings/<test>``, and
on the way out, however the test ends, the bench in its safe state.

Fixtures: ``bench``, ``pack`` (and ``pack2``), ``pcs``, ``lights``, ``chamber``,
``fault_insertion``, ``faults``, ``measure``, ``recorder``, ``supervisor``; ``spec``,
``firmware``, ``bench_file`` come from the plugin.
"""
from __future__ import annotations

import logging

import pytest

from instruments.roles import FaultInsertion
from rig import exits
from rig.bench import Bench
from rig.conditioning import Conditioning
from rig.equipped_bench import EquippedBench
from rig.files.bench_file import LoadedBench
from rig.light_reader import LightReader
from rig.measure import MEASUREMENTS, Measurements
from rig.pack import Pack
from rig.pytest_plugin import recordings_dir
from rig.pcs import PcsStandIn
from rig.recorder import RECORDING, Recorder
from rig.report.plot_hook import attach_recordings, make_plot, note_outcome, wants_plot
from rig.supervisor import Supervisor

# python-can's socketcand client warns on every read that ends mid-frame (bursts do)
logging.getLogger("can.interfaces.socketcand.socketcand").setLevel(logging.ERROR)


def _needs(item, name: str, default):
    for mark in item.iter_markers("needs"):
        if name in mark.kwargs:
            return mark.kwargs[name]
    return default


def _pack_state(item) -> dict:
    state: dict = {}
    for mark in reversed(list(item.iter_markers("pack_state"))):
        state.update(mark.kwargs)
    return state


@pytest.fixture
def bench(request, bench_file: LoadedBench, pytestconfig):
    """The bench for this test: instruments, CAN, supervisor, PCS stand-in and recorder running."""
    state = _pack_state(request.node)
    firmware = None
    if bench_file.emulated:
        firmware = request.getfixturevalue("firmware")
    b = EquippedBench(bench_file, recordings_dir(request.config), request.node.nodeid, firmware=firmware,
                      firmware_path=pytestconfig.getoption("--firmware"), seed=pytestconfig.getoption("--seed"),
                      packs=_needs(request.node, "parallel_packs", 1), initial_soc_pct=state.get("soc"),
                      temperature_c=state.get("temperature_c"))
    exits.track(b)
    # report hooks read the recording and the measurements after the test
    request.node.stash[RECORDING], request.node.stash[MEASUREMENTS] = b.recorder, b.measurements
    try:
        yield b
    finally:
        b.close()
        exits.untrack(b)
        if wants_plot(request.node):
            make_plot(request.node, b.recorder)  # never raises: a plot is no part of the verdict


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_makereport(item, call):
    """The test's outcome noted for its plot; at teardown (the fixtures gone, the test's Allure
    result the open one) its plot, CAN log and samples CSV attached."""
    report = (yield).get_result()
    note_outcome(item, report)
    if call.when == "teardown":
        attach_recordings(item)


@pytest.fixture
def supervisor(bench) -> Supervisor:
    return bench.supervisor


@pytest.fixture
def recorder(bench) -> Recorder:
    return bench.recorder


@pytest.fixture
def pcs(bench) -> PcsStandIn:
    """The PCS stand-in: heartbeat on, the pack's frames decoded into named signals."""
    return bench.pcs


@pytest.fixture
def lights(bench) -> LightReader:
    """The light sensors on the pack panel(s); every sample recorded (rows ``light:<name>``)."""
    reader = LightReader(bench.io, bench.file.instruments.io.inputs, bench.clock)
    reader.listeners.append(lambda t, lit: bench.recorder.record_sample(
        t, **{f"light:{name}": int(on) for name, on in lit.items()}))
    return reader


@pytest.fixture
def pack(request, bench, spec, pcs, lights) -> Pack:
    """The pack under test (the one on the CAN bus), in the manual's terms."""
    p = Pack(bench, spec, pcs, lights, number=1)
    _condition(request, bench, p)
    return p


@pytest.fixture
def pack2(bench, spec, pcs, lights) -> Pack:
    """The second pack of a parallel bench."""
    if bench.features.parallel_packs < 2:
        pytest.skip(f"bench {bench.file.bench.name!r} has one pack")
    return Pack(bench, spec, pcs, lights, number=2)


@pytest.fixture
def chamber(bench):
    """The climate chamber (skips on a bench without one)."""
    if not bench.features.has_chamber or bench.chamber is None:
        pytest.skip(f"bench {bench.file.bench.name!r} has no climate chamber")
    return bench.chamber


@pytest.fixture
def fault_insertion(bench) -> FaultInsertion | None:
    """The bench's fault-insertion unit (the :class:`~instruments.roles.FaultInsertion` role), or
    None where it has none: the emulator's, or an instrument of the bench that plays the role (a
    cell simulator). Without one, a stimulus goes through the instruments or skips, naming why."""
    if bench.emulator is not None:
        return bench.emulator.faults
    return next((d for d in bench.instruments.values() if isinstance(d, FaultInsertion)), None)


@pytest.fixture
def faults(bench):
    """The emulator's faults: the :class:`~instruments.roles.FaultInsertion` role and those only
    an emulator inserts (sensor failures, stuck relays, a cut RS485 cable, ageing); skips on a
    real bench."""
    if bench.emulator is None:
        pytest.skip(f"bench {bench.file.bench.name!r} is real and has no fault-insertion unit the "
                    "rig can drive")
    return bench.emulator.faults


@pytest.fixture
def measure(bench) -> Measurements:
    """``measure(name, value, req=..., unit=..., at_least=/at_most=/nominal=+tolerance=/equals=)``;
    ``with measure.together():`` for checks that do not depend on each other (see rig.measure)."""
    return bench.measurements


def _condition(request, bench: Bench, pack: Pack) -> None:
    """Bring a real pack to the state the test asks for (an emulator starts there already)."""
    state = _pack_state(request.node)
    if bench.emulator is not None:
        return
    Conditioning(bench, pack).transition(soc=state.get("soc"), temperature_c=state.get("temperature_c"))
