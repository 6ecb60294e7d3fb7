"""DAQ970A relay/IO box: the driver against (command, reply) pairs, then against the emulation over TCP."""
from __future__ import annotations

import socket
import time

import pytest

from instruments.errors import InstrumentError, LimitRefused
from instruments.keysight_daq970a_io import KeysightDaq970AIo
from emulator.instruments.daq970a_io import EmulatedDaq970AIo
from emulator.plant import Plant

NO_ERROR = ("SYST:ERR?", '+0,"No error"')
ALL_OPEN = ",".join(["0"] * 20)
S = 1_000_000_000
# the emulated bench's wiring (rig/benches/emulated.toml [instruments.io])
OUTPUTS = {"power_button": 1, "breaker": 2, "wake": 3, "short_circuit": 4,
           "pack2_power_button": 5, "pack2_wake": 6}
INPUTS = {"run": 1, "alm": 2, "led1": 3, "led2": 4, "led3": 5, "led4": 6, "pack2_run": 7,
          "pack2_alm": 8, "pack2_led1": 9, "pack2_led2": 10, "pack2_led3": 11, "pack2_led4": 12}


#: a bench that gives the box a watchdog of at most 5 s
WATCHED = {"watchdog": (0.0, 5.0)}


def box(resource, **kw):
    return KeysightDaq970AIo(resource, "io", **kw)


# --- (a) driver against exact exchanges ----------------------------------------------------------
def test_close_output(expected_protocol):
    io = box(expected_protocol([("ROUT:CLOS (@102)", None), NO_ERROR, ("ROUT:CLOS? (@102)", "1")]))
    io.set_output(2, True)


def test_open_output(expected_protocol):
    io = box(expected_protocol([("ROUT:OPEN (@102)", None), NO_ERROR, ("ROUT:CLOS? (@102)", "0")]))
    io.set_output(2, False)


def test_relay_that_does_not_follow_raises(expected_protocol):
    io = box(expected_protocol([("ROUT:CLOS (@104)", None), NO_ERROR, ("ROUT:CLOS? (@104)", "0")]))
    with pytest.raises(InstrumentError, match="io.*relay 104 reads back open"):
        io.set_output(4, True)


def test_outputs(expected_protocol):
    io = box(expected_protocol([("ROUT:CLOS? (@101:104)", "0,1,0,0")]), output_channels=[1, 2, 3, 4])
    assert io.outputs() == {1: False, 2: True, 3: False, 4: False}


def test_inputs(expected_protocol):
    io = box(expected_protocol([("SENS:DIG:DATA:WORD? (@201)", "+2.61000000E+02")]),
             input_channels=range(1, 13))
    # 261 = lines 1, 3 and 9
    assert io.inputs() == {n: n in (1, 3, 9) for n in range(1, 13)}


def test_inputs_unreadable(expected_protocol):
    with pytest.raises(InstrumentError, match="not a 16-bit value"):
        box(expected_protocol([("SENS:DIG:DATA:WORD? (@201)", "+7.00000000E+04")])).inputs()


def test_watchdog_get(expected_protocol):
    assert box(expected_protocol([("SYST:COMM:WDOG?", "+2.00000000E+00")])).watchdog_s == 2.0


def test_protect_sets_the_watchdog(expected_protocol):
    io = box(expected_protocol([
        ("SYST:COMM:WDOG 2", None), NO_ERROR, ("SYST:COMM:WDOG?", "+2.00000000E+00"),
        ("ROUT:CLOS? (@101:120)", ALL_OPEN),  # off only with every relay open
        ("SYST:COMM:WDOG 0", None), NO_ERROR, ("SYST:COMM:WDOG?", "+0.00000000E+00")]), limits=WATCHED)
    io.protect(2.0)
    io.protect(None)


def test_watchdog_beyond_range_sends_nothing(expected_protocol):
    with pytest.raises(LimitRefused, match="instrument range"):
        box(expected_protocol([]), limits=WATCHED).protect(100.0)
    with pytest.raises(LimitRefused, match=r"bench hard limit \[0, 5\]"):
        box(expected_protocol([]), limits=WATCHED).protect(6.0)


def test_a_bench_without_an_io_watchdog_asks_for_none(expected_protocol):
    """example-real.toml: a stock DAQ970A has no watchdog; the driver does not pretend."""
    io = box(expected_protocol([("ROUT:CLOS (@102)", None), NO_ERROR, ("ROUT:CLOS? (@102)", "1")]))
    io.protect(None)  # nothing to turn off: nothing sent
    with pytest.raises(LimitRefused, match="no hard limit configured"):
        io.protect(2.0)
    io.set_output(2, True)  # no watchdog to check before closing
    assert io.resource.sent == ["ROUT:CLOS (@102)", "SYST:ERR?", "ROUT:CLOS? (@102)"]


def test_real_daq970a_has_no_watchdog(expected_protocol):
    io = box(expected_protocol([("SYST:COMM:WDOG 2", None), ("SYST:ERR?", '-113,"Undefined header"'),
                                NO_ERROR]), limits=WATCHED)
    with pytest.raises(InstrumentError, match='io.*-113,"Undefined header"') as err:
        io.protect(2.0)
    assert err.value.instrument == "io"


def test_make_safe_opens_everything(expected_protocol):
    box(expected_protocol([("ROUT:OPEN (@101:120)", None), ("ROUT:CLOS? (@101:120)", ALL_OPEN)])).make_safe()


def test_make_safe_reports_a_stuck_relay(expected_protocol):
    io = box(expected_protocol([("ROUT:OPEN (@101:120)", None),
                                ("ROUT:CLOS? (@101:120)", "0,1" + ",0" * 18)]))
    with pytest.raises(InstrumentError, match=r"\[102\] still read closed"):
        io.make_safe()


def test_bad_channel_sends_nothing(expected_protocol):
    io = box(expected_protocol([]))
    with pytest.raises(ValueError):
        io.set_output(21, True)
    with pytest.raises(ValueError):
        box(expected_protocol([]), input_channels=[17])


def test_interlock_refuses_closing_but_opening_goes_through(expected_protocol, tripped):
    io = box(expected_protocol([("ROUT:OPEN (@102)", None), NO_ERROR, ("ROUT:CLOS? (@102)", "0"),
                                ("ROUT:OPEN (@101:120)", None), ("ROUT:CLOS? (@101:120)", ALL_OPEN),
                                ("SENS:DIG:DATA:WORD? (@201)", "+1.00000000E+00")]), interlock=tripped.interlock)
    with pytest.raises(tripped):
        io.set_output(2, True)
    io.set_output(2, False)
    io.make_safe()
    assert io.inputs()[1] is True


# --- (b) driver against the emulated box over TCP ------------------------------------------------
@pytest.fixture
def bench(serve):
    clock = {"ns": 0}
    asked: list[tuple[str, int]] = []

    def light_at(name: str, t_ns: int) -> bool:
        asked.append((name, t_ns))
        if name == "run":
            return t_ns >= 5 * S  # comes on at 5 s
        if name == "led2":
            return (t_ns // S) % 2 == 0  # flickers at 0.5 Hz
        return name == "pack2_alm"

    plant = Plant()
    plant.now_ns = lambda: clock["ns"]
    plant.io.light_at = light_at
    device = EmulatedDaq970AIo(plant, OUTPUTS, INPUTS)
    server, connect = serve(device)
    yield plant, clock, asked, device, server, connect


def io_for(connect, **kw):
    return KeysightDaq970AIo(connect(), "io", output_channels=sorted(OUTPUTS.values()),
                             input_channels=sorted(INPUTS.values()), **kw)


def wait_for(condition, what):
    deadline = time.monotonic() + 2.0
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.01)


def test_outputs_land_in_the_plant_by_function(bench):
    plant, _, _, _, _, connect = bench
    io = io_for(connect)
    assert "DAQ970A" in io.identify()
    io.set_output(OUTPUTS["breaker"], True)
    assert plant.io.outputs == {f: f == "breaker" for f in OUTPUTS}
    io.set_output(OUTPUTS["pack2_wake"], True)
    assert plant.io.outputs["pack2_wake"] and plant.io.outputs["breaker"]
    assert io.outputs() == {1: False, 2: True, 3: False, 4: False, 5: False, 6: True}
    io.set_output(OUTPUTS["breaker"], False)
    assert not plant.io.outputs["breaker"]
    io.set_output(20, True)  # an unwired relay: the plant knows nothing of it
    assert set(plant.io.outputs) == set(OUTPUTS)
    io.make_safe()
    assert not any(plant.io.outputs.values())


def test_inputs_are_the_lights_at_the_time_of_the_query(bench):
    _, clock, asked, _, _, connect = bench
    io = io_for(connect)
    lines = {function: line for function, line in INPUTS.items()}
    for t_s, run, led2 in ((0.0, False, True), (1.5, False, False), (6.0, True, True)):
        clock["ns"] = int(t_s * S)
        asked.clear()
        state = io.inputs()
        assert state[lines["run"]] is run and state[lines["led2"]] is led2
        assert state[lines["pack2_alm"]] and not state[lines["alm"]]
        assert {t for _, t in asked} == {clock["ns"]}  # every light looked at, at that instant
        assert {name for name, _ in asked} == set(INPUTS)


def test_watchdog_opens_every_relay(bench):
    plant, clock, _, device, _, connect = bench
    io = io_for(connect, limits=WATCHED)
    io.protect(2.0)
    io.set_output(OUTPUTS["breaker"], True)
    io.set_output(OUTPUTS["wake"], True)
    assert device.next_deadline_ns() == 2 * S
    clock["ns"] = int(1.5 * S)
    device.on_time(clock["ns"])
    assert plant.io.outputs["breaker"]
    io.outputs()  # any command restarts the count
    assert device.next_deadline_ns() == int(3.5 * S)
    clock["ns"] = int(3.4 * S)
    device.on_time(clock["ns"])
    assert plant.io.outputs["breaker"]
    clock["ns"] = int(3.5 * S)
    device.on_time(clock["ns"])
    assert not any(plant.io.outputs.values())
    assert device.next_deadline_ns() is None


def test_expired_watchdog_acts_before_a_late_command(bench):
    plant, clock, _, device, _, connect = bench
    io = io_for(connect, limits=WATCHED)
    io.protect(1.0)
    io.set_output(OUTPUTS["breaker"], True)
    clock["ns"] = 10 * S  # the world moved on without calling on_time
    assert io.outputs()[OUTPUTS["breaker"]] is False
    assert not plant.io.outputs["breaker"]
    assert device.next_deadline_ns() == 11 * S


def test_disconnect_opens_relays(bench):
    plant, _, _, _, _, connect = bench
    res = connect()
    KeysightDaq970AIo(res, "io").set_output(OUTPUTS["breaker"], True)
    assert plant.io.outputs["breaker"]
    res.close()
    wait_for(lambda: not plant.io.outputs["breaker"], "the breaker open after the disconnect")


def test_unknown_header_and_out_of_range_leave_settings(bench):
    plant, _, _, device, _, connect = bench
    res = connect()
    io = KeysightDaq970AIo(res, "io", limits=WATCHED)
    io.protect(2.0)
    io.set_output(OUTPUTS["breaker"], True)
    res.write("ROUT:FROB (@101)")
    assert res.query("SYST:ERR?").startswith("-113")
    res.write("ROUT:CLOS (@101,125)")  # 125 is no relay: nothing at all is closed
    assert res.query("SYST:ERR?").startswith("-222")
    res.write("ROUT:OPEN (@302)")
    assert res.query("SYST:ERR?").startswith("-222")
    res.write("SYST:COMM:WDOG 100")
    assert res.query("SYST:ERR?").startswith("-222")
    assert io.watchdog_s == 2.0
    assert plant.io.outputs == {f: f == "breaker" for f in OUTPUTS}
    res.write("*RST")
    res.query("*OPC?")  # a write returns before the instrument has acted: wait until it has
    assert not any(plant.io.outputs.values()) and device.next_deadline_ns() is None


def test_garbage_does_not_crash_the_server(bench):
    plant, _, _, _, server, connect = bench
    first = KeysightDaq970AIo(connect(), "io")
    first.set_output(OUTPUTS["wake"], True)
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"\xff\x00\xfe\nROUT:CLOS (@1:\n" + b"(" * 8000 + b"\nSENS:DIG:DATA:WORD? (@202)\n")
        raw.sendall(b"SYST:ERR?\n")
        assert raw.makefile("rb").readline().startswith(b"-")
    # the garbage client's disconnect opened the relays, as any client's would
    wait_for(lambda: not plant.io.outputs["wake"], "the relays open after the garbage client left")
    second = KeysightDaq970AIo(connect(), "io")
    second.write("*CLS")  # the error queue is the instrument's: the garbage left errors in it
    second.set_output(OUTPUTS["short_circuit"], True)
    assert plant.io.outputs["short_circuit"]
    assert first.outputs()[OUTPUTS["short_circuit"]] is True
