"""Each emulated instrument driven through the sequences of its programming manual's quick-start
and common-task chapters, with raw pyvisa sessions as a lab script sends them (no driver of ours).

Sequences (the manual each follows; docs/emulated-instruments.md has the table per model):

* N8900 (*Keysight N8900 Operating and Service Guide*, "Programming the output", "Reading the
  status"): ``*RST``, ``VOLT``/``CURR`` with units, ``OUTP ON``, ``MEAS:VOLT?;CURR?``,
  ``MEAS:POW?``, ``SYST:VERS?``, ``SYST:ERR:COUN?``, ``*SAV``/``*RCL``.
* 34465A (*Keysight Truevolt Series Operating and Service Guide*, "Triggering" and "Measurement
  tutorial"): ``MEAS:VOLT:DC?``, ``MEAS:CURR:DC?``, ``MEAS:RES?``, ``CONF`` + ``TRIG:SOUR BUS``
  + ``SAMP:COUN`` + ``INIT`` + ``*TRG`` + ``FETC?``, ``READ?`` with counts, ``R?``.
* DAQ970A (*Keysight DAQ970A/DAQ973A Programming Guide*, "Scanning"): ``CONF:VOLT:DC`` on a
  channel list, ``FORM:READ:CHAN ON``, ``TRIG:COUN``, ``INIT``, ``FETC?``, ``R?``, ``DATA:POIN?``.
* IT8900 (*ITECH IT8800 Series Programming Guide*, "Quick start"): ``SYST:REM``, ``FUNC CURR``,
  ``CURR 5 A``, ``INP ON``, ``MEAS:VOLT?``, ``SYST:ERR?``, ``*SAV``/``*RCL``.
* ESPEC SU/SH (P-300 command manual as ESPEC's own library sends it): ``TYPE?``, ``ROM?``,
  ``MON?``, ``TEMP, S25``, ``MODE, CONSTANT``, ``ALARM?``.
"""
from __future__ import annotations

import time

import pytest

from emulator.instruments.espec_chamber import EmulatedEspecSh
from emulator.instruments.it8900_load import EmulatedIT8900
from emulator.instruments.dmm_34465a import Emulated34465A
from emulator.instruments.daq970a_scanner import EmulatedDaq970A
from emulator.instruments.n8900_supply import EmulatedN8900
from emulator.plant import Plant
from scpi_helpers import FakeClock

GROUPS = [list(range(101, 117))]
THERMOCOUPLES = [[117, 118, 119, 120]]


def no_errors(session) -> None:
    assert session.query("SYST:ERR:COUN?") == "0", session.query("SYST:ERR:ALL?")


@pytest.fixture
def plant():
    plant = Plant()
    plant.now_ns = FakeClock()
    return plant


# --- N8900 ------------------------------------------------------------------------------------------
def test_n8900_program_the_output_and_read_it_back(serve, plant):
    session = serve(EmulatedN8900(plant))[1]()
    session.write("*RST;*CLS")
    assert session.query("SYST:VERS?") == "1999.0"
    session.write("VOLT 52 V;:CURR 10 A;:VOLT:PROT 60")
    session.write("OUTP ON")
    assert session.query("OUTP?") == "1"  # a query: every command before it has run
    assert plant.psu.on and (plant.psu.voltage_set_v, plant.psu.current_set_a) == (52.0, 10.0)
    with plant.lock:  # what the world writes once the output regulates
        plant.psu.measured_v, plant.psu.measured_a = 51.98, 4.5
    volts, amps = session.query("MEAS:VOLT?;CURR?").split(";")
    assert (float(volts), float(amps)) == (51.98, 4.5)
    assert volts == "+5.19800E+01"  # NR3, as the guide prints it
    assert float(session.query("MEAS:POW?")) == pytest.approx(51.98 * 4.5, rel=1e-5)
    assert session.query("STAT:OPER:COND?") == "1"  # CV
    no_errors(session)
    session.write("*SAV 1;VOLT 10;*RCL 1")
    assert float(session.query("VOLT?")) == 52.0
    session.write("OUTP OFF")
    assert session.query("*OPC?") == "1"
    assert not plant.psu.on
    no_errors(session)


def test_n8900_error_count_counts_what_the_queue_holds(serve, plant):
    session = serve(EmulatedN8900(plant))[1]()
    session.write("VOLT 100;:CURR 500;:APPL 5,5")  # two out of range, one header it has not
    assert session.query("SYST:ERR:COUN?") == "3"
    assert [session.query("SYST:ERR?").split(",")[0] for _ in range(4)] == ["-222", "-222", "-113", "0"]
    assert session.query("SYST:ERR:COUN?") == "0"


# --- 34465A -----------------------------------------------------------------------------------------
def test_34465a_one_shot_measurements(serve, plant):
    plant.dmm.measured_v = 51.23456
    session = serve(Emulated34465A(plant))[1]()
    session.write("*RST;*CLS")
    assert float(session.query("MEAS:VOLT:DC?")) == pytest.approx(51.23456, abs=1e-4)
    assert float(session.query("MEAS:VOLT:DC? 100,0.0001")) == pytest.approx(51.23456, abs=1e-4)
    assert float(session.query("MEAS:CURR:DC?")) == 0.0        # nothing on the current jack
    assert float(session.query("MEAS:RES?")) == 9.9e37         # leads across a charged pack
    assert session.query("CONF?").startswith('"RES ')
    no_errors(session)


def test_34465a_bus_triggered_burst(serve, plant):
    plant.dmm.measured_v = 12.5
    session = serve(Emulated34465A(plant))[1]()
    session.write("CONF:VOLT:DC 100")
    session.write("TRIG:SOUR BUS;:SAMP:COUN 5;:TRIG:COUN 2")
    assert session.query("TRIG:SOUR?") == "BUS"
    assert float(session.query("SAMP:COUN?")) == 5
    session.write("INIT")
    session.write("*TRG")
    readings = [float(x) for x in session.query("FETC?").split(",")]
    assert readings == [pytest.approx(12.5, abs=1e-4)] * 10
    assert session.query("DATA:POIN?") == "10"
    block = session.query("R? 4")
    assert block.startswith("#") and len(block[2 + int(block[1]):].split(",")) == 4
    assert session.query("DATA:POIN?") == "6"
    no_errors(session)
    session.write("READ?")  # READ? with BUS would wait for ever: refused, no reply
    assert session.query("SYST:ERR?").startswith("-214,")


def test_34465a_conf_presets_the_trigger_system(serve, plant):
    session = serve(Emulated34465A(plant))[1]()
    session.write("TRIG:SOUR BUS;:SAMP:COUN 7;:TRIG:DEL 0.5")
    assert session.query("TRIG:DEL:AUTO?") == "0"
    session.write("CONF:VOLT:DC")
    assert (session.query("TRIG:SOUR?"), float(session.query("SAMP:COUN?"))) == ("IMM", 1.0)
    assert session.query("TRIG:DEL:AUTO?") == "1"
    session.write("SAMP:COUN 3")
    assert len(session.query("READ?").split(",")) == 3
    no_errors(session)


# --- DAQ970A ----------------------------------------------------------------------------------------
def test_daq970a_scan_into_memory_and_fetch_with_channels(serve, plant):
    plant.scanner.group_v = [[3.2 + 0.001 * n for n in range(16)]]
    plant.scanner.case_c = [[25.0, 25.5, 26.0, 26.5]]
    session = serve(EmulatedDaq970A(plant, GROUPS, THERMOCOUPLES))[1]()
    session.write("*RST;*CLS")
    session.write("CONF:VOLT:DC AUTO,(@101:104)")
    session.write("FORM:READ:CHAN ON")
    session.write("TRIG:COUN 2")
    session.write("INIT")
    fields = session.query("FETC?").split(",")
    pairs = list(zip(fields[::2], fields[1::2]))
    assert [ch for _, ch in pairs] == ["101", "102", "103", "104"] * 2
    assert [float(v) for v, _ in pairs[:4]] == pytest.approx([3.2, 3.201, 3.202, 3.203], abs=1e-5)
    assert session.query("DATA:POIN?") == "8"
    block = session.query("R?")
    assert block.startswith("#") and session.query("DATA:POIN?") == "0"
    no_errors(session)


def test_daq970a_units_and_temperatures(serve, plant):
    plant.scanner.case_c = [[25.0, 25.5, 26.0, 26.5]]
    session = serve(EmulatedDaq970A(plant, GROUPS, THERMOCOUPLES))[1]()
    session.write("CONF:TEMP TC,K,(@117:118)")
    session.write("FORM:READ:UNIT ON;:FORM:READ:TIME ON")
    assert session.query("READ?") == "+2.50000000E+01 C,000000000.000,+2.55000000E+01 C,000000000.000"
    session.write("TRIG:SOUR TIM")  # a timed scan is not modelled: refused, not silently wrong
    assert session.query("SYST:ERR?").startswith("-224,")


# --- IT8900 -----------------------------------------------------------------------------------------
def test_it8900_quick_start(serve, plant):
    session = serve(EmulatedIT8900(plant))[1]()
    session.write("SYST:REM")
    session.write("*RST;*CLS")
    session.write("FUNC CURR")
    session.write("CURR 5 A")
    session.write("INP ON")
    assert session.query("*OPC?") == "1"  # the writes have run
    assert (plant.eload.on, plant.eload.mode, plant.eload.setpoint) == (True, "CC", 5.0)
    with plant.lock:
        plant.eload.measured_v, plant.eload.measured_a = 51.0, 5.0
    assert float(session.query("MEAS:VOLT?")) == 51.0
    assert float(session.query("MEAS:POW?")) == 255.0
    session.write("*SAV 2;CURR 1;*RCL 2")
    assert float(session.query("CURR?")) == 5.0
    session.write("INP OFF;SYST:LOC")
    no_errors(session)


# --- ESPEC ------------------------------------------------------------------------------------------
def test_espec_identification_and_a_constant_run(serve, plant):
    session = serve(EmulatedEspecSh(plant))[1]()
    session.read_termination = "\r\n"
    assert session.query("TYPE?") == "T,S2,150.0"
    assert session.query("ROM?").startswith("SU-242")
    assert session.query("TEMP, S25") == "OK:TEMP, S25"
    assert session.query("MODE, CONSTANT") == "OK:MODE, CONSTANT"
    assert session.query("MON?").split(",")[2] == "CONSTANT"
    assert session.query("ALARM?") == "0"
    assert session.query("HUMI?") == "NA:CMD ERR"  # a temperature-only chamber


def test_34465a_function_and_input_settings(serve, plant):
    plant.dmm.measured_v = 3.3
    session = serve(Emulated34465A(plant))[1]()
    session.write('FUNC "CURR:DC"')
    assert session.query("FUNC?") == '"CURR"'
    assert float(session.query("READ?")) == 0.0
    session.write('FUNC "VOLT:DC";:VOLT:DC:IMP:AUTO ON;:VOLT:DC:ZERO:AUTO ONCE')
    assert (session.query("VOLT:DC:IMP:AUTO?"), session.query("VOLT:DC:ZERO:AUTO?")) == ("1", "0")
    assert float(session.query("READ?")) == pytest.approx(3.3, abs=1e-5)
    no_errors(session)


def test_the_emulators_safe_state_lines_hold_under_the_path_rule():
    """serve.safe_state sends its own compound lines: with the SCPI-99 path rule they must still
    turn the e-load's short and input off (an 'INP:SHOR OFF;INP OFF' would be INP:INP OFF)."""
    from emulator.emulated_bench import EmulatedBench
    from emulator.serve import safe_state
    from rig.files.bench_file import load_bench
    from emulator.firmware.profile import load_firmware_profile

    bench = EmulatedBench(load_bench().file, load_firmware_profile())
    try:
        with bench.world.plant.lock:
            bench.world.plant.eload.on = bench.world.plant.eload.short = True
        held, _ = safe_state(bench)
        assert held and not bench.world.plant.eload.on and not bench.world.plant.eload.short
        assert bench.devices["eload"].handle_line("SYST:ERR:COUN?") == ["0"]
    finally:
        bench.close()


# --- measurement time (issue 17 item 4) --------------------------------------------------------------
def test_a_paced_dmm_takes_its_integration_time(serve, plant):
    """On a wall-clock bench a reading takes what it takes the real 34465A: NPLC power-line
    cycles, twice with autozero on; the reply comes after it (a lower bound: load only adds)."""
    dmm = Emulated34465A(plant)
    dmm.pace = True
    session = serve(dmm)[1]()
    session.write("CONF:VOLT:DC 100;:VOLT:DC:NPLC 1;:SAMP:COUN 5")
    assert session.query("*OPC?") == "1"
    started = time.monotonic()
    assert len(session.query("READ?").split(",")) == 5
    assert time.monotonic() - started >= 5 * 2 * 1 / 50  # 5 readings x (1 PLC + autozero) at 50 Hz
    session.write("VOLT:DC:ZERO:AUTO OFF;:TRIG:COUN 2;:TRIG:DEL 0.1")
    assert session.query("*OPC?") == "1"
    started = time.monotonic()
    assert len(session.query("READ?").split(",")) == 10
    assert time.monotonic() - started >= 10 * 1 / 50 + 2 * 0.1


def test_a_paced_scanner_takes_each_channels_integration_time(serve, plant):
    plant.scanner.group_v = [[3.3] * 16]
    scanner = EmulatedDaq970A(plant, GROUPS, THERMOCOUPLES)
    scanner.pace = True
    session = serve(scanner)[1]()
    session.write("CONF:VOLT:DC (@101:104);:VOLT:DC:NPLC 10,(@101:104)")
    assert session.query("*OPC?") == "1"
    started = time.monotonic()
    assert len(session.query("READ?").split(",")) == 4
    assert time.monotonic() - started >= 4 * 10 / 50


def test_an_unpaced_dmm_answers_at_once_in_virtual_time(plant):
    """Unpaced (virtual time, the default) the same burst charges the time but holds nothing."""
    dmm = Emulated34465A(plant)
    replies, busy_s = dmm.handle_message("CONF:VOLT:DC;:SAMP:COUN 5;:READ?")
    assert len(replies[0].split(",")) == 5 and busy_s == pytest.approx(5 * 2 * 10 / 50)
    assert not dmm.pace
