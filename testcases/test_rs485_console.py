"""The RS485 console of one pack (PACK_SPEC.md 7; Pylontech RS485 v3.3, 115200 8N1).

"A pack also answers 0x47, 0x4F, 0x51, 0x92, 0x93, so common Pylontech console clients can read
it: accept LENID 2 and LENID 4 requests, lower-case hex, and ADR 0 for 0x4F and 0x51." The rig is
such a client (:mod:`rig.rs485_console` on ``bench.rs485``), and reads what the pack says the way
it reads everything the pack says: against its own instruments. The cell voltages of 0x42
against the cell taps, its temperatures against the case thermocouples, its current against the
PSU and e-load read-backs, its module voltage against the DMM, its capacities against the SOC
and SOH the pack sends on CAN; 0x44 and 0x92 against what the pack reports on CAN at the same
instant, in a protection row of each kind (voltage, current, temperature, cell difference);
0x47 against the pack spec's thresholds. Then the error replies (RTN 0x01 VER, 0x02 CHKSUM,
0x03 LCHKSUM, 0x04 CID2, 0x05 format, 0x06 data, 0x90 ADR) and silence when a frame is for
another address.

The pack is the master of a pair (ADR 2) when it stands alone. Two packs: test_rs485_pair.py.
"""
from __future__ import annotations

import math

import pytest

from rig.protocol.rs485 import Cid2, Rtn, decode_frame, request
from rig.protocol.rs485_commands import ALL_PACKS, AlarmState, Status3, parse_reply
from rig.rs485_console import REPLY_CODES, corrupted, wire
from testcases.console import (CELL_SENSORS, ROW_STATES, SAMPLER_FIELDS, check_alarm_info_follows_can,
                               check_charge_management_follows_can, console, read, states_of)
from testcases.kit import rules
from testcases.kit.observe import half_step, seconds_until
from testcases.kit.reports import LEVELS, level_signal

RS485 = pytest.mark.requirement("rs485", manual="2.4")
#: One protection row of each kind, at the level the case drives it to (PACK_SPEC.md 4).
ALARM_CASES = [("cell_over_voltage", 2), ("discharge_over_current", 2), ("charge_over_temperature", 1),
               ("charge_under_temperature", 2), ("cell_voltage_difference", 2)]
#: 0x47 limit -> (protection row, level) whose threshold it is (the pack spec's [rs485] note).
SYSTEM_PARAMETERS = {
    "cell_high_mv": ("cell_over_voltage", 1), "cell_low_mv": ("cell_under_voltage", 1),
    "cell_under_mv": ("cell_under_voltage", 2), "charge_high_temp_c": ("charge_over_temperature", 1),
    "charge_low_temp_c": ("charge_under_temperature", 1), "charge_current_limit_a": ("charge_over_current", 1),
    "module_high_mv": ("pack_over_voltage", 1), "module_low_mv": ("pack_under_voltage", 1),
    "module_under_mv": ("pack_under_voltage", 2), "discharge_high_temp_c": ("discharge_over_temperature", 1),
    "discharge_low_temp_c": ("discharge_under_temperature", 1),
    "discharge_current_limit_a": ("discharge_over_current", 1),
}


@pytest.fixture
def line(bench, spec):
    """The rig's console on the RS485 line."""
    return console(bench, spec)


def on_and_reporting(pack, spec) -> None:
    """POWER held until the relays are closed, then one CAN period for a fresh report."""
    pack.power_on()
    pack.clock.sleep(spec.can.period_s)


# --- 0x42 analog values ------------------------------------------------------------------------
@RS485
def test_analog_values_against_the_rigs_instruments(spec, bench, pack, pcs, measure, line):
    """0x42: 16 cell voltages against the cell taps, 5 temperatures against the case
    thermocouples, the module voltage against the DMM, remaining and full capacity against the SOC
    and SOH on CAN and the rated capacity; the current against the PSU and e-load read-backs,
    charging (+) and discharging (-), with Status3 of 0x44 naming the direction. A console asking
    the whole group (command value 0xFF, python-pylontech's get_values()) gets the same values."""
    rs, tol, req, adr = spec.rs485, spec.tolerance, spec.rs485.id, spec.rs485.master_address
    on_and_reporting(pack, spec)
    values = read(line, measure, spec, Cid2.ANALOG_VALUES, adr=adr, command=adr)
    taps, cases, dmm = pack.group_voltages(), pack.case_temperatures(), pack.terminal_voltage()
    soc, soh = pcs.signal("SOC"), pcs.signal("SOH")
    case_c = sum(cases) / len(cases)
    with measure.together():
        measure("0x42 pack number", values.pack, req=req, equals=adr)
        measure("0x42 cell count", len(values.cell_mv), req=req, equals=spec.ratings.groups)
        for i, (mv, tap) in enumerate(zip(values.cell_mv, taps), start=1):
            measure(f"0x42 cell {i} against its cell tap", mv / 1000, req=req, unit="V", nominal=tap,
                    tolerance=tol.group_voltage_v)
        measure("0x42 temperature count", len(values.temps_c), req=req, equals=rs.temperatures)
        for i, celsius in enumerate(values.temps_c, start=1):
            measure(f"0x42 T{i} against the case thermocouples (at rest)", celsius, req=req, unit="C",
                    nominal=case_c, tolerance=tol.temperature_c)
        measure("0x42 module voltage against the DMM", values.module_mv / 1000, req=req, unit="V", nominal=dmm,
                tolerance=tol.pack_voltage_v)
        measure("0x42 current at rest against the read-backs", values.current_a, req=req, unit="A",
                nominal=pack.current(), tolerance=tol.current_a)
        rated = spec.ratings.nominal_capacity_ah
        measure("0x42 full capacity against the rating x SOH (0x355)", values.total_mah / 1000, req=req,
                unit="Ah", nominal=rated * soh / 100, tolerance=rated * tol.soc_pct / 100)
        remaining_pct = 100 * values.remaining_mah / values.total_mah if values.total_mah else math.nan
        measure("0x42 remaining / full capacity against 0x355 SOC", remaining_pct, req=req, unit="%",
                nominal=soc, tolerance=half_step("StateOfCharge", "SOC"))
    group = read(line, measure, spec, Cid2.ANALOG_VALUES, adr=adr, command=ALL_PACKS, where=" for the whole group")
    measure("modules in the group reply of a single pack", len(group.modules), req=req, equals=1)
    measure("cells of the group reply against the single reply", group.modules[0].cell_mv, req=req,
            equals=values.cell_mv)

    for direction, effective in (("charge", Status3.EFFECTIVE_CHARGE_CURRENT),
                                 ("discharge", Status3.EFFECTIVE_DISCHARGE_CURRENT)):
        pack.flow(direction)
        bench.clock.sleep(spec.can.period_s)
        where = f" while {direction[:-1]}ing"
        values = read(line, measure, spec, Cid2.ANALOG_VALUES, adr=adr, command=adr, where=where)
        alarms = read(line, measure, spec, Cid2.ALARM_INFO, adr=adr, command=adr, where=where)
        with measure.together():
            measure(f"0x42 current while {direction[:-1]}ing against the read-backs", values.current_a, req=req,
                    unit="A", nominal=pack.current(), tolerance=tol.current_a)
            measure(f"0x44 Status3 {effective.name} while {direction[:-1]}ing", bool(alarms.status3 & effective),
                    req=req, equals=True)
        pack.stop()


# --- 0x44 alarm info and 0x92 limits, following CAN ------------------------------------------
@RS485
@pytest.mark.protection
@pytest.mark.parametrize("row_name, level", ALARM_CASES, ids=[f"{r}-L{n}" for r, n in ALARM_CASES])
def test_alarm_info_and_limits_follow_can(row_name, level, spec, bench, pack, pcs, faults, measure, line):
    """0x44 and 0x92 say what CAN says: at rest every state normal, no Status1 bit, no cell
    fault, the MOSFETs and 0x92's limits as 0x351/0x35C; with one row driven past a level (fault
    insertion or current, two tolerances past the threshold), the states of the readings every
    reported row watches out of range in its direction, at the extreme reading of 0x42, Status1
    set exactly for the rows at L2 or L3, and 0x92 as 0x351/0x35C again. A cell difference at L2
    flags its lowest and highest cell in Status4/5."""
    rs, req, adr, late = spec.rs485, spec.rs485.id, spec.rs485.master_address, spec.tolerance.delay_late_s
    row = getattr(spec.protections, row_name)
    trip = getattr(row, f"l{level}")
    on_and_reporting(pack, spec)
    info = read(line, measure, spec, Cid2.ALARM_INFO, adr=adr, command=adr, where=" at rest")
    with measure.together():
        for field in ("cell_states", "cell_temp_states", "module_voltage_state", "charge_current_state",
                      "discharge_current_state"):
            measure(f"0x44 {field} at rest", set(states_of(info, field)), req=req, equals={AlarmState.NORMAL})
        measure("0x44 Status1 at rest", int(info.status1), req=req, equals=0)
        measure("0x44 cells flagged in Status4/5 at rest", info.failed_cells, req=req, equals=())
    check_alarm_info_follows_can(measure, spec, info, pcs, address=adr, where=" at rest")
    limits = read(line, measure, spec, Cid2.CHARGE_MANAGEMENT, adr=adr, command=adr, where=" at rest")
    check_charge_management_follows_can(measure, spec, limits, pcs, where=" at rest")

    pack.drive(row.quantity, rules.unsafe(spec, row, trip.threshold))
    within = trip.delay_s + late + spec.can.period_s
    took = seconds_until(bench.clock, lambda: pcs.latest("DetailProtection", adr)[level_signal(row_name)],
                         until=lambda shown: LEVELS.index(shown) >= level, within=within)
    measure(f"DetailProtection.{level_signal(row_name)} at L{level} after the stimulus", took, req=row.id,
            unit="s", at_most=within)
    where = f" with {row_name} at L{level}"
    values = read(line, measure, spec, Cid2.ANALOG_VALUES, adr=adr, command=adr, where=where)
    info = read(line, measure, spec, Cid2.ALARM_INFO, adr=adr, command=adr, where=where)
    check_alarm_info_follows_can(measure, spec, info, pcs, address=adr, where=where)
    limits = read(line, measure, spec, Cid2.CHARGE_MANAGEMENT, adr=adr, command=adr, where=where)
    check_charge_management_follows_can(measure, spec, limits, pcs, where=where)
    cells = values.cell_mv
    if row_name == "cell_voltage_difference":
        extremes = tuple(sorted({cells.index(min(cells)) + 1, cells.index(max(cells)) + 1}))
        measure(f"0x44 cells flagged in Status4/5{where} (the lowest and highest of 0x42)", info.failed_cells,
                req=req, equals=extremes)
        return
    field, state = ROW_STATES[row_name]
    readings = {"cell_states": cells, "cell_temp_states": values.temps_c[:CELL_SENSORS]}.get(field)
    if readings is not None:  # the extreme reading of 0x42 carries the state
        pick = max if state == AlarmState.ABOVE_UPPER else min
        n = readings.index(pick(readings))
        measure(f"0x44 {field}[{n}]{where} (the extreme reading of 0x42)", states_of(info, field)[n], req=req,
                equals=state)


@RS485
@pytest.mark.parametrize("sampler", list(SAMPLER_FIELDS))
def test_alarm_info_of_a_failed_sampler(sampler, spec, bench, pack, pcs, faults, measure, line):
    """A sampling failure (PACK_SPEC.md 4: voltage front-end, temperature sampling, current
    sampling) shows in 0x44 as it shows on CAN: every reading of that sampler in state 0xF0
    "other fault" (a failed voltage front-end also flags every cell in Status4/5), and the
    MOSFETs of Status2 and 0x92's enable flags as 0x35C says once the failure holds the relays
    open."""
    req, adr, failure = spec.rs485.id, spec.rs485.master_address, getattr(spec.failures, sampler)
    on_and_reporting(pack, spec)
    faults.sensor_failure(pack.number - 1, sampler)
    within = 2 * spec.can.period_s
    took = seconds_until(bench.clock, lambda: pcs.latest("DetailStatus", adr)[failure.failure_bit],
                         until=lambda bit: bit == 1, within=within)
    measure(f"DetailStatus.{failure.failure_bit} after the failure", took, req=failure.id, unit="s", at_most=within)
    bench.clock.sleep(spec.can.period_s)   # a report with the relays as the failure left them
    where = f" with the {sampler.replace('_', ' ')} failed"
    info = read(line, measure, spec, Cid2.ALARM_INFO, adr=adr, command=adr, where=where)
    with measure.together():
        for field in SAMPLER_FIELDS[sampler]:
            measure(f"0x44 {field}{where}", set(states_of(info, field)), req=req, equals={AlarmState.OTHER})
        if sampler == "voltage_frontend":
            measure(f"0x44 cells flagged in Status4/5{where}", info.failed_cells, req=req,
                    equals=tuple(range(1, spec.ratings.groups + 1)))
    check_alarm_info_follows_can(measure, spec, info, pcs, address=adr, where=where)
    limits = read(line, measure, spec, Cid2.CHARGE_MANAGEMENT, adr=adr, command=adr, where=where)
    check_charge_management_follows_can(measure, spec, limits, pcs, where=where)


# --- identity, limits, request forms ----------------------------------------------------------
@RS485
def test_system_parameters_identity_and_request_forms(spec, bench, pack, pcs, measure, line):
    """0x47 gives the pack spec's alarm and protection thresholds; 0x4F the protocol version;
    0x51 the manufacturer that 0x35E names; 0x93 a fixed 16-character serial number. The pack
    answers LENID 2 and LENID 4 requests and lower-case hex alike, ADR 0 for 0x4F and 0x51 (with
    its own ADR), and the known-answer frames of PACK_SPEC.md 7 hold byte for byte."""
    rs, req, adr = spec.rs485, spec.rs485.id, spec.rs485.master_address
    known = rs.known_answers
    on_and_reporting(pack, spec)

    params = read(line, measure, spec, Cid2.SYSTEM_PARAMETERS, adr=adr)
    with measure.together():
        for name, (row_name, level) in SYSTEM_PARAMETERS.items():
            threshold = getattr(getattr(spec.protections, row_name), f"l{level}").threshold
            got = getattr(params, name)
            unit, resolution = (("V", 0.0005) if name.endswith("_mv") else ("C", 0.05) if name.endswith("_c")
                                else ("A", 0.05))
            got = got / 1000 if unit == "V" else abs(got) if unit == "A" else got  # 0x47: discharge < 0
            measure(f"0x47 {name} against {row_name} L{level}", got, req=req, unit=unit, nominal=threshold,
                    tolerance=resolution)

    with measure.together():
        measure("0x42 request the rig sends (known answer)", wire(request(Cid2.ANALOG_VALUES, adr)),
                req=req, equals=known.analog_values_request.encode())
        first = line.exchange(known.analog_values_request.encode(), adr)
        measure("RTN of the reply to the known 0x42 request", first.rtn, req=req, equals=Rtn.OK)
        version = line.exchange(wire(request(Cid2.PROTOCOL_VERSION, adr)), adr)
        measure(f"0x4F reply of ADR {adr} (known answer: empty INFO)", version.raw, req=req,
                equals=known.empty_reply.encode())
        anyone = line.ask(Cid2.PROTOCOL_VERSION, 0)
        measure("0x4F to ADR 0: the answering pack's ADR", anyone.reply and anyone.reply.adr, req=req, equals=adr)
        measure("0x4F to ADR 0: VER", anyone.reply and anyone.reply.ver, req=req, equals=rs.protocol_version)

    base = parse_reply(Cid2.ANALOG_VALUES, first.reply, adr) if first.rtn == Rtn.OK else None
    for label, form in (("LENID 4", {"lenid_bytes": 2}), ("lower-case hex", {"lower": True})):
        done = line.ask(Cid2.ANALOG_VALUES, adr, **form)
        measure(f"RTN of the reply to a {label} 0x42 request", done.rtn, req=req, equals=Rtn.OK)
        measure(f"cells of the reply to a {label} 0x42 request (same instant)",
                parse_reply(Cid2.ANALOG_VALUES, done.reply, adr).cell_mv, req=req, equals=base.cell_mv)

    name_on_can = pcs.signal("ManufacturerName").rstrip()
    for to in (adr, 0):
        maker = read(line, measure, spec, Cid2.MANUFACTURER_INFO, adr=to, where=f" to ADR {to}")
        measure(f"0x51 manufacturer (to ADR {to}) against 0x35E", maker.manufacturer.rstrip(), req=req,
                equals=name_on_can)
        measure(f"0x51 battery name (to ADR {to}) is printable ASCII", maker.battery_name.isprintable()
                and bool(maker.battery_name), req=req, equals=True)
    serials = [read(line, measure, spec, Cid2.SERIAL_NUMBER, adr=adr, command=adr, where=f" (read {n})")
               for n in (1, 2)]
    with measure.together():
        measure("0x93 pack number", serials[0].pack, req=req, equals=adr)
        measure("0x93 serial number is 16 printable characters", len(serials[0].serial) == 16
                and serials[0].serial.isprintable(), req=req, equals=True)
        measure("0x93 serial number read twice", serials[1].serial, req=req, equals=serials[0].serial)

    charge_v, discharge_v, charge_a, discharge_a = known.charge_management_values
    frame = parse_reply(Cid2.CHARGE_MANAGEMENT, decode_frame(known.charge_management_reply.encode()))
    measure("0x92 known answer as the rig reads it",
            (frame.charge_voltage_limit_mv / 1000, frame.discharge_voltage_limit_mv / 1000,
             frame.charge_current_limit_a, frame.discharge_current_limit_a),
            req=req, equals=(charge_v, discharge_v, charge_a, discharge_a))


# --- error replies and silence -----------------------------------------------------------------
@RS485
def test_error_replies_and_silence_for_another_address(spec, bench, pack, measure, line):
    """A request the pack cannot take is answered with the RTN that names the fault, from the
    pack's own ADR with an empty INFO: a VER other than 0x20 (0x01), a wrong CHKSUM (0x02), a wrong
    LCHKSUM (0x03), a command it does not know (0x04), a character that is not hex (0x05), the
    other pack's command value (0x06), ADR 0 with a command other than 0x4F and 0x51 (0x90). A
    frame for another address, well formed or not, and a frame whose address cannot be read get
    no reply at all: the replies heard before the answer of a request that follows are counted."""
    rs, req, adr = spec.rs485, spec.rs485.id, spec.rs485.master_address
    pack.power_on()
    analog = request(Cid2.ANALOG_VALUES, adr)
    unknown = next(c for c in range(0x40, 0x100) if c not in rs.commands and c not in REPLY_CODES)
    cases = (("a VER other than the pack's", wire(request(Cid2.ANALOG_VALUES, adr, ver=rs.protocol_version ^ 1)),
              adr, Rtn.VER),
             ("a wrong CHKSUM", corrupted(analog, Rtn.CHKSUM), adr, Rtn.CHKSUM),
             ("a wrong LCHKSUM", corrupted(analog, Rtn.LCHKSUM), adr, Rtn.LCHKSUM),
             ("a character that is not hex", corrupted(analog, Rtn.FORMAT), adr, Rtn.FORMAT),
             ("0x42 naming the other pack's data", wire(request(Cid2.ANALOG_VALUES, adr, bytes([rs.slave_address]))),
              adr, Rtn.DATA),
             (f"an unknown command 0x{unknown:02X}", wire(request(unknown, adr)), adr, Rtn.CID2),
             ("0x42 to ADR 0", wire(request(Cid2.ANALOG_VALUES, 0)), None, Rtn.ADR))
    with measure.together():
        for label, raw, to, rtn in cases:
            done = line.exchange(raw, to)
            measure(f"RTN of the reply to {label}", done.rtn, req=req, equals=rtn)
            measure(f"ADR and INFO of the reply to {label}", done.reply and (done.reply.adr, done.reply.info),
                    req=req, equals=(adr, b""))
    other = rs.slave_address
    with measure.together():
        for label, probe in ((f"0x42 for ADR {other}", wire(request(Cid2.ANALOG_VALUES, other))),
                             (f"0x93 for ADR {other}", wire(request(Cid2.SERIAL_NUMBER, other))),
                             (f"a wrong CHKSUM for ADR {other}", corrupted(request(Cid2.ANALOG_VALUES, other),
                                                                           Rtn.CHKSUM)),
                             ("a frame whose ADR is not hex", wire(analog).replace(b"~2002", b"~20ZZ", 1)),
                             ("a frame cut after its VER", b"~20\r")):
            replies = line.replies_before_witness(probe, adr)
            measure(f"replies to {label} (no pack there)", None if replies is None else len(replies), req=req,
                    equals=0)

