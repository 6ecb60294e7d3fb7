"""Two packs joined in parallel, in the pack's terms: join them, read one CAN report of both, work
out what the spec says the system frames then carry.

Shared by the test cases about a pair (test_parallel_life, test_system_values). The bench: both
packs on one DC bus behind the breaker, RS485 between them, the CAN cable from ``pack`` (master,
pack address 2) to the PCS; ``pack2`` is the slave (pack address 3).
"""
from __future__ import annotations

import math

from rig.files.rows import PROTECTIONS
from rig.pcs import CanCheckFailed
from rig.protocol import can_frames
from testcases.kit import rules
from testcases.kit.reports import LEVELS, level_signal

BUTTONS = ("power_button", "pack2_power_button")
#: light-sensor name prefix of each pack's panel
PREFIX = {1: "", 2: "pack2_"}
PANEL = ("run", "alm", "led1", "led2", "led3", "led4")
ADDRESS = {1: 2, 2: 3}
#: The frames of one CAN report, system and both packs' detail frames.
SYSTEM = ("ChargeLimits", "StateOfCharge", "PackMeasurements", "ProtectionsAlarms", "ChargeRequest")
DETAIL = ("DetailStatus", "DetailProtection", "DetailGroupVoltages1to4", "DetailGroupVoltages5to8",
          "DetailGroupVoltages9to12", "DetailGroupVoltages13to16", "DetailTemperatures", "DetailSummary")


def join(bench, pack, pack2, pcs, *, spec) -> None:
    """Manual 6.2: breaker closed, both POWER buttons held together; returns once the pack on the
    CAN bus reports two modules and both packs report their main relays closed."""
    pack.close_breaker()
    for button in BUTTONS:
        bench.output(button, True)
    try:
        bench.clock.sleep(spec.power_on.button_hold_s)
    finally:
        for button in BUTTONS:
            bench.output(button, False)
    for p in (pack, pack2):
        p.wait_relays_closed()
    pcs.wait_until("ModuleCount", 2, within=2 * spec.can.period_s, frame="ProtectionsAlarms",
                   what="two modules (the pair joined, manual 6.2)")


def success_flickers_over(bench, spec) -> None:
    """Wait out the RUN success flickers (their lights are no alarm, but they are not steady)."""
    par = spec.parallel
    bench.clock.sleep(par.success_flicker_count * par.success_flicker_period_s)


def half_step(frame: str, signal: str) -> float:
    """Half the DBC resolution of a signal of a system or a detail frame (the master's copy)."""
    names = {m.name for m in can_frames.DATABASE.messages}
    name = frame if frame in names else f"{frame}_Master"
    return can_frames.DATABASE.get_message_by_name(name).get_signal_by_name(signal).scale / 2


def report_at(pcs, spec, t: float, addresses=(2, 3)) -> dict:
    """The frames of the CAN report sent at frame time ``t`` (one burst): ``report[frame]`` for a
    system frame, ``report[frame, address]`` for a detail frame."""
    wanted = [(f, None) for f in SYSTEM] + [(f, a) for a in addresses for f in DETAIL]
    out = {}
    for frame, address in wanted:
        reception = min(pcs.received(frame, address), key=lambda r: abs(r.t - t))
        if abs(reception.t - t) > spec.can.period_s / 2:
            raise CanCheckFailed(f"no {frame} frame in the report of t={t:.3f} s (nearest at t={reception.t:.3f} s)")
        out[frame if address is None else (frame, address)] = reception.signals
    return out


def last_report_at(pcs) -> float:
    """Frame time of the last report received; minus infinity before the first."""
    try:
        return pcs.received("DetailStatus")[-1].t
    except CanCheckFailed:
        return -math.inf


def levels_of(status: dict) -> dict[str, int]:
    """Row -> level 0..3 from one DetailProtection frame's signals."""
    return {row: LEVELS.index(status[level_signal(row)]) for row in PROTECTIONS}


def failures_of(status: dict) -> list[str]:
    """The failure bits set in one DetailStatus frame's signals."""
    return sorted(name for name, value in status.items() if name.startswith("Failure") and value)


def bits_of(alarms: dict) -> list[str]:
    """The protection and alarm bits set in one 0x359 frame's signals."""
    return sorted(name for name, value in alarms.items() if name.startswith(("Protection", "Alarm")) and value
                  and name != "ProtocolMarker")


def own_limits(spec, levels: dict[str, int], failures: list[str], relays_closed: bool) -> dict[str, float]:
    """PACK_SPEC 4: one pack's own current limits given the levels and failures it reports, by
    the spec's rule (:func:`testcases.kit.rules.limit_factor`); a failure that opens the relays
    (any but PCS loss) or open relays leave no current either way."""
    opening = {f for f in failures if f != spec.pcs_loss.failure_bit}
    limits = {}
    for direction in ("charge", "discharge"):
        factor = rules.limit_factor(spec, levels, opening, direction) if relays_closed else 0.0
        limits[direction] = getattr(spec.can, f"{direction}_current_limit_a") * factor
    return limits
