"""What the rig watches, shared by the test cases: lights around a button press, frames since a
mark, how long until something happens, the terminal voltage over a while, CAN periods.

Frame timestamps are the interface's (Unix time on a real bench), not the rig clock's, so a test
marks "from now on" by how many frames have arrived (the PCS stand-in keeps 10 000 per frame).
"""
from __future__ import annotations

import math

from rig.errors import WaitTimeout
from rig.light_reader import LightState, classify
from rig.pcs import CanCheckFailed
from rig.protocol import can_frames


def press_and_watch(bench, lights, buttons: tuple[str, ...], *, hold_s: float,
                    after_s: float) -> dict[str, LightState]:
    """Hold the ``buttons`` (IO outputs: POWER of one or both packs) together for ``hold_s`` watching
    every light, release them, watch ``after_s`` more; each light classified over the whole time,
    so nothing that happens at the release is missed."""
    for button in buttons:
        bench.output(button, True)
    try:
        during = lights.observe(hold_s)
    finally:
        for button in buttons:
            bench.output(button, False)
    after = lights.observe(after_s)
    return {name: classify(name, during[name].samples + after[name].samples[1:]) for name in during}


def falls(state: LightState) -> list[float]:
    """Times a light went dark (lit -> dark): one per flicker, whether or not it was lit before."""
    s = state.samples
    return [t for (_, before), (t, lit) in zip(s, s[1:]) if before and not lit]


def seconds_until(clock, read, until, within: float, *, poll: float = 0.1) -> float:
    """Seconds until ``until(read())`` holds, or ``inf`` if it did not within ``within``."""
    start = clock.now()
    try:
        clock.wait_for(read, timeout=within, poll=poll, until=until)
    except WaitTimeout:
        return math.inf
    return clock.now() - start


def terminal_extremes(pack, seconds: float, poll: float = 0.1) -> tuple[float, float]:
    """(lowest, highest) DMM reading on the terminals over the next ``seconds``."""
    clock, end = pack.clock, pack.clock.now() + seconds
    readings = [pack.terminal_voltage()]
    while clock.now() < end - 1e-9:
        clock.sleep(min(poll, end - clock.now()))
        readings.append(pack.terminal_voltage())
    return min(readings), max(readings)


def check_flickers(measure, req: str, spec, label: str, *, state: LightState, count: int,
                   period_s: float) -> list[float]:
    """A light flickered ``count`` times (counted by its falls) at ``period_s`` within the spec's
    relative tolerance; returns the times it went dark."""
    dark_at = falls(state)
    with measure.together():  # the count and the period, each on its own
        measure(f"{label} flickers", len(dark_at), req=req, equals=count)
        if len(dark_at) >= 2:
            period = (dark_at[-1] - dark_at[0]) / (len(dark_at) - 1)
            measure(f"{label} flicker period", period, req=req, unit="s", nominal=period_s,
                    tolerance=period_s * spec.tolerance.flicker_period_rel)
    return dark_at


def frame_count(pcs, frame: str, pack_address: int | None = None) -> int:
    """How many ``frame`` receptions the stand-in holds now (0 if none came yet)."""
    try:
        return len(pcs.received(frame, pack_address))
    except CanCheckFailed:
        return 0


def frames_since(pcs, frame: str, mark: int, pack_address: int | None = None) -> list:
    """The ``frame`` receptions after the first ``mark`` (a :func:`frame_count` taken earlier)."""
    try:
        return pcs.received(frame, pack_address)[mark:]
    except CanCheckFailed:
        return []


def half_step(frame: str, signal: str) -> float:
    """Half the DBC resolution of a signal: how close a reported value can be to the spec's."""
    return can_frames.DATABASE.get_message_by_name(frame).get_signal_by_name(signal).scale / 2


def check_periods(measure, req: str, spec, pcs, *, frame: str, pack_address: int | None = None,
                  label: str | None = None) -> None:
    """Every period between two receptions of ``frame`` is ``can.period_s`` within its tolerance."""
    can, label = spec.can, label or frame
    periods = pcs.periods(frame, pack_address)
    with measure.together():
        measure(f"{label} periods seen", len(periods), req=req, at_least=2)
        measure(f"{label} shortest period", min(periods, default=math.nan), req=req, unit="s",
                nominal=can.period_s, tolerance=can.period_tolerance_s)
        measure(f"{label} longest period", max(periods, default=math.nan), req=req, unit="s",
                nominal=can.period_s, tolerance=can.period_tolerance_s)


def check_led(measure, req: str, spec, name: str, *, seen: LightState, want, where: str = "") -> None:
    """One SOC light against the band's entry: "on", "off" or a flicker period in s."""
    label = where + name.upper()
    if want in ("on", "off"):
        measure(f"{label} light", seen.kind, req=req, equals=want)
        return
    measure(f"{label} light", seen.kind, req=req, equals="flickering")
    period = seen.period_s if seen.period_s is not None else math.nan
    measure(f"{label} flicker period", period, req=req, unit="s", nominal=want,
            tolerance=want * spec.tolerance.flicker_period_rel)
