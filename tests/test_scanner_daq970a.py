"""Keysight DAQ970A scanner: the driver against (command, reply) pairs, then the emulation over TCP."""
from __future__ import annotations

import math
import socket

import pytest

from instruments.errors import InstrumentError
from instruments.keysight_daq970a import KeysightDaq970A, channel_list, readings
from emulator.instruments.daq970a_scanner import EmulatedDaq970A, parse_channel_list
from emulator.plant import Plant

NO_ERROR = ("SYST:ERR?", '+0,"No error"')
# the emulated bench's wiring (rig/benches/emulated.toml)
GROUPS = [list(range(101, 117)), list(range(201, 217))]
THERMOCOUPLES = [[117, 118, 119, 120], [217, 218, 219, 220]]


def fmt(values):
    return ",".join(f"{v:+.8E}" for v in values)


# --- (a) driver against exact exchanges ----------------------------------------------------------
def test_channel_list_compresses_runs():
    assert channel_list([101, 102, 103, 105]) == "(@101:103,105)"
    assert channel_list(list(range(101, 117))) == "(@101:116)"
    assert channel_list([117]) == "(@117)"
    assert parse_channel_list("(@101,105:108)") == [101, 105, 106, 107, 108]


def test_readings_overload_is_infinite():
    assert readings("+3.30000000E+00,+9.90000000E+37") == [3.3, math.inf]


def test_voltages_of_a_pack(expected_protocol):
    values = [3.2 + i / 100 for i in range(16)]
    scanner = KeysightDaq970A(expected_protocol([("MEAS:VOLT:DC? 10,DEF,(@101:116)", fmt(values))]),
                              "scanner")
    assert scanner.voltages(range(101, 117)) == pytest.approx(values)


def test_voltages_come_back_in_the_order_asked(expected_protocol):
    # the DAQ scans ascending; the driver asks ascending and puts the answers back in order
    scanner = KeysightDaq970A(expected_protocol([("MEAS:VOLT:DC? AUTO,DEF,(@101,103,105)",
                                                  "+1.00000000E+00,+3.00000000E+00,+5.00000000E+00")]),
                              "scanner", voltage_range=None)
    assert scanner.voltages([105, 101, 103, 101]) == [5.0, 1.0, 3.0, 1.0]


def test_missing_reading_raises(expected_protocol):
    scanner = KeysightDaq970A(expected_protocol([("MEAS:VOLT:DC? 10,DEF,(@101:102)", "+3.30000000E+00")]),
                              "scanner")
    with pytest.raises(InstrumentError, match="scanner.*1 readings for 2 channels"):
        scanner.voltages([101, 102])


def test_temperatures_set_celsius_once(expected_protocol):
    scanner = KeysightDaq970A(expected_protocol([
        ("UNIT:TEMP C,(@117:120)", None), NO_ERROR,
        ("MEAS:TEMP? TC,K,(@117:120)", fmt([25.1, 25.2, 25.3, 25.4])),
        ("MEAS:TEMP? TC,K,(@117,120)", fmt([26.1, 9.9e37]))]), "scanner")
    assert scanner.temperatures([117, 118, 119, 120]) == pytest.approx([25.1, 25.2, 25.3, 25.4])
    assert scanner.temperatures([120, 117]) == [math.inf, pytest.approx(26.1)]  # open thermocouple


def test_instrument_error_names_the_instrument(expected_protocol):
    scanner = KeysightDaq970A(expected_protocol([("UNIT:TEMP C,(@117)", None),
                                                 ("SYST:ERR?", '-222,"Data out of range"'), NO_ERROR]),
                              "scanner")
    with pytest.raises(InstrumentError, match='scanner.*-222') as err:
        scanner.temperatures([117])
    assert err.value.instrument == "scanner"


def test_not_a_channel_sends_nothing(expected_protocol):
    scanner = KeysightDaq970A(expected_protocol([]), "scanner")
    with pytest.raises(ValueError, match="121"):
        scanner.voltages([101, 121])
    with pytest.raises(ValueError):
        KeysightDaq970A(expected_protocol([]), "scanner", voltage_range=5.0)


def test_readings_still_work_after_a_trip(expected_protocol, tripped):
    scanner = KeysightDaq970A(expected_protocol([
        ("MEAS:VOLT:DC? 10,DEF,(@101)", "+3.40000000E+00"),
        ("UNIT:TEMP C,(@117)", None), NO_ERROR, ("MEAS:TEMP? TC,K,(@117)", "+3.00000000E+01")]),
        "scanner", interlock=tripped.interlock)
    assert scanner.voltages([101]) == [3.4]
    assert scanner.temperatures([117]) == [30.0]


# --- (b) driver against the emulated DAQ970A over TCP --------------------------------------------
@pytest.fixture
def bench(serve):
    plant = Plant()
    plant.scanner.group_v = [[3.20 + g / 100 for g in range(16)], [3.30 + g / 1000 for g in range(16)]]
    plant.scanner.case_c = [[25.5, 26.0, 26.5, 27.0], [30.25, 31.0, 32.0, 33.0]]
    server, connect = serve(EmulatedDaq970A(plant, GROUPS, THERMOCOUPLES))
    yield plant, server, connect


def test_plant_values_arrive_in_channel_order(bench):
    plant, _, connect = bench
    scanner = KeysightDaq970A(connect(), "scanner")
    assert "DAQ970A" in scanner.identify()
    assert scanner.voltages(GROUPS[0]) == pytest.approx(plant.scanner.group_v[0], abs=1e-5)
    backwards = list(reversed(GROUPS[1]))
    assert scanner.voltages(backwards) == pytest.approx(list(reversed(plant.scanner.group_v[1])), abs=1e-5)
    assert scanner.temperatures(THERMOCOUPLES[1]) == pytest.approx(plant.scanner.case_c[1])
    assert scanner.temperatures([120, 217]) == pytest.approx([27.0, 30.25])
    plant.scanner.case_c[0][0] = 41.0  # values are taken at the moment of the query
    assert scanner.temperatures([117]) == pytest.approx([41.0])


def test_thermocouple_reading_on_a_cell_tap_is_overload(bench):
    _, _, connect = bench
    assert KeysightDaq970A(connect(), "scanner").temperatures([101]) == [math.inf]


def test_conf_scan_and_read(bench):
    plant, _, connect = bench
    res = connect()
    res.write("CONF:VOLT:DC 10,(@103,101)")
    res.write("CONF:TEMP TC,K,(@117)")
    res.write("ROUT:SCAN (@117,103,101)")
    assert res.query("ROUT:SCAN?") == "#214(@101,103,117)"
    assert res.query("ROUT:SCAN:SIZE?") == "3"
    assert readings(res.query("READ?")) == pytest.approx([3.20, 3.22, 25.5], abs=1e-5)
    res.write("UNIT:TEMP F,(@117)")
    assert readings(res.query("READ?"))[2] == pytest.approx(25.5 * 9 / 5 + 32)
    assert res.query("SYST:ERR?") == '0,"No error"'


def test_unknown_header_and_out_of_range_leave_settings(bench):
    _, _, connect = bench
    res = connect()
    res.write("VOLT:DC:NPLC 10,(@101)")
    res.write("ROUT:FROB (@101)")
    assert res.query("SYST:ERR?").startswith("-113")
    res.write("VOLT:DC:NPLC 500,(@101)")
    assert res.query("SYST:ERR?").startswith("-222")
    assert res.query("VOLT:DC:NPLC? (@101)") == "+1.00000000E+01"
    res.write("ROUT:SCAN (@301)")  # slot 3 holds no module on the emulated bench
    assert res.query("SYST:ERR?").startswith("-222")
    assert res.query("ROUT:SCAN?") == "#13(@)"


def test_refused_measurement_names_the_daq_error(bench):
    _, _, connect = bench
    scanner = KeysightDaq970A(connect(timeout=300), "scanner")
    with pytest.raises(InstrumentError, match="-222"):
        scanner.voltages([301])


def test_garbage_does_not_crash_the_server(bench):
    plant, server, connect = bench
    first = connect()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as raw:
        raw.sendall(b"\x00\xff\xfe\n" + b"MEAS:VOLT:DC? (@" * 500 + b"\nROUT:SCAN (@1x1)\n")
        raw.sendall(b"SYST:ERR?\n")
        assert raw.makefile("rb").readline().startswith(b"-")
    second = KeysightDaq970A(connect(), "scanner")
    assert second.voltages([101]) == pytest.approx([3.20])
    assert KeysightDaq970A(first, "scanner").voltages([216]) == pytest.approx([3.315])
