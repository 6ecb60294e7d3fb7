"""The bench's safe state from the exporter's side, through the instruments' own LAN ports.

When a place is released (by its holder, by ``labgrid-client release --kick``, or by the guard of a
run that died), nobody is driving the bench any more. The instruments' watchdogs switch the PSU
and e-load off after their timeout; the exporter does not wait for them: it sends the same safe
state the rig sends (:meth:`rig.bench.Bench.make_safe`: PSU output off, e-load input and short
off, every relay open, the chamber to standby) with the same drivers, and reads back that the
PSU output and the e-load input are off. This works for a real bench PC and an emulated place
alike, since both are reached only over their addresses.

Then the bench is handed over as a run's start finds it, by the same policy
(:func:`rig.psu_latch.settle_psu_latch`): the PSU's watchdog latch (it trips, and latches, when a
holder stops talking to it) is cleared with the output off; any other latched protection (OV, OC,
OT, PF, INH) stays latched for a person to look into, and is said in the hand-over's line and,
as a warning, in the exporter's log. The bench is safe either way (the output is off), so the
place stays free to acquire; the next holder's run stops at its start with one line naming the
latch. The watchdogs are disarmed while nobody holds the place: an idle watchdog would latch
again a second later and refuse the next holder's first ``OUTP ON``. The next holder's rig arms
them again before anything can go on (:meth:`rig.bench.Bench._protect`, at the bench's start).
"""
from __future__ import annotations

import json
import logging
from contextlib import suppress

from rig.psu_latch import settle_psu_latch

log = logging.getLogger(__name__)

#: the order the rig uses: sources first, then the relays (breaker), then the chamber
SAFE_ORDER = ("psu", "eload", "io", "chamber")


def make_bench_safe(bench_json: str) -> tuple[bool, str]:
    """Put the bench a place's ``bench_json`` describes in its safe state.

    Every instrument is tried even when another fails. :returns: whether it held, and one line
    saying what each output reads (``"psu: output off, eload: input off, short off, io: every
    relay open, chamber: standby"``), or what did not answer. A PSU protection left latched for
    a person does not make the bench unsafe; it is in the line (``"psu: output off, latched off
    by OV (left latched: ...)"``) and logged as a warning.
    """
    import pyvisa

    from instruments import driver_class

    bench = json.loads(bench_json)
    instruments, limits = bench["instruments"], _limits(bench)
    rm = pyvisa.ResourceManager("@py")
    ok, said = True, []
    try:
        for name in SAFE_ORDER:
            spec = instruments.get(name)
            if spec is None:
                continue
            try:
                said.append(f"{name}: {_safe(rm, driver_class, name, spec, limits.get(name, {}), bench)}")
            except Exception as exc:  # noqa: BLE001 - keep making the rest safe, and say what failed
                ok = False
                said.append(f"{name}: NOT SAFE ({type(exc).__name__}: {exc})")
    finally:
        with suppress(Exception):
            rm.close()
    return ok, ", ".join(said)


def _limits(bench: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """The drivers' limits as the rig gives them (:meth:`rig.bench.Bench._driver_limits`): what
    clearing a protection reads back against."""
    lim, inst = bench["limits"], bench["instruments"]
    limits = {"psu": {"voltage": (0.0, lim["psu_max_voltage_v"]), "current": (0.0, lim["psu_max_current_a"])},
              "eload": {"current": (0.0, lim["eload_max_current_a"]),
                        "voltage": (lim["pack_min_v"], max(lim["psu_max_voltage_v"], lim["pack_max_v"]))},
              "io": {}, "chamber": {}}
    for name in ("psu", "eload", "io"):
        watchdog_s = (inst.get(name) or {}).get("watchdog_s")
        if watchdog_s is not None:
            limits[name]["watchdog"] = (0.0, float(watchdog_s))
    return limits


def _safe(rm, driver_class, name: str, spec: dict, limits: dict, bench: dict) -> str:
    resource = rm.open_resource(spec["resource"], read_termination="\n", write_termination="\n",
                                timeout=round(float(spec.get("timeout_s", 2.0)) * 1000))
    driver = driver_class(spec["model"])(resource, name, limits=limits)
    watched = "watchdog" in limits
    try:
        driver.make_safe()
        if name == "psu":
            return _psu_idle(driver, watched, bench["bench"]["name"])
        if name == "eload":
            driver.clear_protection()  # the input stays off
            if watched:
                driver.watchdog_enabled = False
            if driver.input_enabled or driver.short_enabled:
                raise RuntimeError(f"input {driver.input_enabled}, short {driver.short_enabled} after the safe state")
            return "input off, short off" + (", watchdog off while idle" if watched else "")
        if name == "io":  # make_safe read every relay back open, or raised
            if watched:
                driver.watchdog_s = 0.0
            return "every relay open" + (", watchdog off while idle" if watched else "")
        return "standby"
    finally:
        with suppress(Exception):
            resource.close()


def _psu_idle(driver, watched: bool, bench_name: str) -> str:
    """Output off, a latch settled by the rig's one policy (the watchdog's cleared, any other
    kept and warned of), the watchdog off while idle; each read back."""
    if driver.output_enabled:
        raise RuntimeError("the output still reads on after the safe state")
    latch = settle_psu_latch(driver)
    if latch.kept:
        log.warning("bench %s: the PSU's output is %s", bench_name, latch.said)
    if watched and driver.watchdog_enabled:
        driver.watchdog_enabled = False
    settled = f", {latch.said}" if latch.cleared or latch.kept else ""
    return f"output off{settled}" + (", watchdog off while idle" if watched else "")
