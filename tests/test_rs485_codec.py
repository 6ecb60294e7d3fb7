"""RS485 codec (PACK_SPEC.md 7): known answers, round trips, one test per fault, the reader, a fuzz run."""
from __future__ import annotations

import random

import pytest

from rig.errors import FrameError
from rig.protocol.rs485 import (
    ADDRESSED, MAX_FRAME_CHARS, Cid2, Frame, FrameReader, Request, Rtn, checksum, decode_frame, encode_frame,
    lchksum, parse_request, reply, request)
from rig.protocol.rs485_commands import (
    AlarmInfo, AlarmState, AnalogValues, ChargeManagement, ChargeStatus, GroupAnalogValues, ManufacturerInfo,
    ProtocolVersion, SerialNumber, Status1, Status2, Status3, SystemParameters, parse_reply)

# PACK_SPEC.md 7 known answers.
REQUEST_0X42 = b"~20024642E00202FD33\r"
EMPTY_REPLY = b"~200246000000FDB2\r"
REPLY_0X92 = b"~20024600B01402DAC0B54003E8FC18C0F921\r"
# Pylontech RS232/RS485 document, example section (as quoted in Interster/PylonTechBattery README.md):
# 0x42 to ADR 1 and a 15-cell, <= 65 Ah reply.
PYLONTECH_REQUEST = b"~20014642E00201FD35\r"
PYLONTECH_REPLY = (b"~20014600C06E11010F0D450D440D450D440D450D440D3E0D450D4A0D4A0D4B0D4A0D4A0D4A0D4A"
                   b"050BC30BC30BC30BCD0BCD0000C725BF6802C3500002E553\r")
# 0x51 reply of a real US2000C at ADR 2 (capture published with Martin Steppuhn's pylontech.py, 2022).
US2000C_0X51 = b"~20024600C04055533230303043000000010750796C6F6E2D2D2D2D2D2D2D2D2D2D2D2D2D2D2DEFBD\r"


# 0x42 with command value 0xFF to a US2000 group of three (examples/pdu/us2000_3modules_1 of
# Frankkkkk/python-pylontech, whose get_values() parses it): INFOFLAG, module count, modules.
US2000_GROUP_0X42 = (
    b"~20024600914211030F0CE70CE80CE60CE70CE80CE80CE80CE60CE50CE60CE80CE70CEA0CE50CE6050B910B870B870B870B87"
    b"FFE6C18982DC02C350001F0F0CE20CE60CE60CE10CE50CE70CE60CE30CE20CE50CE30CE90CE70CE90CE9050B910B870B870B87"
    b"0B87FFE7C17082DC02C350001F0F0CE20CE50CE50CE20CE30CE30CE40CE50CE60CE60CE30CE40CE40CE60CE6050B910B7D0B7D"
    b"0B7D0B7DFFE5C16082DC02C350001FB476\r")


def framed(body: bytes) -> bytes:
    """``~body CHKSUM \\r`` with a correct CHKSUM, to build frames that are wrong somewhere else."""
    return b"~" + body + b"%04X\r" % checksum(body)


# --- known answers ------------------------------------------------------------------------------

def test_request_0x42_known_answer():
    frame = request(Cid2.ANALOG_VALUES, 2)
    assert encode_frame(frame) == REQUEST_0X42
    assert decode_frame(REQUEST_0X42) == Frame(0x20, 2, 0x46, 0x42, b"\x02")
    assert parse_request(decode_frame(REQUEST_0X42)) == Request(Cid2.ANALOG_VALUES, 2, 2)


def test_empty_reply_known_answer():
    assert encode_frame(reply(2, Rtn.OK)) == EMPTY_REPLY
    assert decode_frame(EMPTY_REPLY) == Frame(0x20, 2, 0x46, 0x00, b"")


def test_0x92_reply_decodes_to_the_spec_values():
    """56.000 V, 46.400 V, +100.0 A, -100.0 A, charge and discharge enabled."""
    assert parse_reply(Cid2.CHARGE_MANAGEMENT, decode_frame(REPLY_0X92)) == ChargeManagement(
        pack=2, charge_voltage_limit_mv=56000, discharge_voltage_limit_mv=46400,
        charge_current_limit_a=100.0, discharge_current_limit_a=-100.0,
        status=ChargeStatus.CHARGE_ENABLE | ChargeStatus.DISCHARGE_ENABLE)


def test_group_analog_values_of_a_real_us2000_group():
    frame = decode_frame(US2000_GROUP_0X42)
    group = parse_reply(Cid2.ANALOG_VALUES, frame, command=0xFF)
    assert group.infoflag == 0x11 and [m.pack for m in group.modules] == [1, 2, 3]
    first = group.modules[0]
    assert first.cell_mv[:3] == (3303, 3304, 3302) and len(first.cell_mv) == 15
    assert (first.current_a, first.module_mv, first.remaining_mah, first.total_mah, first.cycles) == (
        -2.6, 49545, 33500, 50000, 31)
    assert first.temps_c == (23.0, 22.0, 22.0, 22.0, 22.0)
    assert GroupAnalogValues(group.modules, 0x11).encode() == frame.info


def test_0x92_spec_values_encode_to_the_spec_bytes():
    values = ChargeManagement(2, 56000, 46400, 100.0, -100.0,
                              ChargeStatus.CHARGE_ENABLE | ChargeStatus.DISCHARGE_ENABLE)
    assert encode_frame(reply(2, Rtn.OK, values.encode())) == REPLY_0X92


def test_pylontech_document_example_0x42():
    assert encode_frame(request(Cid2.ANALOG_VALUES, 1)) == PYLONTECH_REQUEST
    values = parse_reply(Cid2.ANALOG_VALUES, decode_frame(PYLONTECH_REPLY))
    assert values == AnalogValues(
        pack=1, cell_mv=(3397, 3396, 3397, 3396, 3397, 3396, 3390, 3397,
                         3402, 3402, 3403, 3402, 3402, 3402, 3402),
        temps_c=(28.0, 28.0, 28.0, 29.0, 29.0), current_a=0.0, module_mv=50981,
        remaining_mah=49000, total_mah=50000, cycles=2, infoflag=0x11)
    assert encode_frame(reply(1, Rtn.OK, values.encode())) == PYLONTECH_REPLY


def test_us2000c_manufacturer_info():
    """A real pack's 0x51: NUL-padded name, version bytes 1 7, manufacturer padded with '-'."""
    info = parse_reply(Cid2.MANUFACTURER_INFO, decode_frame(US2000C_0X51))
    assert info == ManufacturerInfo("US2000C", (1, 7), "Pylon" + "-" * 15)
    assert encode_frame(reply(2, Rtn.OK, info.encode())) == US2000C_0X51


@pytest.mark.parametrize("lenid, nibble", [(0, 0x0), (2, 0xE), (4, 0xC), (0x14, 0xB), (0x6E, 0xC), (0x7A, 0xF)])
def test_lchksum_of_lengths_seen_on_the_wire(lenid, nibble):
    assert lchksum(lenid) == nibble


def test_lower_case_hex_is_accepted():
    lower = framed(REPLY_0X92[1:-5].lower())  # the CHKSUM sums the characters as sent
    assert decode_frame(lower) == decode_frame(REPLY_0X92)
    assert decode_frame(REQUEST_0X42.replace(b"FD33", b"fd33")) == decode_frame(REQUEST_0X42)


def test_rtn_codes():
    assert {r.name: int(r) for r in Rtn} == {
        "OK": 0x00, "VER": 0x01, "CHKSUM": 0x02, "LCHKSUM": 0x03, "CID2": 0x04, "FORMAT": 0x05,
        "DATA": 0x06, "ADR": 0x90}


# --- round trips ----------------------------------------------------------------------------------

CELLS = tuple(3300 + i for i in range(16))
PAYLOADS = [
    AnalogValues(3, CELLS, (25.3, 24.0, -5.2, 31.7, 0.0), -12.5, 52_840, 40_000, 50_000, 17, infoflag=0x10),
    AnalogValues(2, CELLS, (25.0,) * 5, 100.0, 53_120, 97_500, 130_000, 4),
    AlarmInfo(2, [AlarmState.NORMAL] * 15 + [AlarmState.ABOVE_UPPER],
              [AlarmState.BELOW_LOWER] + [AlarmState.NORMAL] * 4,
              AlarmState.NORMAL, AlarmState.OTHER, AlarmState.NORMAL,
              Status1.CHARGE_OVER_TEMPERATURE | Status1.MODULE_OVER_VOLTAGE,
              Status2.CHARGE_MOSFET | Status2.DISCHARGE_MOSFET, Status3.EFFECTIVE_CHARGE_CURRENT, 0x01, 0x80),
    SystemParameters(3650, 3000, 2800, 55.0, 0.0, 100.0, 58_400, 48_000, 44_800, 60.0, -20.0, -100.0),
    ManufacturerInfo("PACKRIG-LF", (1, 2), "Example Energy GmbH"),
    ChargeManagement(3, 56_000, 46_400, 50.0, -80.5,
                     ChargeStatus.CHARGE_IMMEDIATELY | ChargeStatus.FULL_CHARGE_REQUEST),
    SerialNumber(2, "PR65A2401230042"),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_reply_round_trip(payload):
    """encode -> frame -> bytes -> frame -> decode gives the same dataclass."""
    wire = encode_frame(reply(2, Rtn.OK, payload.encode()))
    assert parse_reply(payload.CID2, decode_frame(wire)) == payload


def test_protocol_version_round_trip():
    """0x4F: empty INFO, the version is the reply's VER."""
    wire = encode_frame(reply(2, Rtn.OK, ver=0x21))
    assert parse_reply(Cid2.PROTOCOL_VERSION, decode_frame(wire, version=None)) == ProtocolVersion(0x21)


def test_over_65_ah_uses_ffff_placeholders_and_u24_capacities():
    info = PAYLOADS[1].encode()
    # remaining FFFF, item count 4, total FFFF, cycles 4, then U24 remaining and total
    assert info[-13:] == bytes.fromhex("FFFF 04 FFFF 0004 017CDC 01FBD0")


def test_alarm_info_failed_cells():
    assert PAYLOADS[2].failed_cells == (1, 16)


@pytest.mark.parametrize("cid2", list(Cid2))
@pytest.mark.parametrize("lenid_bytes", [None, 0, 1, 2])
def test_request_round_trip(cid2, lenid_bytes):
    """LENID 2 and LENID 4 requests are accepted; commands addressing a pack refuse LENID 0."""
    frame = decode_frame(encode_frame(request(cid2, 3, lenid_bytes=lenid_bytes)))
    if lenid_bytes == 0 and cid2 in ADDRESSED:
        with pytest.raises(FrameError, match="needs a command value") as caught:
            parse_request(frame)
        assert caught.value.rtn == Rtn.DATA
    else:
        command = None if len(frame.info) == 0 else 3
        assert parse_request(frame) == Request(cid2, 3, command)


def test_lenid_4_request_is_command_value_then_zero():
    assert encode_frame(request(Cid2.ANALOG_VALUES, 2, lenid_bytes=2)).startswith(b"~20024642C0040200")


@pytest.mark.parametrize("cid2", [Cid2.PROTOCOL_VERSION, Cid2.MANUFACTURER_INFO])
def test_adr_0_is_accepted_for_0x4f_and_0x51(cid2):
    assert parse_request(decode_frame(encode_frame(request(cid2, 0)))) == Request(cid2, 0, None)


def test_0x4f_request_with_any_ver_is_accepted():
    """Consoles send 0x4F with VER 0x00 (FHEM); a pack decodes with version=None."""
    frame = decode_frame(encode_frame(request(Cid2.PROTOCOL_VERSION, 2, ver=0x00)), version=None)
    assert parse_request(frame) == Request(Cid2.PROTOCOL_VERSION, 2, None)


# --- one test per fault -----------------------------------------------------------------------------

@pytest.mark.parametrize("wire, rtn, words", [
    (b"20024642E00202FD33\r", Rtn.FORMAT, "missing SOI"),
    (b"~20024642E00202FD33", Rtn.FORMAT, "missing EOI"),
    (b"~2002464\r", Rtn.FORMAT, "too short"),
    (b"~20024642E0020GFD33\r", Rtn.FORMAT, "non-hex character b'G' at position 14"),
    (b"~20024642E00202FD3\r", Rtn.FORMAT, "odd number of hex characters"),
    (b"~20024642E00202FD34\r", Rtn.CHKSUM, "expected FD33, got FD34"),
    (framed(b"20024642F00202"), Rtn.LCHKSUM, "LCHKSUM mismatch in LENGTH F002: expected E for LENID 2, got F"),
    (framed(b"20024642C00402"), Rtn.FORMAT, "LENID says 4 INFO characters, the frame has 2"),
    (framed(b"21024642E00202"), Rtn.VER, "VER 0x21 is not the expected 0x20"),
], ids=["SOI", "EOI", "short", "non-hex", "odd", "CHKSUM", "LCHKSUM", "LENID", "VER"])
def test_malformed_frame(wire, rtn, words):
    with pytest.raises(FrameError) as caught:
        decode_frame(wire)
    assert caught.value.rtn == rtn
    assert words in str(caught.value)


def test_version_check_is_a_parameter():
    wire = framed(b"21024642E00202")
    assert decode_frame(wire, version=None).ver == 0x21
    assert decode_frame(wire, version=0x21).ver == 0x21


@pytest.mark.parametrize("frame, rtn, words", [
    (Frame(0x20, 2, 0x47, 0x42, b"\x02"), Rtn.CID2, "CID1 0x47"),
    (Frame(0x20, 2, 0x46, 0x99, b"\x02"), Rtn.CID2, "unknown CID2 0x99"),
    (Frame(0x21, 2, 0x46, 0x42, b"\x02"), Rtn.VER, "VER 0x21"),
    (Frame(0x20, 0, 0x46, 0x42, b"\x00"), Rtn.ADR, "ADR 0x00 is not accepted for CID2 0x42"),
    (Frame(0x20, 0xFF, 0x46, 0x4F, b""), Rtn.ADR, "0xFF is reserved"),
    (Frame(0x20, 2, 0x46, 0x42, b"\x02\x00\x00"), Rtn.DATA, "request INFO has 3 bytes"),
], ids=["CID1", "CID2", "VER", "ADR0", "ADR255", "INFO"])
def test_bad_request(frame, rtn, words):
    with pytest.raises(FrameError) as caught:
        parse_request(frame)
    assert caught.value.rtn == rtn
    assert words in str(caught.value)


@pytest.mark.parametrize("cls, info, words", [
    (AnalogValues, bytes.fromhex("0002 10 0CE4"), "ends after 5 bytes, inside cell 2 voltage"),
    (AnalogValues, AnalogValues(2, CELLS, (25.0,), 0, 53_000, 1, 2, 3).encode() + b"\x00",
     "1 unexpected bytes"),
    (AnalogValues, bytes.fromhex("0002 00 00 0000 0000 0001 03 0002 0003"), "user-defined item count 3"),
    (AnalogValues, bytes.fromhex("0002 00 00 0000 0000 0001 04 0002 0000 000001 000002"), "needs 0xFFFF"),
    (AlarmInfo, bytes.fromhex("0002 01 05 00 00 00 00 00 00 00 00 00"), "cell 1 state 0x05"),
    (SerialNumber, b"\x02" + "Seriennummer-äb".encode("latin-1").ljust(16, b"\0"), "not ASCII"),
    (ManufacturerInfo, b"x" * 31, "ends after 31 bytes, inside manufacturer name"),
], ids=["short", "trailing", "item-count", "placeholder", "alarm-state", "ascii", "text-short"])
def test_bad_reply_info(cls, info, words):
    with pytest.raises(FrameError) as caught:
        cls.decode(info)
    assert caught.value.rtn == Rtn.DATA
    assert words in str(caught.value)


def test_error_reply_raises_with_the_packs_rtn():
    with pytest.raises(FrameError, match=r"ADR 3 answered RTN 0x90 \(ADR\) to CID2 0x42") as caught:
        parse_reply(Cid2.ANALOG_VALUES, reply(3, Rtn.ADR))
    assert caught.value.rtn == Rtn.ADR


def test_values_that_do_not_fit_raise_value_error_naming_the_field():
    with pytest.raises(ValueError, match=r"cell_mv\[1\] = 70000 does not fit U16"):
        AnalogValues(2, (3300, 70_000), (), 0, 0, 0, 0, 0).encode()
    with pytest.raises(ValueError, match="charge_current_limit_a"):
        ChargeManagement(2, 56_000, 46_400, 4000.0, 0).encode()
    with pytest.raises(ValueError, match="serial"):
        SerialNumber(2, "X" * 17).encode()
    with pytest.raises(ValueError, match="adr"):
        Frame(0x20, 256, 0x46, 0x42)


# --- the stream reader ------------------------------------------------------------------------------

def kinds(items):
    return [item.rtn if isinstance(item, FrameError) else item for item in items]


def test_reader_reports_garbage_and_continues():
    garbled = REPLY_0X92.replace(b"DAC0", b"DAC1")        # CHKSUM no longer matches
    stream = b"\x00\xffnoise" + REQUEST_0X42 + garbled + EMPTY_REPLY + b"~2002464" + REPLY_0X92
    expected = [Rtn.FORMAT, decode_frame(REQUEST_0X42), Rtn.CHKSUM, decode_frame(EMPTY_REPLY),
                Rtn.FORMAT, decode_frame(REPLY_0X92)]
    assert kinds(FrameReader().feed(stream)) == expected
    reader = FrameReader()
    assert kinds([item for i in range(len(stream)) for item in reader.feed(stream[i:i + 1])]) == expected
    messages = [str(item) for item in FrameReader().feed(stream) if isinstance(item, FrameError)]
    assert "skipped 7 bytes before SOI" in messages[0]
    assert "CHKSUM" in messages[1]
    assert "cut short by a new SOI" in messages[2]


def test_reader_waits_for_the_end_of_a_frame():
    reader = FrameReader()
    assert reader.feed(REPLY_0X92[:10]) == []
    assert reader.feed(REPLY_0X92[10:]) == [decode_frame(REPLY_0X92)]


def test_reader_drops_an_over_long_frame_and_keeps_its_buffer_bounded():
    reader = FrameReader()
    out = reader.feed(b"~")
    for _ in range(100):
        out += reader.feed(b"0" * 100)
        assert len(reader._buffer) <= MAX_FRAME_CHARS  # white box: the bound is the point of the test
    out += reader.feed(b"00\r" + REQUEST_0X42)
    assert kinds(out) == [Rtn.FORMAT, decode_frame(REQUEST_0X42)]
    assert "over-long frame" in str(out[0])


# --- fuzz ---------------------------------------------------------------------------------------------

VALID = [REQUEST_0X42, EMPTY_REPLY, REPLY_0X92, PYLONTECH_REQUEST, PYLONTECH_REPLY, US2000C_0X51] + [
    encode_frame(reply(2, Rtn.OK, p.encode())) for p in PAYLOADS]
ALPHABET = b"~\r0123456789ABCDEFabcdef"


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        op = rng.choice(("flip", "delete", "insert", "case", "truncate", "repeat"))
        if op == "flip" and at < len(data):
            data[at] = rng.choice((rng.randrange(256), rng.choice(ALPHABET)))
        elif op == "delete" and at < len(data):
            del data[at]
        elif op == "insert":
            data.insert(at, rng.choice((rng.randrange(256), rng.choice(ALPHABET))))
        elif op == "case":
            data[at:at + 8] = bytes(data[at:at + 8]).swapcase()
        elif op == "truncate":
            del data[at:]
        elif op == "repeat":
            data[at:at] = data[at:at + rng.randint(1, 12)]
    return bytes(data)


def random_input(rng: random.Random) -> bytes:
    """A quarter each: a mutated frame; a mutated frame with its CHKSUM made right again, so the fault
    reaches LENGTH and VER; a well-framed frame with mutated INFO, for the INFO decoders; random bytes."""
    choice, frame = rng.randrange(4), rng.choice(VALID)
    if choice == 0:
        return mutate(rng, frame)
    if choice == 1:
        return framed(mutate(rng, frame[1:-5]))
    if choice == 2:
        good = decode_frame(frame)
        return encode_frame(Frame(good.ver, good.adr, good.cid1, good.cid2_or_rtn, mutate(rng, good.info)))
    body = bytes(rng.choice(ALPHABET) if rng.random() < 0.8 else rng.randrange(256)
                 for _ in range(rng.randrange(40)))
    return rng.choice((b"~", b"")) + body + rng.choice((b"\r", b""))


def test_fuzz_only_frame_errors():
    """2000 random inputs and mutations of valid frames: decode or FrameError, nothing else."""
    rng = random.Random(20240607)
    inputs = [random_input(rng) for _ in range(2000)]
    decoded = 0
    for wire in inputs:
        try:
            frame = decode_frame(wire, version=rng.choice((0x20, None)))
        except FrameError:
            continue
        decoded += 1
        assert decode_frame(encode_frame(frame), version=None) == frame
        for parse, args in [(parse_request, (frame,))] + [(parse_reply, (cid2, frame)) for cid2 in Cid2]:
            try:
                parse(*args)
            except FrameError:
                pass
    assert decoded > 500  # enough inputs must get through framing to reach the command layer
    reader, stream, at = FrameReader(), b"".join(inputs), 0
    while at < len(stream):
        step = rng.randint(1, 200)
        assert all(isinstance(item, (Frame, FrameError)) for item in reader.feed(stream[at:at + step]))
        at += step


@pytest.mark.parametrize("cls", [AnalogValues, AlarmInfo, SystemParameters, ManufacturerInfo, ChargeManagement,
                                 SerialNumber])
def test_fuzz_payload_decoders(cls):
    rng = random.Random(cls.__name__)
    valid = [p.encode() for p in PAYLOADS if isinstance(p, cls)]
    for _ in range(300):
        info = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        if valid and rng.random() < 0.5:
            info = mutate(rng, valid[0])
        try:
            cls.decode(info)
        except FrameError as error:
            assert error.rtn == Rtn.DATA
