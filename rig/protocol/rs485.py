"""RS485 frames between parallel packs (PACK_SPEC.md 7, Pylontech RS485 low-voltage protocol v3.3).

A frame is one line of ASCII::

    ~  VER  ADR  CID1  CID2/RTN  LENGTH  INFO  CHKSUM  \\r
    SOI 2    2    2     2         4       LENID 4       EOI     (characters)

Every byte between SOI (``~``) and EOI (``\\r``) travels as two hex characters, so CID2 0x42 is the
two characters ``4`` ``2``. Encoding writes upper case; decoding also accepts lower case, which some
console clients send.

* ``VER`` is the protocol version, 0x20 for v3.3 (RS485 replies to 0x4F carry the pack's version here).
* ``ADR`` is the pack address: 2 the master, 3 the slave; 0 is allowed for 0x4F and 0x51.
* ``CID1`` is 0x46 (battery data). ``CID2`` is the command in a request and the return code
  (:class:`Rtn`) in a reply.
* ``LENGTH`` is 16 bits: the low 12 are LENID, the number of INFO *characters*; the high nibble is
  LCHKSUM = (~(sum of LENID's three nibbles) + 1) mod 16 (:func:`lchksum`).
* ``CHKSUM`` is the sum of the ASCII codes of every character between SOI and CHKSUM, mod 65536,
  inverted, plus 1, as four hex characters (:func:`checksum`).

:func:`encode_frame` and :func:`decode_frame` convert between bytes on the wire and a :class:`Frame`
whose INFO is already binary. :class:`FrameReader` cuts a byte stream into frames. :func:`request`
and :func:`reply` build the frames of a command (CID1 0x46) and :func:`parse_request` checks one the
way a pack must. A malformed frame raises :class:`~rig.errors.FrameError` carrying the RTN a pack
would answer with; nothing here raises another exception for bad bytes. The INFO of each command is
in :mod:`rig.protocol.rs485_commands`. No I/O here: the transport is someone else's.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from rig.errors import FrameError

#: VER of Pylontech RS485 v3.3 (PACK_SPEC.md 7).
PROTOCOL_VERSION = 0x20
SOI = b"~"
EOI = b"\r"
#: LENID is 12 bits: at most 4095 INFO characters.
MAX_LENID = 0xFFF
#: The longest frame a LENGTH can describe: SOI, 12 header chars, 4095 INFO chars, CHKSUM, EOI.
MAX_FRAME_CHARS = 1 + 12 + MAX_LENID + 4 + 1
#: VER ADR CID1 CID2 LENGTH CHKSUM: the characters a frame with empty INFO has between SOI and EOI.
_MIN_BODY_CHARS = 16
_HEX = frozenset(b"0123456789ABCDEFabcdef")
#: CID1 of every command: battery data.
CID1 = 0x46
#: Pack addresses on the RS485 link (PACK_SPEC.md 7).
MASTER_ADR, SLAVE_ADR = 2, 3


class Rtn(IntEnum):
    """Return codes a pack puts in CID2 of a reply (PACK_SPEC.md 7; Pylontech v3.3 table of RTN)."""

    OK = 0x00
    VER = 0x01       #: VER is not the pack's protocol version
    CHKSUM = 0x02    #: CHKSUM does not match the frame
    LCHKSUM = 0x03   #: LCHKSUM does not match LENID
    CID2 = 0x04      #: unknown command (also used here for a CID1 other than 0x46)
    FORMAT = 0x05    #: the frame's shape is wrong: SOI, EOI, hex characters, LENID vs INFO
    DATA = 0x06      #: INFO does not fit the command (too short, too long, a bad value)
    ADR = 0x90       #: an address the command does not accept


class Cid2(IntEnum):
    """The commands a pack answers (PACK_SPEC.md 7)."""

    ANALOG_VALUES = 0x42
    ALARM_INFO = 0x44
    SYSTEM_PARAMETERS = 0x47
    PROTOCOL_VERSION = 0x4F
    MANUFACTURER_INFO = 0x51
    CHARGE_MANAGEMENT = 0x92
    SERIAL_NUMBER = 0x93


#: Commands whose request INFO is the command value (LENID 2, or LENID 4 with a trailing 0x00).
ADDRESSED = frozenset({Cid2.ANALOG_VALUES, Cid2.ALARM_INFO, Cid2.CHARGE_MANAGEMENT, Cid2.SERIAL_NUMBER})
#: Commands a console may send to ADR 0 before it knows any address (PACK_SPEC.md 7).
ADR0_ALLOWED = frozenset({Cid2.PROTOCOL_VERSION, Cid2.MANUFACTURER_INFO})


@dataclass(frozen=True)
class Frame:
    """One RS485 frame with its INFO decoded from hex to bytes.

    :raises ValueError: a header field outside 0..255, or INFO longer than LENID can describe.
    :raises TypeError: ``info`` is not bytes-like.
    """

    ver: int          #: protocol version, 0x20 for v3.3
    adr: int          #: pack address (2 master, 3 slave, 0 for 0x4F/0x51 requests)
    cid1: int         #: 0x46, battery data
    cid2_or_rtn: int  #: command in a request, :class:`Rtn` in a reply
    info: bytes = b""  #: INFO as bytes; on the wire it is twice as many hex characters

    def __post_init__(self) -> None:
        for name in ("ver", "adr", "cid1", "cid2_or_rtn"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFF:
                raise ValueError(f"Frame.{name} = {value!r} is not a byte (0..255)")
        if not isinstance(self.info, (bytes, bytearray, memoryview)):
            raise TypeError(f"Frame.info must be bytes, not {type(self.info).__name__}")
        object.__setattr__(self, "info", bytes(self.info))  # accept bytearray, store immutable bytes
        if 2 * len(self.info) > MAX_LENID:
            raise ValueError(f"Frame.info has {len(self.info)} bytes; LENID allows at most {MAX_LENID // 2}")


def checksum(body: bytes) -> int:
    """CHKSUM of the characters between SOI and CHKSUM: their ASCII sum mod 65536, inverted, +1."""
    return (~sum(body) + 1) & 0xFFFF


def lchksum(lenid: int) -> int:
    """LCHKSUM nibble of a 12-bit LENID: its three nibbles summed mod 16, inverted, +1 (mod 16)."""
    return (~((lenid >> 8) + (lenid >> 4 & 0xF) + (lenid & 0xF)) + 1) & 0xF


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame`` on the wire, ``~`` to ``\\r``, hex in upper case."""
    lenid = 2 * len(frame.info)
    body = (f"{frame.ver:02X}{frame.adr:02X}{frame.cid1:02X}{frame.cid2_or_rtn:02X}"
            f"{lchksum(lenid) << 12 | lenid:04X}{frame.info.hex().upper()}").encode("ascii")
    return SOI + body + f"{checksum(body):04X}".encode("ascii") + EOI


def decode_frame(data: bytes, version: int | None = PROTOCOL_VERSION) -> Frame:
    """Parse one complete frame, ``~`` to ``\\r``.

    Checks run from the outside in: shape (RTN 0x05), CHKSUM (0x02), LCHKSUM (0x03), LENID against
    the INFO actually present (0x05: LENGTH passed its own check, so the frame's shape is what is
    wrong), then VER (0x01).

    :param data: the frame's bytes; hex may be upper or lower case.
    :param version: the VER to insist on, or ``None`` to accept any (0x4F requests often carry 0x00).
    :raises FrameError: the frame is malformed; ``rtn`` names the fault, the message says what it is.
    :raises TypeError: ``data`` is not bytes-like (a programming mistake, not a bad frame).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_frame needs bytes, not {type(data).__name__}")
    raw = bytes(data)
    if not raw.startswith(SOI):
        raise FrameError(Rtn.FORMAT, f"missing SOI '~' at the start (got {raw[:1]!r})")
    if len(raw) < 2 or not raw.endswith(EOI):
        raise FrameError(Rtn.FORMAT, f"missing EOI '\\r' at the end (got {raw[-1:]!r})")
    body = raw[1:-1]
    if len(body) < _MIN_BODY_CHARS:
        raise FrameError(Rtn.FORMAT, f"frame too short: {len(body)} characters between SOI and EOI, "
                                     f"need at least {_MIN_BODY_CHARS} (VER ADR CID1 CID2 LENGTH CHKSUM)")
    for position, char in enumerate(body, start=1):
        if char not in _HEX:
            raise FrameError(Rtn.FORMAT, f"non-hex character {bytes([char])!r} at position {position}")
    if len(body) % 2:
        raise FrameError(Rtn.FORMAT, f"odd number of hex characters ({len(body)}) between SOI and EOI")
    text = body.decode("ascii")
    expected, got = checksum(body[:-4]), int(text[-4:], 16)
    if expected != got:
        raise FrameError(Rtn.CHKSUM, f"CHKSUM mismatch: expected {expected:04X}, got {got:04X}")
    length = int(text[8:12], 16)
    lenid = length & MAX_LENID
    if length >> 12 != lchksum(lenid):
        raise FrameError(Rtn.LCHKSUM, f"LCHKSUM mismatch in LENGTH {text[8:12]}: expected "
                                      f"{lchksum(lenid):X} for LENID {lenid}, got {length >> 12:X}")
    info = text[12:-4]
    if lenid != len(info):
        raise FrameError(Rtn.FORMAT, f"LENID says {lenid} INFO characters, the frame has {len(info)}")
    ver, adr, cid1, cid2 = (int(text[i:i + 2], 16) for i in range(0, 8, 2))
    if version is not None and ver != version:
        raise FrameError(Rtn.VER, f"VER 0x{ver:02X} is not the expected 0x{version:02X}")
    return Frame(ver, adr, cid1, cid2, bytes.fromhex(info))


class FrameReader:
    """Cuts a byte stream into frames: :meth:`feed` it bytes, get frames and errors back in order.

    A frame runs from ``~`` to the next ``\\r``. Bytes before a ``~`` are dropped and reported once
    per run, when the next ``~`` arrives (or when the run reaches ``max_frame_chars``), so feeding
    byte by byte gives the same report as one chunk. A frame cut short by a new ``~`` is reported and
    reading resumes at that ``~``. A frame with no ``\\r`` within ``max_frame_chars`` is reported and
    dropped up to the next ``~``, so the buffer never holds more than one frame. Every problem is a
    :class:`~rig.errors.FrameError` in the returned list; ``feed`` itself never raises on any bytes.

    :param version: passed to :func:`decode_frame`; ``None`` accepts any VER.
    :param max_frame_chars: the longest frame kept, ``~`` and ``\\r`` included.
    """

    def __init__(self, version: int | None = PROTOCOL_VERSION, max_frame_chars: int = MAX_FRAME_CHARS):
        self.version = version
        self.max_frame_chars = max_frame_chars
        self._buffer = bytearray()
        self._skipped, self._skipped_head = 0, b""  # the current run of bytes outside any frame
        self._dropping = False  # inside an over-long frame that was already reported

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Add received bytes; return the frames completed by them and the errors found, in order."""
        self._buffer += data
        out: list[Frame | FrameError] = []
        while self._buffer:
            start = self._buffer.find(SOI)
            if start != 0:
                self._skip(len(self._buffer) if start < 0 else start, out)
                continue  # the buffer is now empty or starts with '~'
            self._report_skipped(out)
            self._dropping = False
            end = self._buffer.find(EOI)
            next_start = self._buffer.find(SOI, 1, None if end < 0 else end)
            if next_start > 0:
                # PACK_SPEC.md 7 frames contain no '~': a second one means the first frame lost its end.
                cut = bytes(self._buffer[:next_start])
                del self._buffer[:next_start]
                out.append(FrameError(Rtn.FORMAT, f"frame cut short by a new SOI after {len(cut)} "
                                                  f"characters: {cut[:32]!r}"))
            elif end >= 0:
                candidate = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                out.append(self._decode(candidate))
            elif len(self._buffer) > self.max_frame_chars:
                out.append(FrameError(Rtn.FORMAT, f"over-long frame: no EOI within {self.max_frame_chars} "
                                                  f"characters; dropped up to the next SOI"))
                self._buffer.clear()
                self._dropping = True
            else:
                break  # an incomplete frame: wait for more bytes
        return out

    def _skip(self, count: int, out: list[Frame | FrameError]) -> None:
        if not self._dropping:  # the rest of an over-long frame was reported with it
            self._skipped_head = (self._skipped_head + bytes(self._buffer[:min(count, 32)]))[:32]
            self._skipped += count
        del self._buffer[:count]
        if self._skipped >= self.max_frame_chars:  # noise without any '~' is still reported
            self._report_skipped(out)

    def _report_skipped(self, out: list[Frame | FrameError]) -> None:
        if self._skipped:
            more = "..." if self._skipped > len(self._skipped_head) else ""
            out.append(FrameError(Rtn.FORMAT, f"skipped {self._skipped} bytes before SOI: "
                                              f"{self._skipped_head!r}{more}"))
            self._skipped, self._skipped_head = 0, b""

    def _decode(self, candidate: bytes) -> Frame | FrameError:
        if len(candidate) > self.max_frame_chars:
            return FrameError(Rtn.FORMAT, f"over-long frame: {len(candidate)} characters, "
                                          f"more than {self.max_frame_chars}; dropped")
        try:
            return decode_frame(candidate, self.version)
        except FrameError as error:
            return error


@dataclass(frozen=True)
class Request:
    """A request as a pack sees it."""

    cid2: Cid2
    adr: int                    #: the addressed pack (0 for 0x4F/0x51 from a console)
    #: the command value, INFO's first byte: a pack address, or 0xFF for the whole group (Pylontech
    #: v3.3 "ADR settings"); None when INFO is empty. Not compared with ``adr``: that is the pack's call.
    command: int | None = None


def request(cid2: int, adr: int, info: bytes = b"", lenid_bytes: int | None = None,
            *, ver: int = PROTOCOL_VERSION) -> Frame:
    """A request frame for ``cid2`` to the pack at ``adr``.

    Any ``adr`` is built, 0 included (consoles send 0x4F and 0x51 to ADR 0); what a pack accepts is
    :func:`parse_request`'s call, so a test can also send what a pack must refuse.

    :param info: explicit INFO; leave empty to send the usual INFO for the command.
    :param lenid_bytes: INFO size in bytes when ``info`` is empty (LENID is twice this): 0 (none),
        1 (the command value ``adr``) or 2 (``adr`` then 0x00, the LENID 4 form some consoles send).
        Default: 1 for the commands in :data:`ADDRESSED`, 0 for the others.
    :raises ValueError: ``lenid_bytes`` not 0, 1 or 2, or different from ``len(info)``.
    """
    if not info:
        size = (1 if cid2 in ADDRESSED else 0) if lenid_bytes is None else lenid_bytes
        if size not in (0, 1, 2):
            raise ValueError(f"lenid_bytes = {size!r}: requests carry 0, 1 or 2 INFO bytes (LENID 0, 2, 4)")
        info = bytes([adr, 0][:size])
    elif lenid_bytes is not None and lenid_bytes != len(info):
        raise ValueError(f"lenid_bytes = {lenid_bytes} but info has {len(info)} bytes")
    return Frame(ver, adr, CID1, cid2, info)


def parse_request(frame: Frame, version: int | None = PROTOCOL_VERSION) -> Request:
    """Check a received request against PACK_SPEC.md 7 and return what it asks.

    The VER check is here rather than in :func:`~rig.protocol.rs485.decode_frame` because consoles
    send 0x4F with any VER (FHEM sends 0x00): a pack decodes with ``version=None`` and calls this.

    :raises FrameError: with the RTN the pack answers: 0x04 unknown CID1/CID2, 0x01 VER, 0x90 ADR 0
        outside 0x4F/0x51 or the reserved ADR 0xFF, 0x06 INFO of the wrong size.
    """
    if frame.cid1 != CID1:
        raise FrameError(Rtn.CID2, f"CID1 0x{frame.cid1:02X} is not 0x{CID1:02X} (battery data)")
    if frame.cid2_or_rtn not in Cid2._value2member_map_:
        raise FrameError(Rtn.CID2, f"unknown CID2 0x{frame.cid2_or_rtn:02X}; the pack answers "
                                   + ", ".join(f"0x{c:02X}" for c in Cid2))
    cid2 = Cid2(frame.cid2_or_rtn)
    if version is not None and cid2 != Cid2.PROTOCOL_VERSION and frame.ver != version:
        raise FrameError(Rtn.VER, f"VER 0x{frame.ver:02X} is not the expected 0x{version:02X}")
    if (frame.adr == 0 and cid2 not in ADR0_ALLOWED) or frame.adr == 0xFF:
        raise FrameError(Rtn.ADR, f"ADR 0x{frame.adr:02X} is not accepted for CID2 0x{cid2:02X} "
                                  "(0 only for 0x4F and 0x51; 0xFF is reserved)")
    if len(frame.info) > 2:
        raise FrameError(Rtn.DATA, f"request INFO has {len(frame.info)} bytes; requests carry 0 to 2 "
                                   "(LENID 0, 2 or 4)")
    if cid2 in ADDRESSED and not frame.info:
        raise FrameError(Rtn.DATA, f"CID2 0x{cid2:02X} needs a command value in INFO (LENID 2 or 4), "
                                   "INFO is empty")
    return Request(cid2, frame.adr, frame.info[0] if frame.info else None)


def reply(adr: int, rtn: int, info: bytes = b"", *, ver: int = PROTOCOL_VERSION) -> Frame:
    """A reply frame from the pack at ``adr`` with return code ``rtn`` (:class:`Rtn`) and INFO."""
    return Frame(ver, adr, CID1, rtn, info)
