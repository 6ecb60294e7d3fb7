"""pack.dbc and rig.protocol.can_frames against the known answers and bit positions of PACK_SPEC.md 6."""
from __future__ import annotations

import re
import subprocess
import sys
from importlib.resources import files

import can
import cantools
import pytest

from rig.errors import ProtocolError
from rig.protocol import can_frames
from rig.protocol.can_frames import DATABASE, FRAMES, PACK_FRAMES, decode, encode

DBC_PATH = files("rig.protocol").joinpath("pack.dbc")

# (frame ID, payload, decoded values) exactly as PACK_SPEC.md 6 states them.
KNOWN_ANSWERS = [
    (0x351, "30 02 E8 03 E8 03 D0 01", dict(ChargeVoltageLimit=56.0, ChargeCurrentLimit=100.0,
                                            DischargeCurrentLimit=100.0, DischargeVoltageLimit=46.4)),
    (0x356, "A0 14 9C FF FA 00", dict(Voltage=52.80, Current=-10.0, Temperature=25.0)),
    (0x359, "02 00 02 00 02 50 4E", dict(ProtectionOverVoltage=1, AlarmHighVoltage=1, ModuleCount=2)),
    (0x355, "58 00 5E 00", dict(SOC=88, SOH=94)),
]

# (frame name, signal, byte, bit) of every single-bit signal, transcribed from PACK_SPEC.md 6.
FLAG_BITS = [
    ("ProtectionsAlarms", "ProtectionOverVoltage", 0, 1), ("ProtectionsAlarms", "ProtectionUnderVoltage", 0, 2),
    ("ProtectionsAlarms", "ProtectionOverTemperature", 0, 3),
    ("ProtectionsAlarms", "ProtectionUnderTemperature", 0, 4),
    ("ProtectionsAlarms", "ProtectionDischargeOverCurrent", 0, 7),
    ("ProtectionsAlarms", "ProtectionChargeOverCurrent", 1, 0), ("ProtectionsAlarms", "ProtectionSystemError", 1, 3),
    ("ProtectionsAlarms", "AlarmHighVoltage", 2, 1), ("ProtectionsAlarms", "AlarmLowVoltage", 2, 2),
    ("ProtectionsAlarms", "AlarmHighTemperature", 2, 3), ("ProtectionsAlarms", "AlarmLowTemperature", 2, 4),
    ("ProtectionsAlarms", "AlarmDischargeHighCurrent", 2, 7), ("ProtectionsAlarms", "AlarmChargeHighCurrent", 3, 0),
    ("ProtectionsAlarms", "AlarmInternalCommunicationFail", 3, 3),
    ("ChargeRequest", "ChargeEnable", 0, 7), ("ChargeRequest", "DischargeEnable", 0, 6),
    ("ChargeRequest", "ForceChargeI", 0, 5), ("ChargeRequest", "ForceChargeII", 0, 4),
    ("ChargeRequest", "FullChargeRequest", 0, 3),
    ("DetailStatus", "Relay1Closed", 1, 0), ("DetailStatus", "Relay2Closed", 1, 1),
    ("DetailStatus", "PrechargeClosed", 1, 2),
] + [("DetailStatus", "Failure" + name, 2 + i // 8, i % 8) for i, name in enumerate(
    ["Relay1", "Relay2", "Precharge", "VoltageFrontEnd", "TemperatureSampling", "CurrentSampling",
     "CurrentLimitation", "ParallelConnection", "PcsCommunication", "ZeroVoltCell", "CellVoltageDifference",
     "ShortCircuit"])]

# Hand-packed detail frames (address 3 = slave): 0x18A0nn03, payload, values.
DETAIL_ANSWERS = [
    (0x01, "02 05 01 08 58 02 00 00", dict(State="Run", Relay1Closed=1, Relay2Closed=0, PrechargeClosed=1,
                                           FailureRelay1=1, FailureShortCircuit=1, SOC=88, ParallelRole="Slave")),
    (0x02, "03 00 20 00 00 00 00 00", dict(CellOverVoltageLevel="L3", PackOverVoltageLevel="None",
                                           CellVoltageDifferenceLevel="L2")),
    (0x03, "E4 0C E5 0C E6 0C E7 0C", dict(Group1Voltage=3.300, Group2Voltage=3.301, Group4Voltage=3.303)),
    (0x06, "E4 0C E5 0C E6 0C E7 0C", dict(Group13Voltage=3.300, Group16Voltage=3.303)),
    (0x07, "FA 00 CE FF 00 00 01 00", dict(Temperature1=25.0, Temperature2=-5.0, Temperature4=0.1)),
    (0x08, "2C 01 80 0C 16 0D 88 13", dict(Temperature5PowerStage=30.0, MinGroupVoltage=3.2,
                                           MaxGroupVoltage=3.35, RemainingCapacity=50.0)),
]


def frame_id(info):
    return f"{info.name}@{info.pack_address}" if info.pack_address else info.name


def info_of(name, pack_address=None):
    return next(f for f in FRAMES if (f.name, f.pack_address) == (name, pack_address))


def dbc_message(info):
    return DATABASE.get_message_by_frame_id(info.frame_id, force_extended_id=info.is_extended_id)


def sample(info, end):
    """Every signal of a frame at its DBC minimum (end=0) or maximum (end=1); names as str."""
    return {s.name: ("ACME 1.2" if end else "") if s.name == can_frames.NAME_SIGNAL
            else (s.minimum, s.maximum)[end] for s in dbc_message(info).signals}


def test_dbc_loads_strict_and_dumps():
    db = cantools.database.load_file(str(DBC_PATH), strict=True)
    assert [node.name for node in db.nodes] == ["BMS", "PCS"]
    assert db.buses[0].baudrate == 500_000
    dump = subprocess.run([sys.executable, "-m", "cantools", "dump", str(DBC_PATH)],
                          capture_output=True, text=True, check=False)
    assert dump.returncode == 0, dump.stderr
    assert "0x18a00103" in dump.stdout.lower()


def test_every_signal_is_documented_and_bounded():
    for message in DATABASE.messages:
        assert message.comment and message.comment.startswith("PACK_SPEC 6"), message.name
        for signal in message.signals:
            assert signal.comment, (message.name, signal.name)
            assert signal.minimum is not None and signal.maximum is not None, (message.name, signal.name)
            assert signal.byte_order == "little_endian"
            assert signal.unit or signal.scale == 1, (message.name, signal.name)


def test_every_frame_is_sent_every_second():
    assert {message.cycle_time for message in DATABASE.messages} == {1000}
    assert {info.period_s for info in FRAMES} == {1.0}
    assert [info.name for info in FRAMES if info not in PACK_FRAMES] == ["PcsHeartbeat"]
    assert len(PACK_FRAMES) == 6 + 2 * 8  # six Pylon frames, nn=01..08 for addresses 2 and 3
    assert can_frames.PACK_ADDRESSES == (2, 3)
    assert len({(info.name, info.pack_address) for info in FRAMES}) == len(FRAMES) == len(DATABASE.messages)


@pytest.mark.parametrize("arbitration_id, payload, values", KNOWN_ANSWERS, ids=lambda v: hex(v) if isinstance(v, int) else None)
def test_known_answers(arbitration_id, payload, values):
    data = bytes.fromhex(payload)
    name, signals, address = decode(can.Message(arbitration_id=arbitration_id, is_extended_id=False, data=data))
    assert address is None
    assert {k: signals[k] for k in values} == pytest.approx(values)
    flags = ("Protection", "Alarm")  # 0x359: no flag set beyond the ones the spec names
    assert {k for k, v in signals.items() if k.startswith(flags) and v} == {k for k in values if k.startswith(flags)}
    msg = encode(name, signals)
    assert (msg.arbitration_id, msg.is_extended_id, msg.dlc, bytes(msg.data)) == (arbitration_id, False, len(data), data)


@pytest.mark.parametrize("nn, payload, values", DETAIL_ANSWERS, ids=lambda v: f"nn={v:02d}" if isinstance(v, int) else None)
def test_detail_known_answers(nn, payload, values):
    data = bytes.fromhex(payload)
    decoded = decode(can.Message(arbitration_id=0x18A00003 | nn << 8, is_extended_id=True, data=data))
    assert decoded.pack_address == 3
    assert {k: decoded.signals[k] for k in values} == pytest.approx(values)
    assert bytes(encode(decoded.name, decoded.signals, pack_address=3).data) == data


@pytest.mark.parametrize("frame, signal, byte, bit", FLAG_BITS, ids=lambda v: v if isinstance(v, str) else None)
def test_flag_bit_positions(frame, signal, byte, bit):
    info = next(f for f in PACK_FRAMES if f.name == frame)  # the first address is enough here
    values = {name: 0 for name in sample(info, 0)} | {signal: 1}
    data = bytes(encode(frame, {k: v for k, v in values.items() if k != "ProtocolMarker"},
                        pack_address=info.pack_address).data)
    expected = bytearray(info.dlc)
    expected[byte] = 1 << bit
    assert data[:4] == bytes(expected[:4])  # every flag sits in bytes 0-3; the rest hold counts and 'PN'


@pytest.mark.parametrize("info", FRAMES, ids=frame_id)
@pytest.mark.parametrize("end", [0, 1], ids=["min", "max"])
def test_round_trip_every_frame(info, end):
    values = sample(info, end)
    msg = encode(info.frame_id, values)
    assert (msg.arbitration_id, msg.is_extended_id, msg.dlc) == (info.frame_id, info.is_extended_id, info.dlc)
    name, signals, address = decode(msg)
    assert (name, address) == (info.name, info.pack_address)
    choices = {s.name: s.choices for s in dbc_message(info).signals if s.choices}
    expected = {k: choices[k][v] if k in choices else v for k, v in values.items()}
    expected[can_frames.NAME_SIGNAL] = values.get(can_frames.NAME_SIGNAL, "").ljust(8)
    assert signals == pytest.approx({k: expected[k] for k in signals})
    assert bytes(encode(name, signals, pack_address=address).data) == bytes(msg.data)


def test_detail_frames_are_identical_for_both_addresses():
    def layout(info):
        return [(s.name, s.start, s.length, s.is_signed, s.scale, s.offset, s.minimum, s.maximum, s.unit, s.choices)
                for s in dbc_message(info).signals]
    details = [f for f in FRAMES if f.pack_address is not None]
    for master in (f for f in details if f.pack_address == 2):
        slave = next(f for f in details if f.name == master.name and f.pack_address == 3)
        assert slave.frame_id == master.frame_id + 1
        assert master.frame_id & 0x1FFF00FF == 0x18A00002
        assert layout(master) == layout(slave)
        assert dbc_message(master).name == master.name + "_Master"


def test_manufacturer_name():
    assert bytes(encode("ManufacturerName", {}).data) == b"PYLON   "
    assert bytes(encode(0x35E, {"ManufacturerName": "ACME"}).data) == b"ACME    "
    msg = can.Message(arbitration_id=0x35E, is_extended_id=False, data=b"PYLON   ")
    assert decode(msg).signals == {"ManufacturerName": "PYLON   "}
    assert can_frames.raw_to_name(can_frames.name_to_raw("PYLON")) == "PYLON   "
    for bad in ("TOO LONG!", "PYLÖN"):
        with pytest.raises(ValueError, match="8 ASCII"):
            can_frames.name_to_raw(bad)
    with pytest.raises(ProtocolError, match="0x35E"):
        decode(can.Message(arbitration_id=0x35E, is_extended_id=False, data=b"PYL\x00N   "))


def test_defaults_and_heartbeat():
    assert bytes(encode("PcsHeartbeat", {}).data) == bytes(8)
    assert decode(can.Message(arbitration_id=0x305, is_extended_id=False, data=bytes(8))) == ("PcsHeartbeat", {}, None)
    flags = {name: 0 for name in sample(info_of("ProtectionsAlarms"), 0)} | {"ModuleCount": 1}
    del flags["ProtocolMarker"]
    assert bytes(encode("ProtectionsAlarms", flags).data)[5:] == b"PN"


@pytest.mark.parametrize("arbitration_id, extended, data, where", [
    (0x123, False, bytes(8), "0x123 (standard), DLC 8"),
    (0x351, True, bytes(8), "0x351 (extended), DLC 8"),
    (0x18A00104, True, bytes(8), "0x18A00104 (extended), DLC 8"),  # pack address 4 does not exist
    (0x355, False, bytes(5), "0x355 (standard), DLC 5"),
    (0x18A00102, True, bytes(7), "0x18A00102 (extended), DLC 7"),
])
def test_decode_refuses_frames_outside_the_protocol(arbitration_id, extended, data, where):
    with pytest.raises(ProtocolError, match=re.escape(f"CAN ID {where}")):
        decode(can.Message(arbitration_id=arbitration_id, is_extended_id=extended, data=data))


def test_decode_refuses_remote_frames():
    with pytest.raises(ProtocolError, match="not a data frame"):
        decode(can.Message(arbitration_id=0x351, is_extended_id=False, is_remote_frame=True, dlc=8))


@pytest.mark.parametrize("frame, changes", [
    ("StateOfCharge", {"SOC": 101}),
    ("ChargeLimits", {"ChargeVoltageLimit": -0.1}),
    ("PackMeasurements", {"Voltage": 327.68}),
    ("ProtectionsAlarms", {"ProtocolMarker": 0x4E51}),
])
def test_encode_out_of_range_raises_cantools_encode_error(frame, changes):
    with pytest.raises(cantools.database.EncodeError, match=f'"{next(iter(changes))}"'):
        encode(frame, sample(info_of(frame), 0) | changes)


def test_encode_refuses_bad_requests():
    with pytest.raises(cantools.database.EncodeError, match="SOH"):
        encode("StateOfCharge", {"SOC": 50})
    with pytest.raises(cantools.database.EncodeError):
        encode("DetailProtection", {"NoSuchLevel": 1}, pack_address=2)
    with pytest.raises(cantools.database.EncodeError, match="Boss"):
        encode("DetailStatus", sample(info_of("DetailStatus", 2), 0) | {"ParallelRole": "Boss"}, pack_address=2)
    with pytest.raises(ValueError, match="pack_address"):
        encode("DetailStatus", {})
    with pytest.raises(ValueError, match="pack_address"):
        encode("StateOfCharge", {"SOC": 50, "SOH": 90}, pack_address=2)
    with pytest.raises(ValueError, match="0x18A00104"):
        encode(0x18A00104, {})
