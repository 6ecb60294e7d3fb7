"""INFO of the RS485 commands a pack answers (PACK_SPEC.md 7), as typed dataclasses.

Every command has CID1 0x46 (battery data). A request carries the command in CID2 and, for the
commands that address one pack, a *command value* in INFO: that pack's address (2 master, 3 slave),
or 0xFF for the whole group. A reply carries an :class:`~rig.protocol.rs485.Rtn` in CID2 and its
data in INFO. All numbers are big-endian; the units and offsets are:

==============  =====================================================================
voltages        U16, mV
currents        S16, 0.1 A, positive = charge (a discharge current limit is negative)
temperatures    U16, 0.1 K with offset 2731: wire value = round(degC * 10) + 2731
capacities      U16 mAh, or U24 mAh after the cycle count for packs over 65 Ah
text            ASCII, fixed width; encode pads with NUL, decode strips trailing NULs only
==============  =====================================================================

Layouts follow Pylontech "RS485-protocol-pylon-low-voltage-V3.3-20180821" (the PDF is published in
Frankkkkk/python-pylontech), chapters "Get analog value, fixed point" (0x42), "Get alarm info" (0x44),
"Get system parameter, fixed point" (0x47), "Get protocol version" (0x4F), "Get manufacturer info"
(0x51), "Get charge/discharge management info" (0x92) and "Get module serial number" (0x93). Byte
offsets were cross-checked against two public clients: FHEM ``70_PylonLowVoltage.pm`` and
ardiehl/pylontech ``pylontechapi.c``. LENID 4 requests (command value, then 0x00) are what
Tomcat42/pylontech-python sends.

Each payload class has ``encode() -> bytes`` (INFO) and ``decode(info)``; :func:`parse_reply` checks
a reply frame and decodes its INFO. Decoding raises only :class:`~rig.errors.FrameError`, RTN 0x06
(data) for INFO that does not fit the command; encoding a value outside its wire type raises
``ValueError`` naming the field. Requests and reply frames are built and checked in
:mod:`rig.protocol.rs485` (:func:`~rig.protocol.rs485.request`, :func:`~rig.protocol.rs485.reply`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import ClassVar, Union

from rig.errors import FrameError
from rig.protocol.rs485 import CID1, Cid2, Frame, Rtn

#: 0 K on the wire: temperatures are 0.1 K, so degC * 10 + 2731.
KELVIN_OFFSET = 2731


class _Writer:
    """Builds INFO field by field; a value that does not fit its wire type raises ValueError."""

    def __init__(self) -> None:
        self.out = bytearray()

    def num(self, name: str, value: int, size: int = 1, signed: bool = False) -> _Writer:
        low, high = (-(1 << 8 * size - 1), (1 << 8 * size - 1) - 1) if signed else (0, (1 << 8 * size) - 1)
        if not isinstance(value, int) or not low <= value <= high:
            kind = f"{'S' if signed else 'U'}{8 * size}"
            raise ValueError(f"{name} = {value!r} does not fit {kind} ({low}..{high})")
        self.out += value.to_bytes(size, "big", signed=signed)
        return self

    def tenths(self, name: str, amps: float) -> _Writer:
        return self.num(name, round(amps * 10), 2, signed=True)

    def kelvin(self, name: str, celsius: float) -> _Writer:
        return self.num(name, round(celsius * 10) + KELVIN_OFFSET, 2)

    def text(self, name: str, value: str, size: int) -> _Writer:
        if not value.isascii() or len(value) > size:
            raise ValueError(f"{name} = {value!r} is not ASCII of at most {size} characters")
        self.out += value.encode("ascii").ljust(size, b"\0")
        return self


class _Reader:
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

    def state(self, name: str) -> AlarmState:
        value = self.num(name)
        if value not in AlarmState._value2member_map_:
            raise self.fail(f"{name} state 0x{value:02X} is none of 00, 01, 02, F0")
        return AlarmState(value)

    def text(self, name: str, size: int) -> str:
        raw = self.take(name, size)
        if not raw.isascii():
            raise self.fail(f"{name} is not ASCII: {raw!r}")
        return raw.rstrip(b"\0").decode("ascii")

    def end(self) -> None:
        if self.pos != len(self.info):
            raise self.fail(f"{len(self.info) - self.pos} unexpected bytes after the last field "
                            f"(INFO has {len(self.info)}, the layout uses {self.pos})")


@dataclass(frozen=True)
class AnalogValues:
    """Reply INFO of 0x42: INFOFLAG, pack, cell voltages, temperatures, current, voltage, capacity.

    Pylontech v3.3 "Get analog value": over 65 Ah the U16 remaining and total capacities carry
    0xFFFF, the user-defined item count is 4 and U24 mAh capacities follow the cycle count (2 and
    no U24 fields otherwise). :meth:`encode` picks the form from ``total_mah``.
    """

    CID2: ClassVar[Cid2] = Cid2.ANALOG_VALUES
    pack: int                     #: command value: the answering pack's address
    cell_mv: tuple[int, ...]      #: cell voltages, mV (16 on this pack)
    temps_c: tuple[float, ...]    #: temperatures, degC, 0.1 degC resolution (5 on this pack)
    current_a: float              #: pack current, A, 0.1 A resolution, positive = charge
    module_mv: int                #: pack voltage, mV
    remaining_mah: int            #: remaining capacity, mAh
    total_mah: int                #: full capacity, mAh
    cycles: int                   #: charge cycle count
    infoflag: int = 0             #: DATA FLAG byte (unread alarm / switch changes)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell_mv", tuple(self.cell_mv))
        object.__setattr__(self, "temps_c", tuple(self.temps_c))

    def encode(self) -> bytes:
        return bytes(self._block(_Writer().num("infoflag", self.infoflag).num("pack", self.pack)).out)

    def _block(self, w: _Writer) -> _Writer:
        """The module's values from its cell count on: all of INFO but INFOFLAG and the pack number."""
        w.num("cell count", len(self.cell_mv))
        for i, mv in enumerate(self.cell_mv):
            w.num(f"cell_mv[{i}]", mv, 2)
        w.num("temperature count", len(self.temps_c))
        for i, celsius in enumerate(self.temps_c):
            w.kelvin(f"temps_c[{i}]", celsius)
        w.tenths("current_a", self.current_a).num("module_mv", self.module_mv, 2)
        wide = self.total_mah > 65_000 or self.remaining_mah >= 0xFFFF  # v3.3: "> 65 Ah" uses U24
        w.num("remaining_mah", 0xFFFF if wide else self.remaining_mah, 2)
        w.num("user-defined items", 4 if wide else 2)
        w.num("total_mah", 0xFFFF if wide else self.total_mah, 2).num("cycles", self.cycles, 2)
        if wide:
            w.num("remaining_mah", self.remaining_mah, 3).num("total_mah", self.total_mah, 3)
        return w

    @classmethod
    def decode(cls, info: bytes) -> AnalogValues:
        r = _Reader(info, "0x42 analog values")
        infoflag, pack = r.num("INFOFLAG"), r.num("pack number")
        values = cls._read_block(r, pack, infoflag)
        r.end()
        return values

    @classmethod
    def _read_block(cls, r: _Reader, pack: int, infoflag: int) -> AnalogValues:
        cells = tuple(r.num(f"cell {i + 1} voltage", 2) for i in range(r.num("cell count")))
        temps = tuple(r.kelvin(f"temperature {i + 1}") for i in range(r.num("temperature count")))
        current, module_mv = r.tenths("current"), r.num("module voltage", 2)
        remaining, items = r.num("remaining capacity", 2), r.num("user-defined item count")
        total, cycles = r.num("total capacity", 2), r.num("cycle count", 2)
        if items == 4:
            if (remaining, total) != (0xFFFF, 0xFFFF):
                raise r.fail(f"user-defined item count 4 needs 0xFFFF in the U16 capacities, "
                             f"got {remaining:04X} and {total:04X}")
            remaining, total = r.num("remaining capacity (U24)", 3), r.num("total capacity (U24)", 3)
        elif items != 2:
            raise r.fail(f"user-defined item count {items}; v3.3 defines 2 (<= 65 Ah) and 4 (> 65 Ah)")
        return cls(pack, cells, temps, current, module_mv, remaining, total, cycles, infoflag)


@dataclass(frozen=True)
class GroupAnalogValues:
    """Reply INFO of 0x42 with command value 0xFF (the whole group): INFOFLAG, the module count,
    then each module's values from its cell count on, with no pack number.

    This is the layout of a Pylontech master answering for its group (captures of US2000/US3000
    systems published with Frankkkkk/python-pylontech, whose ``get_values()`` parses it). A
    decoded module's ``pack`` is its position in the group, 1 first.
    """

    CID2: ClassVar[Cid2] = Cid2.ANALOG_VALUES
    modules: tuple[AnalogValues, ...]   #: every module of the group, the answering pack first
    infoflag: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))

    def encode(self) -> bytes:
        w = _Writer().num("infoflag", self.infoflag).num("module count", len(self.modules))
        for module in self.modules:
            module._block(w)
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> GroupAnalogValues:
        r = _Reader(info, "0x42 analog values of the group")
        infoflag, count = r.num("INFOFLAG"), r.num("module count")
        modules = tuple(AnalogValues._read_block(r, n + 1, infoflag) for n in range(count))
        r.end()
        return cls(modules, infoflag)


class AlarmState(IntEnum):
    """Alarm state of one cell, temperature, current or voltage (Pylontech v3.3 "Get alarm info")."""

    NORMAL = 0x00
    BELOW_LOWER = 0x01   #: below the lower limit
    ABOVE_UPPER = 0x02   #: above the upper limit
    OTHER = 0xF0         #: other fault


class Status1(IntFlag):
    """Status1 of 0x44: protections that have tripped."""

    MODULE_OVER_VOLTAGE = 0x01
    CELL_UNDER_VOLTAGE = 0x02
    CHARGE_OVER_CURRENT = 0x04
    DISCHARGE_OVER_CURRENT = 0x10
    DISCHARGE_OVER_TEMPERATURE = 0x20
    CHARGE_OVER_TEMPERATURE = 0x40
    MODULE_UNDER_VOLTAGE = 0x80


class Status2(IntFlag):
    """Status2 of 0x44: switches."""

    PRE_MOSFET = 0x01
    CHARGE_MOSFET = 0x02
    DISCHARGE_MOSFET = 0x04
    USING_MODULE_POWER = 0x08


class Status3(IntFlag):
    """Status3 of 0x44: indications (effective current means |I| > 0.1 A)."""

    BUZZER = 0x01
    FULLY_CHARGED = 0x08
    HEATER = 0x20
    EFFECTIVE_DISCHARGE_CURRENT = 0x40
    EFFECTIVE_CHARGE_CURRENT = 0x80


@dataclass(frozen=True)
class AlarmInfo:
    """Reply INFO of 0x44: DATAFLAG, pack, per-cell and per-temperature states, then Status1-5.

    Pylontech v3.3 "Get alarm info". Status4 bit n flags cell n+1 (cells 1-8), Status5 bit n flags
    cell n+9 (cells 9-16): a cell voltage fault.
    """

    CID2: ClassVar[Cid2] = Cid2.ALARM_INFO
    pack: int                                            #: command value: the answering pack's address
    cell_states: tuple[AlarmState, ...]                  #: one per cell
    temp_states: tuple[AlarmState, ...]                  #: one per temperature
    charge_current_state: AlarmState = AlarmState.NORMAL
    module_voltage_state: AlarmState = AlarmState.NORMAL
    discharge_current_state: AlarmState = AlarmState.NORMAL
    status1: Status1 = Status1(0)
    status2: Status2 = Status2(0)
    status3: Status3 = Status3(0)
    status4: int = 0                                     #: cell 1-8 fault bits
    status5: int = 0                                     #: cell 9-16 fault bits
    dataflag: int = 0                                    #: DATA FLAG byte

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell_states", tuple(self.cell_states))
        object.__setattr__(self, "temp_states", tuple(self.temp_states))

    @property
    def failed_cells(self) -> tuple[int, ...]:
        """Cell numbers (1-16) flagged in Status4 and Status5."""
        bits = self.status5 << 8 | self.status4
        return tuple(n + 1 for n in range(16) if bits >> n & 1)

    def encode(self) -> bytes:
        w = _Writer().num("dataflag", self.dataflag).num("pack", self.pack)
        for name, states in (("cell_states", self.cell_states), ("temp_states", self.temp_states)):
            w.num(f"{name} count", len(states))
            for i, state in enumerate(states):
                w.num(f"{name}[{i}]", state)
        for name in ("charge_current_state", "module_voltage_state", "discharge_current_state",
                     "status1", "status2", "status3", "status4", "status5"):
            w.num(name, int(getattr(self, name)))
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> AlarmInfo:
        r = _Reader(info, "0x44 alarm info")
        dataflag, pack = r.num("DATAFLAG"), r.num("pack number")
        cells = tuple(r.state(f"cell {i + 1}") for i in range(r.num("cell count")))
        temps = tuple(r.state(f"temperature {i + 1}") for i in range(r.num("temperature count")))
        currents = r.state("charge current"), r.state("module voltage"), r.state("discharge current")
        status = Status1(r.num("Status1")), Status2(r.num("Status2")), Status3(r.num("Status3"))
        status4, status5 = r.num("Status4"), r.num("Status5")
        r.end()
        return cls(pack, cells, temps, *currents, *status, status4, status5, dataflag)


@dataclass(frozen=True)
class SystemParameters:
    """Reply INFO of 0x47: INFOFLAG, then twelve limits in the order declared here (Pylontech v3.3
    "Get system parameter"). "Low" voltages are alarm limits, "under" voltages protection limits.
    """

    CID2: ClassVar[Cid2] = Cid2.SYSTEM_PARAMETERS
    cell_high_mv: int
    cell_low_mv: int
    cell_under_mv: int
    charge_high_temp_c: float
    charge_low_temp_c: float
    charge_current_limit_a: float       #: S16 0.1 A
    module_high_mv: int
    module_low_mv: int
    module_under_mv: int
    discharge_high_temp_c: float
    discharge_low_temp_c: float
    discharge_current_limit_a: float    #: S16 0.1 A, negative = discharge
    infoflag: int = 0

    def encode(self) -> bytes:
        w = _Writer().num("infoflag", self.infoflag)
        for name in self._limits():
            value = getattr(self, name)
            if name.endswith("_mv"):
                w.num(name, value, 2)
            elif name.endswith("_c"):
                w.kelvin(name, value)
            else:
                w.tenths(name, value)
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> SystemParameters:
        r = _Reader(info, "0x47 system parameters")
        infoflag = r.num("INFOFLAG")
        values = [r.num(n, 2) if n.endswith("_mv") else r.kelvin(n) if n.endswith("_c") else r.tenths(n)
                  for n in cls._limits()]
        r.end()
        return cls(*values, infoflag=infoflag)

    @classmethod
    def _limits(cls) -> list[str]:
        """The twelve limits in wire order (their declaration order); the unit suffix picks the type."""
        return [f.name for f in fields(cls) if f.name != "infoflag"]


@dataclass(frozen=True)
class ProtocolVersion:
    """Reply of 0x4F: INFO is empty and the version is the reply's VER (0x20, PACK_SPEC.md 7)."""

    CID2: ClassVar[Cid2] = Cid2.PROTOCOL_VERSION
    version: int


@dataclass(frozen=True)
class ManufacturerInfo:
    """Reply INFO of 0x51: battery name (10 ASCII), software version (2 bytes), manufacturer (20 ASCII)."""

    CID2: ClassVar[Cid2] = Cid2.MANUFACTURER_INFO
    battery_name: str
    software_version: tuple[int, int]   #: the two version bytes as sent; a US2000C sends (1, 7) for V1.7
    manufacturer: str                   #: a US2000C sends "Pylon" padded with "-", kept as sent

    def encode(self) -> bytes:
        major, minor = self.software_version
        w = _Writer().text("battery_name", self.battery_name, 10)
        return bytes(w.num("software_version[0]", major).num("software_version[1]", minor)
                     .text("manufacturer", self.manufacturer, 20).out)

    @classmethod
    def decode(cls, info: bytes) -> ManufacturerInfo:
        r = _Reader(info, "0x51 manufacturer info")
        name, version = r.text("battery name", 10), (r.num("software version"), r.num("software version"))
        manufacturer = r.text("manufacturer name", 20)
        r.end()
        return cls(name, version, manufacturer)


class ChargeStatus(IntFlag):
    """Status byte of 0x92 (Pylontech v3.3 "Get charge/discharge management info")."""

    FULL_CHARGE_REQUEST = 0x08    #: Pylontech: SOC stayed below 97 % for 30 days
    CHARGE_IMMEDIATELY_2 = 0x10   #: "force charge II" of CAN 0x35C (PACK_SPEC.md 6)
    CHARGE_IMMEDIATELY = 0x20     #: "force charge I" of CAN 0x35C
    DISCHARGE_ENABLE = 0x40
    CHARGE_ENABLE = 0x80


@dataclass(frozen=True)
class ChargeManagement:
    """Reply INFO of 0x92: pack, voltage and current limits, status (PACK_SPEC.md 7 known answer)."""

    CID2: ClassVar[Cid2] = Cid2.CHARGE_MANAGEMENT
    pack: int                           #: command value: the answering pack's address
    charge_voltage_limit_mv: int        #: recommended charge voltage, mV
    discharge_voltage_limit_mv: int     #: recommended lowest discharge voltage, mV
    charge_current_limit_a: float       #: S16 0.1 A
    discharge_current_limit_a: float    #: S16 0.1 A, negative = discharge
    status: ChargeStatus = ChargeStatus(0)

    def encode(self) -> bytes:
        w = _Writer().num("pack", self.pack).num("charge_voltage_limit_mv", self.charge_voltage_limit_mv, 2)
        w.num("discharge_voltage_limit_mv", self.discharge_voltage_limit_mv, 2)
        w.tenths("charge_current_limit_a", self.charge_current_limit_a)
        return bytes(w.tenths("discharge_current_limit_a", self.discharge_current_limit_a)
                     .num("status", int(self.status)).out)

    @classmethod
    def decode(cls, info: bytes) -> ChargeManagement:
        r = _Reader(info, "0x92 charge management")
        fields = (r.num("pack number"), r.num("charge voltage limit", 2), r.num("discharge voltage limit", 2),
                  r.tenths("charge current limit"), r.tenths("discharge current limit"))
        status = ChargeStatus(r.num("status"))
        r.end()
        return cls(*fields, status)


@dataclass(frozen=True)
class SerialNumber:
    """Reply INFO of 0x93: pack, then the serial number as 16 ASCII characters."""

    CID2: ClassVar[Cid2] = Cid2.SERIAL_NUMBER
    pack: int      #: command value: the answering pack's address
    serial: str    #: at most 16 ASCII characters

    def encode(self) -> bytes:
        return bytes(_Writer().num("pack", self.pack).text("serial", self.serial, 16).out)

    @classmethod
    def decode(cls, info: bytes) -> SerialNumber:
        r = _Reader(info, "0x93 serial number")
        pack, serial = r.num("pack number"), r.text("serial number", 16)
        r.end()
        return cls(pack, serial)


Payload = Union[AnalogValues, AlarmInfo, SystemParameters, ProtocolVersion, ManufacturerInfo,
                ChargeManagement, SerialNumber]
#: Command value of a request for every pack of the group (Pylontech v3.3 "command value").
ALL_PACKS = 0xFF
#: The reply INFO type of each command.
REPLY_TYPES: dict[Cid2, type] = {t.CID2: t for t in Payload.__args__}


def parse_reply(cid2: int, frame: Frame, command: int | None = None) -> Payload | GroupAnalogValues:
    """The payload of a reply to a ``cid2`` request.

    :param command: the request's command value; 0x42 with :data:`ALL_PACKS` is answered with a
        :class:`GroupAnalogValues`.

    :raises FrameError: CID1 is not 0x46 (RTN 0x04); the pack answered an RTN other than 0 (that RTN);
        INFO does not fit the command (0x06).
    :raises ValueError: ``cid2`` is not a command of :class:`Cid2` (a programming mistake).
    """
    cid2 = Cid2(cid2)
    if frame.cid1 != CID1:
        raise FrameError(Rtn.CID2, f"CID1 0x{frame.cid1:02X} is not 0x{CID1:02X} (battery data)")
    if frame.cid2_or_rtn != Rtn.OK:
        name = Rtn(frame.cid2_or_rtn).name if frame.cid2_or_rtn in Rtn._value2member_map_ else "unknown"
        raise FrameError(frame.cid2_or_rtn, f"ADR {frame.adr} answered RTN 0x{frame.cid2_or_rtn:02X} "
                                            f"({name}) to CID2 0x{cid2:02X}")
    if cid2 == Cid2.PROTOCOL_VERSION:
        if frame.info:
            raise FrameError(Rtn.DATA, f"0x4F reply INFO must be empty, has {len(frame.info)} bytes")
        return ProtocolVersion(frame.ver)
    if cid2 == Cid2.ANALOG_VALUES and command == ALL_PACKS:
        return GroupAnalogValues.decode(frame.info)
    return REPLY_TYPES[cid2].decode(frame.info)
