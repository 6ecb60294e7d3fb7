"""Stimuli in the pack's terms: bring a protected quantity to a value with what the bench has.

A protection row of the pack spec names the quantity its BMS compares (``quantity``:
``max_group_voltage``, ``pack_voltage``, ``charge_current`` ...). :func:`drive` brings that
quantity to a value:

- a **current** flows for real, from the PSU (charge) or the e-load (discharge), so that the rig
  sees it cut; beyond the rig's hard limit for that instrument (PACK_SPEC 5), fault insertion
  adds the rest on the BMS's current sense;
- a **voltage** or a **temperature** goes through fault insertion, where the bench has a unit the
  rig can drive (the emulated bench always does): the BMS's sense lines forced to a group
  voltage, a temperature sensor forced. Fast and exact: the BMS sees the value from its next
  sample on, so a trip can be timed;
- else a temperature through the climate chamber (a soak of hours: a trip cannot be timed from
  it, :func:`can_step` says so);
- else the test is skipped, naming what the bench lacks.

Voltages go on *every* group alike, as on a pack charged or discharged evenly: the cell rows and
the pack rows of the spec (16 x the cell values) then see the same state of the pack, and the
difference between groups stays at the BMS's measuring error. The group difference goes on two
groups around the middle of the normal window, never as far as another row's level 3.
"""
from __future__ import annotations

import pytest

from rig.measure import note_stimulus

FAULT_INSERTION, PSU, ELOAD, CHAMBER = "fault insertion", "PSU", "e-load", "climate chamber"

#: A climate chamber soaks a 58 kg pack in hours; a soak that has not arrived in 8 h has failed.
SOAK_TIMEOUT_S = 8 * 3600.0

_TEMPERATURES = ("max_temperature", "min_temperature")


#: how far past the spec's threshold tolerance a test drives, as a fraction of it: a pack that
#: meets "a threshold is met within the tolerance" trips a quarter-tolerance past it whatever its
#: own measuring error, and a pack whose threshold is off by more than the tolerance is caught
#: (a threshold off by 2 tolerances, `packrig mutate`'s threshold mutants, used to pass)
PAST_TOLERANCE = 1.25


def margin(spec, row) -> float:
    """How far short of, or past, a threshold a test drives the quantity, in the row's unit: just
    past the spec's threshold tolerance (:data:`PAST_TOLERANCE`), so a conforming BMS's measuring
    error cannot decide, and a threshold off by more than the tolerance shows."""
    tol = spec.tolerance
    if row.quantity == "pack_voltage":
        return PAST_TOLERANCE * tol.pack_voltage_v
    return PAST_TOLERANCE * {"V": tol.group_voltage_v, "A": tol.current_a, "C": tol.temperature_c}[row.unit]


def beyond(row, value: float, by: float) -> float:
    """``value`` moved ``by`` to the unsafe side of the row (above for rows that trip above);
    a negative ``by`` moves it to the safe side."""
    return value + by if row.trips == "above" else value - by


def means(bench, faults, quantity: str) -> str:
    """How this bench drives ``quantity``; skips the test if it cannot."""
    if quantity == "charge_current":
        return PSU
    if quantity == "discharge_current":
        return ELOAD
    if faults is not None:
        return FAULT_INSERTION
    if quantity in _TEMPERATURES and bench.chamber is not None:
        return CHAMBER
    pytest.skip(f"bench {bench.file.bench.name!r} cannot put the BMS's {quantity.replace('_', ' ')} at a "
                "chosen value: that needs a fault-insertion unit (cell simulator / sense-line forcing)")


def can_step(bench, faults, quantity: str) -> bool:
    """Whether the quantity changes at one instant (a trip delay can be timed from it)."""
    return means(bench, faults, quantity) != CHAMBER


def drive(bench, pack, faults, quantity: str, value: float) -> str:
    """Bring ``quantity`` (a protection row's) to ``value`` as the BMS of ``pack`` sees it;
    returns the means used (:data:`FAULT_INSERTION`, :data:`PSU`, :data:`ELOAD`, :data:`CHAMBER`).

    :param faults: the fault-insertion unit, or None (see the ``fault_unit`` fixture).
    :param value: in the row's unit: V (group or pack), A, C; a group voltage difference in V.
    """
    how = means(bench, faults, quantity)
    if how in (PSU, ELOAD):
        _current(bench, pack, faults, quantity, value)
    elif how == CHAMBER:
        _soak(bench, pack, quantity, value)
    elif quantity in _TEMPERATURES:
        faults.force_temperature(pack.number - 1, 0, value)  # sensor T1 heated or cooled
    else:
        for group, volts in enumerate(_group_voltages(pack.spec, quantity, value)):
            faults.force_group(pack.number - 1, group, volts)
    note_stimulus(bench, described(bench, pack, quantity, value, how))
    return how


def described(bench, pack, quantity: str, value: float, how: str) -> str:
    """What :func:`drive` did, in the pack's terms: "every group driven to 3.63 V (fault insertion)"."""
    who = "" if pack.number == 1 else f"pack {pack.number}: "
    if quantity in ("charge_current", "discharge_current"):
        limit = bench.limits.psu_max_current_a if quantity == "charge_current" else bench.limits.eload_max_current_a
        real = min(value, limit)
        extra = f", {value - real:g} A more through {FAULT_INSERTION}" if value > real else ""
        return f"{who}{quantity.replace('_', ' ')} driven to {value:g} A ({how} {real:g} A{extra})"
    if how == CHAMBER:
        return f"{who}{CHAMBER} soaked the pack at {value:g} C"
    if quantity in _TEMPERATURES:
        return f"{who}temperature sensor T1 driven to {value:g} C ({how})"
    volts = _group_voltages(pack.spec, quantity, value)
    if quantity == "pack_voltage":
        return f"{who}pack voltage driven to {value:g} V, every group at {volts[0]:.4g} V ({how})"
    if quantity == "group_voltage_difference":
        return (f"{who}group difference driven to {value:g} V: group 1 at {volts[0]:.4g} V, group 2 at "
                f"{volts[1]:.4g} V ({how})")
    if quantity in ("max_group_voltage", "min_group_voltage"):
        return f"{who}group {len(volts)} driven to {value:g} V, the others to {volts[0]:.4g} V ({how})"
    return f"{who}every group driven to {value:g} V ({how})"


def flow(pack, direction: str) -> float:
    """A current through the pack in a protected direction ("charge", "discharge"; "both":
    discharge), clear of the Run threshold and far below every over-current alarm: a quarter of
    the standard charge current. Returns it, A."""
    amps = pack.spec.ratings.standard_charge_current_a / 4
    if direction == "charge":
        pack.charge(amps)
    else:
        pack.discharge(amps)
    return amps


def power_on(pack) -> None:
    """POWER held (manual 6.2), then wait until the pack reports relay 1 and relay 2 closed. The
    DMM shows the pack's voltage already during pre-charge (through the resistor, with no load),
    so the terminals alone do not tell that pre-charge is over and the pack can carry current."""
    pack.power_on()
    for relay in ("Relay2Closed", "Relay1Closed"):
        pack.pcs.wait_until(relay, 1, within=pack.spec.power_on.relays_closed_within_s, frame="DetailStatus",
                            what="closed after pre-charge")


def power_cycle(pack) -> None:
    """POWER held: off, and the power-off sequence waited out (a pack whose relays a fault holds
    open is at 0 V already, but it turns off only once its lights have flickered); POWER held: on."""
    po, late = pack.spec.power_off, pack.spec.tolerance.delay_late_s
    pack.power_off()
    pack.clock.sleep(po.flicker_count * po.flicker_period_s + late)
    power_on(pack)


def _group_voltages(spec, quantity: str, value: float) -> list[float]:
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


def _current(bench, pack, faults, quantity: str, amps: float) -> None:
    """A charge (PSU) or discharge (e-load) current; beyond the rig's hard limit for that
    instrument (PACK_SPEC 5) the fault-insertion unit adds the rest on the BMS's current sense."""
    charge = quantity == "charge_current"
    name = "psu_max_current_a" if charge else "eload_max_current_a"
    limit = getattr(bench.limits, name)
    real = min(amps, limit)
    if amps > real and faults is None:
        pytest.skip(f"bench {bench.file.bench.name!r}: {quantity.replace('_', ' ')} of {amps:g} A is beyond the "
                    f"rig's hard limit {name} = {limit:g} A (PACK_SPEC 5) and the bench has no fault-insertion "
                    "unit on the BMS's current sense to add the rest")
    (pack.charge if charge else pack.discharge)(real)
    if faults is not None:  # (re)set every time: a smaller value takes back an earlier offset
        rest = amps - real
        faults.offset_current(pack.number - 1, rest if charge else -rest)


def _soak(bench, pack, quantity: str, celsius: float) -> None:
    """The chamber at ``celsius`` until the rig's case thermocouples read it (within tolerance)."""
    bench.chamber.run(celsius)
    tol = pack.spec.tolerance.temperature_c
    pick = max if quantity == "max_temperature" else min
    bench.clock.wait_for(lambda: pick(pack.case_temperatures()), timeout=SOAK_TIMEOUT_S, poll=60.0,
                         until=lambda t: abs(t - celsius) <= tol,
                         what=f"the pack soaked at {celsius:g} C (case thermocouples)")
