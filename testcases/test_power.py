"""Power on and off (manual 6.2, 6.3, 1.5, 2.2) and the loss of PCS communication (manual 6.3).

The procedures as the manual gives them:

- 6.2 "Press POWER button for two seconds and observe the LED indication on panel. If both RUN
  and SOC lights turn on normal, battery powers on successfully; if ALM light turns red, there
  is a failure." The PCS can do the same with its voltage signal (WAKE+/WAKE-).
- 6.3 "Press the POWER button for two seconds. Five LED lights will flicker for three times,
  and battery turns off." 2.2: forced power-off works only when the pack is not connected to
  mains supply (PACK_SPEC.md 2: no charge current flowing).
- 6.3 "Turn off the inverter. Communication will drop for 60 minutes before five LED lights
  flicker for three times and battery turns off"; PACK_SPEC.md 2 adds the ALM light and the CAN
  communication-failure alarm after ``spec.pcs_loss.alarm_after_s`` without PCS frames.

The rig judges with its own instruments: the DMM on the terminals (the pack's voltage there
means relays closed; 0 V means off or open), the light sensors (a flicker is counted by its
falling edges, so a light that was already lit when the sequence began counts too), and the
PCS stand-in's heartbeat. What the pack says on CAN (DetailStatus, 0x359) must agree.
"""
from __future__ import annotations

import math

import pytest

from rig.light_reader import FLICKER_WINDOW_S, LightState
from rig.pcs import HEARTBEAT_PERIOD_S
from testcases.kit.observe import (check_flickers, check_led, check_periods, frame_count, frames_since,
                               press_and_watch, seconds_until, terminal_extremes)

#: The five lights of the power-off sequence (RUN and LED1-4; the red ALM is not one of them).
FIVE_LIGHTS = ("run", "led1", "led2", "led3", "led4")
ALL_LIGHTS = ("run", "alm", "led1", "led2", "led3", "led4")
#: A "short" press is this fraction of the spec's ``ignore_shorter_than_s``: clearly shorter,
#: yet well past the IO-box relay's operate and release times (~10 ms) on a real bench.
SHORT_PRESS_FRACTION = 0.9


def _normal_panel(measure, req: str, spec, soc: float, *, seen: dict[str, LightState]) -> None:
    """Manual 6.2 "RUN and SOC lights turn on normal": RUN on, no ALM, the idle band of ``soc``."""
    measure("RUN light", seen["run"].kind, req=req, equals="on")
    measure("ALM light", seen["alm"].kind, req=req, equals="off")
    band = next(b for b in spec.lights.discharging if b.soc[0] <= round(soc) <= b.soc[1])
    for i, want in enumerate(band.leds, start=1):
        check_led(measure, req, spec, f"led{i}", seen=seen[f"led{i}"], want=want)


# --- power on (manual 6.2) -----------------------------------------------------------------------
@pytest.mark.requirement("power_on", manual="6.2")
def test_power_button_turns_the_pack_on(spec, bench, pack, pcs, lights, measure):
    """Manual 6.2: POWER held 2 s -> relays close through the pre-charge relay, RUN and the SOC
    lights show normal, and the pack reports on CAN every second."""
    po, req, clock = spec.power_on, spec.power_on.id, bench.clock
    pack.close_breaker()
    pack.press_power(po.button_hold_s)
    live = seconds_until(clock, pack.terminal_voltage, lambda v: v > spec.power_off.terminals_off_max_v,
                         within=po.relays_closed_within_s)
    measure("relays closed (pack voltage at the terminals) after the POWER press", live, req=req,
            unit="s", at_most=po.relays_closed_within_s)

    seen = lights.observe(FLICKER_WINDOW_S)   # also lets CAN run for several periods
    status = pcs.received("DetailStatus")
    # pre-charge first: no frame may show the pre-charge relay closed once the main relays have
    # closed, nor relay 1 closed without relay 2 (a frame a second need not catch a pre-charge
    # shorter than a period, so its own frame is not required)
    closed_at = next((r.t for r in status if r.signals["Relay1Closed"] and r.signals["Relay2Closed"]),
                     math.inf)
    measure("DetailStatus frames with pre-charge closed after relay 1 and 2 had closed",
            sum(1 for r in status if r.t > closed_at and r.signals["PrechargeClosed"]), req=req, equals=0)
    measure("DetailStatus frames with relay 1 closed and relay 2 open",
            sum(1 for r in status if r.signals["Relay1Closed"] and not r.signals["Relay2Closed"]),
            req=req, equals=0)
    last = status[-1].signals
    measure("DetailStatus.State", last["State"], req=req, equals="Standby")
    measure("DetailStatus.Relay1Closed", last["Relay1Closed"], req=req, equals=1)
    measure("DetailStatus.Relay2Closed", last["Relay2Closed"], req=req, equals=1)
    measure("DetailStatus.PrechargeClosed", last["PrechargeClosed"], req=req, equals=0)
    _normal_panel(measure, req, spec, pack.soc(), seen=seen)
    for frame in spec.can.frames:   # reporting on CAN from the start, every period
        check_periods(measure, spec.can.id, spec, pcs, frame=frame)


@pytest.mark.requirement("power_on", manual="6.2")
def test_short_press_is_ignored(spec, bench, pack, pcs, lights, measure):
    """PACK_SPEC.md 2 (manual 6.2): a POWER press shorter than 1.5 s leaves the pack off."""
    po, req = spec.power_on, spec.power_on.id
    press = SHORT_PRESS_FRACTION * po.ignore_shorter_than_s
    pack.close_breaker()
    pack.press_power(press)
    _, highest = terminal_extremes(pack, po.relays_closed_within_s)
    measure(f"terminal voltage after a {press:g} s press", highest, req=req, unit="V",
            at_most=spec.power_off.terminals_off_max_v)
    seen = lights.observe(FLICKER_WINDOW_S / 2)
    measure(f"lights lit after a {press:g} s press", [n for n in ALL_LIGHTS if seen[n].kind != "off"],
            req=req, equals=[])
    measure(f"DetailStatus frames after a {press:g} s press", frame_count(pcs, "DetailStatus"),
            req=req, equals=0)


@pytest.mark.requirement("power_on", manual="6.2")
def test_pcs_wake_signal_turns_the_pack_on(spec, bench, pack, pcs, lights, measure):
    """Manual 6.2 "Power on single battery by PCS activation": the PCS voltage signal on
    WAKE+/WAKE- turns the pack on, RUN and the SOC lights show normal."""
    po, req, clock = spec.power_on, spec.power_on.id, bench.clock
    pack.close_breaker()
    pack.wake(True)
    live = seconds_until(clock, pack.terminal_voltage, lambda v: v > spec.power_off.terminals_off_max_v,
                         within=po.relays_closed_within_s)
    measure("relays closed (pack voltage at the terminals) after WAKE", live, req=req, unit="s",
            at_most=po.relays_closed_within_s)
    seen = lights.observe(FLICKER_WINDOW_S)
    last = pcs.latest("DetailStatus")
    measure("DetailStatus.State", last["State"], req=req, equals="Standby")
    measure("DetailStatus.Relay1Closed", last["Relay1Closed"], req=req, equals=1)
    measure("DetailStatus.Relay2Closed", last["Relay2Closed"], req=req, equals=1)
    _normal_panel(measure, req, spec, pack.soc(), seen=seen)


@pytest.mark.requirement("power_on", manual="6.2")
def test_power_on_with_a_failure_shows_alm_and_keeps_the_relays_open(spec, bench, pack, pcs, lights,
                                                                     faults, measure):
    """Manual 6.2: "If ALM light turns red, there is a failure and should be fixed before
    powering on again" -- with a failure present (an open temperature sensor) the pack shows ALM
    and closes no relay."""
    po, req = spec.power_on, spec.power_on.id
    failure = spec.failures.temperature_sampling
    faults.temperature_sensor(0, 0, "open")
    measure.stimulate("temperature sensor T1 opened (fault insertion)")
    pack.close_breaker()
    pack.press_power(po.button_hold_s)
    _, highest = terminal_extremes(pack, po.relays_closed_within_s)
    measure("terminal voltage while powering on with a failure", highest, req=req, unit="V",
            at_most=spec.power_off.terminals_off_max_v)
    seen = lights.observe(FLICKER_WINDOW_S / 2)
    measure("ALM light", seen["alm"].kind, req=req, equals="on")
    measure("RUN light", seen["run"].kind, req=req, equals="off")
    status = pcs.received("DetailStatus")
    for relay in ("Relay1Closed", "Relay2Closed", "PrechargeClosed"):
        measure(f"DetailStatus frames with {relay}", sum(r.signals[relay] for r in status), req=req, equals=0)
    measure(f"DetailStatus.{failure.failure_bit}", status[-1].signals[failure.failure_bit], req=failure.id,
            equals=1)
    measure(f"0x359 {spec.failure_response.can_protection}",
            pcs.signal(spec.failure_response.can_protection, frame="ProtectionsAlarms"), req=req, equals=1)


# --- power off (manual 6.3, 1.5, 2.2) ------------------------------------------------------------
def _check_power_off_sequence(measure, req: str, spec, seen: dict[str, LightState], *,
                              by_button: bool = True) -> float:
    """The five lights flicker ``flicker_count`` times, then all lights are off (and, for a press
    of the button, the red ALM stays dark); returns when the sequence began (the first change of
    any of the five lights)."""
    po = spec.power_off
    for name in FIVE_LIGHTS:
        check_flickers(measure, req, spec, f"{name.upper()} in the power-off sequence", state=seen[name],
                       count=po.flicker_count, period_s=po.flicker_period_s)
    if by_button:
        measure("ALM light during a power-off by the button", seen["alm"].kind, req=req, equals="off")
    tail = {name: seen[name].samples[-1][1] for name in ALL_LIGHTS}
    measure("lights lit after the power-off sequence", [n for n, lit in tail.items() if lit], req=req,
            equals=[])
    changes = [t for name in FIVE_LIGHTS
               for (_, a), (t, b) in zip(seen[name].samples, seen[name].samples[1:]) if a != b]
    return min(changes, default=math.inf)


@pytest.mark.requirement("power_off", manual="6.3, 1.5")
def test_power_button_turns_the_pack_off(spec, bench, pack, pcs, lights, measure):
    """Manual 6.3: POWER held 2 s -> the five lights (RUN, LED1-4) flicker three times, then all
    off, and 0 V at the terminals (the manual's own check with a multimeter)."""
    po, req, clock = spec.power_off, spec.power_off.id, bench.clock
    pack.power_on()
    clock.sleep(2 * spec.can.period_s)
    sequence_s = po.flicker_count * po.flicker_period_s
    seen = press_and_watch(bench, lights, ("power_button",), hold_s=po.button_hold_s,
                           after_s=sequence_s + 2 * po.flicker_period_s)
    _check_power_off_sequence(measure, req, spec, seen)
    measure("terminal voltage after the power-off sequence", pack.terminal_voltage(), req=req, unit="V",
            at_most=po.terminals_off_max_v)
    mark = frame_count(pcs, "DetailStatus")
    clock.sleep(2 * spec.can.period_s)
    measure("DetailStatus frames after the power-off", len(frames_since(pcs, "DetailStatus", mark)),
            req=req, equals=0)


@pytest.mark.requirement("power_off", manual="2.2, 1.5")
def test_forced_power_off_is_refused_while_charging(spec, bench, pack, pcs, lights, measure):
    """Manual 2.2: "Forced power-off: when battery does not connect to mains supply, press POWER
    button for two seconds and battery powers off" -- while charge current flows the press is
    refused (the charge goes on without a break); with the charger off the same press works.

    The charge current is watched without a gap: a pack that powered off and was woken again
    at once by the charger's voltage on its terminals (manual 2.2 activation) did not refuse."""
    po, req, clock = spec.power_off, spec.power_off.id, bench.clock
    charging = po.forced_off_max_charge_current_a + spec.tolerance.current_a
    pack.power_on()
    # just past the refusal limit (a build that refuses only a larger current is caught)
    pack.charge(charging + spec.tolerance.current_a)
    clock.sleep(2 * spec.can.period_s)
    measure("charge current before the press", pack.current(), req=req, unit="A", at_least=charging)
    sequence_s = po.flicker_count * po.flicker_period_s
    mark, pressed = frame_count(pcs, "DetailStatus"), clock.now()
    bench.output("power_button", True)
    currents, run_dark = [pack.current()], 0
    end = pressed + po.button_hold_s + sequence_s + 2 * po.flicker_period_s
    while clock.now() < end - 1e-9:
        clock.sleep(lights.sample_period)
        if clock.now() >= pressed + po.button_hold_s - 1e-9:
            bench.output("power_button", False)
        currents.append(pack.current())
        run_dark += not lights.read()["run"]
    measure("lowest charge current while POWER was pressed during charging", min(currents), req=req,
            unit="A", at_least=charging)
    measure("RUN light samples dark after POWER was pressed during charging", run_dark, req=req, equals=0)
    states = {r.signals["State"] for r in frames_since(pcs, "DetailStatus", mark)}
    measure("DetailStatus.State values after POWER was pressed during charging", sorted(states), req=req,
            equals=["Run"])

    pack.stop()
    clock.sleep(2 * spec.can.period_s)
    pack.press_power(po.button_hold_s)
    dead = seconds_until(clock, pack.terminal_voltage, lambda v: v <= po.terminals_off_max_v,
                         within=sequence_s + spec.tolerance.delay_late_s)
    measure("0 V at the terminals after POWER pressed with no charge current", dead, req=req, unit="s",
            at_most=sequence_s + spec.tolerance.delay_late_s)


# --- loss of PCS communication (manual 6.3) ------------------------------------------------------
@pytest.mark.requirement("pcs_loss", manual="6.3")
def test_pcs_silence_raises_alm_and_the_can_alarm_after_30_s(spec, bench, pack, pcs, lights, measure):
    """PACK_SPEC.md 2 (manual 6.3): with no frame from the PCS the ALM light and the CAN
    communication-failure alarm come on after 30 s, not before. Light, 0x359 alarm bit and the
    DetailStatus failure bit are watched together, each dated when the rig first sees it (a frame
    at most one look after it arrived)."""
    pl, req, clock = spec.pcs_loss, spec.pcs_loss.id, bench.clock
    late, look = spec.tolerance.delay_late_s, lights.sample_period
    pack.power_on()
    clock.sleep(2 * spec.can.period_s)
    pcs.silence(True)
    silent_since = pcs.last_heartbeat_at   # the pack last heard the PCS then
    watched = {
        "ALM light": lambda: lights.read()["alm"],
        f"0x359 {pl.can_alarm}": lambda: pcs.signal(pl.can_alarm, frame="ProtectionsAlarms"),
        f"DetailStatus.{pl.failure_bit}": lambda: pcs.signal(pl.failure_bit, frame="DetailStatus"),
    }
    seen = dict.fromkeys(watched, math.inf)
    # a frame reports what the pack decided up to one period earlier
    deadline = silent_since + pl.alarm_after_s + late + spec.can.period_s + spec.can.period_tolerance_s
    while clock.now() < deadline and math.inf in seen.values():
        clock.sleep(look)
        for name, read in watched.items():
            if seen[name] == math.inf and read():
                seen[name] = clock.now() - silent_since
    measure("ALM on after the last PCS frame", seen["ALM light"], req=req, unit="s",
            at_least=pl.alarm_after_s, at_most=pl.alarm_after_s + late)
    for name in list(watched)[1:]:
        measure(f"{name} seen after the last PCS frame", seen[name], req=req, unit="s",
                at_least=pl.alarm_after_s, at_most=deadline - silent_since + look)
    measure("terminal voltage with the PCS silent (no power-off yet)", pack.terminal_voltage(), req=req,
            unit="V", at_least=spec.power_off.terminals_off_max_v)


@pytest.mark.slow
@pytest.mark.requirement("pcs_loss", manual="6.3")
def test_pcs_silence_powers_off_after_60_min_and_a_heartbeat_restarts_the_count(
        spec, bench, pack, pcs, lights, measure):
    """Manual 6.3: "Turn off the inverter. Communication will drop for 60 minutes before five LED
    lights flicker for three times and battery turns off." The inverter is switched off, back on
    for a few seconds once the alarm is up, and off again: the hour counts from the last PCS frame,
    so the pack is still on an hour after the first silence and turns off an hour after the second
    (one virtual hour covers both)."""
    pl, po, req, clock = spec.pcs_loss, spec.power_off, spec.pcs_loss.id, bench.clock
    late, period = spec.tolerance.delay_late_s, spec.can.period_s
    sequence_s = po.flicker_count * po.flicker_period_s
    pack.power_on()
    clock.sleep(2 * period)

    pcs.silence(True)
    first_silence = pcs.last_heartbeat_at
    clock.sleep(pl.alarm_after_s + late + 2 * period)
    measure(f"0x359 {pl.can_alarm} with the PCS silent", pcs.signal(pl.can_alarm, frame="ProtectionsAlarms"),
            req=req, equals=1)
    pcs.silence(False)                     # the inverter back for a few heartbeats ...
    clock.sleep(3 * HEARTBEAT_PERIOD_S)
    pcs.silence(True)                      # ... and off again
    silent_since = pcs.last_heartbeat_at

    clock.sleep(first_silence + pl.power_off_after_s + sequence_s + late - clock.now())
    measure("terminal voltage an hour after the first silence (the PCS answered since)",
            pack.terminal_voltage(), req=req, unit="V", at_least=spec.power_off.terminals_off_max_v)

    # watch from shortly before the hour is up until the sequence is over
    clock.sleep(silent_since + pl.power_off_after_s - late - clock.now())
    measure("terminal voltage just before the hour without PCS frames is up", pack.terminal_voltage(),
            req=req, unit="V", at_least=spec.power_off.terminals_off_max_v)
    seen = lights.observe(late + sequence_s + late + 2 * po.flicker_period_s)
    began = _check_power_off_sequence(measure, req, spec, seen, by_button=False) - silent_since
    measure("power-off sequence began after the last PCS frame", began, req=req, unit="s",
            at_least=pl.power_off_after_s, at_most=pl.power_off_after_s + late)
    measure("terminal voltage after the PCS-loss power-off", pack.terminal_voltage(), req=req, unit="V",
            at_most=po.terminals_off_max_v)
