"""The shared SCPI server against IEEE 488.2 and SCPI-99, driven as a lab script drives an
instrument: raw pyvisa sessions over TCP, no driver of ours.

What each test holds to (section numbers of IEEE 488.2-1992 and SCPI-99 volume 1):

* 11.5.1.1: ESR bits PON 128, CME 32 (-1xx), EXE 16 (-2xx), DDE 8 (-3xx), QYE 4 (-4xx), OPC 1;
  *ESR? reads and clears (10.12); *CLS clears ESR and the error queue, not the enables (10.3).
* 11.2: status byte: bit 2 error queue (SCPI-99 9.1), MAV 16, ESB 32 = ESR & ESE, MSS 64 =
  (STB & SRE) != 0; *SRE ignores bit 6 (10.34).
* 10.38 *TST? 0 passed, 10.39 *WAI, 10.18 *OPC, 10.27/10.29 *RCL/*SAV.
* SCPI-99 6.2.4: compound headers keep the path; a leading colon goes back to the root; common
  commands leave it; each new message starts at the root.
* SCPI-99 4.2.3/4: SYSTem:ERRor:COUNt?, SYSTem:ERRor:ALL?, SYSTem:VERSion? 1999.0.
* SCPI-99 7.2, 7.7.3: numbers with suffixes and multipliers, MIN/MAX/DEF.
"""
from __future__ import annotations

import pytest

from emulator.instruments.it8900_load import EmulatedIT8900
from emulator.instruments.dmm_34465a import Emulated34465A
from emulator.instruments.n8900_supply import EmulatedN8900
from emulator.plant import Plant
from scpi_helpers import FakeClock


@pytest.fixture
def psu(serve):
    """A raw pyvisa session to a fresh emulated N8900, and its plant."""
    plant = Plant()
    plant.now_ns = FakeClock()
    server, connect = serve(EmulatedN8900(plant))
    return connect(), plant


def errors(session) -> list[str]:
    out = []
    while not (reply := session.query("SYST:ERR?")).startswith(("+0,", "0,")):
        out.append(reply)
    return out


# --- 488.2 event status register ------------------------------------------------------------
def test_power_on_sets_pon_and_esr_query_clears_it(psu):
    session, _ = psu
    assert int(session.query("*ESR?")) == 128
    assert int(session.query("*ESR?")) == 0


@pytest.mark.parametrize("command, bit, code", [
    ("VOLT:BOGUS 1", 32, -113),        # command error: undefined header
    ("VOLT 1000", 16, -222),            # execution error: out of range
    ("VOLT 5 A", 32, -131),             # command error: a suffix of another unit
    ("*ESE 4 V", 32, -138),             # command error: a suffix where none is taken
])
def test_each_error_class_sets_its_esr_bit(psu, command, bit, code):
    session, _ = psu
    session.query("*ESR?")
    session.write(command)
    assert int(session.query("*ESR?")) == bit
    assert session.query("SYST:ERR?").startswith(f"{code},")


def test_opc_sets_the_opc_bit(psu):
    session, _ = psu
    session.query("*ESR?")
    session.write("VOLT 10;*OPC")
    assert int(session.query("*ESR?")) == 1
    assert session.query("*OPC?") == "1"


def test_cls_clears_esr_and_error_queue_not_the_enables(psu):
    session, _ = psu
    session.write("*ESE 60;*SRE 48")
    session.write("NOT:A:COMMAND")
    session.write("*CLS")
    assert int(session.query("*ESR?")) == 0
    assert session.query("SYST:ERR:COUN?") == "0"
    assert (int(session.query("*ESE?")), int(session.query("*SRE?"))) == (60, 48)


def test_rst_leaves_the_status_registers(psu):
    session, _ = psu
    session.write("*CLS;*ESE 32;NOT:A:COMMAND")
    session.write("*RST")
    assert int(session.query("*ESE?")) == 32
    assert int(session.query("*ESR?")) == 32


# --- 488.2 status byte ------------------------------------------------------------------------
def test_status_byte_error_queue_esb_and_mss(psu):
    session, _ = psu
    session.write("*CLS")
    assert int(session.query("*STB?")) == 0
    session.write("*ESE 32;*SRE 32")  # command errors summarised in ESB, ESB requests service
    session.write("NOT:A:COMMAND")
    stb = int(session.query("*STB?"))
    assert stb & 4 and stb & 32 and stb & 64, stb      # error queue, ESB, MSS
    session.write("*SRE 0")
    assert int(session.query("*STB?")) & 64 == 0        # not enabled: no summary
    session.query("SYST:ERR?")
    session.query("*ESR?")
    assert int(session.query("*STB?")) == 0


def test_sre_ignores_bit_6(psu):
    session, _ = psu
    session.write("*SRE 255")
    assert int(session.query("*SRE?")) == 191


def test_mav_is_set_while_a_reply_of_the_same_message_waits(psu):
    session, _ = psu
    session.write("*CLS")
    idn, stb = session.query("*IDN?;*STB?").split(";")
    assert idn.startswith("Keysight Technologies,N89")
    assert int(stb) & 16
    assert int(session.query("*STB?")) & 16 == 0


@pytest.mark.parametrize("command", ["*ESE 256", "*ESE -1", "*SRE 300"])
def test_enable_registers_take_0_to_255(psu, command):
    session, _ = psu
    session.write(command)
    assert session.query("SYST:ERR?").startswith("-222,")


def test_self_test_and_wait(psu):
    session, _ = psu
    assert session.query("*TST?") == "0"
    session.write("VOLT 12;*WAI")
    assert float(session.query("VOLT?")) == 12.0
    assert errors(session) == []


# --- *SAV / *RCL ----------------------------------------------------------------------------------
def test_sav_rcl_restore_the_settings(psu):
    session, plant = psu
    session.write("VOLT 48;CURR 20;*SAV 3")
    session.write("*RST")
    assert float(session.query("VOLT?")) == 0.0
    session.write("*RCL 3")
    assert (float(session.query("VOLT?")), float(session.query("CURR?"))) == (48.0, 20.0)
    assert session.query("OUTP?") == "0"  # the output is not part of a saved state
    session.write("*RCL 9")  # nothing saved there
    session.write("*SAV 10")  # locations 0..9
    assert [e.split(",")[0] for e in errors(session)] == ["-224", "-222"]


# --- SCPI-99 compound headers -------------------------------------------------------------------
def test_semicolon_continues_at_the_previous_node(psu):
    session, plant = psu
    with plant.lock:
        plant.psu.measured_v, plant.psu.measured_a = 52.5, 3.25
    session.write("CURR 10")
    volts, amps = (float(x) for x in session.query("MEAS:VOLT?;CURR?").split(";"))
    assert (volts, amps) == (52.5, 3.25)  # the measured current, not the 10 A set-point
    session.write("VOLT 12;VOLT:PROT 60")  # VOLT is at the root: the path stays there
    # the path after VOLT:PROT? is VOLT: -- LEV? is VOLT:LEV?, the set-point
    assert [float(x) for x in session.query("VOLT:PROT?;LEV?").split(";")] == [60.0, 12.0]
    session.write("OUTP:STAT?;PROT:CLE")
    assert session.read() == "0"
    assert errors(session) == []


def test_leading_colon_goes_back_to_the_root(psu):
    session, plant = psu
    session.write("VOLT 20;:CURR 5")
    assert (float(session.query("VOLT?")), float(session.query("CURR?"))) == (20.0, 5.0)
    session.write("VOLT 20;:VOLT:PROT 70")
    assert float(session.query("VOLT:PROT?")) == 70.0


def test_without_the_colon_the_path_is_kept_and_a_wrong_header_refused(psu):
    session, plant = psu
    session.write("MEAS:VOLT?;VOLT 5")  # MEAS:VOLT 5: undefined, as on a real instrument
    session.read()
    assert [e.split(",")[0] for e in errors(session)] == ["-113"]
    assert float(session.query("VOLT?")) == 0.0


def test_common_commands_leave_the_path_and_a_new_line_starts_at_the_root(psu):
    session, plant = psu
    session.write("VOLT:PROT 75;*CLS;LEV 70")  # *CLS between: LEV is still VOLT:LEV
    assert (float(session.query("VOLT:PROT?")), float(session.query("VOLT?"))) == (75.0, 70.0)
    session.write("VOLT:PROT 77")
    session.write("LEV 5")  # a new message: back at the root, LEV alone is undefined
    assert [e.split(",")[0] for e in errors(session)] == ["-113"]


# --- SCPI-99 SYSTem ------------------------------------------------------------------------------
def test_system_version_and_error_count_and_all(psu):
    session, _ = psu
    assert session.query("SYST:VERS?") == "1999.0"
    session.write("*CLS;BAD:ONE;:VOLT 999")
    assert session.query("SYST:ERR:COUN?") == "2"
    reply = session.query("SYST:ERR:ALL?")
    assert reply.startswith("-113,") and ',-222,"Data out of range' in reply
    assert session.query("SYST:ERR:COUN?") == "0"
    assert session.query("SYST:ERR:ALL?") == '0,"No error"'


# --- SCPI-99 numeric arguments -------------------------------------------------------------------
@pytest.mark.parametrize("command, query, expected", [
    ("VOLT 50 V", "VOLT?", 50.0),
    ("VOLT 51.2V", "VOLT?", 51.2),
    ("VOLT 500 mV", "VOLT?", 0.5),
    ("CURR 2500 MA", "CURR?", 2500e-3),    # SCPI: M is milli, whatever the case
    ("CURR 1.5E+1 A", "CURR?", 15.0),
    ("VOLT MAX", "VOLT?", 80.0),
    ("VOLT MIN", "VOLT?", 0.0),
])
def test_numbers_with_suffixes_and_min_max(psu, command, query, expected):
    session, _ = psu
    session.write(command)
    assert float(session.query(query)) == pytest.approx(expected)
    assert errors(session) == []


def test_def_where_the_manual_gives_a_default(serve):
    plant = Plant()
    plant.now_ns = FakeClock()
    server, connect = serve(EmulatedIT8900(plant))
    session = connect()
    session.write("CURR 12.5 A")
    session.write("CURR DEF")
    assert float(session.query("CURR?")) == 0.0
    session.write("RES 2 KOHM")
    assert float(session.query("RES?")) == 2000.0
    session.write("RES 1 MOHM")  # SCPI-99 7.7.3: MOHM is mega-ohm; out of the 7500 ohm range
    assert session.query("SYST:ERR?").startswith("-222,")


def test_def_where_the_manual_gives_none_is_refused(psu):
    session, _ = psu
    session.write("VOLT DEF")
    assert session.query("SYST:ERR?").startswith("-224,")


def test_dmm_range_with_a_unit(serve):
    server, connect = serve(Emulated34465A(Plant()))
    session = connect()
    session.write("VOLT:DC:RANG 100 V")
    assert float(session.query("VOLT:DC:RANG?")) == 100.0
    session.write("VOLT:DC:RANG 10 A")
    assert session.query("SYST:ERR?").startswith("-131,")
