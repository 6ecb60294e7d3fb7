"""Failures (PACK_SPEC.md 4; manual 6.2, 7.4), through fault insertion.

Each failure the BMS must detect is inserted into a running pack while the rig draws a current
from it: relay 1 or relay 2 stuck open, the voltage sampling front-end silent, a temperature
sensor open or shorted, the current sampling and the current limitation failed, a cell voltage
difference past its level 3 (a failure by the spec). Each must give what every failure gives:

- its failure bit in DetailStatus, the failure CAN protection bit (and its own alarm bit where
  the spec names one);
- ALM on, steady (RUN dark);
- the relays open: the rig sees the current cut and 0 V on the DMM;
- latched until a power cycle: the fault removed, the pack stays as it is; POWER off and on,
  it is normal again.

Manual 6.2: a pack powered on with a failure present shows ALM and closes no relay.

A real bench without a fault-insertion unit the rig can drive skips these (``faults`` fixture).
"""
from __future__ import annotations

import pytest

from rig.errors import WaitTimeout
from testcases.kit import checks, rules

#: Each failure of the spec, and how the fault-insertion unit makes it (pack index, faults).
INSERT = {
    "relay1": lambda faults, p: faults.relay_stuck(p, "relay1", False),
    "relay2": lambda faults, p: faults.relay_stuck(p, "relay2", False),
    "voltage_frontend": lambda faults, p: faults.sensor_failure(p, "voltage_frontend"),
    "temperature_sampling-open": lambda faults, p: faults.temperature_sensor(p, 0, "open"),
    "temperature_sampling-short": lambda faults, p: faults.temperature_sensor(p, 0, "short"),
    "current_sampling": lambda faults, p: faults.sensor_failure(p, "current_sampling"),
    "current_limitation": lambda faults, p: faults.sensor_failure(p, "current_limitation"),
}
#: Failures that can be present before power on and found before any relay closes (manual 6.2):
#: a relay welded (stuck closed) shows at the first look at the feedback contacts.
AT_POWER_ON = {
    "relay1": lambda faults, p: faults.relay_stuck(p, "relay1", True),
    "relay2": lambda faults, p: faults.relay_stuck(p, "relay2", True),
    "voltage_frontend": INSERT["voltage_frontend"],
    "temperature_sampling-open": INSERT["temperature_sampling-open"],
    "current_sampling": INSERT["current_sampling"],
    "current_limitation": INSERT["current_limitation"],
}


def _failure(key: str) -> str:
    return key.split("-")[0]


def _params(table):
    return [pytest.param(key, marks=pytest.mark.requirement(f"failures.{_failure(key)}", manual="7.4",
                                                            ul="Single Fault Tests"), id=key)
            for key in table]


@pytest.mark.parametrize("key", _params(INSERT))
def test_failure_opens_the_relays_shows_alm_and_latches_until_a_power_cycle(key, bench, pack, pcs, spec, measure,
                                                                            faults):
    """Manual 7.4, PACK_SPEC 4: the failure, inserted while the pack carries current, sets its
    failure bit and the failure protection bit, turns ALM on and opens the relays; it stays so
    after the fault is removed, and only a power cycle brings the pack back."""
    failure = getattr(spec.failures, _failure(key))
    pack.power_on()
    pack.flow("discharge")
    INSERT[key](faults, pack.number - 1)
    measure.stimulate(f"failure inserted while discharging: {key.replace('_', ' ')} (fault insertion)")
    _check_failed(measure, spec, pack, pcs, failure=failure, within=_detect_within(spec))
    faults.clear()
    measure.stimulate("fault removed")
    pack.stop()
    bench.clock.sleep(_detect_within(spec))
    _check_latched(measure, spec, pack, pcs, failure=failure, when="after the fault was removed")
    _check_normal_after_power_cycle(measure, spec, pack, pcs, failure=failure)


@pytest.mark.requirement("failures.cell_voltage_difference", manual="7.4", ul="Imbalanced Charging Test")
def test_cell_voltage_difference_past_level_3_is_a_latched_failure(bench, pack, pcs, spec, measure, faults):
    """Manual 7.4, PACK_SPEC 4: a group difference two tolerances past its level 3 is a failure
    (its failure bit, ALM on, relays open), latched after the difference is gone until a power
    cycle."""
    row, failure = spec.protections.cell_voltage_difference, spec.failures.cell_voltage_difference
    pack.power_on()
    pack.flow("discharge")
    pack.drive(row.quantity, rules.unsafe(spec, row, row.l3.threshold))
    _check_failed(measure, spec, pack, pcs, failure=failure, within=row.l3.delay_s + _detect_within(spec))
    pack.drive(row.quantity, rules.safe(spec, row, row.release.value))
    pack.stop()
    bench.clock.sleep(_detect_within(spec))
    _check_latched(measure, spec, pack, pcs, failure=failure, when="after the difference went below its release value")
    faults.clear()
    _check_normal_after_power_cycle(measure, spec, pack, pcs, failure=failure)


@pytest.mark.requirement("failures.precharge", manual="6.2, 7.4", ul="Single Fault Tests")
def test_precharge_failure_at_power_on_keeps_the_relays_open(bench, pack, pcs, spec, measure, faults):
    """Manual 6.2, PACK_SPEC 4: with the pre-charge path open, pre-charge cannot reach its share
    of the bus voltage within its time: a pre-charge failure, ALM on, relay 1 never closes, 0 V at
    the terminals; latched until a power cycle."""
    failure = spec.failures.precharge
    faults.precharge_failure(pack.number - 1)
    measure.stimulate("pre-charge path opened (fault insertion)")
    pack.close_breaker()
    pack.press_power(spec.power_on.button_hold_s)
    _check_failed(measure, spec, pack, pcs, failure=failure,
                  within=spec.power_on.precharge_timeout_s + _detect_within(spec))
    measure("relay 1 closed in any report since power on",
            max(r.signals["Relay1Closed"] for r in pcs.received("DetailStatus")), req=failure.id, equals=0)
    faults.clear()
    measure.stimulate("pre-charge path mended")
    bench.clock.sleep(_detect_within(spec))
    _check_latched(measure, spec, pack, pcs, failure=failure, when="after the pre-charge path was mended")
    _check_normal_after_power_cycle(measure, spec, pack, pcs, failure=failure)


@pytest.mark.parametrize("key", _params(AT_POWER_ON))
def test_power_on_with_a_failure_shows_alm_and_closes_no_relay(key, bench, pack, pcs, spec, measure, faults):
    """Manual 6.2: "if ALM light turns red, there is a failure": powered on with the failure
    present, the pack reports it, shows ALM on and closes neither relay (0 V at the terminals)."""
    failure = getattr(spec.failures, _failure(key))
    AT_POWER_ON[key](faults, pack.number - 1)
    measure.stimulate(f"failure inserted before power on: {key.replace('_', ' ')} (fault insertion)")
    pack.close_breaker()
    pack.press_power(spec.power_on.button_hold_s)
    _check_failed(measure, spec, pack, pcs, failure=failure, within=_detect_within(spec))
    bench.clock.sleep(spec.power_on.relays_closed_within_s)
    with measure.together():
        for relay in ("Relay1Closed", "Relay2Closed"):
            measure(f"{relay} in any report since power on",
                    max(r.signals[relay] for r in pcs.received("DetailStatus")), req=failure.id, equals=0)
        measure("terminal voltage (DMM)", pack.terminal_voltage(), req=failure.id, unit="V",
                at_most=spec.power_off.terminals_off_max_v)


# --- checks ---------------------------------------------------------------------------------

def _detect_within(spec) -> float:
    """A failure is reported by the next report or the one after (the spec gives no detection
    time): the spec's timing tolerance and two report periods."""
    return spec.tolerance.delay_late_s + 2 * (spec.can.period_s + spec.can.period_tolerance_s)


def _check_failed(measure, spec, pack, pcs, *, failure, within):
    """The failure bit reported within ``within``; then, in the same report, the failure protection
    bit (and the failure's own alarm bit); the rig sees the current cut and 0 V; ALM steady on."""
    try:
        _, t = pcs.wait_until(failure.failure_bit, 1, within=within, frame="DetailStatus")
    except WaitTimeout:
        t = pcs.received("DetailStatus")[-1].t
    status = _at(pcs, "DetailStatus", t)
    with measure.together():  # each a separate observation of the same failure
        measure(f"DetailStatus {failure.failure_bit} within {within:g} s", status[failure.failure_bit],
                req=failure.id, equals=1)
        bits = _at(pcs, "ProtectionsAlarms", t)
        for bit in filter(None, (spec.failure_response.can_protection, failure.can_alarm)):
            measure(f"0x359 {bit}", bits[bit], req=failure.id, equals=1)
        _check_cut(measure, spec, pack, pcs, failure=failure)


def _check_latched(measure, spec, pack, pcs, *, failure, when):
    with measure.together():
        measure(f"DetailStatus {failure.failure_bit} {when}", pcs.signal(failure.failure_bit, frame="DetailStatus"),
                req=failure.id, equals=1)
        _check_cut(measure, spec, pack, pcs, failure=failure)


def _check_cut(measure, spec, pack, pcs, *, failure):
    """Relays open (DetailStatus, and the rig: no current, 0 V at the terminals), ALM on steady."""
    status = pcs.latest("DetailStatus")
    with measure.together():
        for relay in ("Relay1Closed", "Relay2Closed"):
            measure(f"DetailStatus {relay}", status[relay], req=failure.id, equals=0)
        measure("current (rig read-back)", abs(pack.current()), req=failure.id, unit="A",
                at_most=spec.tolerance.current_a)
        measure("terminal voltage (DMM)", pack.terminal_voltage(), req=failure.id, unit="V",
                at_most=spec.power_off.terminals_off_max_v)
        seen = pack.observe_lights(2 * spec.lights.alm_flicker_period_s + pack.lights.sample_period)
        measure("ALM light", seen["alm"].kind, req=failure.id, equals=checks.ALM_KIND[spec.failure_response.light])
        measure("RUN light (ALM overrides it)", seen["run"].kind, req=failure.id, equals="off")


def _check_normal_after_power_cycle(measure, spec, pack, pcs, *, failure):
    """POWER off and on (the fault gone): no failure bit, the relays closed, ALM off, RUN on."""
    try:
        pack.power_cycle()
    except WaitTimeout as exc:
        measure(f"pack back to normal after a power cycle ({exc})", False, req=failure.id, equals=True)
    with measure.together():
        measure(f"DetailStatus {failure.failure_bit} after a power cycle",
                pcs.signal(failure.failure_bit, frame="DetailStatus"), req=failure.id, equals=0)
        measure("terminal voltage (DMM) after a power cycle", pack.terminal_voltage(), req=failure.id, unit="V",
                at_least=spec.power_off.terminals_off_max_v)
        seen = pack.observe_lights(2 * spec.lights.alm_flicker_period_s + pack.lights.sample_period)
        measure("ALM light after a power cycle", seen["alm"].kind, req=failure.id, equals="off")
        measure("RUN light after a power cycle", seen["run"].kind, req=failure.id, equals="on")


def _at(pcs, frame: str, t: float) -> dict:
    """The ``frame`` of the report sent at frame time ``t`` (nearest)."""
    return min(pcs.received(frame), key=lambda r: abs(r.t - t)).signals
