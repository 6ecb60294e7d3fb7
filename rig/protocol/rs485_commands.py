"""INFO of the RS485 commands a pack answers (PACK_SPEC.md 7), as typed dataclasses.

Every command has CID1 0x46 (battery data). A request carries the command in CID2 and, for the
commands that address one pack, a *command value* in INFO: that pack's address (2 master, 3 slave),
or 0xFF for the whole group. A reply carries an :class:`~rig.protocol.rs485.Rtn` in CID2 and its
data in INFO, built from the wire types of :mod:`rig.protocol.rs485_info` (capacities are U16
mAh, or U24 mAh after the cycle count for packs over 65 Ah). The alarm info of 0x44 and its status
bytes are in :mod:`rig.protocol.rs485_alarms` and importable from here, as every payload is.

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
from enum import IntFlag
from typing import ClassVar, Union

from rig.errors import FrameError
from rig.protocol.rs485 import CID1, Cid2, Frame, Rtn
from rig.protocol.rs485_alarms import AlarmInfo, AlarmState, Status1, Status2, Status3
from rig.protocol.rs485_info import InfoReader, InfoWriter

__all__ = ["ALL_PACKS", "REPLY_TYPES", "AlarmInfo", "AlarmState", "AnalogValues", "ChargeManagement", "ChargeStatus",
           "GroupAnalogValues", "ManufacturerInfo", "Payload", "ProtocolVersion", "SerialNumber", "Status1",
           "Status2", "Status3", "SystemParameters", "parse_reply"]


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
        return bytes(self._block(InfoWriter().num("infoflag", self.infoflag).num("pack", self.pack)).out)

    def _block(self, w: InfoWriter) -> InfoWriter:
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
        r = InfoReader(info, "0x42 analog values")
        infoflag, pack = r.num("INFOFLAG"), r.num("pack number")
        values = cls._read_block(r, pack, infoflag)
        r.end()
        return values

    @classmethod
    def _read_block(cls, r: InfoReader, pack: int, infoflag: int) -> AnalogValues:
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
        w = InfoWriter().num("infoflag", self.infoflag).num("module count", len(self.modules))
        for module in self.modules:
            module._block(w)
        return bytes(w.out)

    @classmethod
    def decode(cls, info: bytes) -> GroupAnalogValues:
        r = InfoReader(info, "0x42 analog values of the group")
        infoflag, count = r.num("INFOFLAG"), r.num("module count")
        modules = tuple(AnalogValues._read_block(r, n + 1, infoflag) for n in range(count))
        r.end()
        return cls(modules, infoflag)


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
        w = InfoWriter().num("infoflag", self.infoflag)
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
        r = InfoReader(info, "0x47 system parameters")
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
        w = InfoWriter().text("battery_name", self.battery_name, 10)
        return bytes(w.num("software_version[0]", major).num("software_version[1]", minor)
                     .text("manufacturer", self.manufacturer, 20).out)

    @classmethod
    def decode(cls, info: bytes) -> ManufacturerInfo:
        r = InfoReader(info, "0x51 manufacturer info")
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
        w = InfoWriter().num("pack", self.pack).num("charge_voltage_limit_mv", self.charge_voltage_limit_mv, 2)
        w.num("discharge_voltage_limit_mv", self.discharge_voltage_limit_mv, 2)
        w.tenths("charge_current_limit_a", self.charge_current_limit_a)
        return bytes(w.tenths("discharge_current_limit_a", self.discharge_current_limit_a)
                     .num("status", int(self.status)).out)

    @classmethod
    def decode(cls, info: bytes) -> ChargeManagement:
        r = InfoReader(info, "0x92 charge management")
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
        return bytes(InfoWriter().num("pack", self.pack).text("serial", self.serial, 16).out)

    @classmethod
    def decode(cls, info: bytes) -> SerialNumber:
        r = InfoReader(info, "0x93 serial number")
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
