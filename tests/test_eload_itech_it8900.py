"""ITECH IT8900 electronic load: the driver against exact (command, reply) pairs, then the driver
against the emulated IT8900 over real TCP with pyvisa-py (in-process, fake world clock)."""
from __future__ import annotations

import socket

import pytest
from scpi_helpers import FakeClock, eventually

from instruments.errors import InstrumentError, LimitRefused
from instruments.itech_it8900 import ItechIT8900
from emulator.instruments.it8900_load import EmulatedIT8900
from emulator.plant import LoadStep, Plant

# the emulated bench's: 160 A, the load operated between the pack minimum and the PSU cap, 5 s watchdog
LIMITS = {"current": (0.0, 160.0), "voltage": (38.0, 64.5), "watchdog": (0.0, 5.0)}
OK = ("SYST:ERR?", '0,"No error"')
#: what the driver reads back (one round trip) before the input goes on
STATE = ("FUNC?;:FUNC:MODE?;:INP:SHOR?;:CURR?;:RES?;:POW?;:LIST:RANG?;:CURR:PROT:STAT?;:CURR:PROT?;"
         ":INP:PROT:WDOG?;:INP:PROT:WDOG:DEL?")


def state(func="CURR", mode="FIX", short="0", curr="0", res="7500", pow_="0", rang="160", ocp="1",
          ocp_a="160", wdog="1", delay="5"):
    """The read-back before input on: by default CC 0 A, OCP at 160 A, watchdog 5 s."""
    return (STATE, ";".join((func, mode, short, curr, res, pow_, rang, ocp, ocp_a, wdog, delay)))


def confirmed(command: str, query: str, reply: str) -> list:
    """A set as the driver does it: write, error queue empty, read-back."""
    return [(command, None), OK, (query, reply)]


@pytest.fixture
def load(expected_protocol):
    def make(pairs, interlock=None, short_permit=None):
        return ItechIT8900(expected_protocol(pairs), "eload", LIMITS, interlock, short_permit=short_permit)
    return make


# --- (a) the driver against exact exchanges --------------------------------------------------------
@pytest.mark.parametrize("attr, query, reply, value", [
    ("function", "FUNC?", "CURRENT", "CURR"),
    ("current_setpoint", "CURR?", "96", 96.0),
    ("voltage_setpoint", "VOLT?", "40.5", 40.5),
    ("resistance_setpoint", "RES?", "0.5", 0.5),
    ("power_setpoint", "POW?", "5000", 5000.0),
    ("input_enabled", "INP?", "1", True),
    ("short_enabled", "INP:SHOR?", "0", False),
    ("function_mode", "FUNC:MODE?", "LIST", "LIST"),
    ("list_range", "LIST:RANG?", "240", 240.0),
    ("list_count", "LIST:COUN?", "1", 1),
    ("list_steps", "LIST:STEP?", "2", 2),
    ("trigger_source", "TRIG:SOUR?", "BUS", "BUS"),
    ("watchdog_enabled", "INP:PROT:WDOG?", "1", True),
    ("watchdog_delay", "INP:PROT:WDOG:DEL?", "1", 1.0),
    ("voltage", "MEAS:VOLT?", "51.2", 51.2),
    ("current", "MEAS:CURR?", "96.01", 96.01),
])
def test_getter(load, attr, query, reply, value):
    assert getattr(load([(query, reply)]), attr) == value


def test_indexed_getters(load):
    inst = load([("LIST:LEV? 1", "96"), ("LIST:WID? 2", "1")])
    assert (inst.list_level[1], inst.list_width[2]) == (96.0, 1.0)


@pytest.mark.parametrize("attr, value, gate, command, query, reply", [
    ("function", "RES", [], "FUNC RES", "FUNC?", "RES"),
    ("function", "VOLT", [("CURR:PROT:STAT?;:CURR:PROT?", "1;160")], "FUNC VOLT", "FUNC?", "VOLT"),
    ("current_setpoint", 96.0, [], "CURR 96", "CURR?", "96"),
    ("voltage_setpoint", 42.0, [], "VOLT 42", "VOLT?", "42"),
    ("resistance_setpoint", 0.75, [], "RES 0.75", "RES?", "0.75"),
    ("power_setpoint", 3000.0, [], "POW 3000", "POW?", "3000"),
    ("input_enabled", True, [state()], "INP ON", "INP?", "1"),
    ("function_mode", "LIST", [("LIST:RANG?", "160")], "FUNC:MODE LIST", "FUNC:MODE?", "LIST"),
    ("list_range", 160.0, [], "LIST:RANG 160", "LIST:RANG?", "160"),
    ("list_count", 3, [], "LIST:COUN 3", "LIST:COUN?", "3"),
    ("list_steps", 2, [], "LIST:STEP 2", "LIST:STEP?", "2"),
    ("trigger_source", "BUS", [], "TRIG:SOUR BUS", "TRIG:SOUR?", "BUS"),
    ("ocp_enabled", True, [], "CURR:PROT:STAT ON", "CURR:PROT:STAT?", "1"),
    ("ocp_level", 160.0, [], "CURR:PROT 160", "CURR:PROT?", "160"),
    ("watchdog_enabled", True, [], "INP:PROT:WDOG ON", "INP:PROT:WDOG?", "1"),
    ("watchdog_enabled", False, [("INP?;:INP:SHOR?", "0;0")], "INP:PROT:WDOG OFF", "INP:PROT:WDOG?", "0"),
    ("watchdog_delay", 1.0, [], "INP:PROT:WDOG:DEL 1", "INP:PROT:WDOG:DEL?", "1"),
])
def test_setter(load, attr, value, gate, command, query, reply):
    setattr(load(gate + confirmed(command, query, reply)), attr, value)


def test_short_setter_with_the_permit(load):
    load(confirmed("INP:SHOR ON", "INP:SHOR?", "1"), short_permit=lambda: True).short_enabled = True


def test_indexed_setters(load):
    inst = load(confirmed("LIST:LEV 1,96", "LIST:LEV? 1", "96")
                + confirmed("LIST:WID 1,3", "LIST:WID? 1", "3"))
    inst.list_level[1] = 96.0
    inst.list_width[1] = 3.0


@pytest.mark.parametrize("mode, value, level, query", [
    ("CC", 50.0, "CURR 50", "CURR?"), ("CV", 45.0, "VOLT 45", "VOLT?"),
    ("CR", 0.5, "RES 0.5", "RES?"), ("CP", 2500.0, "POW 2500", "POW?"),
])
def test_set_mode_writes_the_setpoint_before_the_function(load, mode, value, level, query):
    code = {"CC": "CURR", "CV": "VOLT", "CR": "RES", "CP": "POW"}[mode]
    ocp = [("CURR:PROT:STAT?;:CURR:PROT?", "1;160")] if mode == "CV" else []  # CV: bounded by the OCP
    load(ocp + confirmed(level, query, f"{value:g}") + confirmed("FUNC:MODE FIX", "FUNC:MODE?", "FIX")
         + ocp + confirmed(f"FUNC {code}", "FUNC?", code)).set_mode(mode, value)


def test_set_mode_unknown_is_a_programming_mistake(load):
    with pytest.raises(ValueError, match="'CX' is not one of CC, CV, CR, CP"):
        load([]).set_mode("CX", 1.0)


def test_input_on_off_and_short(load):
    inst = load([state()] + confirmed("INP ON", "INP?", "1") + [("INP OFF", None), ("INP?", "0")]
                + confirmed("INP:SHOR ON", "INP:SHOR?", "1") + [("INP:SHOR OFF", None), ("INP:SHOR?", "0")],
                short_permit=lambda: True)
    inst.input_on()
    inst.input_off()
    inst.short(True)
    inst.short(False)


def test_input_off_still_on_raises(load):
    with pytest.raises(InstrumentError, match="reads back True"):
        load([("INP OFF", None), ("INP?", "1")]).input_off()


def test_pulse_programs_arms_and_triggers_a_list(load):
    pairs = (confirmed("LIST:RANG 160", "LIST:RANG?", "160") + confirmed("LIST:COUN 1", "LIST:COUN?", "1")
             + confirmed("LIST:STEP 2", "LIST:STEP?", "2")
             + confirmed("LIST:LEV 1,96", "LIST:LEV? 1", "96") + confirmed("LIST:WID 1,3", "LIST:WID? 1", "3")
             + confirmed("LIST:LEV 2,0", "LIST:LEV? 2", "0") + confirmed("LIST:WID 2,1", "LIST:WID? 2", "1")
             + [("LIST:RANG?", "160")] + confirmed("FUNC:MODE LIST", "FUNC:MODE?", "LIST")
             + confirmed("TRIG:SOUR BUS", "TRIG:SOUR?", "BUS")
             + [state(mode="LIST")] + confirmed("INP ON", "INP?", "1") + [("*TRG", None), OK])
    load(pairs).pulse([(96.0, 3.0), (0.0, 1.0)])


def test_measure(load):
    assert load([("MEAS:VOLT?;:MEAS:CURR?", "50.1;96")]).measure() == (50.1, 96.0)


OCP_ON = confirmed("CURR:PROT 160", "CURR:PROT?", "160") + confirmed("CURR:PROT:STAT ON", "CURR:PROT:STAT?", "1")


def test_protect(load):
    """The over-current protection at the bench's current limit, then the watchdog."""
    load(OCP_ON + confirmed("INP:PROT:WDOG:DEL 1", "INP:PROT:WDOG:DEL?", "1")
         + confirmed("INP:PROT:WDOG ON", "INP:PROT:WDOG?", "1")).protect(1.0)
    # off only with the input and short read off (checked before anything is set, and by the gate)
    load([("INP?;:INP:SHOR?", "0;0")] + OCP_ON + [("INP?;:INP:SHOR?", "0;0")]
         + confirmed("INP:PROT:WDOG OFF", "INP:PROT:WDOG?", "0")).protect(None)


def test_protect_on_a_real_it8900_without_the_watchdog_raises(load):
    pairs = OCP_ON + [("INP:PROT:WDOG:DEL 1", None), ("SYST:ERR?", '-113,"Undefined header"'), OK]
    with pytest.raises(InstrumentError, match="-113") as err:
        load(pairs).protect(1.0)
    assert err.value.instrument == "eload"


def test_protect_with_a_fractional_watchdog_sends_nothing(load):
    inst = load([])
    with pytest.raises(ValueError, match="whole multiple"):
        inst.protect(1.5)
    assert inst.resource.sent == []


def test_make_safe_and_shutdown_twice(load):
    inst = load([("INP OFF", None), ("INP?", "0"), ("INP:SHOR OFF", None), ("INP:SHOR?", "0"),
                 ("FUNC:MODE FIX", None), ("FUNC:MODE?", "FIX")])
    inst.shutdown()
    inst.shutdown()
    assert inst.resource.closed


def test_clear_protection(load):
    load([("PROT:CLE", None), OK]).clear_protection()


def test_identify(load):
    assert load([("*IDN?", "ITECH Ltd.,IT8912E,800,1.0")]).identify().startswith("ITECH")
    with pytest.raises(InstrumentError, match="not a IT89"):
        load([("*IDN?", "Keysight Technologies,N8920A,1,1")]).identify()


def test_read_back_disagreeing_raises(load):
    with pytest.raises(InstrumentError, match="reads back 95.0") as err:
        load(confirmed("CURR 96", "CURR?", "95")).current_setpoint = 96.0
    assert err.value.instrument == "eload"
    with pytest.raises(InstrumentError, match="reads back 90.0"):
        load(confirmed("LIST:LEV 1,96", "LIST:LEV? 1", "90")).list_level[1] = 96.0


def test_error_queue_surfaces_naming_the_instrument(load):
    pairs = [state(), ("INP ON", None), ("SYST:ERR?", '-221,"Settings conflict"'), OK]
    with pytest.raises(InstrumentError, match=r"eload: 'SYST:ERR\?' -> -221") as err:
        load(pairs).input_on()
    assert err.value.instrument == "eload"


@pytest.mark.parametrize("call, quantity, value, limit", [
    (lambda e: setattr(e, "current_setpoint", 160.5), "current_setpoint [A]", 160.5, "[0, 160]"),
    (lambda e: e.set_mode("CC", 161.0), "current_setpoint [A]", 161.0, "[0, 160]"),
    (lambda e: e.set_mode("CV", 151.0), "voltage_setpoint [V]", 151.0, "instrument range [0, 150]"),
    (lambda e: e.set_mode("CR", 0.001), "resistance_setpoint [ohm]", 0.001, "instrument range [0.01, 7500]"),
    # CR: 64.5 V (the bench's highest) / 0.4 ohm = 161 A; CP: 6100 W / 38 V (its lowest) = 160.5 A
    (lambda e: e.set_mode("CR", 0.4), "resistance_setpoint [ohm]", 0.4, "161.2 A at 64.5 V"),
    (lambda e: setattr(e, "resistance_setpoint", 0.4), "resistance_setpoint [ohm]", 0.4, "bench current limit 160 A"),
    (lambda e: e.set_mode("CP", 6100.0), "power_setpoint [W]", 6100.0, "160.5 A at 38 V"),
    (lambda e: e.set_mode("CP", 12000.0), "power_setpoint [W]", 12000.0, "315.8 A at 38 V"),
    (lambda e: setattr(e, "power_setpoint", 6100.0), "power_setpoint [W]", 6100.0, "bench current limit 160 A"),
    (lambda e: setattr(e, "list_range", 240.0), "list_range [A]", 240.0, "[0, 160]"),
    (lambda e: setattr(e, "ocp_level", 200.0), "ocp_level [A]", 200.0, "[0, 160]"),
    (lambda e: setattr(e, "ocp_enabled", False), "ocp_enabled", False, "stays on"),
    (lambda e: e.short(True), "short_enabled", True, "short-circuit step"),
    (lambda e: setattr(e, "short_enabled", True), "short_enabled", True, "short-circuit step"),
    (lambda e: e.protect(6.0), "watchdog_delay [s]", 6.0, "bench hard limit [0, 5]"),
    (lambda e: e.pulse([(96.0, 3.0), (161.0, 0.01)]), "list_level [A]", 161.0, "[0, 160]"),
    (lambda e: e.pulse([(96.0, 3601.0)]), "list_width [s]", 3601.0, "instrument range [2e-05, 3600]"),
    (lambda e: e.pulse([(1.0, 1.0)] * 85), "list_steps", 85, "instrument range [1, 84]"),
    (lambda e: e.protect(0.5), "watchdog_delay [s]", 0.5, "instrument range [1, 3600]"),
])
def test_hard_limits_refuse_with_nothing_sent(load, call, quantity, value, limit):
    inst = load([])
    with pytest.raises(LimitRefused) as err:
        call(inst)
    assert (err.value.instrument, err.value.quantity, err.value.value) == ("eload", quantity, value)
    assert limit in err.value.limit and "nothing was sent" in str(err.value)
    assert inst.resource.sent == []


def test_interlock_refuses_all_but_the_safe_commands(load, tripped):
    inst = load([("INP OFF", None), ("INP?", "0"), ("INP:SHOR OFF", None), ("INP:SHOR?", "0"),
                 ("INP OFF", None), ("INP?", "0"), ("INP:SHOR OFF", None), ("INP:SHOR?", "0"),
                 ("FUNC:MODE FIX", None), ("FUNC:MODE?", "FIX")], tripped.interlock)
    for refused in (lambda: inst.set_mode("CC", 10.0), inst.input_on, lambda: inst.pulse([(96.0, 3.0)]),
                    lambda: inst.short(True), lambda: inst.protect(1.0), inst.clear_protection):
        with pytest.raises(tripped):
            refused()
    assert inst.resource.sent == []
    inst.input_off()
    inst.short(False)
    inst.make_safe()


# --- (b) the driver against the emulated IT8900 over TCP ----------------------------------------------
@pytest.fixture
def bench(serve):
    """(plant, emulated device, clock, driver, raw resource, server, connect); the driver protected
    as the bench does it (OCP at 160 A, watchdog 5 s), its short permitted while ``permit[0]``."""
    plant, clock = Plant(), FakeClock(7_000_000_000)
    plant.now_ns = clock
    device = EmulatedIT8900(plant)
    server, connect = serve(device)
    resource = connect()
    eload = ItechIT8900(resource, "eload", LIMITS, short_permit=lambda: PERMIT[0])
    eload.protect(5.0)
    PERMIT[0] = False
    yield plant, device, clock, eload, resource, server, connect


PERMIT = [False]


@pytest.mark.parametrize("mode, value", [("CC", 50.0), ("CV", 45.0), ("CR", 0.5), ("CP", 2500.0)])
def test_emulated_modes_land_in_the_plant(bench, mode, value):
    plant, device, clock, eload, *_ = bench
    eload.set_mode(mode, value)
    eload.input_on()
    assert (plant.eload.mode, plant.eload.setpoint, plant.eload.on) == (mode, value, True)
    assert getattr(eload, {"CC": "current_setpoint", "CV": "voltage_setpoint", "CR": "resistance_setpoint",
                           "CP": "power_setpoint"}[mode]) == value
    eload.input_off()
    assert plant.eload.on is False


def test_emulated_identify_and_measurements(bench):
    plant, device, clock, eload, resource, *_ = bench
    assert eload.identify().startswith("ITECH Ltd.,IT8912E,")
    with plant.lock:
        plant.eload.measured_v, plant.eload.measured_a = 50.5, 96.0
    assert eload.measure() == (50.5, 96.0)
    assert float(resource.query("FETCh:SCALar:POWer:DC?")) == pytest.approx(4848.0)
    assert float(resource.query("CURR? MAX")) == 240.0


def test_emulated_pulse_programs_the_plant(bench):
    plant, device, clock, eload, *_ = bench
    eload.set_mode("CC", 10.0)
    eload.pulse([(96.0, 3.0), (0.0, 1.0)])
    assert plant.eload.program == [LoadStep(96.0, 3.0), LoadStep(0.0, 1.0)]
    assert (plant.eload.program_started_ns, plant.eload.on, plant.eload.mode) == (clock.t_ns, True, "CC")
    assert (eload.function_mode, eload.trigger_source, eload.list_steps) == ("LIST", "BUS", 2)
    assert (eload.list_level[1], eload.list_width[1]) == (96.0, 3.0)
    assert (eload.list_level[2], eload.list_width[2]) == (0.0, 1.0)
    eload.make_safe()
    assert (plant.eload.on, plant.eload.program, plant.eload.program_started_ns) == (False, [], None)
    assert (plant.eload.mode, plant.eload.setpoint) == ("CC", 10.0)  # back to the fixed set-point


def test_emulated_trigger_outside_list_mode_is_ignored(bench):
    plant, device, clock, eload, resource, *_ = bench
    resource.write("*TRG")
    assert resource.query("SYST:ERR?").startswith("-211,")
    assert plant.eload.program_started_ns is None


def test_emulated_short(bench):
    plant, device, clock, eload, *_ = bench
    with pytest.raises(LimitRefused, match="short-circuit step"):
        eload.short(True)
    assert plant.eload.short is False
    PERMIT[0] = True
    eload.short(True)
    assert plant.eload.short is True and eload.short_enabled is True
    eload.short(False)
    assert plant.eload.short is False


def test_emulated_unknown_header_and_out_of_range(bench):
    plant, device, clock, eload, resource, *_ = bench
    eload.set_mode("CC", 50.0)
    resource.write("INP:BOGUS ON")
    assert resource.query("SYST:ERR?").startswith("-113,")
    resource.write("CURR 300")  # the driver would refuse it; the instrument answers -222
    assert resource.query("SYST:ERR?").startswith("-222,")
    assert eload.current_setpoint == 50.0 and plant.eload.setpoint == 50.0
    resource.write("FUNC AMPS")
    with pytest.raises(InstrumentError, match=r"eload: 'SYST:ERR\?' -> -224"):
        eload.check_errors()


def test_emulated_watchdog_turns_the_input_off_and_latches(bench):
    plant, device, clock, eload, *_ = bench
    eload.protect(1.0)
    eload.set_mode("CC", 50.0)
    eload.input_on()
    deadline = device.next_deadline_ns()
    assert deadline == clock.t_ns + 1_000_000_000
    clock.t_ns = deadline - 1
    device.on_time(clock.t_ns)
    assert plant.eload.on is True
    clock.t_ns = deadline
    device.on_time(clock.t_ns)
    assert plant.eload.on is False and eload.input_enabled is False
    assert device.next_deadline_ns() is None
    with pytest.raises(InstrumentError, match="-221"):
        eload.input_on()
    assert plant.eload.on is False
    eload.clear_protection()
    eload.input_on()
    assert plant.eload.on is True


def test_emulated_reset_is_the_power_on_state(bench):
    plant, device, clock, eload, resource, *_ = bench
    eload.protect(2.0)
    eload.pulse([(96.0, 3.0)])
    resource.write("*RST")
    assert resource.query("*OPC?") == "1"  # the write has been executed
    assert (plant.eload.on, plant.eload.program) == (False, [])
    assert (plant.eload.mode, plant.eload.setpoint) == ("CC", 0.0)
    assert (eload.watchdog_enabled, eload.function_mode) == (False, "FIX")


def test_emulated_disconnect_keeps_the_input_on(bench):
    """As a real load: a controller going away changes nothing (the watchdog is what acts)."""
    plant, device, clock, eload, resource, server, _ = bench
    eload.pulse([(96.0, 3.0), (0.0, 1.0)])
    program = list(plant.eload.program)
    resource.close()
    eventually(lambda: not server.clients)  # the server has seen the disconnect
    assert plant.eload.on is True and plant.eload.program == program != []


def test_emulated_garbage_does_not_stop_the_server(bench):
    plant, device, clock, eload, resource, server, connect = bench
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"\x00\xff\xfe\x01 LIST:LEV 1,,\n" + b"B" * 5000 + b"\nLIST:LEV ,\n*TRG;;\n")
        raw.sendall(b"*IDN?\n")
        assert raw.makefile("rb").readline().startswith(b"ITECH")
    assert eload.identify().startswith("ITECH")  # the first client still works
    with connect() as other:
        assert other.query("*IDN?").startswith("ITECH")  # and a new one too
    errors = [resource.query("SYST:ERR?") for _ in range(6)]
    assert any(e.startswith("-102,") for e in errors) and any(e.startswith("-223,") for e in errors)


def test_emulated_ocp_turns_the_input_off_above_its_level_and_latches(bench):
    """CV sinks what pulls the voltage down: the load's OCP (at the bench's 160 A) cuts it."""
    plant, device, clock, eload, resource, *_ = bench
    assert (eload.ocp_enabled, eload.ocp_level) == (True, 160.0)  # programmed by protect()
    eload.set_mode("CV", 45.0)
    eload.input_on()
    with plant.lock:
        plant.eload.measured_a = 160.0  # at the level: still on
    device.on_time(clock.t_ns)
    assert plant.eload.on is True
    with plant.lock:
        plant.eload.measured_a = 230.0
    device.on_time(clock.t_ns)
    assert plant.eload.on is False and device.tripped == "OCP"
    with pytest.raises(InstrumentError, match="over-current protection"):
        eload.input_on()
    eload.clear_protection()
    with plant.lock:
        plant.eload.measured_a = 0.0
    eload.input_on()
    assert plant.eload.on is True


def test_emulated_cv_and_input_on_refused_with_the_ocp_off(bench):
    plant, device, clock, eload, resource, *_ = bench
    resource.write("CURR:PROT:STAT OFF")  # behind the driver's back (the front panel, another program)
    with pytest.raises(LimitRefused, match="over-current protection must be on"):
        eload.set_mode("CV", 45.0)
    with pytest.raises(LimitRefused, match="over-current protection must be on"):
        eload.input_on()
    assert (plant.eload.mode, plant.eload.on) == ("CC", False)
    resource.write("POW 12000;:FUNC POW;:CURR:PROT:STAT ON")  # 12 kW left in CP: 316 A at 38 V
    with pytest.raises(LimitRefused, match=r"power_setpoint \[W\] \(read back\)"):
        eload.input_on()
    assert plant.eload.on is False
