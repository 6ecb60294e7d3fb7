"""The panel lights and the SOC they show (manual 6.1, 2.3, 7.4; PACK_SPEC.md 2 and 3).

Manual 6.1's table, as the pack spec reads it (``spec.lights``): discharging and idle, RUN on
and the SOC lights on up to the SOC's band (LED1 flickering at the lowest one); charging, the
band's lights flicker with their own periods (T = 4, 3, 2, 1 s from LED1 up), all on at 100 %.
The red ALM flickers at low SOC (0-15 %), and an ALM state overrides the green RUN.

Each band is checked in the middle of its SOC range (the pack is brought there before the test:
``pack_state(soc=...)``), idle, discharging and charging at a small current (the Run threshold
plus two current tolerances, so the pack surely counts it as current). The rig's light sensors
watch every light for long enough to measure the slowest flicker's period
(:data:`~rig.light_reader.FLICKER_WINDOW_S`); a measured period must lie within
``spec.tolerance.flicker_period_rel`` of the stated one.

The bands come from the pack spec when the tests are collected, so each band is its own test,
named by its SOC range.
"""
from __future__ import annotations

import math

import pytest

from rig.errors import WaitTimeout
from rig.light_reader import FLICKER_WINDOW_S, LightState
from rig.pytest_plugin import spec_for  # the pack spec of this session, also at collection time
from testcases.kit.observe import check_led


def _middle(band) -> float:
    return (band.soc[0] + band.soc[1]) / 2


def _band_id(mode: str, band) -> str:
    return f"{mode}-{band.soc[0]:g}-{band.soc[1]:g}pct"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per light band of the pack spec, the pack starting at the band's middle SOC."""
    names = metafunc.fixturenames
    if not {"idle_band", "charging_band", "low_soc_edge"} & set(names):
        return
    spec = spec_for(metafunc.config)
    if "idle_band" in names:
        metafunc.parametrize("idle_band", [
            pytest.param((mode, band), marks=pytest.mark.pack_state(soc=_middle(band)), id=_band_id(mode, band))
            for mode in ("idle", "discharging") for band in spec.lights.discharging])
    if "charging_band" in names:
        metafunc.parametrize("charging_band", [
            pytest.param(band, marks=pytest.mark.pack_state(soc=_middle(band)), id=_band_id("charging", band))
            for band in spec.lights.charging])
    if "low_soc_edge" in names:
        edge = spec.lights.low_soc_alm_max_pct
        metafunc.parametrize("low_soc_edge", [
            pytest.param(soc, marks=pytest.mark.pack_state(soc=soc), id=f"soc-{soc:g}pct")
            for soc in (edge - 1, edge + 1)])


def _small_current(spec) -> float:
    """A current the pack surely counts as charging or discharging, A (the Run threshold plus two
    current tolerances), small enough to leave the SOC in its band during the test."""
    return spec.states.run_current_a + 2 * spec.tolerance.current_a


def _check_run_alm(measure, spec, soc: float, seen: dict[str, LightState], *, req: str, where: str = "") -> None:
    """RUN on and ALM off, except at low SOC: ALM flickers and overrides RUN (PACK_SPEC.md 3)."""
    lt = spec.lights
    if soc <= lt.low_soc_alm_max_pct:
        measure(f"{where}RUN light (overridden by the low-SOC ALM)", seen["run"].kind, req=req, equals="off")
        check_led(measure, req, spec, "alm", seen=seen["alm"], want=lt.alm_flicker_period_s, where=where)
    else:
        measure(f"{where}RUN light", seen["run"].kind, req=req, equals="on")
        measure(f"{where}ALM light", seen["alm"].kind, req=req, equals="off")


def _check_band(measure, spec, pack, band, *, seen: dict[str, LightState]) -> None:
    req = spec.lights.id
    # the pack reports the SOC it was brought to (else the band checked would be another one)
    measure("SOC reported on CAN (0x355)", pack.soc(), req=spec.soc.id, unit="%", nominal=_middle(band),
            tolerance=spec.tolerance.soc_pct)
    with measure.together():  # every light on its own
        for i, want in enumerate(band.leds, start=1):
            check_led(measure, req, spec, f"led{i}", seen=seen[f"led{i}"], want=want)
        _check_run_alm(measure, spec, _middle(band), seen, req=req)


@pytest.mark.requirement("lights", manual="6.1, 2.3")
def test_soc_lights_idle_and_discharging(idle_band, spec, bench, pack, measure):
    """Manual 6.1: discharging and idle, RUN on and LED1-LED4 on up to the SOC's band
    (81-100 % all four ... 14-40 % LED1, 0-13 % LED1 flickers with T = 1 s)."""
    mode, band = idle_band
    pack.power_on()
    if mode == "discharging":
        pack.discharge(_small_current(spec))
    bench.clock.sleep(2 * spec.can.period_s)   # the pack has seen the current, CAN has reported
    _check_band(measure, spec, pack, band, seen=pack.observe_lights(FLICKER_WINDOW_S))


@pytest.mark.requirement("lights", manual="6.1, 2.3")
def test_soc_lights_charging(charging_band, spec, bench, pack, measure):
    """Manual 6.1: charging, the band's lights flicker (0-25 % LED1 T = 1 s; 26-50 % LED1 T = 2 s,
    LED2 T = 1 s; 51-75 % T = 3, 2, 1 s; 76-99 % T = 4, 3, 2, 1 s); 100 % all on."""
    pack.power_on()
    pack.charge(_small_current(spec))
    bench.clock.sleep(2 * spec.can.period_s)
    _check_band(measure, spec, pack, charging_band, seen=pack.observe_lights(FLICKER_WINDOW_S))


@pytest.mark.requirement("lights", manual="6.1")
@pytest.mark.parametrize("mode", ["idle", "charging"])
def test_soc_light_band_edges(mode, spec, bench, pack, faults, measure):
    """Manual 6.1: each band's lights hold up to its last percent and the next band's from its
    first (e.g. idle 40 % LED1, 41 % LED1-2; charging 25 % LED1 T = 1 s, 26 % LED1 T = 2 s and
    LED2 T = 1 s). The SOC is set at each edge by fault insertion (emulator only: a real pack
    would need a charge or discharge to every edge)."""
    req, clock = spec.lights.id, bench.clock
    bands = sorted(spec.lights.charging if mode == "charging" else spec.lights.discharging,
                   key=lambda b: b.soc[0])
    pack.power_on()
    if mode == "charging":
        pack.charge(_small_current(spec))
    for lower, upper in zip(bands, bands[1:]):
        for band, soc in ((lower, lower.soc[1]), (upper, upper.soc[0])):
            faults.set_soc(0, soc)
            clock.sleep(2 * spec.can.period_s)
            where = f"{mode} at {soc:g} %: "
            measure(f"{where}SOC reported on CAN (0x355)", pack.soc(), req=spec.soc.id, equals=soc)
            seen = pack.observe_lights(FLICKER_WINDOW_S)
            with measure.together():  # every light on its own
                for i, want in enumerate(band.leds, start=1):
                    check_led(measure, req, spec, f"led{i}", seen=seen[f"led{i}"], want=want, where=where)
                _check_run_alm(measure, spec, soc, seen, req=req, where=where)


@pytest.mark.requirement("lights", manual="6.1, 7.4")
def test_low_soc_flickers_alm(low_soc_edge, spec, bench, pack, measure):
    """PACK_SPEC.md 3: the red ALM flickers (T = 1 s) at low SOC (0-15 %) and overrides RUN;
    one percent above, the panel is normal. Probed one percent below the limit and one percent
    above it (not at it: the pack's SOC there may be 15.0 % or 15.01 %, both reported as 15 %);
    the expectation follows the SOC the pack reports (the lights and CAN must agree)."""
    req = spec.lights.id
    pack.power_on()
    bench.clock.sleep(2 * spec.can.period_s)
    soc = pack.soc()
    measure("SOC reported on CAN (0x355)", soc, req=spec.soc.id, unit="%", nominal=low_soc_edge,
            tolerance=spec.tolerance.soc_pct)
    _check_run_alm(measure, spec, soc, pack.observe_lights(FLICKER_WINDOW_S), req=req)


@pytest.mark.physics
@pytest.mark.pack_state(soc=95)
@pytest.mark.requirement("soc", manual="6.1")
def test_full_charge_reports_100_percent(spec, bench, pack, pcs, measure):
    """PACK_SPEC.md 2: 100 % SOC after a full charge to the charge voltage limit (CV at the CAN
    charge voltage limit, CC at the standard charge current) with the tail current below 3 A;
    the SOC lights then show 100 % (all on)."""
    s, req, clock = spec.soc, spec.soc.id, bench.clock
    pack.power_on()
    clock.sleep(2 * spec.can.period_s)
    pack.charge(spec.ratings.standard_charge_current_a, spec.can.charge_voltage_limit_v)
    # a generous bound: the whole remaining charge at no more than the tail current
    remaining_ah = (1 - pack.soc() / 100) * spec.ratings.nominal_capacity_ah
    bound_s = remaining_ah / s.full_tail_current_a * 3600
    started = clock.now()
    clock.wait_for(pack.current, timeout=2 * spec.can.period_s, poll=spec.can.period_s / 10,
                   until=lambda a: a >= s.full_tail_current_a, what="the charge current flowing")
    try:
        clock.wait_for(pack.current, timeout=bound_s, poll=spec.can.period_s,
                       until=lambda a: a < s.full_tail_current_a, what="the tail current")
        tail_s = clock.now() - started
    except WaitTimeout:
        tail_s = math.inf
    measure(f"charge time to a tail current below {s.full_tail_current_a:g} A", tail_s, req=req, unit="s",
            at_most=bound_s)
    measure("charge voltage at the terminals at the tail (CV reached)", pack.terminal_voltage(), req=req,
            unit="V", nominal=spec.can.charge_voltage_limit_v, tolerance=spec.tolerance.pack_voltage_v)
    clock.sleep(2 * spec.can.period_s + spec.can.period_tolerance_s)
    measure("SOC on CAN (0x355) at the tail of a full charge", pack.soc(), req=req, unit="%",
            at_least=s.full_soc_pct)
    measure("SOC in DetailStatus at the tail of a full charge", pcs.signal("SOC", pack_address=2), req=req,
            unit="%", at_least=s.full_soc_pct)
    seen = pack.observe_lights(FLICKER_WINDOW_S)
    full = next(b for b in spec.lights.charging if b.soc[0] <= s.full_soc_pct <= b.soc[1])
    with measure.together():
        for i, want in enumerate(full.leds, start=1):
            check_led(measure, spec.lights.id, spec, f"led{i}", seen=seen[f"led{i}"], want=want)



@pytest.mark.physics
@pytest.mark.pack_state(soc=95)
@pytest.mark.requirement("soc", manual="6.1")
def test_full_charge_recalibrates_a_low_soc_at_the_tail(spec, bench, pack, faults, measure):
    """PACK_SPEC.md 2: the full charge is what sets the SOC to 100 %, at the tail current and not
    before. The BMS's SOC estimate is made to read three SOC tolerances low (as after many partial
    cycles), so its own count cannot reach 100 % first; then, charging to the charge voltage
    limit, the SOC must not read 100 % while the current is still above the tail current (plus
    the current tolerance), and must read 100 % once it is below it (less the tolerance)."""
    s, req, clock, period = spec.soc, spec.soc.id, bench.clock, spec.can.period_s
    tail, tol = s.full_tail_current_a, spec.tolerance.current_a
    pack.power_on()
    faults.soc_estimate(0, pack.soc() - 3 * spec.tolerance.soc_pct)
    clock.sleep(2 * period)
    pack.charge(spec.ratings.standard_charge_current_a, spec.can.charge_voltage_limit_v)
    clock.wait_for(pack.current, timeout=2 * period, poll=period / 10,
                   until=lambda a: a >= tail, what="the charge current flowing")
    # a generous bound: the whole remaining charge, and 5 % more, at no more than the tail current
    bound_s = (1 - s.full_soc_pct / 100 + 0.05) * spec.ratings.nominal_capacity_ah / tail * 3600
    deadline = clock.now() + bound_s
    current_at_full = soc_past_tail = None   # the current when 100 % first shows; the SOC past the tail
    settle_s = 2 * period + spec.can.period_tolerance_s   # a recalibration reaches 0x355 within this
    below_since = None
    while clock.now() < deadline and soc_past_tail is None:
        amps, soc, now = pack.current(), pack.soc(), clock.now()
        if current_at_full is None and soc >= s.full_soc_pct:
            current_at_full = amps
        if below_since is None and amps < tail - tol:
            below_since = now
        if below_since is not None and now - below_since >= settle_s:
            soc_past_tail = soc
        clock.sleep(period / 2)
    with measure.together():
        if current_at_full is not None:
            measure("charge current when the SOC first reads 100 %", current_at_full, req=req, unit="A",
                    at_most=tail + tol)
        measure(f"SOC on CAN (0x355) {settle_s:g} s after the current fell below {tail - tol:g} A",
                -math.inf if soc_past_tail is None else soc_past_tail, req=req, unit="%", at_least=s.full_soc_pct)
