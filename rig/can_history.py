"""What the PCS stand-in keeps of the pack's CAN frames, and how it finds them in pack.dbc.

A :class:`Reception` is one frame as received, decoded only when a query reads it; a
:class:`BadFrame` is one that broke the protocol, kept raw for the report. :func:`frame_key`
and :func:`frame_of` turn the names a test writes (``"ChargeLimits"``, ``"SOC"``, a pack
address) into the key a history is kept under, refusing a name pack.dbc does not have.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import can

from rig.protocol import can_frames

MASTER_ADDRESS = 2  #: the master's (or a single pack's) address: the default for detail frames

#: every frame name in pack.dbc, in its order
NAMES = tuple(dict.fromkeys(f.name for f in can_frames.FRAMES))
#: (ID, extended, DLC, data length) -> (frame name, pack address): a frame's identity without decoding it
BY_ID = {(f.frame_id, f.is_extended_id, f.dlc, f.dlc): (f.name, f.pack_address) for f in can_frames.FRAMES}
#: the detail frames: one per pack address
DETAIL = frozenset(f.name for f in can_frames.FRAMES if f.pack_address is not None)
#: frame name -> its signal names (both addresses of a detail frame carry the same signals)
SIGNALS: dict[str, frozenset[str]] = {f.name: frozenset(s.name for s in m.signals) for f in can_frames.FRAMES
                                      for m in can_frames.DATABASE.messages if m.frame_id == f.frame_id}


class Reception:
    """One frame as received, decoded on first use.

    A pack sends ~15 frames a second and most are never looked at; decoding each only when a
    query reads it keeps an emulated hour from spending seconds in cantools.
    """

    __slots__ = ("t", "_msg", "_signals")

    def __init__(self, t: float, msg: can.Message | None = None, signals: dict | None = None):
        self.t = t                 #: the frame's timestamp, s (virtual, or interface time)
        self._msg, self._signals = msg, signals

    @property
    def signals(self) -> dict[str, int | float | str]:
        """Signal name -> value in DBC units, or value-table name."""
        if self._signals is None:
            self._signals = can_frames.decode(self._msg).signals
        return self._signals

    def __iter__(self):  # unpacks like the (t, signals) pair it stands for
        return iter((self.t, self.signals))

    def __repr__(self) -> str:
        return f"Reception(t={self.t!r}, signals={self.signals!r})"


class BadFrame(NamedTuple):
    """A frame that broke the protocol, kept with the raw frame for the report."""

    t: float            #: the frame's timestamp, s
    problem: str        #: the ProtocolError text (ID, DLC, what is wrong)
    frame: can.Message  #: the frame as received


class Seen(NamedTuple):
    """What a wait read last; its repr is what a timeout message shows as the last value."""

    value: Any
    t: float | None
    hit: bool

    def __repr__(self) -> str:  # 10 digits: DBC scaling leaves float noise (52.800000000000004)
        shown = f"{self.value:.10g}" if isinstance(self.value, float) else repr(self.value)
        return "nothing received" if self.t is None else f"{shown} (frame at t={self.t:.3f} s)"


def frame_key(frame: str, pack_address: int | None) -> tuple[str, int | None]:
    """The (frame, pack address) a history is kept under: None for a system frame, the master's
    address by default for a detail frame. :raises ValueError: a name or address pack.dbc lacks."""
    if frame not in NAMES:
        raise ValueError(f"no frame {frame!r} in pack.dbc; frames: {', '.join(NAMES)}")
    if frame not in DETAIL:
        if pack_address is not None:
            raise ValueError(f"{frame} is a system frame (Pylon); it has no pack_address")
        return frame, None
    address = MASTER_ADDRESS if pack_address is None else pack_address
    if address not in can_frames.PACK_ADDRESSES:
        raise ValueError(f"pack_address must be one of {can_frames.PACK_ADDRESSES}, got {pack_address!r}")
    return frame, address


def frame_of(signal: str, frame: str | None, pack_address: int | None) -> str:
    """The frame carrying ``signal`` (the one named, checked, or found in pack.dbc; a signal in
    several frames is the pack's own with a pack address, the system's without).
    :raises ValueError: an unknown signal, or one that needs ``frame=``."""
    if frame is not None:
        if signal not in SIGNALS.get(frame, ()):
            raise ValueError(f"frame {frame!r} has no signal {signal!r} in pack.dbc")
        return frame
    frames = [name for name, signals in SIGNALS.items() if signal in signals]
    if not frames:
        raise ValueError(f"no signal {signal!r} in pack.dbc")
    if len(frames) > 1:
        # A pack address asks for that pack's own detail frame, none for the system's frame.
        frames = [name for name in frames if (name in DETAIL) == (pack_address is not None)]
    if len(frames) != 1:
        raise ValueError(f"signal {signal!r} is in several frames; name one with frame=")
    return frames[0]
