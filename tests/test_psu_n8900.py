"""Keysight N8900 power supply: the driver against exact (command, reply) pairs, then the driver
against the emulated N8900 over real TCP with pyvisa-py (in-process, fake world clock)."""
from __future__ import annotations

import socket
import threading

import pytest
from scpi_helpers import FakeClock, eventually

from instruments.errors import InstrumentError, LimitRefused
from instruments.keysight_n8900 import KeysightN8900
from emulator.instruments.n8900_supply import EmulatedN8900
from emulator.plant import Plant

LIMITS = {"voltage": (0.0, 64.5), "current": (0.0, 80.0), "watchdog": (0.0, 5.0)}
OK = ("SYST:ERR?", '+0,"No error"')
IDN = "Keysight Technologies,N8920A,MY12345678,B.01.00"
#: what the driver reads back (one round trip) before the output goes on
STATE = "VOLT?;:CURR?;:VOLT:PROT?;:OUTP:PROT:WDOG?;:OUTP:PROT:WDOG:DEL?"


def state(volts="+5.50000E+01", amps="+2.00000E+01", ovp="+6.20000E+01", wdog="1", delay="+1.00000E+00"):
    """The read-back before output on: by default 55 V / 20 A, OVP 62 V, watchdog on at 1 s."""
    return (STATE, ";".join((volts, amps, ovp, wdog, delay)))


def confirmed(command: str, query: str, reply: str) -> list:
    """A set as the driver does it: write, error queue empty, read-back."""
    return [(command, None), OK, (query, reply)]


@pytest.fixture
def psu(expected_protocol):
    def make(pairs, interlock=None):
        return KeysightN8900(expected_protocol(pairs), "psu", LIMITS, interlock)
    return make


# --- (a) the driver against exact exchanges --------------------------------------------------------
@pytest.mark.parametrize("attr, query, reply, value", [
    ("voltage_setpoint", "VOLT?", "+5.50000E+01", 55.0),
    ("current_setpoint", "CURR?", "+2.00000E+01", 20.0),
    ("ovp_level", "VOLT:PROT?", "+6.20000E+01", 62.0),
    ("ocp_enabled", "CURR:PROT:STAT?", "1", True),
    ("output_enabled", "OUTP?", "0", False),
    ("watchdog_enabled", "OUTP:PROT:WDOG?", "1", True),
    ("watchdog_delay", "OUTP:PROT:WDOG:DEL?", "+1.00000E+00", 1.0),
    ("voltage", "MEAS:VOLT?", "+5.23100E+01", 52.31),
    ("current", "MEAS:CURR?", "-1.20000E+00", -1.2),
    ("questionable", "STAT:QUES:COND?", "2049", 2049),
])
def test_getter(psu, attr, query, reply, value):
    assert getattr(psu([(query, reply)]), attr) == value


@pytest.mark.parametrize("attr, value, command, query, reply", [
    ("voltage_setpoint", 55.0, "VOLT 55", "VOLT?", "+5.50000E+01"),
    ("current_setpoint", 64.0, "CURR 64", "CURR?", "+6.40000E+01"),
    ("ovp_level", 62.5, "VOLT:PROT 62.5", "VOLT:PROT?", "+6.25000E+01"),
    ("ocp_enabled", True, "CURR:PROT:STAT ON", "CURR:PROT:STAT?", "1"),
    ("watchdog_delay", 2.0, "OUTP:PROT:WDOG:DEL 2", "OUTP:PROT:WDOG:DEL?", "+2.00000E+00"),
])
def test_setter(psu, attr, value, command, query, reply):
    setattr(psu(confirmed(command, query, reply)), attr, value)


def test_gated_setters_read_the_state_first(psu):
    psu([state()] + confirmed("OUTP ON", "OUTP?", "1")).output_enabled = True
    psu([("OUTP?", "0")] + confirmed("OUTP:PROT:WDOG OFF", "OUTP:PROT:WDOG?", "0")).watchdog_enabled = False


def test_apply_sets_voltage_then_current(psu):
    psu(confirmed("VOLT 55", "VOLT?", "+5.50000E+01")
        + confirmed("CURR 64", "CURR?", "+6.40000E+01")).apply(55.0, 64.0)


def test_output_on_checks_no_protection_is_latched(psu):
    psu([state()] + confirmed("OUTP ON", "OUTP?", "1") + [("STAT:QUES:COND?", "0")]).output_on()


def test_output_on_with_a_latched_protection_raises(psu):
    with pytest.raises(InstrumentError, match="OV protection") as err:
        psu([state()] + confirmed("OUTP ON", "OUTP?", "1") + [("STAT:QUES:COND?", "1")]).output_on()
    assert err.value.instrument == "psu"


def test_output_off_is_confirmed_by_read_back(psu):
    psu([("OUTP OFF", None), ("OUTP?", "0")]).output_off()


def test_output_off_still_on_raises(psu):
    with pytest.raises(InstrumentError, match="reads back True"):
        psu([("OUTP OFF", None), ("OUTP?", "1")]).output_off()


def test_make_safe_and_shutdown_twice(psu):
    inst = psu([("OUTP OFF", None), ("OUTP?", "0")])
    inst.shutdown()
    inst.shutdown()
    assert inst.resource.closed


def test_measure(psu):
    # one compound query: both readings of the same instant, IEEE 488.2 ';'-joined reply
    assert psu([("MEAS:VOLT?;:MEAS:CURR?", "+5.20000E+01;+3.00000E+01")]).measure() == (52.0, 30.0)


def test_protect_programs_ovp_ocp_and_watchdog(psu):
    psu(confirmed("VOLT:PROT 62", "VOLT:PROT?", "+6.20000E+01")
        + confirmed("CURR:PROT:STAT ON", "CURR:PROT:STAT?", "1")
        + confirmed("OUTP:PROT:WDOG:DEL 1", "OUTP:PROT:WDOG:DEL?", "+1.00000E+00")
        + confirmed("OUTP:PROT:WDOG ON", "OUTP:PROT:WDOG?", "1")).protect(62.0, True, 1.0)


def test_protect_without_watchdog_turns_it_off(psu):
    """Only with the output off: read before anything is set, and again by the gate."""
    psu([("OUTP?", "0")] + confirmed("VOLT:PROT 60", "VOLT:PROT?", "+6.00000E+01")
        + confirmed("CURR:PROT:STAT OFF", "CURR:PROT:STAT?", "0")
        + [("OUTP?", "0")] + confirmed("OUTP:PROT:WDOG OFF", "OUTP:PROT:WDOG?", "0")).protect(60.0, False, None)


def test_protect_with_a_fractional_watchdog_sends_nothing(psu):
    inst = psu([])
    with pytest.raises(ValueError, match="whole multiple"):
        inst.protect(60.0, True, 1.5)
    assert inst.resource.sent == []


def test_clear_protection(psu):
    psu([state(), ("OUTP:PROT:CLE", None), OK]).clear_protection()


def test_identify(psu):
    assert psu([("*IDN?", IDN)]).identify() == IDN
    with pytest.raises(InstrumentError, match="not a N89"):
        psu([("*IDN?", "ITECH Ltd.,IT8912E,1,1")]).identify()


def test_read_back_disagreeing_raises(psu):
    with pytest.raises(InstrumentError, match="reads back 54.0") as err:
        psu(confirmed("VOLT 55", "VOLT?", "+5.40000E+01")).voltage_setpoint = 55.0
    assert err.value.instrument == "psu"


def test_error_queue_surfaces_naming_the_instrument(psu):
    pairs = [("VOLT 55", None), ("SYST:ERR?", '-222,"Data out of range"'), OK]
    with pytest.raises(InstrumentError, match=r"psu: 'SYST:ERR\?' -> -222") as err:
        psu(pairs).voltage_setpoint = 55.0
    assert err.value.instrument == "psu"


def test_unreadable_reply_raises(psu):
    with pytest.raises(InstrumentError, match="unreadable"):
        psu([("MEAS:VOLT?", "garbage")]).voltage


@pytest.mark.parametrize("call, quantity, value, limit", [
    (lambda p: setattr(p, "voltage_setpoint", 64.6), "voltage_setpoint [V]", 64.6, "[0, 64.5]"),
    (lambda p: setattr(p, "current_setpoint", 80.5), "current_setpoint [A]", 80.5, "[0, 80]"),
    (lambda p: setattr(p, "ovp_level", 65.0), "ovp_level [V]", 65.0, "[0, 64.5]"),
    (lambda p: p.apply(65.0, 10.0), "voltage_setpoint [V]", 65.0, "[0, 64.5]"),
    (lambda p: p.apply(50.0, 81.0), "current_setpoint [A]", 81.0, "[0, 80]"),  # voltage not sent
    (lambda p: p.apply(-1.0, 10.0), "voltage_setpoint [V]", -1.0, "instrument range [0, 80]"),
    (lambda p: p.protect(70.0, True, 1.0), "ovp_level [V]", 70.0, "[0, 64.5]"),
    (lambda p: p.protect(60.0, True, 0.5), "watchdog_delay [s]", 0.5, "instrument range [1, 3600]"),
    (lambda p: p.protect(60.0, True, 6.0), "watchdog_delay [s]", 6.0, "bench hard limit [0, 5]"),
    (lambda p: setattr(p, "watchdog_delay", 60.0), "watchdog_delay [s]", 60.0, "bench hard limit [0, 5]"),
])
def test_hard_limits_refuse_with_nothing_sent(psu, call, quantity, value, limit):
    inst = psu([])
    with pytest.raises(LimitRefused) as err:
        call(inst)
    assert (err.value.instrument, err.value.quantity, err.value.value) == ("psu", quantity, value)
    assert limit in err.value.limit and "nothing was sent" in str(err.value)
    assert inst.resource.sent == []


def test_a_bench_without_the_limit_refuses(expected_protocol):
    inst = KeysightN8900(expected_protocol([]), "psu", {"voltage": (0.0, 64.5)})
    with pytest.raises(LimitRefused, match="no hard limit configured"):
        inst.current_setpoint = 10.0


def test_interlock_refuses_all_but_output_off(psu, tripped):
    inst = psu([("OUTP OFF", None), ("OUTP?", "0"), ("MEAS:VOLT?", "+5.00000E+01")], tripped.interlock)
    for refused in (lambda: inst.apply(50.0, 10.0), inst.output_on, inst.clear_protection,
                    lambda: inst.protect(60.0, True, 1.0)):
        with pytest.raises(tripped):
            refused()
    assert inst.resource.sent == []
    inst.output_off()
    assert inst.voltage == 50.0  # queries still read the bench


# --- (b) the driver against the emulated N8900 over TCP ------------------------------------------------
@pytest.fixture
def bench(serve):
    """(plant, emulated device, clock, driver, raw resource, server, connect)."""
    plant, clock = Plant(), FakeClock(5_000_000_000)
    plant.now_ns = clock
    device = EmulatedN8900(plant)
    server, connect = serve(device)
    resource = connect()
    psu = KeysightN8900(resource, "psu", LIMITS)
    psu.protect(64.5, False, 5.0)  # as the bench does it at start
    yield plant, device, clock, psu, resource, server, connect


def test_emulated_identify_and_settings_land_in_the_plant(bench):
    plant, device, clock, psu, *_ = bench
    assert psu.identify().startswith("Keysight Technologies,N8920A,")
    psu.apply(55.0, 64.0)
    psu.protect(60.0, True, 2.0)
    psu.output_on()
    assert (plant.psu.voltage_set_v, plant.psu.current_set_a) == (55.0, 64.0)
    assert (plant.psu.ovp_v, plant.psu.ocp_enabled, plant.psu.on) == (60.0, True, True)
    assert (psu.voltage_setpoint, psu.current_setpoint, psu.ovp_level) == (55.0, 64.0, 60.0)
    assert (psu.ocp_enabled, psu.output_enabled) == (True, True)
    assert (psu.watchdog_enabled, psu.watchdog_delay) == (True, 2.0)
    psu.output_off()
    assert plant.psu.on is False


def test_emulated_long_forms_and_measurements(bench):
    plant, device, clock, psu, resource, *_ = bench
    resource.write("SOURce:VOLTage:LEVel:IMMediate:AMPLitude 12.5")
    with plant.lock:
        plant.psu.measured_v, plant.psu.measured_a = 52.3, 12.5
    assert psu.measure() == (52.3, 12.5)
    assert plant.psu.voltage_set_v == 12.5
    assert float(resource.query("MEASure:SCALar:VOLTage:DC?")) == 52.3
    assert float(resource.query("VOLT? MAX")) == 80.0


def test_emulated_unknown_header_and_out_of_range(bench):
    plant, device, clock, psu, resource, *_ = bench
    psu.apply(55.0, 20.0)
    resource.write("VOLT:BOGUS 1")
    assert resource.query("SYST:ERR?").startswith("-113,")
    resource.write("VOLT 99")  # the driver would refuse it; the instrument answers -222
    assert resource.query("SYST:ERR?").startswith("-222,")
    assert psu.voltage_setpoint == 55.0 and plant.psu.voltage_set_v == 55.0
    resource.write("CURR 200")
    with pytest.raises(InstrumentError, match=r"psu: 'SYST:ERR\?' -> -222"):
        psu.check_errors()
    assert plant.psu.current_set_a == 20.0


def test_emulated_watchdog_turns_the_output_off_after_its_delay(bench):
    plant, device, clock, psu, *_ = bench
    psu.protect(60.0, False, 1.0)
    psu.output_on()
    deadline = device.next_deadline_ns()
    assert deadline == clock.t_ns + 1_000_000_000  # one second after the last command
    clock.t_ns = deadline - 1
    device.on_time(clock.t_ns)
    assert plant.psu.on is True
    clock.t_ns = deadline
    device.on_time(clock.t_ns)
    assert plant.psu.on is False and plant.psu.tripped == "WDOG"
    assert device.next_deadline_ns() is None
    assert psu.output_enabled is True  # the programmed state is kept, as the guide says
    assert psu.latched_protections() == ["WDOG"]
    psu.clear_protection()
    assert plant.psu.on is True and psu.latched_protections() == []


def test_emulated_commands_feed_the_watchdog(bench):
    plant, device, clock, psu, *_ = bench
    psu.protect(60.0, False, 1.0)
    psu.output_on()
    for _ in range(5):  # the supervisor's polling keeps it fed
        clock.t_ns += 900_000_000
        device.on_time(clock.t_ns)
        psu.measure()
    assert plant.psu.on is True


def test_emulated_ovp_trip_latches_until_cleared(bench):
    plant, device, clock, psu, *_ = bench
    psu.apply(58.0, 20.0)
    psu.protect(60.0, False, 5.0)
    psu.output_on()
    with plant.lock:
        plant.psu.measured_v = 61.0
    device.on_time(clock.t_ns)
    assert plant.psu.on is False and psu.latched_protections() == ["OV"]
    with pytest.raises(InstrumentError, match="latched by OV"):
        psu.output_on()
    psu.clear_protection()
    device.on_time(clock.t_ns)  # the cause is still there: it trips again
    assert plant.psu.on is False and plant.psu.tripped == "OV"
    with plant.lock:
        plant.psu.measured_v = 58.0
    psu.clear_protection()
    device.on_time(clock.t_ns)
    assert plant.psu.on is True and psu.latched_protections() == []


def test_emulated_ocp_trips_in_cc(bench):
    plant, device, clock, psu, *_ = bench
    psu.protect(60.0, True, 5.0)
    psu.output_on()
    with plant.lock:
        plant.psu.in_cc = True
    device.on_time(clock.t_ns)
    assert plant.psu.on is False and psu.latched_protections() == ["OC"]


def test_emulated_reset_is_the_power_on_state(bench):
    plant, device, clock, psu, resource, *_ = bench
    psu.apply(55.0, 20.0)
    psu.protect(60.0, True, 1.0)
    psu.output_on()
    resource.write("*RST")
    assert resource.query("*OPC?") == "1"  # the write has been executed
    assert (plant.psu.on, plant.psu.voltage_set_v, plant.psu.ocp_enabled) == (False, 0.0, False)
    assert (psu.watchdog_enabled, psu.watchdog_delay, psu.ovp_level) == (False, 60.0, 88.0)


def test_emulated_disconnect_keeps_the_output_on(bench):
    """As a real N8900: a controller going away changes nothing (the output watchdog is what acts)."""
    plant, device, clock, psu, resource, server, _ = bench
    psu.apply(55.0, 20.0)
    psu.output_on()
    resource.close()
    eventually(lambda: not server.clients)  # the server has seen the disconnect
    assert plant.psu.on is True and device.output_programmed is True


def test_emulated_garbage_does_not_stop_the_server(bench):
    plant, device, clock, psu, resource, server, connect = bench
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"\x00\xff\xfe\x01 VOLT \xff\n" + b"A" * 5000 + b"\n;;;:::\n?\n")
        raw.sendall(b"*IDN?\n")  # the garbage client itself is still answered
        assert raw.makefile("rb").readline().startswith(b"Keysight")
    assert psu.identify().startswith("Keysight")  # the first client still works
    with connect() as other:
        assert other.query("*IDN?").startswith("Keysight")  # and a new one too
    errors = [resource.query("SYST:ERR?") for _ in range(5)]
    assert any(e.startswith("-102,") for e in errors) and any(e.startswith("-223,") for e in errors)


def test_emulated_world_thread_holding_the_plant_lock_does_not_deadlock(bench):
    """The world calls on_time() with plant.lock held while commands run on the server thread."""
    plant, device, clock, psu, *_ = bench
    stop = threading.Event()

    def world():
        while not stop.is_set():
            with plant.lock:
                device.on_time(clock.t_ns)
                device.next_deadline_ns()

    thread = threading.Thread(target=world, daemon=True)
    thread.start()
    try:
        for volts in (50.0, 51.0, 52.0, 53.0):
            psu.apply(volts, 10.0)
            psu.protect(60.0, False, 1.0)
            psu.measure()
    finally:
        stop.set()
        thread.join(timeout=2)
    assert not thread.is_alive() and plant.psu.voltage_set_v == 53.0
