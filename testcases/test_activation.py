"""Activation (manual 2.2): a voltage on P+/P- wakes a pack that is off.

"Activation: input 45V~60V via P+/P- terminals, battery will be activated from off mode to
standby status." Below the window, or above it, the pack stays off; the window's edges carry
``spec.activation.edge_tolerance_v`` (PACK_SPEC.md 2). So the rig probes each edge from both
sides, one tolerance away: ``min_v - tol`` and ``max_v + tol`` must leave the pack off,
``min_v + tol`` and ``max_v - tol`` must wake it.

How the rig judges, without trusting the BMS alone: the PSU applies the voltage through the
breaker for the time a power-on may take (``spec.power_on.relays_closed_within_s``), then
switches off. A pack that woke has closed its relays, so the DMM on the terminals now reads
the pack itself (its cell-tap sum); a pack that stayed off leaves 0 V there. The pack's own
word (CAN detail frame DetailStatus: State, Relay1Closed, Relay2Closed) must agree, and a pack
that is off sends nothing at all.
"""
from __future__ import annotations

import pytest

from testcases.kit.observe import frame_count

pytestmark = pytest.mark.physics  # the terminal voltage is the cells' (packrig run --population)

#: (edge of the window, side): -1 one tolerance below the edge, +1 one tolerance above it.
PROBES = {
    "below-min": ("min_v", -1),
    "above-min": ("min_v", +1),
    "below-max": ("max_v", -1),
    "above-max": ("max_v", +1),
}


@pytest.mark.requirement("activation", manual="2.2")
@pytest.mark.parametrize("probe", list(PROBES))
def test_activation_window_edges(probe, spec, bench, pack, pcs, lights, measure):
    """Manual 2.2: 45-60 V on P+/P- moves the pack from Off to Standby; below 45 V or above
    60 V it stays Off (each edge probed one edge tolerance to either side)."""
    act = spec.activation
    edge, side = PROBES[probe]
    volts = getattr(act, edge) + side * act.edge_tolerance_v
    wakes = act.min_v < volts < act.max_v
    req = act.id

    # The pack is off (0 V at the terminals, relays open) before anything is applied.
    measure("terminal voltage before activation", pack.terminal_voltage(), req=req, unit="V",
            at_most=spec.power_off.terminals_off_max_v)

    pack.apply_voltage(volts)
    bench.clock.sleep(spec.power_on.relays_closed_within_s)
    bench.psu.output_off()
    # one more CAN period, so the frames describe the pack with the source removed
    bench.clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)

    terminals = pack.terminal_voltage()
    cells = sum(pack.group_voltages())
    run_lit = lights.read()["run"]
    frames = frame_count(pcs, "DetailStatus")
    label = f"{volts:g} V applied"
    with measure.together():  # what the pack shows after the one stimulus
        if wakes:
            # relays closed: the DMM on the terminals reads the pack's own voltage (its cell taps)
            measure(f"terminal voltage after {label} and removed", terminals, req=req, unit="V",
                    nominal=cells, tolerance=spec.tolerance.pack_voltage_v)
            status = pcs.latest("DetailStatus")
            measure(f"DetailStatus.State, {label}", status["State"], req=req, equals="Standby")
            measure(f"DetailStatus.Relay1Closed, {label}", status["Relay1Closed"], req=req, equals=1)
            measure(f"DetailStatus.Relay2Closed, {label}", status["Relay2Closed"], req=req, equals=1)
            measure(f"RUN light lit, {label}", run_lit, req=req, equals=True)
        else:
            measure(f"terminal voltage after {label} and removed", terminals, req=req, unit="V",
                    at_most=spec.power_off.terminals_off_max_v)
            measure(f"DetailStatus frames sent, {label} (an Off pack is silent)", frames, req=req, equals=0)
            measure(f"RUN light lit, {label}", run_lit, req=req, equals=False)
