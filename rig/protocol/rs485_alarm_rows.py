"""Where each protection row shows in the RS485 alarm info, 0x44: which reading's state, which
Status1 bit (PACK_SPEC.md 7 "0x44 (alarm states and Status1-5)", the rows and failures of
PACK_SPEC.md 4, the fields and bits of Pylontech RS485 v3.3 "Get alarm info").

This is protocol, as ``pack.dbc`` is for CAN: what a pack must say on RS485 while it reports a row
on CAN. The emulated pack answers from it (:mod:`emulator.pack.rs485_responder`) and the test cases
check a pack's answers against it (:mod:`testcases.console`); neither writes it again.

Field names are those of :class:`~rig.protocol.rs485_alarms.AlarmInfo`, and ``cell_temp_states``:
the states of the cell temperature sensors T1-T4, the first :data:`CELL_SENSORS` of
``temp_states`` (T5 is the power stage, which no row watches).

* :data:`ROW_STATES`: the reading a row watches shows out of range in the row's direction. Both
  the charge and the discharge temperature rows watch T1-T4, whatever the current (the BMS trips
  them on the temperature alone). The cell voltage difference row has no state: it flags its
  lowest and highest cell in Status4/5.
* :data:`STATUS1_ROWS`: the bit a row sets while it has tripped (level 2 or 3). v3.3 has no cell
  over voltage bit: that row sets module over voltage (both stop the charge). Under temperature
  and cell difference have no bit.
* :data:`SAMPLER_FIELDS`: the fields whose readings come from one BMS sampler; when the sampler
  has failed (PACK_SPEC.md 4) every reading in them is 0xF0 "other fault", and a failed voltage
  front-end also flags every cell in Status4/5.
"""
from __future__ import annotations

from rig.protocol.rs485_alarms import AlarmInfo, AlarmState, Status1

#: The cell temperature sensors (T1-T4) at the start of 0x44's temperature states.
CELL_SENSORS = 4
#: The 0x44 fields a reading's state is in, by the names above.
STATE_FIELDS = ("cell_states", "cell_temp_states", "module_voltage_state", "charge_current_state",
                "discharge_current_state")
#: Protection row -> (0x44 field it shows in, the state it shows there).
ROW_STATES = {
    "cell_over_voltage": ("cell_states", AlarmState.ABOVE_UPPER),
    "cell_under_voltage": ("cell_states", AlarmState.BELOW_LOWER),
    "pack_over_voltage": ("module_voltage_state", AlarmState.ABOVE_UPPER),
    "pack_under_voltage": ("module_voltage_state", AlarmState.BELOW_LOWER),
    "charge_over_current": ("charge_current_state", AlarmState.ABOVE_UPPER),
    "discharge_over_current": ("discharge_current_state", AlarmState.ABOVE_UPPER),
    "charge_over_temperature": ("cell_temp_states", AlarmState.ABOVE_UPPER),
    "discharge_over_temperature": ("cell_temp_states", AlarmState.ABOVE_UPPER),
    "charge_under_temperature": ("cell_temp_states", AlarmState.BELOW_LOWER),
    "discharge_under_temperature": ("cell_temp_states", AlarmState.BELOW_LOWER),
}
#: Protection row -> the Status1 bit it sets at level 2 or 3.
STATUS1_ROWS = {
    "cell_over_voltage": Status1.MODULE_OVER_VOLTAGE,
    "pack_over_voltage": Status1.MODULE_OVER_VOLTAGE,
    "cell_under_voltage": Status1.CELL_UNDER_VOLTAGE,
    "pack_under_voltage": Status1.MODULE_UNDER_VOLTAGE,
    "charge_over_current": Status1.CHARGE_OVER_CURRENT,
    "discharge_over_current": Status1.DISCHARGE_OVER_CURRENT,
    "charge_over_temperature": Status1.CHARGE_OVER_TEMPERATURE,
    "discharge_over_temperature": Status1.DISCHARGE_OVER_TEMPERATURE,
}
#: BMS sampler (its failure's name in the pack spec) -> the 0x44 fields of its readings.
SAMPLER_FIELDS = {
    "voltage_frontend": ("cell_states", "module_voltage_state"),
    "temperature_sampling": ("temp_states",),
    "current_sampling": ("charge_current_state", "discharge_current_state"),
}


def rows_of(field: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The rows that show in ``field`` (:data:`STATE_FIELDS`): (below the lower limit, above the upper)."""
    below = tuple(row for row, shows in ROW_STATES.items() if shows == (field, AlarmState.BELOW_LOWER))
    above = tuple(row for row, shows in ROW_STATES.items() if shows == (field, AlarmState.ABOVE_UPPER))
    return below, above


def states_of(info: AlarmInfo, field: str) -> tuple[AlarmState, ...]:
    """The states of one field of a 0x44 reply (``cell_temp_states`` included), as a tuple."""
    if field == "cell_temp_states":
        return tuple(info.temp_states[:CELL_SENSORS])
    value = getattr(info, field)
    return tuple(value) if isinstance(value, tuple) else (value,)
