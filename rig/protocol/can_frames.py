"""The pack's CAN frames (PACK_SPEC.md 6), read from one DBC file: ``pack.dbc`` beside this module.

The DBC is the single source of truth: the rig decodes with it and the emulator encodes with it.
This module only loads it once and wraps cantools, which does all bit packing, scaling and range
checks. Two frame families share the bus (500 kbit/s, little-endian):

* the Pylon LV frames (standard 11-bit IDs 0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E) the pack sends
  for the whole system, and the PCS heartbeat 0x305;
* the pack's own detail frames, 29-bit IDs ``0x18A0nnaa`` with ``aa`` the pack address (2 master,
  3 slave). The DBC defines each ``nn`` twice, ``<Name>_Master`` (aa = 0x02) and ``<Name>_Slave``
  (aa = 0x03), so any DBC tool decodes both packs; here both are one frame name, e.g.
  ``DetailStatus``, plus a ``pack_address``.

Physical units are the DBC's: V, A, degC, %, Ah (group voltages are sent in mV and read in V).
Signals with a value table decode to the table's name as a plain ``str`` (``State == "Run"``) and
the 0x35E name decodes to ``str``; everything else is a number. A frame that breaks the protocol
raises :class:`~rig.errors.ProtocolError`.
"""
from __future__ import annotations

from importlib.resources import files
from typing import NamedTuple

import can
import cantools
from cantools.database.can import Message as DbcMessage
from cantools.database.namedsignalvalue import NamedSignalValue

from rig.errors import ProtocolError

#: The cantools database of ``pack.dbc``, loaded once in strict mode (overlapping signals refused).
DATABASE = cantools.database.load_string(
    files(__package__).joinpath("pack.dbc").read_text(encoding="ascii"), database_format="dbc", strict=True)

#: Detail frames are ``DETAIL_ID_BASE | nn << 8 | pack address`` (PACK_SPEC 6).
DETAIL_ID_BASE = 0x18A00000
#: The signal of 0x35E that carries 8 ASCII characters; encode and decode convert it to ``str``.
NAME_SIGNAL = "ManufacturerName"


class FrameInfo(NamedTuple):
    """One frame of the DBC as the rig sees it."""

    name: str                 #: frame name, without the ``_Master``/``_Slave`` suffix of detail frames
    frame_id: int             #: CAN arbitration ID
    is_extended_id: bool      #: True for the 29-bit detail frames
    dlc: int                  #: data length, bytes
    period_s: float           #: send period from the DBC attribute GenMsgCycleTime, s
    sender: str               #: DBC node that sends it: "BMS" (the pack) or "PCS"
    pack_address: int | None  #: 2 or 3 for detail frames, None for the system-level Pylon frames


class Decoded(NamedTuple):
    """A decoded frame: its name, its signals in physical units and the sending pack's address."""

    name: str                              #: frame name as in :data:`FRAMES`
    signals: dict[str, int | float | str]  #: signal name -> physical value (DBC units) or value name
    pack_address: int | None               #: 2 or 3 for detail frames, None for the Pylon frames


def _is_detail(message: DbcMessage) -> bool:
    return message.is_extended_frame and (message.frame_id & ~0xFFFF) == DETAIL_ID_BASE


def _info(message: DbcMessage) -> FrameInfo:
    detail = _is_detail(message)
    return FrameInfo(
        name=message.name.rpartition("_")[0] if detail else message.name,
        frame_id=message.frame_id, is_extended_id=message.is_extended_frame, dlc=message.length,
        period_s=message.cycle_time / 1000, sender=message.senders[0],
        pack_address=message.frame_id & 0xFF if detail else None)


_INFO = {message.name: _info(message) for message in DATABASE.messages}
_BY_ID = {(m.frame_id, m.is_extended_frame): m for m in DATABASE.messages}
_BY_NAME = {(_INFO[m.name].name, _INFO[m.name].pack_address): m for m in DATABASE.messages}

#: Every frame of the DBC, in file order.
FRAMES: tuple[FrameInfo, ...] = tuple(_INFO.values())
#: The frames a pack sends (sender BMS), the emulator's transmit schedule; detail frames once per address.
PACK_FRAMES: tuple[FrameInfo, ...] = tuple(f for f in FRAMES if f.sender == "BMS")
#: Pack addresses that have detail frames in the DBC (2 master, 3 slave).
PACK_ADDRESSES: tuple[int, ...] = tuple(sorted({f.pack_address for f in FRAMES} - {None}))


def name_to_raw(text: str) -> int:
    """Convert a manufacturer name (up to 8 ASCII characters, space padded) to the 0x35E signal value.

    :raises ValueError: if the name is longer than 8 characters or not ASCII.
    """
    if len(text) > 8 or not text.isascii():
        raise ValueError(f"manufacturer name must be at most 8 ASCII characters, got {text!r}")
    return int.from_bytes(text.ljust(8).encode("ascii"), "little")


def raw_to_name(raw: int) -> str:
    """Convert the 0x35E signal value (8 bytes, first character in byte 0) to the name, padding kept.

    :raises ProtocolError: if a byte is not printable ASCII.
    """
    data = raw.to_bytes(8, "little")
    if not all(0x20 <= byte < 0x7F for byte in data):
        raise ProtocolError(f"CAN ID 0x35E: manufacturer name is not printable ASCII: {data.hex(' ')}")
    return data.decode("ascii")


def _message(name_or_id: str | int, pack_address: int | None) -> DbcMessage:
    if isinstance(name_or_id, int):
        if pack_address is not None:
            raise ValueError(f"give pack_address with a frame name, not with an ID (0x{name_or_id:X})")
        message = _BY_ID.get((name_or_id, name_or_id > 0x7FF))
    else:
        message = _BY_NAME.get((name_or_id, pack_address))
    if message is None:
        what = f"0x{name_or_id:X}" if isinstance(name_or_id, int) else repr(name_or_id)
        raise ValueError(f"no frame {what} with pack_address={pack_address} in pack.dbc (a detail frame "
                         f"name needs pack_address in {PACK_ADDRESSES}, the Pylon frames None)")
    return message


def dbc_message(name: str, pack_address: int | None = None) -> DbcMessage:
    """The cantools message of frame ``name`` (``pack_address`` as for :func:`encode`).

    :raises ValueError: unknown frame, missing or extra ``pack_address``.
    """
    return _message(name, pack_address)


def encode(name_or_id: str | int, signals: dict, *, pack_address: int | None = None) -> can.Message:
    """Encode a frame from physical signal values (units as in the DBC) into a python-can message.

    Signals with a start value in the DBC (GenSigStartValue: ``ProtocolMarker`` = "PN",
    ``ManufacturerName`` = "PYLON   ") may be left out; every other signal is required.
    ``ManufacturerName`` takes a ``str``; value-table signals take the name or the number.

    :param name_or_id: frame name (``"ChargeLimits"``, ``"DetailStatus"``) or arbitration ID.
    :param signals: signal name -> physical value.
    :param pack_address: 2 or 3, required with a detail frame name; None otherwise.
    :return: the frame, with the DBC's ID, ID width and DLC.
    :raises ValueError: unknown frame, missing or extra ``pack_address``, or a bad manufacturer name.
    :raises cantools.database.EncodeError: passed through from cantools for a missing or unknown
        signal or a value outside the signal's DBC minimum/maximum (raised here for an unknown
        value-table name); nothing is clipped.
    """
    message = _message(name_or_id, pack_address)
    data = {s.name: s.initial for s in message.signals if s.initial is not None} | dict(signals)
    if isinstance(data.get(NAME_SIGNAL), str):
        data[NAME_SIGNAL] = name_to_raw(data[NAME_SIGNAL])
    try:
        payload = message.encode(data, scaling=True, padding=False, strict=True)
    except KeyError as error:  # cantools 45 raises a bare KeyError for an unknown value-table name
        raise cantools.database.EncodeError(f'unknown value name {error} in message "{message.name}"') from error
    return can.Message(arbitration_id=message.frame_id, is_extended_id=message.is_extended_frame,
                       data=payload, dlc=message.length)


def decode(msg: can.Message) -> Decoded:
    """Decode a received frame into its name, physical signal values and pack address.

    :param msg: a classical CAN data frame.
    :return: ``Decoded(name, signals, pack_address)``; ``pack_address`` is 2 or 3 for detail frames
        and None for the Pylon frames.
    :raises ProtocolError: for an ID not in pack.dbc (or the wrong ID width), a DLC other than the
        DBC's, a remote or error frame, or a manufacturer name that is not ASCII.
    """
    width = "extended" if msg.is_extended_id else "standard"
    where = f"CAN ID 0x{msg.arbitration_id:X} ({width}), DLC {msg.dlc}"
    if msg.is_error_frame or msg.is_remote_frame:
        raise ProtocolError(f"{where}: not a data frame")
    message = _BY_ID.get((msg.arbitration_id, msg.is_extended_id))
    if message is None:
        raise ProtocolError(f"{where}: unknown frame, not in pack.dbc")
    if msg.dlc != message.length or len(msg.data) != message.length:
        raise ProtocolError(f"{where}, {len(msg.data)} data bytes: {message.name} has DLC {message.length}")
    try:
        signals = message.decode(bytes(msg.data), decode_choices=True, scaling=True)
    except cantools.database.DecodeError as error:
        raise ProtocolError(f"{where}: {error}") from error
    # Plain str, not cantools' NamedSignalValue: hashable and JSON-ready for the recorders.
    signals = {k: str(v) if isinstance(v, NamedSignalValue) else v for k, v in signals.items()}
    if NAME_SIGNAL in signals:
        signals[NAME_SIGNAL] = raw_to_name(signals[NAME_SIGNAL])
    info = _INFO[message.name]
    return Decoded(info.name, signals, info.pack_address)
