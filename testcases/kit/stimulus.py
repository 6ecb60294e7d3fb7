"""Stimuli in the pack's terms: bring a protected quantity to a value with what the bench has.

A protection row of the pack spec names the quantity its BMS compares (``quantity``:
``max_group_voltage``, ``pack_voltage``, ``charge_current`` ...). :func:`drive` brings that
quantity to a value:

- a **current** flows for real, from the PSU (charge) or the e-load (discharge), so that the rig
  sees it cut; beyond the rig's hard limit for that instrument (PACK_SPEC 5), the
  fault-insertion unit adds the rest on the BMS's current sense;
- a **voltage** or a **temperature** goes through the bench's fault-insertion unit (the
  :class:`~instruments.roles.FaultInsertion` role: the emulator's, or a real bench's cell
  simulator and sensor simulator): the BMS's sense lines forced to a group voltage, a
  temperature sensor forced. Fast and exact: the BMS sees the value from its next sample on, so
  a trip can be timed;
- else a temperature through the climate chamber (a soak of hours: a trip cannot be timed from
  it, :func:`can_step` says so);
- else the test is skipped, naming what the bench lacks.

Voltages go on *every* group alike, as on a pack charged or discharged evenly: the cell rows and
the pack rows of the spec (16 x the cell values) then see the same state of the pack, and the
difference between groups stays at the BMS's measuring error. One group's own rows move that
group out, the others half a cell-difference alarm back; the group difference goes on two groups
around the middle of the normal window, never as far as another row's level 3.

``pack`` below is the kit's :class:`~testcases.kit.pack.Pack`: its ``bench``, ``spec``,
``number`` and ``faults`` (the fault-insertion unit, or None).
"""
from __future__ import annotations

import pytest

from rig.measure import note_stimulus

FAULT_INSERTION, PSU, ELOAD, CHAMBER = "fault insertion", "PSU", "e-load", "climate chamber"

#: A climate chamber soaks a 58 kg pack in hours; a soak that has not arrived in 8 h has failed.
SOAK_TIMEOUT_S = 8 * 3600.0

TEMPERATURES = ("max_temperature", "min_temperature")
CURRENTS = ("charge_current", "discharge_current")


def means(pack, quantity: str) -> str:
    """How this bench drives ``quantity``; skips the test if it cannot."""
    if quantity == "charge_current":
        return PSU
    if quantity == "discharge_current":
        return ELOAD
    if pack.faults is not None:
        return FAULT_INSERTION
    if quantity in TEMPERATURES and pack.bench.chamber is not None:
        return CHAMBER
    pytest.skip(f"bench {pack.bench.file.bench.name!r} cannot put the BMS's {quantity.replace('_', ' ')} at a "
                "chosen value: that needs a fault-insertion unit (cell simulator / sense-line forcing)")


def can_step(pack, quantity: str) -> bool:
    """Whether the quantity changes at one instant (a trip delay can be timed from it)."""
    return means(pack, quantity) != CHAMBER


def drive(pack, quantity: str, value: float) -> str:
    """Bring ``quantity`` (a protection row's) to ``value`` (in the row's unit: V, A, C; a group
    voltage difference in V) as the BMS of ``pack`` sees it; returns the means used
    (:data:`FAULT_INSERTION`, :data:`PSU`, :data:`ELOAD`, :data:`CHAMBER`)."""
    how, unit, device = means(pack, quantity), pack.faults, pack.number - 1
    if how in (PSU, ELOAD):
        _current(pack, quantity, value)
    elif how == CHAMBER:
        _soak(pack, quantity, value)
    elif quantity in TEMPERATURES:
        unit.force_temperature(device, 0, value)  # sensor T1 heated or cooled
    else:
        for group, volts in enumerate(group_voltages(pack.spec, quantity, value)):
            unit.force_voltage(device, group, volts)
    note_stimulus(pack.bench, described(pack, quantity, value, how))
    return how


def described(pack, quantity: str, value: float, how: str) -> str:
    """What :func:`drive` did, in the pack's terms: "every group driven to 3.63 V (fault insertion)"."""
    who = "" if pack.number == 1 else f"pack {pack.number}: "
    return who + _what(pack, quantity, value, how)


def _what(pack, quantity: str, value: float, how: str) -> str:
    if quantity in CURRENTS:
        real = min(value, _rig_limit(pack, quantity)[1])
        extra = f", {value - real:g} A more through {FAULT_INSERTION}" if value > real else ""
        return f"{quantity.replace('_', ' ')} driven to {value:g} A ({how} {real:g} A{extra})"
    if how == CHAMBER:
        return f"{CHAMBER} soaked the pack at {value:g} C"
    if quantity in TEMPERATURES:
        return f"temperature sensor T1 driven to {value:g} C ({how})"
    volts = group_voltages(pack.spec, quantity, value)
    if quantity == "pack_voltage":
        return f"pack voltage driven to {value:g} V, every group at {volts[0]:.4g} V ({how})"
    if quantity == "group_voltage_difference":
        return (f"group difference driven to {value:g} V: group 1 at {volts[0]:.4g} V, group 2 at "
                f"{volts[1]:.4g} V ({how})")
    if quantity in ("max_group_voltage", "min_group_voltage"):
        return f"group {len(volts)} driven to {value:g} V, the others to {volts[0]:.4g} V ({how})"
    return f"every group driven to {value:g} V ({how})"


def group_voltages(spec, quantity: str, value: float) -> list[float]:
    """What each group's sense line is driven to, for a voltage quantity at ``value``."""
    groups = spec.ratings.groups
    if quantity == "pack_voltage":
        return [value / groups] * groups
    if quantity in ("max_group_voltage", "min_group_voltage"):
        # one group out, the others half a cell-difference alarm back from it: with every group
        # there, the pack's own rows would trip too (16 x the cell row's thresholds are theirs)
        # and show their light, bits and power-off in place of the cell row's
        back = spec.protections.cell_voltage_difference.l1.threshold / 2
        back = -back if quantity == "max_group_voltage" else back
        return [value + back] * (groups - 1) + [value]
    if quantity != "group_voltage_difference":
        return [value] * groups
    # the pair sits around the middle of the two L1 alarms; near the window's edges it is moved
    # inward so that neither group reaches another row's level 3
    cell_ov, cell_uv = spec.protections.cell_over_voltage, spec.protections.cell_under_voltage
    middle = (cell_ov.l1.threshold + cell_uv.l1.threshold) / 2
    top = cell_ov.l3.threshold - 2 * spec.tolerance.group_voltage_v
    bottom = cell_uv.l3.threshold + 2 * spec.tolerance.group_voltage_v
    high = min(middle + value / 2, top)
    low = high - value
    if low < bottom:
        raise ValueError(f"a group difference of {value:g} V does not fit between {bottom:g} and {top:g} V")
    return [low, high] + [middle] * (groups - 2)


def _rig_limit(pack, quantity: str) -> tuple[str, float]:
    """The bench file's hard current limit for the instrument that drives the current (PACK_SPEC 5)."""
    name = "psu_max_current_a" if quantity == "charge_current" else "eload_max_current_a"
    return name, getattr(pack.bench.limits, name)


def _current(pack, quantity: str, amps: float) -> None:
    """A charge (PSU) or discharge (e-load) current; beyond the rig's hard limit for that
    instrument the fault-insertion unit adds the rest on the BMS's current sense."""
    charge = quantity == "charge_current"
    name, limit = _rig_limit(pack, quantity)
    real = min(amps, limit)
    if amps > real and pack.faults is None:
        pytest.skip(f"bench {pack.bench.file.bench.name!r}: {quantity.replace('_', ' ')} of {amps:g} A is beyond "
                    f"the rig's hard limit {name} = {limit:g} A (PACK_SPEC 5) and the bench has no "
                    "fault-insertion unit on the BMS's current sense to add the rest")
    # the current on the instruments: rig.pack.Pack's actions (their own stimulus notes)
    (pack.charge if charge else pack.discharge)(real)
    if pack.faults is not None:  # (re)set every time: a smaller value takes back an earlier offset
        rest = amps - real
        pack.faults.offset_current(pack.number - 1, rest if charge else -rest)


def _soak(pack, quantity: str, celsius: float) -> None:
    """The chamber at ``celsius`` until the rig's case thermocouples read it (within tolerance)."""
    pack.bench.chamber.run(celsius)
    tol = pack.spec.tolerance.temperature_c
    pick = max if quantity == "max_temperature" else min
    pack.clock.wait_for(lambda: pick(pack.case_temperatures()), timeout=SOAK_TIMEOUT_S, poll=60.0,
                        until=lambda t: abs(t - celsius) <= tol,
                        what=f"the pack soaked at {celsius:g} C (case thermocouples)")
