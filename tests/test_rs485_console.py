"""The rig's RS485 console client (rig/rs485_console.py) on a scripted line: what it takes for its
answer and what it skips (stale bytes, the master's polls and their answers, other addresses),
silence through a witness, the frames it writes."""
from __future__ import annotations

import pytest

from rig.errors import FrameError
from rig.protocol.rs485 import EOI, Cid2, Rtn, decode_frame, encode_frame, reply, request
from rig.protocol.rs485_commands import SerialNumber
from rig.rs485_console import NoReply, Rs485Console, corrupted, is_reply, wire


class ScriptedLine:
    """A pyserial-like port: ``stale`` bytes wait before anything is sent; each write gets the
    bytes ``answer(data)`` returns, as if the line carried them afterwards."""

    def __init__(self, answer, stale: bytes = b""):
        self.answer, self.buffer, self.timeout, self.sent = answer, bytearray(stale), 0.0, []

    def reset_input_buffer(self) -> None:
        self.buffer.clear()

    def write(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        self.buffer += self.answer(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def read_until(self, expected: bytes = EOI) -> bytes:
        end = self.buffer.find(expected)
        cut = len(self.buffer) if end < 0 else end + 1
        out = bytes(self.buffer[:cut])
        del self.buffer[:cut]
        return out


def serial_reply(adr: int, serial: str = "SN") -> bytes:
    return encode_frame(reply(adr, Rtn.OK, SerialNumber(adr, serial).encode()))


POLL = encode_frame(request(Cid2.SERIAL_NUMBER, 3))


def test_stale_bytes_are_dropped_and_the_reply_is_kept_as_received():
    line = ScriptedLine(lambda data: serial_reply(2, "FRESH"), stale=serial_reply(2, "STALE"))
    done = Rs485Console(line, reply_within_s=0.05).ask(Cid2.SERIAL_NUMBER, 2, b"\x02")
    assert done.rtn == Rtn.OK and done.raw == serial_reply(2, "FRESH") and done.heard == []
    assert line.sent == [encode_frame(request(Cid2.SERIAL_NUMBER, 2, b"\x02"))]


def test_a_poll_and_its_answer_are_not_taken_for_the_answer():
    """The master polls ADR 3 while the console asks ADR 3: the answer after the poll is the poll's."""
    line = ScriptedLine(lambda data: POLL + serial_reply(3, "POLLED") + serial_reply(3, "MINE"))
    console = Rs485Console(line, reply_within_s=0.05)
    assert console.read(Cid2.SERIAL_NUMBER, 3, 3).serial == "MINE"
    done = console.ask(Cid2.SERIAL_NUMBER, 3, b"\x03")
    assert [is_reply(f) for f in done.heard] == [False, True]


def test_other_addresses_and_malformed_frames_are_heard_not_answers():
    line = ScriptedLine(lambda data: serial_reply(3) + b"~20ZZ\r" + serial_reply(2, "MINE"))
    done = Rs485Console(line, reply_within_s=0.05).ask(Cid2.SERIAL_NUMBER, 2, b"\x02")
    assert done.reply.adr == 2 and len(done.heard) == 2 and isinstance(done.heard[1], FrameError)


def test_no_reply_is_none_and_read_says_so_and_the_timeout_is_put_back():
    line = ScriptedLine(lambda data: b"")
    line.timeout = 0.0
    console = Rs485Console(line, reply_within_s=0.02)
    assert console.ask(Cid2.PROTOCOL_VERSION, 2).reply is None and line.timeout == 0.0
    with pytest.raises(NoReply, match="ADR 2 did not answer CID2 0x4F"):
        console.read(Cid2.PROTOCOL_VERSION, 2)


def test_error_rtn_raises_on_read():
    line = ScriptedLine(lambda data: encode_frame(reply(2, Rtn.CID2)))
    with pytest.raises(FrameError) as error:
        Rs485Console(line, reply_within_s=0.05).read(Cid2.SERIAL_NUMBER, 2, 2)
    assert error.value.rtn == Rtn.CID2


def test_adr_0_takes_any_packs_reply():
    line = ScriptedLine(lambda data: encode_frame(reply(2, Rtn.OK)))
    assert Rs485Console(line, reply_within_s=0.05).ask(Cid2.PROTOCOL_VERSION, 0).reply.adr == 2


def test_replies_before_the_witness_answer_are_the_probes():
    witness_answer = encode_frame(reply(2, Rtn.OK))   # 0x4F: empty INFO
    silent = ScriptedLine(lambda data: witness_answer)
    console = Rs485Console(silent, reply_within_s=0.05)
    assert console.replies_before_witness(wire(request(Cid2.ANALOG_VALUES, 3)), 2) == []
    assert silent.sent[0].endswith(encode_frame(request(Cid2.PROTOCOL_VERSION, 2)))
    talkative = ScriptedLine(lambda data: encode_frame(reply(2, Rtn.ADR)) + witness_answer)
    replies = Rs485Console(talkative, reply_within_s=0.05).replies_before_witness(
        wire(request(Cid2.ANALOG_VALUES, 3)), 2)
    assert [(r.adr, r.cid2_or_rtn) for r in replies] == [(2, Rtn.ADR)]
    nobody = ScriptedLine(lambda data: b"")
    assert Rs485Console(nobody, reply_within_s=0.02).replies_before_witness(b"~\r", 2) is None


def test_a_0x4f_probe_gets_a_0x51_witness():
    line = ScriptedLine(lambda data: b"")
    Rs485Console(line, reply_within_s=0.01).replies_before_witness(wire(request(Cid2.PROTOCOL_VERSION, 3)), 2)
    assert line.sent[0].endswith(encode_frame(request(Cid2.MANUFACTURER_INFO, 2)))


@pytest.mark.parametrize("fault", [Rtn.CHKSUM, Rtn.LCHKSUM, Rtn.FORMAT])
def test_corrupted_frames_carry_exactly_their_fault(fault):
    with pytest.raises(FrameError) as error:
        decode_frame(corrupted(request(Cid2.ANALOG_VALUES, 2), fault))
    assert error.value.rtn == fault
    with pytest.raises(ValueError):
        corrupted(request(Cid2.ANALOG_VALUES, 2), Rtn.VER)


def test_lower_case_wire_decodes_to_the_same_frame():
    frame = request(Cid2.ANALOG_VALUES, 2, lenid_bytes=2)
    raw = wire(frame, lower=True)
    assert raw == raw.lower() and decode_frame(raw) == frame and wire(frame) == encode_frame(frame)
