"""ESPEC SH/SU chamber: the driver against (command, reply) pairs, then against the emulation over TCP."""
from __future__ import annotations

import socket
import time

import pytest

from instruments.errors import InstrumentError, LimitRefused
from instruments.espec_sh import EspecSh
from emulator.instruments.espec_chamber import EmulatedEspecSh
from emulator.plant import Plant

LIMITS = {"temperature": (-25.0, 70.0)}  # PACK_SPEC.md 5
MINUTE_NS = 60_000_000_000


def chamber(resource, **kw):
    return EspecSh(resource, "chamber", limits=LIMITS, **kw)


# --- (a) driver against exact exchanges ----------------------------------------------------------
def test_identify(expected_protocol):
    assert chamber(expected_protocol([("ROM?", "SU-242 Ver.1.00")])).identify() == "SU-242 Ver.1.00"


def test_setpoint_get(expected_protocol):
    assert chamber(expected_protocol([("CONSTANT SET?,TEMP", "23.0,ON")])).temperature_setpoint == 23.0


def test_setpoint_set(expected_protocol):
    espec = chamber(expected_protocol([("TEMP, S45.0", "OK:TEMP, S45.0"), ("CONSTANT SET?,TEMP", "45.0,ON")]))
    espec.temperature_setpoint = 45


def test_air_temperature(expected_protocol):
    espec = chamber(expected_protocol([("TEMP?", "26.4,0.0,140.0,-50.0")]))
    assert espec.air_temperature() == 26.4


def test_mode(expected_protocol):
    assert chamber(expected_protocol([("MODE?", "STANDBY")])).mode == "STANDBY"


def test_run_constant(expected_protocol):
    espec = chamber(expected_protocol([("TEMP, S-20.0", "OK:TEMP, S-20.0"),
                                       ("CONSTANT SET?,TEMP", "-20.0,ON"),
                                       ("MODE,CONSTANT", "OK:MODE,CONSTANT")]))
    espec.run(-20.0)


def test_run_ramped(expected_protocol):
    espec = chamber(expected_protocol([("TEMP?", "25.0,40.0,155.0,-45.0"),
                                       ("TEMP, S40.0", "OK:TEMP, S40.0"),
                                       ("CONSTANT SET?,TEMP", "40.0,ON"),
                                       ("RUN PRGM, TEMP25.0 TIME0:30 GOTEMP40.0", "OK:RUN PRGM, ...")]))
    espec.run(40.0, ramp_c_per_min=0.5)


def test_ramp_from_air_beyond_the_bench_limit_sets_nothing(expected_protocol):
    espec = chamber(expected_protocol([("TEMP?", "85.0,40.0,155.0,-45.0")]))
    with pytest.raises(LimitRefused, match="bench hard limit"):
        espec.run(40.0, ramp_c_per_min=1.0)


def test_standby(expected_protocol):
    chamber(expected_protocol([("MODE,STANDBY", "OK:MODE,STANDBY")])).standby()


def test_na_reply_raises_naming_the_chamber(expected_protocol):
    espec = chamber(expected_protocol([("TEMP, S45.0", "NA:DATA OUT OF RANGE")]))
    with pytest.raises(InstrumentError, match="chamber.*NA:DATA OUT OF RANGE") as err:
        espec.temperature_setpoint = 45
    assert err.value.instrument == "chamber"


def test_setting_without_acknowledgement_raises(expected_protocol):
    espec = chamber(expected_protocol([("MODE,STANDBY", "24.1,,STANDBY,0")]))
    with pytest.raises(InstrumentError, match="no acknowledgement"):
        espec.standby()


def test_readback_mismatch_raises(expected_protocol):
    espec = chamber(expected_protocol([("TEMP, S45.0", "OK:TEMP, S45.0"), ("CONSTANT SET?,TEMP", "25.0,ON")]))
    with pytest.raises(InstrumentError, match="reads back 25.0"):
        espec.temperature_setpoint = 45


@pytest.mark.parametrize("setpoint", [70.1, 80.0, -25.5, 149.0])
def test_beyond_the_bench_limit_nothing_is_sent(expected_protocol, setpoint):
    espec = chamber(expected_protocol([]))
    with pytest.raises(LimitRefused, match="bench hard limit"):
        espec.run(setpoint)
    with pytest.raises(LimitRefused, match="bench hard limit"):
        espec.temperature_setpoint = setpoint


def test_beyond_the_chamber_range_or_unconfigured_limit(expected_protocol):
    with pytest.raises(LimitRefused, match="instrument range"):
        EspecSh(expected_protocol([]), "chamber", limits={"temperature": (-100, 300)}).run(200.0)
    with pytest.raises(LimitRefused, match="no hard limit configured"):
        EspecSh(expected_protocol([]), "chamber").run(25.0)


def test_ramp_out_of_range_nothing_is_sent(expected_protocol):
    with pytest.raises(LimitRefused, match="ramp"):
        chamber(expected_protocol([])).run(40.0, ramp_c_per_min=50.0)


def test_interlock_refuses_run_but_standby_goes_through(expected_protocol, tripped):
    espec = chamber(expected_protocol([("MODE,STANDBY", "OK:MODE,STANDBY"),
                                       ("MODE,STANDBY", "OK:MODE,STANDBY"),
                                       ("TEMP?", "30.0,40.0,155.0,-45.0")]), interlock=tripped.interlock)
    with pytest.raises(tripped):
        espec.run(40.0)
    with pytest.raises(tripped):
        espec.run(40.0, ramp_c_per_min=1.0)
    with pytest.raises(tripped):
        espec.temperature_setpoint = 40.0
    espec.standby()
    espec.make_safe()
    assert espec.air_temperature() == 30.0


# --- (b) driver against the emulated chamber over TCP --------------------------------------------
@pytest.fixture
def bench(serve):
    clock = {"ns": 0}
    plant = Plant()
    plant.now_ns = lambda: clock["ns"]
    device = EmulatedEspecSh(plant)
    server, connect = serve(device)
    yield plant, clock, device, server, connect


def test_run_and_standby_reach_the_plant(bench):
    plant, _, _, _, connect = bench
    espec = chamber(connect())
    assert espec.identify().startswith("SU-242")
    plant.chamber.air_c = 31.5
    assert espec.air_temperature() == 31.5
    espec.run(-20.0)
    air = plant.chamber
    assert (air.running, air.setpoint_c, air.ramp_c_per_min) == (True, -20.0, 0.0)
    assert espec.mode == "CONSTANT"
    assert espec.query("MON?") == "31.5,,CONSTANT,0"
    espec.standby()
    assert not plant.chamber.running
    assert espec.mode == "STANDBY"


def test_ramp_runs_a_remote_program_until_its_time(bench):
    plant, clock, device, _, connect = bench
    espec = chamber(connect())
    plant.chamber.air_c = 25.0
    espec.run(40.0, ramp_c_per_min=1.0)  # 15 minutes
    assert espec.mode == "RUN"
    assert plant.chamber.running and plant.chamber.setpoint_c == 40.0
    assert plant.chamber.ramp_c_per_min == pytest.approx(1.0)
    assert device.next_deadline_ns() == 15 * MINUTE_NS
    clock["ns"] = 6 * MINUTE_NS
    assert espec.query("TEMP?").split(",")[1] == "31.0"  # the program's set-point, 6 min into the ramp
    clock["ns"] = 15 * MINUTE_NS
    device.on_time(clock["ns"])
    assert device.next_deadline_ns() is None
    assert espec.mode == "CONSTANT" and espec.temperature_setpoint == 40.0
    assert plant.chamber.ramp_c_per_min == 0.0 and plant.chamber.setpoint_c == 40.0


def test_errors_are_na_replies_and_change_nothing(bench):
    plant, _, _, _, connect = bench
    res = connect()
    espec = chamber(res)
    espec.run(30.0)
    assert res.query("FROB?").strip() == "NA:CMD ERR"
    assert res.query("*IDN?").strip() == "NA:CMD ERR"  # not SCPI
    assert res.query("TEMP, S200").strip() == "NA:DATA OUT OF RANGE"
    assert res.query("TEMP, Sabc").strip() == "NA:PARA ERR"
    assert res.query("PRGM,END,STANDBY").strip() == "NA:CONT NOT READY-2"
    assert espec.temperature_setpoint == 30.0 and plant.chamber.setpoint_c == 30.0
    with pytest.raises(InstrumentError, match="chamber.*NA:CMD ERR"):
        espec.query("SYST:ERR?")


def test_replies_end_in_cr_lf(bench):
    _, _, _, server, _ = bench
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"TEMP, S25.0\r\n")
        assert raw.makefile("rb").readline() == b"OK:TEMP, S25.0\r\n"


def test_disconnect_keeps_it_running(bench):
    plant, _, _, _, connect = bench
    res = connect()
    chamber(res).run(50.0)
    res.close()
    time.sleep(0.2)  # the server notices the disconnect
    assert plant.chamber.running and plant.chamber.setpoint_c == 50.0


def test_garbage_does_not_crash_the_server(bench):
    plant, _, _, server, connect = bench
    first = connect()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"\x00\xff\xfe\x01\n")
        assert raw.makefile("rb").readline() == b"NA:CMD ERR\r\n"
        raw.sendall(b"RUN PRGM, TEMP20.0 TIME0:0 GOTEMP40.0\n" + b"X" * 9000 + b"\n")
    plant.chamber.air_c = 22.0
    assert chamber(connect()).air_temperature() == 22.0
    assert chamber(first).mode == "STANDBY"
