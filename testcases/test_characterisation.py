"""Characterisation of a pack: the runs ``packrig fit`` turns into the emulated pack's physics.

Not requirement checks but measurements of one real pack (issue 19), runnable on a real bench and
on the emulator through the same fixtures; their recordings (the supervisor's samples: terminal
voltage, PSU and e-load current, the 16 cell taps, the case thermocouples) are ordinary run
folders, which ``packrig fit RUN... --out physics.toml`` reads. They take hours of bench time
(days for the OCV steps), so they are skipped unless asked for::

    packrig run -m characterisation --bench rig/benches/<bench>.toml

Each procedure (research note physics-fidelity.md, "What a user must record"):

- capacity and energy at 64 A and at 85 A, from full (CC 64 A / CV 56 V to the 3 A tail) to the
  48.0 V operating minimum, with 2 h rests between;
- OCV in 5 % steps on both branches: 64 A steps of 5 % of the nominal capacity, each followed by
  a 1 h rest, down to 48.0 V and back up to full;
- HPPC: 10 s pulses of 64 A and 96 A in both directions (charge pulses below the charge
  over-current alarm and the PSU's limit; the peak discharge current only for its rated 3 s, after
  which the pack's over-current protection opens its relays), 40 min rests, at 10, 26, 50 and
  80 % SOC and 7, 25 and 43 C (the chamber holds the air);
- the rest after a full charge, logged for 2 h;
- 85 A for an hour, then the cool-down for 3 h at a fixed air temperature.

The measurements name what was measured with the spec's ratings as limits where the spec has one
(usable capacity and energy, the operating voltage range); the recordings are the product.
"""
from __future__ import annotations

import pytest

from rig.pytest_plugin import spec_for  # the pack spec of this session, also at collection time

#: the label of these measurements in the report (characterisation, not a requirement)
REQ = "characterisation"
#: seconds between two looks at the terminals while charging or discharging
LOOK_S = 5.0
#: seconds of an HPPC pulse (a peak-current discharge pulse lasts only its rated duration, from the spec)
PULSE_S = 10.0
HPPC_SOCS = (10, 26, 50, 80)

pytestmark = [
    pytest.mark.characterisation,
    pytest.mark.skipif("'characterisation' not in (config.getoption('markexpr') or '')",
                       reason="hours of bench time: select it with -m characterisation"),
]


def charge_full(pack, spec, clock) -> float:
    """CC at the standard current / CV at the CAN charge voltage limit until the tail current;
    returns the Ah charged (PSU read-back, integrated)."""
    amps, tail = spec.ratings.standard_charge_current_a, spec.soc.full_tail_current_a
    pack.charge(amps, spec.can.charge_voltage_limit_v)
    clock.sleep(2 * LOOK_S)
    ah, bound = 0.0, 1.5 * spec.ratings.nominal_capacity_ah / amps * 3600 + 7200
    started = clock.now()
    while clock.now() - started < bound:
        clock.sleep(LOOK_S)
        a = pack.current()
        ah += a * LOOK_S / 3600.0
        if a < tail:
            break
    pack.stop()
    return ah


def discharge_until(pack, spec, clock, amps: float, *, volts: float | None = None,
                    ah_max: float | None = None) -> tuple[float, float]:
    """Discharge at ``amps`` until the terminals read ``volts`` (default: the operating minimum)
    or ``ah_max`` has come out; returns (Ah, Wh) out."""
    volts = spec.ratings.operating_min_v if volts is None else volts
    pack.discharge(amps)
    ah = wh = 0.0
    dt = 1.0 if ah_max is None else LOOK_S          # near the cut-off: every second
    while ah_max is None or ah < ah_max:
        clock.sleep(dt)
        v = pack.terminal_voltage()
        ah += amps * dt / 3600.0
        wh += amps * v * dt / 3600.0
        if v <= volts:
            break
    pack.stop()
    return ah, wh


@pytest.mark.parametrize("amps", [64.0, 85.0], ids=["64A", "85A"])
def test_capacity_and_energy(amps, spec, bench, pack, measure):
    """Full, 2 h rest, discharge at ``amps`` to the operating minimum, 2 h rest."""
    clock = bench.clock
    pack.power_on()
    charge_full(pack, spec, clock)
    pack.rest(7200.0)
    measure("rested voltage 2 h after a full charge", pack.terminal_voltage(), req=REQ, unit="V",
            at_least=spec.ratings.operating_min_v, at_most=spec.ratings.operating_max_v)
    ah, wh = discharge_until(pack, spec, clock, amps)
    pack.rest(7200.0)
    with measure.together():
        measure(f"capacity at {amps:g} A, full to {spec.ratings.operating_min_v:g} V", ah, req=REQ, unit="Ah",
                at_least=spec.ratings.usable_capacity_ah)
        measure(f"energy at {amps:g} A", wh / 1000.0, req=REQ, unit="kWh", at_least=spec.ratings.usable_energy_kwh)
        measure("rested voltage 2 h after the discharge", pack.terminal_voltage(), req=REQ, unit="V",
                at_least=spec.ratings.operating_min_v - 2.0, at_most=spec.ratings.operating_max_v)


def test_ocv_in_5_percent_steps_on_both_branches(spec, bench, pack, measure):
    """Full, then 5 % steps at 64 A each followed by a 1 h rest, down to the operating minimum
    (discharge branch), then back up in 5 % steps to full (charge branch)."""
    clock, r = bench.clock, spec.ratings
    step_ah, rest_s = 0.05 * r.nominal_capacity_ah, 3600.0
    pack.power_on()
    charge_full(pack, spec, clock)
    pack.rest(2 * rest_s)
    rested = [pack.terminal_voltage()]
    while True:
        ah, _ = discharge_until(pack, spec, clock, r.standard_charge_current_a, ah_max=step_ah)
        pack.rest(rest_s)
        rested.append(pack.terminal_voltage())
        if ah < step_ah - 0.1:           # the operating minimum came first: empty
            break
    lowest = rested[-1]
    for _ in range(40):
        pack.charge(r.standard_charge_current_a, spec.can.charge_voltage_limit_v)
        clock.sleep(step_ah / r.standard_charge_current_a * 3600.0)
        a = pack.current()
        pack.stop()
        pack.rest(rest_s)
        rested.append(pack.terminal_voltage())
        if a < r.standard_charge_current_a - spec.tolerance.current_a:   # in CV: full
            break
    with measure.together():
        measure("rested voltage at the bottom of the discharge branch", lowest, req=REQ, unit="V",
                at_least=r.operating_min_v - 2.0, at_most=r.nominal_voltage_v)
        measure("rested voltage at the top of the charge branch", rested[-1], req=REQ, unit="V",
                at_least=r.nominal_voltage_v, at_most=r.operating_max_v)


def _pulse_resistance(pack, bench, amps: float, charge: bool, seconds: float) -> float:
    """One pulse of ``seconds``; the instantaneous resistance from the terminal step, ohm."""
    clock = bench.clock
    before = pack.terminal_voltage()
    if charge:
        pack.charge(amps, bench.limits.psu_max_voltage_v)
    else:
        pack.discharge(amps)
    clock.sleep(1.0)
    during = pack.terminal_voltage()
    clock.sleep(seconds - 1.0)
    pack.stop()
    return abs(during - before) / amps


def hppc_temperatures(spec) -> tuple[float, float, float]:
    """Where a full charge pulse is not derated (PACK_SPEC.md 4): two temperature tolerances above
    the charge under-temperature L1 and below the lower of the charge and discharge over-temperature
    L1s, and the middle of that range."""
    p, margin = spec.protections, 2 * spec.tolerance.temperature_c
    low = p.charge_under_temperature.l1.threshold + margin
    high = min(p.charge_over_temperature.l1.threshold, p.discharge_over_temperature.l1.threshold) - margin
    return low, (low + high) / 2, high


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The HPPC grid: each SOC at each temperature of :func:`hppc_temperatures`."""
    if {"soc", "celsius"} <= set(metafunc.fixturenames):
        metafunc.parametrize("soc, celsius", [
            pytest.param(soc, celsius, marks=pytest.mark.pack_state(soc=soc, temperature_c=celsius),
                         id=f"soc{soc}-{celsius:g}C")
            for celsius in hppc_temperatures(spec_for(metafunc.config)) for soc in HPPC_SOCS])


def test_hppc_pulses(soc, celsius, spec, bench, pack, measure):
    """10 s pulses of 64 A and 96 A, discharge then charge, 40 min rests, at ``soc`` and
    ``celsius`` (the pack soaked there: a bench without a chamber skips the other temperatures;
    charge pulses up to the PSU's hard limit; the peak discharge current for its rated duration)."""
    pack.power_on()
    pack.rest(2400.0)
    for amps in (spec.ratings.standard_charge_current_a, spec.ratings.peak_discharge_current_a):
        for charge in (False, True):
            # a charge pulse stays below the charge over-current alarm (and the PSU's hard limit)
            oc = spec.protections.charge_over_current.l1.threshold - spec.tolerance.current_a
            real = min(amps, bench.limits.psu_max_current_a, oc) if charge else amps
            peak = not charge and real > spec.ratings.continuous_discharge_current_a
            ohm = _pulse_resistance(pack, bench, real, charge,
                                    spec.ratings.peak_discharge_duration_s if peak else PULSE_S)
            pack.rest(2400.0)
            measure(f"{'charge' if charge else 'discharge'} pulse {real:g} A: resistance after 1 s", ohm * 1e3,
                    req=REQ, unit="mOhm", at_least=0.0, at_most=100.0)


def test_rest_after_a_full_charge(spec, bench, pack, measure):
    """Full charge, then 2 h at rest with the terminals logged."""
    pack.power_on()
    charge_full(pack, spec, bench.clock)
    pack.rest(3600.0)
    after_1h = pack.terminal_voltage()
    pack.rest(3600.0)
    with measure.together():
        measure("rested voltage 1 h after a full charge", after_1h, req=REQ, unit="V",
                at_least=spec.ratings.nominal_voltage_v, at_most=spec.ratings.operating_max_v)
        measure("fall from 1 h to 2 h of rest", after_1h - pack.terminal_voltage(), req=REQ, unit="V",
                at_least=0.0, at_most=1.0)


@pytest.mark.pack_state(soc=95)
def test_85a_for_an_hour_and_the_cool_down(spec, bench, pack, measure):
    """85 A for an hour, then 3 h of cool-down at the same air temperature: heat, heat capacity
    and conductance of the pack."""
    before = max(pack.case_temperatures())
    pack.power_on()
    pack.discharge(spec.ratings.continuous_discharge_current_a)
    bench.clock.sleep(3600.0)
    pack.stop()
    hottest = max(pack.case_temperatures())
    pack.rest(3 * 3600.0)
    with measure.together():
        measure("case temperature rise after 1 h at 85 A", hottest - before, req=REQ, unit="K",
                at_least=0.0, at_most=spec.ratings.operating_max_c - before)
        measure("case temperature left after 3 h of cool-down", max(pack.case_temperatures()) - before,
                req=REQ, unit="K", at_least=-1.0, at_most=hottest - before)
