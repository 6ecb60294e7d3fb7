"""The 0x44 row map (rig.protocol.rs485_alarm_rows) names only real rows, failures and fields."""
from __future__ import annotations

import dataclasses

from rig.files.rows import FAILURES, PROTECTIONS
from rig.protocol.rs485_alarm_rows import (CELL_SENSORS, ROW_STATES, SAMPLER_FIELDS, STATE_FIELDS, STATUS1_ROWS,
                                          rows_of, states_of)
from rig.protocol.rs485_alarms import AlarmInfo, AlarmState, Status1

INFO_FIELDS = {f.name for f in dataclasses.fields(AlarmInfo)}


def test_every_name_in_the_map_is_a_protection_row_a_failure_or_a_0x44_field():
    assert set(ROW_STATES) | set(STATUS1_ROWS) <= set(PROTECTIONS)
    assert set(SAMPLER_FIELDS) <= set(FAILURES)
    assert {field for field, _ in ROW_STATES.values()} == set(STATE_FIELDS)
    assert set(STATE_FIELDS) - {"cell_temp_states"} <= INFO_FIELDS
    assert {f for fields in SAMPLER_FIELDS.values() for f in fields} <= INFO_FIELDS


def test_every_row_but_the_cell_difference_shows_in_a_state_and_each_state_field_is_watched():
    assert set(PROTECTIONS) - set(ROW_STATES) == {"cell_voltage_difference"}
    for field in STATE_FIELDS:
        below, above = rows_of(field)
        assert above and set(below) | set(above) == {r for r, (f, _) in ROW_STATES.items() if f == field}
    assert rows_of("cell_temp_states") == (("charge_under_temperature", "discharge_under_temperature"),
                                           ("charge_over_temperature", "discharge_over_temperature"))


def test_status1_has_no_cell_over_voltage_bit_so_that_row_sets_module_over_voltage():
    assert STATUS1_ROWS["cell_over_voltage"] is Status1.MODULE_OVER_VOLTAGE
    assert set(STATUS1_ROWS.values()) == set(Status1)  # every v3.3 Status1 bit has its rows


def test_states_of_reads_the_cell_temperatures_apart_from_the_power_stage():
    info = AlarmInfo(2, [AlarmState.NORMAL] * 16, [AlarmState.ABOVE_UPPER] * CELL_SENSORS + [AlarmState.OTHER],
                     module_voltage_state=AlarmState.BELOW_LOWER)
    assert states_of(info, "cell_temp_states") == (AlarmState.ABOVE_UPPER,) * CELL_SENSORS
    assert states_of(info, "temp_states")[-1] is AlarmState.OTHER
    assert states_of(info, "module_voltage_state") == (AlarmState.BELOW_LOWER,)
