"""INFO field by field (PACK_SPEC.md 7): the wire types every RS485 command's payload is made of.

All numbers are big-endian; the units and offsets are:

==============  =====================================================================
voltages        U16, mV
currents        S16, 0.1 A, positive = charge (a discharge current limit is negative)
temperatures    U16, 0.1 K with offset 2731: wire value = round(degC * 10) + 2731
text            ASCII, fixed width; encode pads with NUL, decode strips trailing NULs only
==============  =====================================================================

:class:`InfoWriter` raises ``ValueError`` naming the field for a value outside its wire type;
:class:`InfoReader` raises only :class:`~rig.errors.FrameError`, RTN 0x06 (data), for INFO that
does not fit. The payloads are in :mod:`rig.protocol.rs485_commands`.
"""
from __future__ import annotations

from rig.errors import FrameError
from rig.protocol.rs485 import Rtn

#: 0 K on the wire: temperatures are 0.1 K, so degC * 10 + 2731.
KELVIN_OFFSET = 2731


class InfoWriter:
    """Builds INFO field by field; a value that does not fit its wire type raises ValueError."""

    def __init__(self) -> None:
        self.out = bytearray()

    def num(self, name: str, value: int, size: int = 1, signed: bool = False) -> InfoWriter:
        low, high = (-(1 << 8 * size - 1), (1 << 8 * size - 1) - 1) if signed else (0, (1 << 8 * size) - 1)
        if not isinstance(value, int) or not low <= value <= high:
            kind = f"{'S' if signed else 'U'}{8 * size}"
            raise ValueError(f"{name} = {value!r} does not fit {kind} ({low}..{high})")
        self.out += value.to_bytes(size, "big", signed=signed)
        return self

    def tenths(self, name: str, amps: float) -> InfoWriter:
        return self.num(name, round(amps * 10), 2, signed=True)

    def kelvin(self, name: str, celsius: float) -> InfoWriter:
        return self.num(name, round(celsius * 10) + KELVIN_OFFSET, 2)

    def text(self, name: str, value: str, size: int) -> InfoWriter:
        if not value.isascii() or len(value) > size:
            raise ValueError(f"{name} = {value!r} is not ASCII of at most {size} characters")
        self.out += value.encode("ascii").ljust(size, b"\0")
        return self


class InfoReader:
    """Reads INFO field by field; running out of INFO or a bad value raises FrameError RTN 0x06."""

    def __init__(self, info: bytes, what: str):
        self.info, self.pos, self.what = bytes(info), 0, what

    def fail(self, problem: str) -> FrameError:
        return FrameError(Rtn.DATA, f"{self.what} INFO: {problem}")

    def take(self, name: str, size: int) -> bytes:
        if self.pos + size > len(self.info):
            raise self.fail(f"ends after {len(self.info)} bytes, inside {name} "
                            f"({size} bytes from byte {self.pos})")
        self.pos += size
        return self.info[self.pos - size:self.pos]

    def num(self, name: str, size: int = 1, signed: bool = False) -> int:
        return int.from_bytes(self.take(name, size), "big", signed=signed)

    def tenths(self, name: str) -> float:
        return self.num(name, 2, signed=True) / 10

    def kelvin(self, name: str) -> float:
        return (self.num(name, 2) - KELVIN_OFFSET) / 10

    def text(self, name: str, size: int) -> str:
        raw = self.take(name, size)
        if not raw.isascii():
            raise self.fail(f"{name} is not ASCII: {raw!r}")
        return raw.rstrip(b"\0").decode("ascii")

    def end(self) -> None:
        if self.pos != len(self.info):
            raise self.fail(f"{len(self.info) - self.pos} unexpected bytes after the last field "
                            f"(INFO has {len(self.info)}, the layout uses {self.pos})")
