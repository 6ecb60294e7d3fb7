"""Two packs in parallel (manual 5, 6.2, 2.2; PACK_SPEC.md 2, 6, 7).

Manual 6.2, "Power on parallel-connected batteries by pressing POWER button": press POWER on
both packs within 30 s; "if RUN and SOC lights on both batteries turn on normal, and the RUN
lights on both batteries flicker for five times, two batteries power on successfully and
communication between batteries works; if ALM light of one or both batteries turn red, there is
a parallel failure". Manual 5: the open-circuit voltage difference must not exceed 1 V; manual
2.2: a parallel connection failure powers the pack off. PACK_SPEC.md 2 also counts an RS485 link
failure and a second pack not powered on within the window as parallel connection failures.

The bench: both packs on one DC bus behind the breaker, RS485 between them, the CAN cable from
``pack`` (the master, ADR 2) to the PCS; ``pack2`` is the slave (ADR 3). The rig watches both
panels, the bus (DMM) and each pack's cell taps; what goes over the RS485 line itself
(PACK_SPEC.md 7) is read in test_rs485_pair.py.
"""
from __future__ import annotations

import math

import pytest

from rig.light_reader import LightState
from testcases.kit.observe import (check_flickers, frame_count, frames_since, half_step, press_and_watch,
                                   terminal_extremes)

pytestmark = pytest.mark.needs(parallel_packs=2)

BUTTONS = ("power_button", "pack2_power_button")
RUN_LIGHTS = {"pack": "run", "pack2": "pack2_run"}
ALM_LIGHTS = {"pack": "alm", "pack2": "pack2_alm"}
PANEL = ("run", "alm", "led1", "led2", "led3", "led4")


# --- helpers: what the rig does and watches ------------------------------------------------------
def _first_lit(clock, lights, names, within: float) -> dict[str, float]:
    """Watch ``names`` for ``within`` s; the clock time each was first lit (inf if never)."""
    first = dict.fromkeys(names, math.inf)
    end = clock.now() + within
    while True:
        now, lit = clock.now(), lights.read()
        for name in names:
            if lit[name] and first[name] == math.inf:
                first[name] = now
        if now >= end - 1e-9 or all(t < math.inf for t in first.values()):
            return first
        clock.sleep(min(lights.sample_period, end - now))


def _check_fault_power_off(measure, req: str, spec, pack, *, pcs, lights, panels) -> None:
    """After a parallel failure: the packs turned off (manual 2.2 fault power-off): 0 V on the
    bus, their panels dark, the pack on the CAN bus silent."""
    po = spec.power_off
    pack.clock.sleep(po.flicker_count * po.flicker_period_s + spec.tolerance.delay_late_s + spec.can.period_s)
    measure("bus voltage after the fault power-off", pack.terminal_voltage(), req=req, unit="V",
            at_most=po.terminals_off_max_v)
    lit = lights.read()
    for prefix in panels:
        measure(f"{prefix or 'pack'} lights lit after the fault power-off",
                [n for n in PANEL if lit[prefix + n]], req=req, equals=[])
    mark = frame_count(pcs, "DetailStatus")
    pack.clock.sleep(2 * spec.can.period_s)
    measure("CAN frames after the fault power-off", len(frames_since(pcs, "DetailStatus", mark)),
            req=req, equals=0)


def _power_on_together(bench, pack, lights, spec, *, after_s: float) -> dict[str, LightState]:
    """Breaker closed, both POWER buttons held together; the lights as :func:`press_and_watch`."""
    pack.close_breaker()
    return press_and_watch(bench, lights, BUTTONS, hold_s=spec.power_on.button_hold_s, after_s=after_s)


# --- success -----------------------------------------------------------------------------------
@pytest.mark.requirement("parallel", manual="6.2, 5")
def test_both_packs_powered_on_together_join(spec, bench, pack, pack2, pcs, lights, measure):
    """Manual 6.2: both POWER buttons within 30 s -> RUN on both packs flickers five times, then
    both show normal; the pack on the CAN bus reports two modules and the system's values: total
    current and current limits, mean voltage (PACK_SPEC.md 6), as the rig measures them."""
    par, req, tol, clock = spec.parallel, spec.parallel.id, spec.tolerance, bench.clock
    flickers_s = par.success_flicker_count * par.success_flicker_period_s
    seen = _power_on_together(bench, pack, lights, spec, after_s=flickers_s + spec.power_on.relays_closed_within_s)
    for who, run in RUN_LIGHTS.items():
        check_flickers(measure, req, spec, f"{who} RUN after the parallel power-on", state=seen[run],
                       count=par.success_flicker_count, period_s=par.success_flicker_period_s)
        measure(f"{who} RUN lit after the success flickers", seen[run].samples[-1][1], req=req, equals=True)
        measure(f"{who} ALM light", seen[ALM_LIGHTS[who]].kind, req=req, equals="off")

    clock.sleep(2 * spec.can.period_s)
    measure("0x359 ModuleCount", pcs.signal("ModuleCount"), req=req, equals=2)
    for address, role in ((2, "Master"), (3, "Slave")):
        status = pcs.latest("DetailStatus", address)
        measure(f"DetailStatus.ParallelRole of address {address}", status["ParallelRole"], req=req, equals=role)
        measure(f"DetailStatus.State of address {address}", status["State"], req=req, equals="Standby")
        measure(f"DetailStatus main relays closed, address {address}",
                (status["Relay1Closed"], status["Relay2Closed"]), req=req, equals=(1, 1))

    # the system's values (PACK_SPEC.md 6): limits summed, voltage averaged, current summed
    can, packs = spec.can, 2
    limits = pcs.latest("ChargeLimits")
    for signal, value in (("ChargeCurrentLimit", packs * can.charge_current_limit_a),
                          ("DischargeCurrentLimit", packs * can.discharge_current_limit_a),
                          ("ChargeVoltageLimit", can.charge_voltage_limit_v),
                          ("DischargeVoltageLimit", can.discharge_voltage_limit_v)):
        measure(f"0x351 {signal} of the two-pack system", limits[signal], req=can.id, nominal=value,
                tolerance=half_step("ChargeLimits", signal))
    mean_v = (sum(pack.group_voltages()) + sum(pack2.group_voltages())) / packs
    measure("0x356 Voltage against the mean of both packs' cell-tap sums", pcs.signal("Voltage"), req=can.id,
            unit="V", nominal=mean_v, tolerance=tol.pack_voltage_v)
    measure("0x356 Voltage against the DMM on the common bus", pcs.signal("Voltage"), req=can.id, unit="V",
            nominal=pack.terminal_voltage(), tolerance=tol.pack_voltage_v)
    pack.discharge(spec.ratings.continuous_discharge_current_a)
    clock.sleep(3 * spec.can.period_s)
    # each pack's own reading carries the current tolerance; the system's is their sum
    measure("0x356 Current (both packs) against the e-load read-back", pcs.signal("Current"), req=can.id,
            unit="A", nominal=pack.current(), tolerance=packs * tol.current_a)


# --- failures ----------------------------------------------------------------------------------
@pytest.mark.requirement("parallel", manual="5, 6.2, 2.2")
def test_voltage_difference_above_1_v_is_a_parallel_failure(spec, bench, pack, pack2, pcs, lights, faults,
                                                            measure):
    """Manual 5: the packs' voltage difference must not exceed 1 V; beyond it, powering both on
    is a parallel connection failure (PACK_SPEC.md 2): ALM red on both, the failure bit on CAN,
    no relay closes, and the fault power-off (manual 2.2)."""
    par, req, clock = spec.parallel, spec.parallel.id, bench.clock
    wanted = par.max_voltage_difference_v + 2 * spec.tolerance.pack_voltage_v
    # discharge pack 2 on paper (fault insertion) until the rig's cell taps see the difference;
    # just beyond the limit, so a pack allowing a larger difference still joins
    difference = 0.0
    for soc in range(99, -1, -1):
        faults.set_soc(1, soc)
        clock.sleep(lights.sample_period)
        difference = sum(pack.group_voltages()) - sum(pack2.group_voltages())
        if difference >= wanted:
            break
    measure("voltage difference set up between the packs (cell-tap sums)", difference, req=req, unit="V",
            at_least=wanted)

    pack.close_breaker()
    for button in BUTTONS:
        bench.output(button, True)
    pressed = clock.now()
    clock.sleep(spec.power_on.button_hold_s)
    for button in BUTTONS:
        bench.output(button, False)
    window = spec.power_on.relays_closed_within_s
    first = _first_lit(clock, lights, ALM_LIGHTS.values(), window)
    for who, alm in ALM_LIGHTS.items():
        measure(f"{who} ALM lit after the POWER press", first[alm] - pressed, req=req, unit="s",
                at_most=spec.power_on.button_hold_s + window)
    clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
    failure = spec.failures.parallel_connection.failure_bit
    for address in (2, 3):
        bit = max((r.signals[failure] for r in frames_since(pcs, "DetailStatus", 0, address)), default=0)
        measure(f"DetailStatus.{failure} of address {address}", bit, req=spec.failures.parallel_connection.id,
                equals=1)
    closed = [r for address in (2, 3) for r in frames_since(pcs, "DetailStatus", 0, address)
              if r.signals["Relay1Closed"] or r.signals["Relay2Closed"]]
    measure("DetailStatus frames with a main relay closed", len(closed), req=req, equals=0)
    _check_fault_power_off(measure, spec.fault_power_off.id, spec, pack, pcs=pcs, lights=lights, panels=("", "pack2_"))


@pytest.mark.requirement("parallel", manual="6.2, 2.2")
def test_second_pack_later_than_30_s_is_a_parallel_failure(spec, bench, pack, pack2, pcs, lights, measure):
    """Manual 6.2: both packs are to be powered on within 30 s; the first pack alone past that is
    a parallel connection failure: its ALM turns red, the failure bit goes out on CAN and it
    turns off (manual 2.2). The late second pack then finds no partner and fails the same way."""
    par, req, clock, late = spec.parallel, spec.parallel.id, bench.clock, spec.tolerance.delay_late_s
    po = spec.power_on
    pack.close_breaker()
    pressed = clock.now()
    pack.press_power(po.button_hold_s)
    released = clock.now()
    first = _first_lit(clock, lights, ["alm"], par.power_on_window_s + late + spec.can.period_s)["alm"]
    # the window opens when the pack turns on, somewhere between the shortest accepted press
    # and the end of the press
    measure("pack ALM lit after its POWER press (window missed)", first - pressed, req=req, unit="s",
            at_least=po.ignore_shorter_than_s + par.power_on_window_s)
    measure("pack ALM lit after its POWER release (window missed)", first - released, req=req, unit="s",
            at_most=par.power_on_window_s + late)
    clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
    failure = spec.failures.parallel_connection.failure_bit
    bit = max((r.signals[failure] for r in frames_since(pcs, "DetailStatus", 0, 2)), default=0)
    measure(f"DetailStatus.{failure} of the first pack", bit, req=spec.failures.parallel_connection.id,
            equals=1)
    _, highest = terminal_extremes(pack, spec.can.period_s)
    measure("bus voltage with one pack waiting alone (relays open)", highest, req=req, unit="V",
            at_most=spec.power_off.terminals_off_max_v)
    _check_fault_power_off(measure, spec.fault_power_off.id, spec, pack, pcs=pcs, lights=lights, panels=("",))

    pressed2 = clock.now()
    pack2.press_power(po.button_hold_s)
    released2 = clock.now()
    first2 = _first_lit(clock, lights, ["pack2_alm"], par.power_on_window_s + late + spec.can.period_s)
    measure("pack2 ALM lit after its late POWER press", first2["pack2_alm"] - released2, req=req, unit="s",
            at_most=par.power_on_window_s + late)
    measure("pack2 ALM not lit before its own window ran out", first2["pack2_alm"] - pressed2, req=req,
            unit="s", at_least=po.ignore_shorter_than_s + par.power_on_window_s)
    po_off = spec.power_off
    clock.sleep(po_off.flicker_count * po_off.flicker_period_s + late + spec.can.period_s)
    lit = lights.read()
    measure("pack2 lights lit after its fault power-off", [n for n in PANEL if lit["pack2_" + n]],
            req=spec.fault_power_off.id, equals=[])


@pytest.mark.requirement("parallel", manual="6.2, 2.2")
def test_rs485_link_cut_is_a_parallel_failure(spec, bench, pack, pack2, pcs, lights, faults, measure):
    """PACK_SPEC.md 2, 7: with the packs joined, the RS485 link cut is a parallel connection
    failure after three missed polls: ALM red on both packs, the failure bit on CAN, and both
    packs turn off (manual 2.2)."""
    par, req, clock, late = spec.parallel, spec.parallel.id, bench.clock, spec.tolerance.delay_late_s
    flickers_s = par.success_flicker_count * par.success_flicker_period_s
    _power_on_together(bench, pack, lights, spec, after_s=flickers_s + spec.can.period_s)
    measure("0x359 ModuleCount before the cut", pcs.signal("ModuleCount"), req=req, equals=2)
    mark, cut = frame_count(pcs, "DetailStatus", 2), clock.now()
    faults.rs485_cut(True)
    measure.stimulate("RS485 cable between the packs cut (fault insertion)")
    first = _first_lit(clock, lights, ALM_LIGHTS.values(),
                       par.rs485_missed_polls * par.rs485_poll_period_s + late + spec.can.period_s)
    for who, alm in ALM_LIGHTS.items():
        measure(f"{who} ALM lit after the RS485 cut", first[alm] - cut, req=req, unit="s",
                at_least=(par.rs485_missed_polls - 1) * par.rs485_poll_period_s,
                at_most=par.rs485_missed_polls * par.rs485_poll_period_s + late)
    clock.sleep(spec.can.period_s + spec.can.period_tolerance_s)
    failure = spec.failures.parallel_connection.failure_bit
    bit = max((r.signals[failure] for r in frames_since(pcs, "DetailStatus", mark, 2)), default=0)
    measure(f"DetailStatus.{failure} after the RS485 cut", bit, req=spec.failures.parallel_connection.id,
            equals=1)
    _check_fault_power_off(measure, spec.fault_power_off.id, spec, pack, pcs=pcs, lights=lights, panels=("", "pack2_"))


# The RS485 line itself (the master's 0x42 and 0x44 polls, their period, a console reading both
# packs): testcases/test_rs485_pair.py.
