"""A console on the RS485 line (PACK_SPEC.md 7): the rig asks a pack what a Pylontech console asks.

The line is shared. The master polls the slave on it, and every party hears every frame, so the
console takes care to read only what answers it:

- it empties its receive buffer before it sends (nothing that came before answers it);
- it sends one request and reads frames until the addressed pack's reply or ``reply_within_s``;
- it skips what is not its answer: requests (the master's polls: their CID2 is a command, never
  an RTN), replies from another address, and a reply that answers a request it heard from
  someone else (a pack answers the request it has just heard; the console's own request is not
  echoed back to it, so a reply with no request heard before it is the console's).

Each request gives an :class:`Exchange`: the reply (or ``None``), its bytes as received, and
everything else heard meanwhile. Waiting is the transport's (pyserial's timeout, in wall time, as
a VISA query's), not the rig clock's: a pack answers within milliseconds of the line, and on the
emulated bench no virtual time passes while it does.

:func:`wire` also writes what a console may send and a pack must refuse: lower-case hex, a wrong
LCHKSUM or CHKSUM (:func:`corrupted`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from rig.errors import FrameError, RigError
from rig.protocol.rs485 import (
    EOI, PROTOCOL_VERSION, SOI, Cid2, Frame, FrameReader, Rtn, checksum, encode_frame, request)
from rig.protocol.rs485_commands import parse_reply

#: RTN values: a frame whose CID2 is one of these is a reply, any other CID2 a request.
REPLY_CODES = frozenset(int(r) for r in Rtn)


class NoReply(RigError):
    """The addressed pack did not answer within the reply time."""


def wire(frame: Frame, *, lower: bool = False) -> bytes:
    """The bytes of ``frame``; ``lower``: in lower-case hex, CHKSUM taken over those characters
    (as a console writing lower case computes it)."""
    raw = encode_frame(frame)
    if not lower:
        return raw
    body = raw[1:-5].lower()
    return SOI + body + f"{checksum(body):04x}".encode("ascii") + EOI


def corrupted(frame: Frame, fault: Rtn) -> bytes:
    """``frame`` with one fault a pack must answer with its RTN: :attr:`Rtn.CHKSUM` (CHKSUM off by
    one), :attr:`Rtn.LCHKSUM` (the LENGTH's check nibble off by one, CHKSUM right) or
    :attr:`Rtn.FORMAT` (the last character before CHKSUM not hex, CHKSUM right)."""
    raw = encode_frame(frame)
    body = raw[1:-5]
    if fault == Rtn.CHKSUM:
        return SOI + body + f"{(checksum(body) + 1) & 0xFFFF:04X}".encode("ascii") + EOI
    if fault == Rtn.LCHKSUM:
        nibble = (int(body[8:9], 16) + 1) & 0xF
        body = body[:8] + f"{nibble:X}".encode("ascii") + body[9:]
    elif fault == Rtn.FORMAT:
        body = body[:-1] + b"G"
    else:
        raise ValueError(f"corrupted(): fault {fault!r} is none of Rtn.CHKSUM, Rtn.LCHKSUM, Rtn.FORMAT")
    return SOI + body + f"{checksum(body):04X}".encode("ascii") + EOI


def is_reply(frame: Frame) -> bool:
    """True for a pack's reply (CID2 is an RTN), False for a request (CID2 is a command)."""
    return frame.cid2_or_rtn in REPLY_CODES


@dataclass
class Exchange:
    """One request and what came back."""

    sent: bytes                   #: the request's bytes
    reply: Frame | None = None    #: the addressed pack's reply, None if it did not answer in time
    raw: bytes = b""              #: the reply's bytes as received, ``~`` to ``\\r``
    #: everything else heard meanwhile: polls, their replies, other packs, malformed frames
    heard: list[Frame | FrameError] = field(default_factory=list)

    @property
    def rtn(self) -> int | None:
        """The reply's RTN, None without a reply."""
        return None if self.reply is None else self.reply.cid2_or_rtn


class _RawReader(FrameReader):
    """A :class:`~rig.protocol.rs485.FrameReader` of any VER that keeps each decoded frame's bytes."""

    def __init__(self) -> None:
        super().__init__(version=None)
        self.raws: list[bytes] = []

    def _decode(self, candidate: bytes) -> Frame | FrameError:
        item = super()._decode(candidate)
        if isinstance(item, Frame):
            self.raws.append(candidate)
        return item


class Rs485Console:
    """A console client on the RS485 line.

    :param port: the pyserial port on the line (``bench.rs485``); its timeout is set while a
        request waits and put back afterwards.
    :param reply_within_s: how long a pack may take to answer (the pack spec's ``rs485.reply_within_s``).
    """

    def __init__(self, port, *, reply_within_s: float):
        self.port = port
        self.reply_within_s = reply_within_s

    def ask(self, cid2: int, adr: int, info: bytes = b"", *, lenid_bytes: int | None = None,
            ver: int = PROTOCOL_VERSION, lower: bool = False) -> Exchange:
        """Send a ``cid2`` request to ``adr`` (:func:`~rig.protocol.rs485.request`) and wait for the
        reply; for ADR 0 any pack's reply is the answer (it carries the pack's own ADR)."""
        frame = request(cid2, adr, info, lenid_bytes, ver=ver)
        return self.exchange(wire(frame, lower=lower), None if adr == 0 else adr)

    def read(self, cid2: int, adr: int, command: int | None = None):
        """The decoded INFO of ``adr``'s reply to a ``cid2`` request (:func:`parse_reply`).

        :param command: the command value; default: ``adr`` for the commands that carry one.
        :raises NoReply: no reply within ``reply_within_s``.
        :raises FrameError: the pack answered an error RTN, or INFO that does not fit the command.
        """
        info = b"" if command is None else bytes([command])
        done = self.ask(cid2, adr, info)
        if done.reply is None:
            raise NoReply(f"ADR {adr} did not answer CID2 0x{cid2:02X} within {self.reply_within_s:g} s "
                          f"(sent {done.sent!r})")
        return parse_reply(cid2, done.reply, command)

    def exchange(self, data: bytes, adr: int | None) -> Exchange:
        """Send ``data`` (one or more frames, any bytes) and read until a reply from ``adr``
        (None: from any pack) or ``reply_within_s``."""
        done = Exchange(bytes(data))
        for item, raw, foreign in self._talk(data):
            if not foreign and isinstance(item, Frame) and is_reply(item) and adr in (None, item.adr):
                done.reply, done.raw = item, raw
                break
            done.heard.append(item)
        return done

    def replies_before_witness(self, probe: bytes, witness_adr: int) -> list[Frame] | None:
        """Send ``probe`` and then a request to a pack that must answer (the witness, at
        ``witness_adr``); the replies heard before the witness's answer, which are the answers
        to ``probe`` (a pack answers requests in order). ``None`` if the witness did not answer:
        then nothing can be said of the probe.

        The witness asks 0x4F (its reply has an empty INFO), or 0x51 if the probe is itself a
        0x4F, so that its answer cannot be taken for an answer to the probe.
        """
        # CID2 is the 8th and 9th character: ~ VER ADR CID1 CID2
        witness_cid2 = Cid2.MANUFACTURER_INFO if probe[7:9].upper() == b"4F" else Cid2.PROTOCOL_VERSION
        witness = encode_frame(request(witness_cid2, witness_adr))
        replies = []
        for item, _, foreign in self._talk(probe + witness):
            if foreign or not (isinstance(item, Frame) and is_reply(item)):
                continue
            if item.adr == witness_adr and item.cid2_or_rtn == Rtn.OK and _decodes(witness_cid2, item):
                return replies
            replies.append(item)
        return None

    # --- the line -----------------------------------------------------------------------------------
    def _talk(self, data: bytes):
        """Empty the receive buffer, send ``data``, then yield ``(frame or error, raw bytes,
        foreign)`` as they arrive, until ``reply_within_s`` passes or the caller stops. ``foreign``:
        a request from another party (a poll), or the reply to one (module docstring)."""
        port, reader = self.port, _RawReader()
        pending: dict[int, int] = {}        # ADR -> requests heard from others, not yet answered
        timeout = port.timeout
        port.reset_input_buffer()
        port.write(data)
        port.flush()
        deadline = time.monotonic() + self.reply_within_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                port.timeout = left
                chunk = port.read_until(EOI)
                for item in reader.feed(chunk):
                    if isinstance(item, FrameError):
                        yield item, b"", False
                        continue
                    raw, foreign = reader.raws.pop(0), not is_reply(item)
                    if foreign:
                        pending[item.adr] = pending.get(item.adr, 0) + 1
                    elif pending.get(item.adr, 0):
                        pending[item.adr] -= 1
                        foreign = True
                    yield item, raw, foreign
        finally:
            port.timeout = timeout


def _decodes(cid2: int, frame: Frame) -> bool:
    """True when ``frame``'s INFO is a reply to ``cid2``."""
    try:
        parse_reply(cid2, frame)
    except FrameError:
        return False
    return True
