"""The pack's panel: RUN/ALM and LED1-LED4, as patterns in time (manual 2.3, 6.1, 7.4).

A light is steady (on/off) or flickering: lit for the first half of each period, from a start
instant, forever or for a number of flickers after which it settles. The BMS decides the
patterns (:func:`panel`); the world answers "is this light lit at t?" from them, so flicker
periods are exact at any sampling rate and cost nothing between samples.

RUN/ALM is one bi-colour light: green RUN, red ALM. The rig has one sensor on each colour
(``run`` and ``alm``); when ALM shows, the green is dark (ALM overrides RUN).
"""
from __future__ import annotations

from dataclasses import dataclass

from emulator.firmware.profile import FirmwareProfile
from emulator.pack.bms_sensing import Report
from rig.clock import ns
LIGHTS = ("run", "alm", "led1", "led2", "led3", "led4")


@dataclass(frozen=True)
class Pattern:
    """Steady ``on``, or flickering with ``period_ns`` from ``start_ns``; after ``count``
    flickers (None: forever) it settles to ``then_on``."""

    on: bool = False
    period_ns: int = 0
    start_ns: int = 0
    count: int | None = None
    then_on: bool = False

    def lit(self, t_ns: int) -> bool:
        if not self.period_ns:
            return self.on
        elapsed = t_ns - self.start_ns
        if elapsed < 0:
            return self.on
        n, phase = divmod(elapsed, self.period_ns)
        if self.count is not None and n >= self.count:
            return self.then_on
        return phase < self.period_ns // 2


OFF = Pattern(False)
ON = Pattern(True)


def flicker(period_s: float, start_ns: int, count: int | None = None, then_on: bool = False) -> Pattern:
    return Pattern(False, ns(period_s), start_ns, count, then_on)


def _led(state, start_ns: int) -> Pattern:
    if state == "on":
        return ON
    if state == "off":
        return OFF
    return flicker(float(state), start_ns)


def soc_leds(profile: FirmwareProfile, soc_pct: int, charging: bool, start_ns: int) -> list[Pattern]:
    """LED1-LED4 for this SOC: the charging bands while charging, else the discharge/idle ones."""
    bands = profile.lights.charging if charging else profile.lights.discharging
    soc = min(max(soc_pct, 0), 100)
    band = next(b for b in bands if b.soc[0] <= soc <= b.soc[1])
    return [_led(s, start_ns) for s in band.leds]


def panel(profile: FirmwareProfile, *, soc_pct: int, charging: bool, alm: str, since_ns: int,
          run_flicker: Pattern | None = None) -> dict[str, Pattern]:
    """The lights of a pack that is on.

    :param alm: "" (no ALM), "alm_on" or "alm_flicker".
    :param since_ns: when the current SOC band / ALM state began (flicker phase origin).
    :param run_flicker: a RUN pattern overriding steady green (parallel success: five flickers).
    """
    leds = soc_leds(profile, soc_pct, charging, since_ns)
    if alm == "alm_on":
        run, red = OFF, ON
    elif alm == "alm_flicker":
        run, red = OFF, flicker(profile.lights.alm_flicker_period_s, since_ns)
    else:
        run, red = run_flicker or ON, OFF
    return dict(zip(LIGHTS, [run, red, *leds]))


def alm(p: FirmwareProfile, r: Report) -> str:
    """The ALM light of a pack that is on, from what its BMS reports: "", "alm_on" or
    "alm_flicker" (manual 7.4, PACK_SPEC.md 3)."""
    if r.failures:
        latched = r.failures - {p.pcs_loss.failure_bit}
        if p.short_circuit.failure_bit in latched:
            return p.short_circuit.light
        if latched:
            return p.failure_response.light
    shown = {getattr(p.protections, name).light for name, level in r.levels.items() if level >= 2} - {"none"}
    if "alm_on" in shown:
        return "alm_on"
    if r.pcs_alarm:
        return p.pcs_loss.light
    if shown or round(r.soc_pct) <= p.lights.low_soc_alm_max_pct:  # the SOC as shown and sent
        return shown.pop() if shown else p.lights.low_soc_light
    return ""


def power_off_sequence(profile: FirmwareProfile, start_ns: int) -> dict[str, Pattern]:
    """All five lights (RUN and LED1-4) flicker ``flicker_count`` times, then everything is off."""
    po = profile.power_off
    blink = flicker(po.flicker_period_s, start_ns, po.flicker_count, then_on=False)
    return {"run": blink, "alm": OFF, "led1": blink, "led2": blink, "led3": blink, "led4": blink}


def power_off_duration_ns(profile: FirmwareProfile) -> int:
    po = profile.power_off
    return po.flicker_count * ns(po.flicker_period_s)


def all_off() -> dict[str, Pattern]:
    return dict.fromkeys(LIGHTS, OFF)
