"""Two packs on one RS485 line (PACK_SPEC.md 7): the master's polls, and a console reading both.

"The master (ADR 2, the pack on the CAN bus) polls the slave (ADR 3) every 1 s with 0x42 ... and
0x44; three missed polls are an RS485 link failure." The rig listens to the line from before the
packs talk and decodes every frame itself: which commands are polled, how often, whether each
is answered and what the answers say (the slave's cells against its cell taps, its alarm info
against its detail frames on CAN); then the link is cut (fault insertion) and the parallel
connection failure timed from the cut. A console on the same line reads each pack at its own
address while the master polls: only the addressed pack answers, and the master answers for the
whole group (command value 0xFF) with both packs' values.
"""
from __future__ import annotations

import pytest

from rig.errors import FrameError
from rig.protocol import rs485
from rig.protocol.rs485_commands import ALL_PACKS, REPLY_TYPES, parse_reply
from rig.rs485_console import is_reply, wire
from testcases.console import check_alarm_info_follows_can, console, read
from testcases.kit.observe import seconds_until

pytestmark = [pytest.mark.needs(parallel_packs=2), pytest.mark.requirement("rs485", manual="5, 6.2")]

BUTTONS = ("power_button", "pack2_power_button")
#: Bytes asked of the RS485 port per read; it returns at once with what has arrived (timeout 0).
READ_CHUNK = 1 << 16


def _join(bench, pack, spec) -> None:
    """Breaker closed, both POWER buttons held together; wait until the master reports two modules."""
    pack.close_breaker()
    for button in BUTTONS:
        bench.output(button, True)
    bench.clock.sleep(spec.power_on.button_hold_s)
    for button in BUTTONS:
        bench.output(button, False)
    pack.pcs.wait_until("ModuleCount", spec.ratings.max_parallel_packs, frame="ProtectionsAlarms",
                        within=spec.power_on.relays_closed_within_s + spec.can.period_s,
                        what="both packs joined")


def _pairs(frames: list) -> list[tuple[float, rs485.Frame, rs485.Frame | None]]:
    """(time, request, its reply or None) for every request heard: a reply answers the request
    just before it when it comes from the address that request named."""
    out = []
    for t, frame in frames:
        if not is_reply(frame):
            out.append((t, frame, None))
        elif out and out[-1][2] is None and out[-1][1].adr == frame.adr:
            out[-1] = (out[-1][0], out[-1][1], frame)
    return out


def test_master_polls_the_slave_with_0x42_and_0x44(spec, bench, pack, pack2, pcs, faults, measure):
    """Every poll period the master sends each polled command to the slave (ADR 3, command
    value 3), and the slave answers each with RTN 0 and the command's INFO: 0x42 with its cells
    as its cell taps read them, 0x44 saying what its detail frames say. With the link cut, the
    parallel connection failure follows the third missed poll."""
    rs, par, req, tol = spec.rs485, spec.parallel, spec.rs485.id, spec.tolerance
    clock, line, reader = bench.clock, bench.rs485, rs485.FrameReader()   # listening before the packs talk
    _join(bench, pack, spec)
    reader.feed(line.read(READ_CHUNK))                                     # the traffic of the power-on

    polls_wanted, step = 5, par.rs485_poll_period_s / 10
    started, items = clock.now(), []
    while clock.now() < started + polls_wanted * par.rs485_poll_period_s - 1e-9:
        clock.sleep(step)
        items += [(clock.now(), item) for item in reader.feed(line.read(READ_CHUNK))]
    measure("malformed frames on the RS485 line", [str(i) for _, i in items if isinstance(i, FrameError)],
            req=req, equals=[])
    exchanges = _pairs([(t, f) for t, f in items if not isinstance(f, FrameError)])
    measure("commands polled", sorted({f.cid2_or_rtn for _, f, _ in exchanges}), req=req,
            equals=sorted(rs.polled_commands))
    answers = {}
    with measure.together():
        for cid2 in rs.polled_commands:
            polls = [(t, f, r) for t, f, r in exchanges if f.cid2_or_rtn == cid2]
            # the count may be one off at either end of the window (where the sampling cuts it)
            measure(f"0x{cid2:02X} polls in {polls_wanted} periods", len(polls), req=req, at_least=polls_wanted - 1,
                    at_most=polls_wanted + 1)
            if len(polls) >= 2:  # the pack spec gives RS485 no timing tolerance of its own: CAN's is used
                mean = (polls[-1][0] - polls[0][0]) / (len(polls) - 1)
                measure(f"mean 0x{cid2:02X} poll period", mean, req=req, unit="s", nominal=par.rs485_poll_period_s,
                        tolerance=spec.can.period_tolerance_s)
            for t, poll, answer in polls:
                request = rs485.parse_request(poll)
                measure(f"0x{cid2:02X} poll ADR and command value", (poll.adr, request.command), req=req,
                        equals=(rs.slave_address, rs.slave_address))
                measure(f"RTN of the slave's answer to 0x{cid2:02X}", answer and answer.cid2_or_rtn, req=req,
                        equals=rs485.Rtn.OK)
            try:
                answers[cid2] = parse_reply(cid2, polls[-1][2]) if polls and polls[-1][2] else None
            except FrameError as error:
                measure(f"INFO of the slave's answer to 0x{cid2:02X}", str(error), req=req,
                        equals=f"{REPLY_TYPES[rs485.Cid2(cid2)].__name__} (PACK_SPEC.md 7)")
    values, alarms = answers.get(rs485.Cid2.ANALOG_VALUES), answers.get(rs485.Cid2.ALARM_INFO)
    taps = pack2.group_voltages()
    with measure.together():
        for i, (mv, tap) in enumerate(zip(values.cell_mv, taps), start=1):
            measure(f"0x42 answer: cell {i} against the slave's cell tap", mv / 1000, req=req, unit="V",
                    nominal=tap, tolerance=tol.group_voltage_v)
    check_alarm_info_follows_can(measure, spec, alarms, pcs, address=rs.slave_address,
                                 where=" (the slave's answer to a poll)")

    failure = spec.failures.parallel_connection.failure_bit
    faults.rs485_cut(True)
    missed = par.rs485_missed_polls * par.rs485_poll_period_s
    took = seconds_until(clock, lambda: pcs.latest("DetailStatus", rs.master_address)[failure],
                         until=lambda bit: bit == 1, within=missed + tol.delay_late_s + spec.can.period_s)
    measure(f"DetailStatus.{failure} after the RS485 cut (third missed poll, then the next report)", took,
            req=spec.failures.parallel_connection.id, unit="s",
            at_least=(par.rs485_missed_polls - 1) * par.rs485_poll_period_s,
            at_most=missed + tol.delay_late_s + spec.can.period_s)


def test_console_reads_each_pack_while_the_master_polls(spec, bench, pack, pack2, pcs, measure):
    """A console on the polled line asks each pack at its address: only that pack answers (the
    other stays silent), with its own cells (against its cell taps), its own serial number and
    alarm info as its detail frames say; ADR 0 (0x4F, 0x51) is answered once, by the master; the
    master answers 0x42 for the whole group with both packs, itself first."""
    rs, req, tol = spec.rs485, spec.rs485.id, spec.tolerance
    line = console(bench, spec)
    _join(bench, pack, spec)
    bench.clock.sleep(2 * spec.parallel.rs485_poll_period_s)   # polls and answers wait in the port
    packs = {rs.master_address: pack, rs.slave_address: pack2}
    serials = {}
    for adr, who in packs.items():
        other = next(a for a in packs if a != adr)
        replies = line.replies_before_witness(wire(rs485.request(rs485.Cid2.ANALOG_VALUES, adr)), other)
        measure(f"replies to 0x42 for ADR {adr}, and from which ADR", replies and [r.adr for r in replies],
                req=req, equals=[adr])
        values = read(line, measure, spec, rs485.Cid2.ANALOG_VALUES, adr=adr, command=adr)
        with measure.together():
            measure(f"ADR {adr} 0x42 pack number", values.pack, req=req, equals=adr)
            for i, (mv, tap) in enumerate(zip(values.cell_mv, who.group_voltages()), start=1):
                measure(f"ADR {adr} 0x42 cell {i} against its cell tap", mv / 1000, req=req, unit="V", nominal=tap,
                        tolerance=tol.group_voltage_v)
        alarms = read(line, measure, spec, rs485.Cid2.ALARM_INFO, adr=adr, command=adr)
        check_alarm_info_follows_can(measure, spec, alarms, pcs, address=adr, where=f" (ADR {adr})")
        serials[adr] = read(line, measure, spec, rs485.Cid2.SERIAL_NUMBER, adr=adr, command=adr).serial
    measure("0x93 serial numbers of the two packs differ", serials[rs.master_address] != serials[rs.slave_address],
            req=req, equals=True)
    for cid2 in rs.adr0_commands:   # one answer, the master's, however many packs hear ADR 0
        replies = line.replies_before_witness(wire(rs485.request(cid2, 0)), rs.slave_address)
        measure(f"replies to 0x{cid2:02X} for ADR 0, and from which ADR", replies and [r.adr for r in replies],
                req=req, equals=[rs.master_address])

    group = read(line, measure, spec, rs485.Cid2.ANALOG_VALUES, adr=rs.master_address, command=ALL_PACKS,
                 where=" for the whole group")
    measure("modules in the master's group reply", len(group.modules), req=req, equals=len(packs))
    with measure.together():
        for module, (adr, who) in zip(group.modules, packs.items()):
            for i, (mv, tap) in enumerate(zip(module.cell_mv, who.group_voltages()), start=1):
                measure(f"group reply module {module.pack} (ADR {adr}) cell {i} against its cell tap", mv / 1000,
                        req=req, unit="V", nominal=tap, tolerance=tol.group_voltage_v)
