"""The emulated RS485 line (PACK_SPEC.md 7) through pyserial, as the rig and console clients open it.

Every read has a timeout (pyserial ``timeout``) and every wait a deadline, so a broken bus fails a
test instead of hanging it.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import serial

from emulator.pack.bms import Bms
from emulator.transports.rs485_line import BYTE_TIME_S, Rs485Bus
from emulator.pack.rs485_responder import PackResponder
from emulator.firmware.profile import load_firmware_profile
from emulator.pack.physics_params import load_physics
from rig.protocol.rs485 import MASTER_ADR, SLAVE_ADR, Cid2, Frame, FrameReader, Rtn, encode_frame, request
from rig.protocol.rs485_commands import AnalogValues, ProtocolVersion, parse_reply

PROFILE = load_firmware_profile()
GROUPS = load_physics().pack.groups  # the series groups each BMS senses
POLL_SLAVE = encode_frame(request(Cid2.ANALOG_VALUES, SLAVE_ADR))


def make_bms(address: int) -> Bms:
    bms = Bms(PROFILE, np.random.default_rng(address), groups=GROUPS, address=address)
    bms.state, bms.relays = "Standby", (True, True, False)
    r = bms.report
    r.groups_v, r.temps_c = np.full(16, 3.300 + address / 1000), np.full(5, 25.0)
    r.pack_v, r.current_a, r.soc_pct = float(r.groups_v.sum()), 0.0, 50.0
    return bms


@pytest.fixture
def bus():
    """A started line with the master (ADR 2) and slave (ADR 3) responders and a record of the line."""
    line = Rs485Bus()
    line.responders = [PackResponder(make_bms(MASTER_ADR)), PackResponder(make_bms(SLAVE_ADR))]
    line.seen = bytearray()  # the emulator's tap on the packs' side of the line
    line.on_line = line.seen.extend
    line.start()
    yield line
    line.stop()


@pytest.fixture
def connect(bus):
    """``connect()`` opens one more pyserial client and waits until the bus has it."""
    opened = []

    def open_client(timeout: float = 2.0) -> serial.SerialBase:
        client = serial.serial_for_url(bus.url, timeout=timeout)
        opened.append(client)
        assert bus.wait_for_clients(len(opened)), "the bus did not register the client"
        return client

    yield open_client
    for client in opened:
        client.close()


def read_frame(client) -> Frame:
    """The next complete frame a client receives (within its timeout)."""
    raw = client.read_until(b"\r")
    assert raw.endswith(b"\r"), f"no frame within the timeout, got {raw!r}"
    return FrameReader().feed(raw[raw.rindex(b"~"):])[0]


def frames_of(raw: bytes) -> list[Frame]:
    return [item for item in FrameReader().feed(raw) if isinstance(item, Frame)]


def test_client_poll_of_the_slave_gets_the_slaves_reply(bus, connect):
    client = connect()
    client.write(POLL_SLAVE)
    frame = read_frame(client)
    assert frame.adr == SLAVE_ADR and frame.cid2_or_rtn == Rtn.OK
    values = parse_reply(Cid2.ANALOG_VALUES, frame)
    assert isinstance(values, AnalogValues) and values.pack == SLAVE_ADR and values.cell_mv == (3303,) * 16
    with bus.lock:  # the client's thread holds the line until it has offered the frame to everyone
        assert bytes(bus.seen) == POLL_SLAVE + encode_frame(frame), "only the slave answered"
        assert bus.bytes_sent == len(encode_frame(frame))


def test_protocol_version_to_adr_0_is_answered_once(bus, connect):
    client = connect()
    client.write(encode_frame(request(Cid2.PROTOCOL_VERSION, 0)))
    frame = read_frame(client)
    assert frame.adr == MASTER_ADR and parse_reply(Cid2.PROTOCOL_VERSION, frame) == ProtocolVersion(0x20)
    client.timeout = 0.1
    assert client.read(1) == b"", "a second pack answered ADR 0"


def test_transmit_reaches_every_client_identically_and_in_order(bus, connect):
    first, second = connect(), connect()
    sent = bytearray()
    for n in range(20):  # the master polls the slave; the slave's replies go on the line too
        replies = bus.transmit(POLL_SLAVE, sender=MASTER_ADR)
        assert [r.adr for r in replies] == [SLAVE_ADR]
        sent += POLL_SLAVE + encode_frame(replies[0])
    assert bus.transmit(b"noise without a frame") == []
    sent += b"noise without a frame"
    for client in (first, second):
        assert client.read(len(sent)) == bytes(sent)
    assert bus.bytes_sent == len(sent) and bus.seen == sent


def test_a_pack_does_not_answer_its_own_transmission(bus, connect):
    client = connect()
    assert bus.transmit(POLL_SLAVE, sender=SLAVE_ADR) == []
    assert client.read(len(POLL_SLAVE)) == POLL_SLAVE


def test_clients_hear_each_other_but_not_themselves(bus, connect):
    rig, console = connect(), connect()
    console.write(POLL_SLAVE)
    reply = read_frame(console)
    heard = rig.read(len(POLL_SLAVE) + len(encode_frame(reply)))
    assert frames_of(heard) == [request(Cid2.ANALOG_VALUES, SLAVE_ADR), reply], "the rig sniffs both"


def test_garbage_then_a_valid_request_is_still_answered(bus, connect):
    client = connect()
    noise = bytes(b for b in random.Random(7).randbytes(5000) if b != ord("~"))  # no frame can start
    client.write(noise + b"~zz\r~2\r" + POLL_SLAVE)
    frame = read_frame(client)
    assert frame.adr == SLAVE_ADR and frame.cid2_or_rtn == Rtn.OK
    with bus.lock:
        assert bus.seen.startswith(noise), "the tap records the garbage too"


def test_a_malformed_request_to_a_pack_gets_its_rtn(bus, connect):
    client = connect()
    client.write(POLL_SLAVE[:-5] + b"0000\r")
    frame = read_frame(client)
    assert (frame.adr, frame.cid2_or_rtn) == (SLAVE_ADR, Rtn.CHKSUM)


def test_cut_link_carries_nothing_between_packs_and_clients(bus, connect):
    client = connect()
    bus.cut(True)
    assert bus.is_cut and bus.transmit(POLL_SLAVE, sender=MASTER_ADR) == []
    client.write(POLL_SLAVE)
    client.timeout = 0.2
    assert client.read(1) == b"", "nothing may cross a cut link"
    with bus.lock:
        assert bus.seen == b"" and bus.bytes_sent == 0, "the packs heard nothing either"
    bus.cut(False)
    client.timeout = 2.0
    client.write(POLL_SLAVE)
    assert read_frame(client).adr == SLAVE_ADR


def test_disconnect_mid_frame_does_not_disturb_the_others(bus, connect):
    quitter, stayer = connect(), connect()
    quitter.write(POLL_SLAVE[:7])
    assert stayer.read(7) == POLL_SLAVE[:7]
    quitter.close()
    stayer.write(POLL_SLAVE)  # its own reader never saw the quitter's half frame
    assert read_frame(stayer).adr == SLAVE_ADR
    assert bus.transmit(POLL_SLAVE, sender=MASTER_ADR)[0].adr == SLAVE_ADR


def test_an_off_pack_is_silent_on_the_line(bus, connect):
    client = connect()
    bus.responders[1].bms.state = "Off"
    assert bus.transmit(POLL_SLAVE, sender=MASTER_ADR) == []
    assert client.read(len(POLL_SLAVE)) == POLL_SLAVE


def test_start_stop_and_url():
    line = Rs485Bus()
    line.stop()  # before start: nothing to do
    with pytest.raises(RuntimeError):
        line.port
    fresh = Rs485Bus().start()
    assert fresh.url == f"socket://127.0.0.1:{fresh.port}"
    client = serial.serial_for_url(fresh.url, timeout=2)
    assert fresh.wait_for_clients(1)
    fresh.stop()
    fresh.stop()
    assert fresh.client_count == 0
    with pytest.raises(serial.SerialException, match="disconnected"):
        client.read(1)  # the bus closed the line
    client.close()
    with pytest.raises(RuntimeError):
        fresh.start()
    assert 86e-6 < BYTE_TIME_S < 88e-6  # 115200 8N1
