"""The RS485 console as the test cases read it (PACK_SPEC.md 7): what 0x44 and 0x92 must say,
given what the same pack reports on CAN.

A Pylontech console and the PCS must see the same pack. So, at one instant:

- every protection row the pack reports on CAN at level 1 or more shows in 0x44 as an
  out-of-range state of the readings that row watches, in its direction (:data:`ROW_STATES`);
- a row with a Status1 bit has it set exactly while the row is at level 2 or 3 on CAN
  (:data:`STATUS1_BITS`; v3.3 has no bit for under temperature and cell difference, and only
  "module over voltage" for both over-voltage rows);
- the charge and discharge MOSFET bits of Status2 are the enable bits of 0x35C, and 0x92's
  limits and enable flags are those of 0x351 and 0x35C (one pack: the system is the pack).

The v3.3 field names are the protocol's; every number comes from the pack spec or from CAN.
"""
from __future__ import annotations

import pytest

from rig.errors import FrameError
from rig.files.rows import PROTECTIONS
from rig.protocol.rs485 import Rtn
from rig.protocol.rs485_commands import AlarmState, ChargeStatus, Status1, Status2, parse_reply
from rig.rs485_console import Rs485Console
from testcases.kit.observe import half_step
from testcases.kit.reports import LEVELS, level_signal

#: 0x44 fields a protection row shows in, and the state it shows: (field, state).
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
#: 0x44 fields whose readings come from each BMS sampler: its failure (PACK_SPEC.md 4) makes them
#: 0xF0 "other fault", and a failed voltage front-end flags every cell in Status4/5.
SAMPLER_FIELDS = {
    "voltage_frontend": ("cell_states", "module_voltage_state"),
    "temperature_sampling": ("temp_states",),
    "current_sampling": ("charge_current_state", "discharge_current_state"),
}
#: Status1 bit of each row that has one (Pylontech v3.3 "Get alarm info").
STATUS1_BITS = {
    "cell_over_voltage": Status1.MODULE_OVER_VOLTAGE,
    "pack_over_voltage": Status1.MODULE_OVER_VOLTAGE,
    "cell_under_voltage": Status1.CELL_UNDER_VOLTAGE,
    "pack_under_voltage": Status1.MODULE_UNDER_VOLTAGE,
    "charge_over_current": Status1.CHARGE_OVER_CURRENT,
    "discharge_over_current": Status1.DISCHARGE_OVER_CURRENT,
    "charge_over_temperature": Status1.CHARGE_OVER_TEMPERATURE,
    "discharge_over_temperature": Status1.DISCHARGE_OVER_TEMPERATURE,
}
#: The cell temperature sensors (T1-T4) of 0x44's temperature states; T5 is the power stage.
CELL_SENSORS = 4


def console(bench, spec) -> Rs485Console:
    """A console on the bench's RS485 line (skips on a bench without one)."""
    if bench.file.rs485 is None:
        pytest.skip(f"bench {bench.file.bench.name!r} has no RS485 port ([rs485])")
    return Rs485Console(bench.rs485, reply_within_s=spec.rs485.reply_within_s)


def read(line, measure, spec, cid2: int, *, adr: int, command: int | None = None, where: str = ""):
    """The decoded reply of ``adr`` to ``cid2`` (with ``command`` as its command value, if given);
    no reply, an error RTN or an INFO that does not fit the command is a failed measurement of
    the RS485 requirement."""
    req = spec.rs485.id
    done = line.ask(cid2, adr, b"" if command is None else bytes([command]))
    measure(f"RTN of ADR {adr}'s reply to 0x{cid2:02X}{where}", done.rtn, req=req, equals=Rtn.OK)
    try:
        return parse_reply(cid2, done.reply, command)
    except FrameError as error:
        measure(f"INFO of ADR {adr}'s reply to 0x{cid2:02X}{where}", str(error), req=req,
                equals="the command's INFO (PACK_SPEC.md 7)")


def states_of(info, field: str) -> tuple[AlarmState, ...]:
    """The 0x44 states of one field (:data:`ROW_STATES`), as a tuple."""
    if field == "cell_temp_states":
        return tuple(info.temp_states[:CELL_SENSORS])
    value = getattr(info, field)
    return tuple(value) if isinstance(value, tuple) else (value,)


def check_alarm_info_follows_can(measure, spec, info, pcs, *, address: int, where: str = "") -> dict[str, int]:
    """0x44 against the pack's last DetailProtection and 0x35C (module docstring); returns the
    levels CAN reports, by row."""
    req = spec.rs485.id
    reported = pcs.latest("DetailProtection", address)
    levels = {row: LEVELS.index(reported[level_signal(row)]) for row in PROTECTIONS}
    request = pcs.latest("ChargeRequest")
    with measure.together():
        for row, (field, state) in ROW_STATES.items():
            if levels[row]:
                measure(f"0x44 {field} showing {state.name}{where} (CAN: {row} at {LEVELS[levels[row]]})",
                        state in states_of(info, field), req=req, equals=True)
        shown = {bit for row, bit in STATUS1_BITS.items() if levels[row] >= 2}
        for bit in dict.fromkeys(STATUS1_BITS.values()):
            rows = [r for r, b in STATUS1_BITS.items() if b == bit]
            measure(f"0x44 Status1 {bit.name}{where} (CAN levels: "
                    + ", ".join(f"{r} {LEVELS[levels[r]]}" for r in rows) + ")",
                    bool(info.status1 & bit), req=req, equals=bit in shown)
        for bit, signal in ((Status2.CHARGE_MOSFET, "ChargeEnable"), (Status2.DISCHARGE_MOSFET, "DischargeEnable")):
            measure(f"0x44 Status2 {bit.name}{where} against 0x35C {signal}", bool(info.status2 & bit), req=req,
                    equals=bool(request[signal]))
    return levels


def check_charge_management_follows_can(measure, spec, values, pcs, *, where: str = "") -> None:
    """0x92 against 0x351 and 0x35C of a one-pack system: the same limits and enable flags."""
    req, limits, request = spec.rs485.id, pcs.latest("ChargeLimits"), pcs.latest("ChargeRequest")
    with measure.together():
        for name, got, signal in (
                ("charge voltage limit", values.charge_voltage_limit_mv / 1000, "ChargeVoltageLimit"),
                ("discharge voltage limit", values.discharge_voltage_limit_mv / 1000, "DischargeVoltageLimit"),
                ("charge current limit", values.charge_current_limit_a, "ChargeCurrentLimit"),
                ("discharge current limit", -values.discharge_current_limit_a, "DischargeCurrentLimit")):
            measure(f"0x92 {name}{where} against 0x351 {signal}", got, req=req, unit="V" if "voltage" in name else "A",
                    nominal=limits[signal], tolerance=half_step("ChargeLimits", signal))
        for flag, signal in ((ChargeStatus.CHARGE_ENABLE, "ChargeEnable"),
                             (ChargeStatus.DISCHARGE_ENABLE, "DischargeEnable")):
            measure(f"0x92 {flag.name}{where} against 0x35C {signal}", bool(values.status & flag), req=req,
                    equals=bool(request[signal]))
