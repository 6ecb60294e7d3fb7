"""The RS485 console as the test cases read it (PACK_SPEC.md 7): what 0x44 and 0x92 must say,
given what the same pack reports on CAN.

A Pylontech console and the PCS must see the same pack. So, at one instant:

- every protection row the pack reports on CAN at level 1 or more shows in 0x44 as an
  out-of-range state of the readings that row watches, in its direction (:data:`ROW_STATES`);
- a row with a Status1 bit has it set exactly while the row is at level 2 or 3 on CAN
  (:data:`STATUS1_ROWS`; v3.3 has no bit for under temperature and cell difference, and only
  "module over voltage" for both over-voltage rows);
- the charge and discharge MOSFET bits of Status2 are the enable bits of 0x35C, and 0x92's
  limits and enable flags are those of 0x351 and 0x35C (one pack: the system is the pack).

Which row shows where (and which fields a failed sampler turns to 0xF0, :data:`SAMPLER_FIELDS`)
is protocol, read from :mod:`rig.protocol.rs485_alarm_rows` as the emulated pack reads it. The
v3.3 field names are the protocol's; every number comes from the pack spec or from CAN.
"""
from __future__ import annotations

import pytest

from rig.errors import FrameError
from rig.files.rows import PROTECTIONS
from rig.protocol.rs485 import Rtn
from rig.protocol.rs485_alarm_rows import (  # noqa: F401 - CELL_SENSORS, SAMPLER_FIELDS: for the test cases
    CELL_SENSORS, ROW_STATES, SAMPLER_FIELDS, STATUS1_ROWS, states_of)
from rig.protocol.rs485_commands import ChargeStatus, Status2, parse_reply
from rig.rs485_console import Rs485Console
from testcases.kit.observe import half_step
from testcases.kit.reports import LEVELS, level_signal


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
        shown = {bit for row, bit in STATUS1_ROWS.items() if levels[row] >= 2}
        for bit in dict.fromkeys(STATUS1_ROWS.values()):
            rows = [r for r, b in STATUS1_ROWS.items() if b == bit]
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
