"""The emulated pack's RS485 answers (PACK_SPEC.md 7): every command, every RTN, who stays silent.

Replies are decoded with the project's codec (:mod:`rig.protocol.rs485_commands`) and compared with
the values put in the BMS report, so a reply is checked the way the rig will read it.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from model_harness import modified
from emulator.pack.bms import Bms
from emulator.pack.rs485_responder import PackResponder, RawFrameReader, serial_for
from rig.errors import FrameError
from emulator.firmware.profile import load_firmware_profile
from emulator.pack.physics_params import load_physics
from rig.protocol.rs485 import (
    MASTER_ADR, SLAVE_ADR, Cid2, Frame, Rtn, checksum, decode_frame, encode_frame, reply, request)
from rig.protocol.rs485_commands import (
    AlarmState, AnalogValues, ChargeManagement, ChargeStatus, ManufacturerInfo, ProtocolVersion, SerialNumber,
    Status1, Status2, Status3, SystemParameters, parse_reply)

PROFILE = load_firmware_profile()
GROUPS = load_physics().pack.groups  # the series groups each BMS senses
CELLS_V = tuple(3.300 + 0.001 * n for n in range(16))
TEMPS_C = (25.0, 26.0, 27.5, 28.0, 31.2)
N = AlarmState.NORMAL
# PACK_SPEC.md 7 known answers
REQUEST_0X42 = b"~20024642E00202FD33\r"
REPLY_0X92 = b"~20024600B01402DAC0B54003E8FC18C0F921\r"


def make_bms(address: int = MASTER_ADR, profile=PROFILE) -> Bms:
    """An awake pack, relays closed, with known readings: 52.920 V, 10.0 A discharge, 88 % SOC."""
    bms = Bms(profile, np.random.default_rng(1), groups=GROUPS, address=address)
    bms.state, bms.relays = "Standby", (True, True, False)
    r = bms.report
    r.groups_v, r.temps_c = np.array(CELLS_V), np.array(TEMPS_C)
    r.pack_v, r.current_a, r.soc_pct = float(sum(CELLS_V)), -10.0, 88.0
    return bms


def ask(bms: Bms, cid2: int, adr: int | None = None, **kwargs) -> Frame | None:
    return PackResponder(bms).respond(request(cid2, bms.address if adr is None else adr, **kwargs))


def answer(bms: Bms, cid2: int, **kwargs):
    frame = ask(bms, cid2, **kwargs)
    assert frame is not None and frame.adr == bms.address and frame.cid2_or_rtn == Rtn.OK
    return parse_reply(cid2, decode_frame(encode_frame(frame)))  # through the wire and back


def framed(body: bytes) -> bytes:
    """``~body CHKSUM \\r`` with a correct CHKSUM, to build frames that are wrong somewhere else."""
    return b"~" + body + b"%04X\r" % checksum(body)


# --- 0x42 -----------------------------------------------------------------------------------------

def test_known_request_gets_the_analog_values_of_adr_2():
    frame = PackResponder(make_bms()).respond_bytes(REQUEST_0X42)
    assert (frame.ver, frame.adr, frame.cid1, frame.cid2_or_rtn) == (0x20, 2, 0x46, Rtn.OK)
    assert parse_reply(Cid2.ANALOG_VALUES, frame) == AnalogValues(
        pack=2, cell_mv=tuple(range(3300, 3316)), temps_c=TEMPS_C, current_a=-10.0, module_mv=52920,
        remaining_mah=112640, total_mah=128000, cycles=0)


def test_group_command_value_gets_the_group_layout_with_the_joined_partner():
    """0xFF: INFOFLAG, module count, then each module without its pack number (python-pylontech's
    get_values() layout); the master gives its partner's values while the pair is joined."""
    master, slave = PackResponder(make_bms()), PackResponder(make_bms(SLAVE_ADR))
    master.partners = [slave]
    slave.bms.report.current_a = -12.0
    ask_all = request(Cid2.ANALOG_VALUES, MASTER_ADR, b"\xff")
    alone = parse_reply(Cid2.ANALOG_VALUES, master.respond(ask_all), command=0xFF)
    assert [m.current_a for m in alone.modules] == [-10.0]
    master.bms.modules = 2
    frame = master.respond(ask_all)
    assert frame.info[:3] == bytes([0, 2, 16])   # INFOFLAG, two modules, the first one's cell count
    group = parse_reply(Cid2.ANALOG_VALUES, frame, command=0xFF)
    assert [(m.pack, m.current_a) for m in group.modules] == [(1, -10.0), (2, -12.0)]
    assert group.modules[0].cell_mv == tuple(range(3300, 3316))
    slave.bms.state = "Off"
    assert len(parse_reply(Cid2.ANALOG_VALUES, master.respond(ask_all), command=0xFF).modules) == 1


def test_analog_values_use_the_u24_capacity_form_over_65_ah():
    info = ask(make_bms(), Cid2.ANALOG_VALUES).info
    # remaining U16 0xFFFF, item count 4, total U16 0xFFFF, cycles 0, then U24 remaining and total mAh
    u24 = (112640).to_bytes(3, "big") + (128000).to_bytes(3, "big")
    assert info[-13:] == bytes.fromhex("FFFF04FFFF0000") + u24


def test_readings_the_bms_does_not_have_go_out_as_zero():
    bms = make_bms()
    bms.report.groups_v[3], bms.report.temps_c[1] = math.nan, math.nan
    values = answer(bms, Cid2.ANALOG_VALUES)
    assert values.cell_mv[3] == 0 and values.temps_c[1] == -273.1
    assert answer(bms, Cid2.ALARM_INFO).cell_states[3] == AlarmState.OTHER


# --- 0x44 -----------------------------------------------------------------------------------------

def test_alarm_info_of_a_healthy_discharging_pack():
    info = answer(make_bms(), Cid2.ALARM_INFO)
    assert info.pack == 2 and info.cell_states == (N,) * 16 and info.temp_states == (N,) * 5
    assert (info.charge_current_state, info.module_voltage_state, info.discharge_current_state) == (N, N, N)
    assert info.status1 == Status1(0)
    assert info.status2 == Status2.CHARGE_MOSFET | Status2.DISCHARGE_MOSFET | Status2.USING_MODULE_POWER
    assert info.status3 == Status3.EFFECTIVE_DISCHARGE_CURRENT
    assert (info.status4, info.status5) == (0, 0)


def test_alarm_info_cell_states_and_faults_follow_l1_and_l2():
    bms = make_bms()
    bms.report.groups_v[4] = 3.57    # above cell OV L1 3.55, below L2 3.60: alarm only
    bms.report.groups_v[11] = 2.75   # below cell UV L2 2.80: alarm and cell fault
    bms.report.groups_v[0] = 3.61    # above cell OV L2: alarm and cell fault
    info = answer(bms, Cid2.ALARM_INFO)
    assert info.cell_states[4] == AlarmState.ABOVE_UPPER and info.cell_states[0] == AlarmState.ABOVE_UPPER
    assert info.cell_states[11] == AlarmState.BELOW_LOWER
    assert info.failed_cells == (1, 12) and (info.status4, info.status5) == (0x01, 0x08)


def test_alarm_info_cell_limits_follow_the_profile():
    bms = make_bms(profile=modified(PROFILE, "protections.cell_over_voltage.l1.threshold", 3.45))
    bms.report.groups_v[2] = 3.50
    assert answer(bms, Cid2.ALARM_INFO).cell_states[2] == AlarmState.ABOVE_UPPER


@pytest.mark.parametrize("current_a, t_c, state", [
    (20.0, 46.0, AlarmState.ABOVE_UPPER),   # charge OT L1 45 C trips on the temperature alone ...
    (-20.0, 46.0, AlarmState.ABOVE_UPPER),  # ... whatever the current: so does the state
    (0.0, 46.0, AlarmState.ABOVE_UPPER),
    (-20.0, 44.0, N),
    (20.0, 4.0, AlarmState.BELOW_LOWER),    # charge UT L1 5 C
    (-20.0, 4.0, AlarmState.BELOW_LOWER),
    (-20.0, 6.0, N),
])
def test_alarm_info_temperature_states_use_the_tightest_row_whatever_the_current(current_a, t_c, state):
    bms = make_bms()
    bms.report.current_a, bms.report.temps_c[1] = current_a, t_c
    assert answer(bms, Cid2.ALARM_INFO).temp_states == (N, state, N, N, N)


def test_alarm_info_states_follow_a_tripped_row_until_it_releases():
    """Back inside the alarm limit but not yet past the release value, the row is still tripped on
    CAN: its extreme reading stays out of range in 0x44 too."""
    bms = make_bms()
    bms.report.temps_c[2], bms.report.levels = 42.0, {"charge_over_temperature": 1}   # releases at 40 C
    bms.report.groups_v[5], bms.report.levels["cell_under_voltage"] = 3.05, 1           # releases at 3.10 V
    bms.report.levels["discharge_over_current"] = 2                                     # 30 s after the cut
    info = answer(bms, Cid2.ALARM_INFO)
    assert info.temp_states == (N, N, AlarmState.ABOVE_UPPER, N, N)
    assert info.cell_states[5] == AlarmState.BELOW_LOWER and info.cell_states.count(N) == 15
    assert (info.charge_current_state, info.discharge_current_state) == (N, AlarmState.ABOVE_UPPER)
    assert info.module_voltage_state == N


def test_alarm_info_cell_difference_at_level_2_flags_the_extreme_cells():
    bms = make_bms()
    bms.report.levels = {"cell_voltage_difference": 1}
    assert answer(bms, Cid2.ALARM_INFO).failed_cells == ()
    bms.report.levels = {"cell_voltage_difference": 2}
    assert answer(bms, Cid2.ALARM_INFO).failed_cells == (1, 16)


def test_alarm_info_currents_and_module_voltage():
    bms = make_bms()
    bms.report.current_a, bms.report.pack_v = 70.0, 57.0     # charge OC L1 68 A, pack OV L1 56.8 V
    info = answer(bms, Cid2.ALARM_INFO)
    assert (info.charge_current_state, info.module_voltage_state, info.discharge_current_state) == (
        AlarmState.ABOVE_UPPER, AlarmState.ABOVE_UPPER, N)
    assert info.status3 == Status3.EFFECTIVE_CHARGE_CURRENT
    bms.report.current_a, bms.report.pack_v = -90.0, 47.0    # discharge OC L1 88 A, pack UV L1 48 V
    info = answer(bms, Cid2.ALARM_INFO)
    assert (info.charge_current_state, info.module_voltage_state, info.discharge_current_state) == (
        N, AlarmState.BELOW_LOWER, AlarmState.ABOVE_UPPER)


@pytest.mark.parametrize("levels, status1", [
    ({"pack_over_voltage": 1, "cell_under_voltage": 1}, Status1(0)),   # L1 is an alarm, not a trip
    ({"pack_over_voltage": 2}, Status1.MODULE_OVER_VOLTAGE),
    ({"cell_over_voltage": 3}, Status1.MODULE_OVER_VOLTAGE),
    ({"cell_under_voltage": 2, "pack_under_voltage": 2},
     Status1.CELL_UNDER_VOLTAGE | Status1.MODULE_UNDER_VOLTAGE),
    ({"charge_over_current": 2, "discharge_over_current": 3},
     Status1.CHARGE_OVER_CURRENT | Status1.DISCHARGE_OVER_CURRENT),
    ({"charge_over_temperature": 2, "discharge_over_temperature": 2},
     Status1.CHARGE_OVER_TEMPERATURE | Status1.DISCHARGE_OVER_TEMPERATURE),
    ({"charge_under_temperature": 2, "cell_voltage_difference": 2}, Status1(0)),  # no v3.3 bit
])
def test_alarm_info_status1_is_what_has_tripped(levels, status1):
    bms = make_bms()
    bms.report.levels = levels
    assert answer(bms, Cid2.ALARM_INFO).status1 == status1


def test_alarm_info_status2_and_status3():
    bms = make_bms()
    bms.report.levels = {"cell_over_voltage": 2}          # L2: charge limit 0, charge disabled
    bms.report.soc_pct, bms.report.current_a = 100.0, 0.05
    info = answer(bms, Cid2.ALARM_INFO)
    assert info.status2 == Status2.DISCHARGE_MOSFET | Status2.USING_MODULE_POWER
    assert info.status3 == Status3.FULLY_CHARGED
    bms.relays = (False, True, True)                      # pre-charging
    assert answer(bms, Cid2.ALARM_INFO).status2 == Status2.PRE_MOSFET | Status2.USING_MODULE_POWER


@pytest.mark.parametrize("failure, cells, temps, currents, faults", [
    ("FailureVoltageFrontEnd", AlarmState.OTHER, N, N, (0xFF, 0xFF)),
    ("FailureTemperatureSampling", N, AlarmState.OTHER, N, (0, 0)),
    ("FailureCurrentSampling", N, N, AlarmState.OTHER, (0, 0)),
    ("FailureCellVoltageDifference", N, N, N, (0x01, 0x80)),   # lowest cell 1, highest cell 16
])
def test_alarm_info_failures(failure, cells, temps, currents, faults):
    bms = make_bms()
    bms.report.failures.add(failure)
    info = answer(bms, Cid2.ALARM_INFO)
    assert info.cell_states == (cells,) * 16 and info.temp_states == (temps,) * 5
    assert (info.charge_current_state, info.discharge_current_state) == (currents, currents)
    assert (info.status4, info.status5) == faults


# --- 0x47, 0x4F, 0x51, 0x92, 0x93 --------------------------------------------------------------

def test_system_parameters_are_the_profile_thresholds():
    assert answer(make_bms(), Cid2.SYSTEM_PARAMETERS) == SystemParameters(
        cell_high_mv=3550, cell_low_mv=3000, cell_under_mv=2800, charge_high_temp_c=45.0,
        charge_low_temp_c=5.0, charge_current_limit_a=68.0, module_high_mv=56800, module_low_mv=48000,
        module_under_mv=44800, discharge_high_temp_c=50.0, discharge_low_temp_c=-5.0,
        discharge_current_limit_a=-88.0)
    bms = make_bms(profile=modified(PROFILE, "protections.pack_under_voltage.l2.threshold", 45.6))
    assert answer(bms, Cid2.SYSTEM_PARAMETERS).module_under_mv == 45600


def test_protocol_version_from_adr_0_with_any_ver():
    bms = make_bms()
    frame = PackResponder(bms).respond(request(Cid2.PROTOCOL_VERSION, 0, ver=0x00))
    assert frame == Frame(0x20, 2, 0x46, Rtn.OK, b"")       # the master answers with its own ADR
    assert parse_reply(Cid2.PROTOCOL_VERSION, frame) == ProtocolVersion(0x20)
    assert answer(bms, Cid2.PROTOCOL_VERSION) == ProtocolVersion(0x20)


def test_only_the_master_answers_adr_0():
    slave = make_bms(SLAVE_ADR)
    assert ask(slave, Cid2.PROTOCOL_VERSION, adr=0) is None
    assert ask(slave, Cid2.ANALOG_VALUES, adr=0) is None
    assert ask(make_bms(), 0x99, adr=0) == reply(MASTER_ADR, Rtn.CID2), "a decoded ADR 0 frame: the master's"
    assert PackResponder(slave, answers_adr0=True).respond(request(Cid2.PROTOCOL_VERSION, 0)).adr == SLAVE_ADR


def test_manufacturer_info():
    assert answer(make_bms(), Cid2.MANUFACTURER_INFO) == ManufacturerInfo("LFP16S128", (1, 0), "PYLON")
    frame = ask(make_bms(), Cid2.MANUFACTURER_INFO, adr=0)
    assert parse_reply(Cid2.MANUFACTURER_INFO, frame).manufacturer == "PYLON"
    bms = make_bms(profile=modified(PROFILE, "can.manufacturer", "ACME    "))
    assert answer(bms, Cid2.MANUFACTURER_INFO).manufacturer == "ACME"


def test_charge_management_known_answer():
    """PACK_SPEC.md 7: 56.000 V, 46.400 V, +100.0 A, -100.0 A, both enabled, byte for byte."""
    profile = modified(PROFILE, "can.charge_current_limit_a", 100.0)
    profile = modified(profile, "can.discharge_current_limit_a", 100.0)
    assert encode_frame(ask(make_bms(profile=profile), Cid2.CHARGE_MANAGEMENT)) == REPLY_0X92


def test_charge_management_follows_the_limits():
    bms = make_bms()
    both = ChargeStatus.CHARGE_ENABLE | ChargeStatus.DISCHARGE_ENABLE
    assert answer(bms, Cid2.CHARGE_MANAGEMENT) == ChargeManagement(2, 56000, 46400, 64.0, -85.0, both)
    bms.report.levels = {"discharge_over_current": 1, "cell_over_voltage": 2}
    assert answer(bms, Cid2.CHARGE_MANAGEMENT) == ChargeManagement(
        2, 56000, 46400, 0.0, -42.5, ChargeStatus.DISCHARGE_ENABLE)
    bms.relays = (False, False, False)
    assert answer(bms, Cid2.CHARGE_MANAGEMENT) == ChargeManagement(2, 56000, 46400, 0.0, 0.0)


def test_serial_number_is_fixed_per_address():
    assert answer(make_bms(), Cid2.SERIAL_NUMBER) == SerialNumber(2, serial_for(2))
    assert answer(make_bms(SLAVE_ADR), Cid2.SERIAL_NUMBER) == SerialNumber(3, serial_for(3))
    assert serial_for(2) != serial_for(3) and len(serial_for(2)) == 16


# --- request forms -----------------------------------------------------------------------------------

def test_lenid_4_lower_case_and_group_command_value_are_accepted():
    responder = PackResponder(make_bms(SLAVE_ADR))
    lenid4 = encode_frame(request(Cid2.ANALOG_VALUES, 3, lenid_bytes=2))
    lower = lenid4[1:-5].lower()
    lower = b"~" + lower + b"%04x\r" % checksum(lower)  # a console's CHKSUM is over its own characters
    for raw in (lenid4, lower):
        frame = responder.respond_bytes(raw)
        assert frame.cid2_or_rtn == Rtn.OK and parse_reply(Cid2.ANALOG_VALUES, frame).pack == 3
    frame = responder.respond_bytes(encode_frame(request(Cid2.ANALOG_VALUES, 3, b"\xff")))
    assert frame.cid2_or_rtn == Rtn.OK and len(parse_reply(Cid2.ANALOG_VALUES, frame, 0xFF).modules) == 1


# --- malformed requests ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, rtn", [
    (REQUEST_0X42[:-5] + b"FD34\r", Rtn.CHKSUM),
    (framed(b"20024642F00202"), Rtn.LCHKSUM),              # LCHKSUM nibble F, LENID 2 needs E
    (framed(b"20024699E00202"), Rtn.CID2),                 # no command 0x99
    (framed(b"20024142E00202"), Rtn.CID2),                 # CID1 0x41 is not battery data
    (framed(b"20024642C00402"), Rtn.FORMAT),               # LENID 4, but 2 INFO characters
    (framed(b"20024642E0020G"), Rtn.FORMAT),               # a non-hex character in INFO
    (framed(b"20024642A006020000"), Rtn.DATA),             # 3 INFO bytes
    (framed(b"20024642E00203"), Rtn.DATA),                 # command value of the other pack
    (framed(b"21024642E00202"), Rtn.VER),
    (framed(b"20004642E00200"), Rtn.ADR),                 # ADR 0 is only for 0x4F and 0x51
])
def test_malformed_request_gets_its_rtn(raw, rtn):
    frame = PackResponder(make_bms()).respond_bytes(raw)
    assert frame == reply(MASTER_ADR, rtn)


def test_frame_error_from_a_reader_is_answered_when_its_adr_is_ours():
    raw = REQUEST_0X42[:-5] + b"0000\r"
    with pytest.raises(FrameError) as caught:
        decode_frame(raw)
    responder = PackResponder(make_bms())
    assert responder.respond(caught.value, raw) == reply(MASTER_ADR, Rtn.CHKSUM)
    assert responder.respond(caught.value) is None, "without the bytes the ADR is unknown"
    [kept] = RawFrameReader().feed(raw)
    assert kept.raw == raw and responder.respond(kept) == reply(MASTER_ADR, Rtn.CHKSUM)


@pytest.mark.parametrize("raw", [
    framed(b"20034699E00203"),          # malformed, for the other pack
    framed(b"20004642E00200")[:-5] + b"0000\r",  # bad CHKSUM at ADR 0: either pack could answer
    b"~20zz4642E00202FD33\r",           # ADR unreadable
    b"~2\r", b"garbage\r",
])
def test_malformed_frame_not_ours_gets_no_reply(raw):
    assert PackResponder(make_bms()).respond_bytes(raw) is None


# --- silence ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("adr", [SLAVE_ADR, 1, 0xFF])
def test_request_for_another_adr_gets_no_reply(adr):
    assert ask(make_bms(), Cid2.ANALOG_VALUES, adr=adr) is None


def test_the_other_packs_reply_gets_no_reply():
    slave_reply = PackResponder(make_bms(SLAVE_ADR)).respond(request(Cid2.ANALOG_VALUES, SLAVE_ADR))
    assert PackResponder(make_bms()).respond(slave_reply) is None


def test_an_off_pack_is_silent():
    bms = make_bms()
    bms.state = "Off"
    responder = PackResponder(bms)
    assert responder.respond_bytes(REQUEST_0X42) is None
    assert responder.respond(request(Cid2.PROTOCOL_VERSION, 0)) is None
    assert responder.respond_bytes(REQUEST_0X42[:-5] + b"0000\r") is None


def test_fuzzed_bytes_never_raise_and_only_frames_for_us_are_answered():
    """Mutated requests through a reader, as the bus feeds them: a reply or None, never an exception."""
    rng = random.Random(485)
    responder, reader = PackResponder(make_bms()), RawFrameReader()
    seeds = [encode_frame(request(cid2, adr)) for cid2 in Cid2 for adr in (0, 2, 3)]
    for _ in range(3000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.choice(b"0123456789ABCDEF~\r\x00")
        for item in reader.feed(bytes(raw)):
            answer = responder.respond(item)
            assert answer is None or answer.adr == MASTER_ADR
