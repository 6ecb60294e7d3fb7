"""Keysight 34465A: the driver against (command, reply) pairs, then against the emulation over TCP."""
from __future__ import annotations

import math
import re
import socket

import pytest

from instruments.errors import InstrumentError
from instruments.keysight_34465a import Keysight34465A
from emulator.instruments.dmm_34465a import Emulated34465A
from emulator.plant import Plant

NO_ERROR = ("SYST:ERR?", '+0,"No error"')


# --- (a) driver against exact exchanges ----------------------------------------------------------
def test_identify(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("*IDN?", "Keysight Technologies,34465A,MY1,A.03")]), "dmm")
    assert "34465A" in dmm.identify()


def test_identify_refuses_another_model(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("*IDN?", "Keysight Technologies,34461A,MY1,A.03")]), "dmm")
    with pytest.raises(InstrumentError, match="dmm.*not a 34465A"):
        dmm.identify()


def test_range_get(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:RANG?", "+1.00000000E+02")]), "dmm")
    assert dmm.range_v == 100.0


def test_range_set(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:RANG 100", None), NO_ERROR,
                                            ("VOLT:DC:RANG?", "+1.00000000E+02")]), "dmm")
    dmm.range_v = 100


def test_range_not_offered_sends_nothing(expected_protocol):
    dmm = Keysight34465A(expected_protocol([]), "dmm")
    with pytest.raises(ValueError):
        dmm.range_v = 50


def test_autorange_get(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:RANG:AUTO?", "1")]), "dmm")
    assert dmm.autorange_enabled is True


def test_autorange_set(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:RANG:AUTO OFF", None), NO_ERROR,
                                            ("VOLT:DC:RANG:AUTO?", "0")]), "dmm")
    dmm.autorange_enabled = False


def test_nplc_get(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:NPLC?", "+1.00000000E+01")]), "dmm")
    assert dmm.nplc == 10.0


def test_nplc_set(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:NPLC 0.2", None), NO_ERROR,
                                            ("VOLT:DC:NPLC?", "+2.00000000E-01")]), "dmm")
    dmm.nplc = 0.2


def test_voltage(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("READ?", "+5.12345678E+01")]), "dmm")
    assert dmm.voltage() == pytest.approx(51.2345678)


def test_overload_is_infinite(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("READ?", "-9.90000000E+37")]), "dmm")
    assert dmm.voltage() == -math.inf


def test_configure(expected_protocol):
    dmm = Keysight34465A(expected_protocol([
        ("CONF:VOLT:DC 100", None), NO_ERROR,
        ("VOLT:DC:NPLC 1", None), NO_ERROR, ("VOLT:DC:NPLC?", "+1.00000000E+00"),
        ("VOLT:DC:RANG?", "+1.00000000E+02")]), "dmm")
    dmm.configure(100.0, 1.0)


def test_measure_once(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("MEAS:VOLT:DC? 100", "+5.20000000E+01")]), "dmm")
    assert dmm.measure(100) == 52.0


def test_instrument_error_names_the_instrument(expected_protocol):
    dmm = Keysight34465A(expected_protocol([("VOLT:DC:NPLC 1", None),
                                            ("SYST:ERR?", '-222,"Data out of range"'), NO_ERROR]), "dmm")
    with pytest.raises(InstrumentError, match='dmm.*-222,"Data out of range"') as err:
        dmm.nplc = 1
    assert err.value.instrument == "dmm"


def test_interlock_refuses_settings_but_not_readings(expected_protocol, tripped):
    dmm = Keysight34465A(expected_protocol([("READ?", "+5.10000000E+01")]), "dmm", interlock=tripped.interlock)
    with pytest.raises(tripped):
        dmm.nplc = 1
    with pytest.raises(tripped):
        dmm.configure()
    assert dmm.voltage() == 51.0  # the supervisor still reads the pack voltage


# --- (b) driver against the emulated DMM over TCP ------------------------------------------------
@pytest.fixture
def bench(serve):
    plant = Plant()
    server, connect = serve(Emulated34465A(plant))
    yield plant, server, connect


def test_reads_the_plant(bench):
    plant, _, connect = bench
    plant.dmm.measured_v = 51.23456
    dmm = Keysight34465A(connect(), "dmm")
    assert "34465A" in dmm.identify()
    dmm.configure(100.0, 1.0)
    assert dmm.voltage() == pytest.approx(51.23456, abs=3e-5)  # 0.3 ppm of 100 V at 1 PLC
    plant.dmm.measured_v = 48.0
    assert dmm.voltage() == pytest.approx(48.0, abs=3e-5)
    assert not dmm.autorange_enabled


def test_reading_format_and_overload(bench):
    plant, _, connect = bench
    res = connect()
    plant.dmm.measured_v = 51.2
    assert re.fullmatch(r"[+-]\d\.\d{8}E[+-]\d{2}", res.query("MEAS:VOLT:DC? 100"))
    plant.dmm.measured_v = 130.0  # beyond 120 % of the 100 V range
    assert Keysight34465A(res, "dmm").voltage() == math.inf
    assert res.query("CONF?") == '"VOLT +1.00000000E+02,+1.00000000E-05"'


def test_unknown_header_and_out_of_range_leave_settings(bench):
    _, _, connect = bench
    res = connect()
    dmm = Keysight34465A(res, "dmm")
    dmm.nplc = 10
    res.write("VOLT:DC:FROB 3")
    assert res.query("SYST:ERR?").startswith("-113")
    res.write("VOLT:DC:NPLC 1000")
    assert res.query("SYST:ERR?").startswith("-222")
    res.write("VOLT:DC:RANG 5000")
    assert res.query("SYST:ERR?").startswith("-222")
    assert dmm.nplc == 10.0
    assert res.query("SYST:ERR?") == '0,"No error"'


def test_refused_measure_names_the_dmm_error(bench):
    _, _, connect = bench
    dmm = Keysight34465A(connect(timeout=300), "dmm")
    with pytest.raises(InstrumentError, match="-222"):
        dmm.measure(5000)  # no reply to a refused query: the driver reads the error queue


def test_garbage_does_not_crash_the_server(bench):
    plant, server, connect = bench
    plant.dmm.measured_v = 50.0
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"\xff\xfe\x00\x01garbage\x7f\n" + b"A" * 10000 + b"\n:::;;;?\n")
        raw.sendall(b"SYST:ERR?\n")
        assert raw.makefile("rb").readline().startswith(b"-")
    assert Keysight34465A(connect(), "dmm").measure(100) == pytest.approx(50.0)
