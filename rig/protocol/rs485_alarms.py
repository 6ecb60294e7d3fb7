"""The alarm info a pack answers to RS485 command 0x44 (PACK_SPEC.md 7, Pylontech v3.3 "Get alarm
info"): a state per cell and per temperature, the current and module voltage states, then the
status bytes Status1-Status5. Encoded and decoded as the other payloads of
:mod:`rig.protocol.rs485_commands`, which lists them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import ClassVar

from rig.protocol.rs485 import Cid2
from rig.protocol.rs485_info import InfoReader, InfoWriter


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
        w = InfoWriter().num("dataflag", self.dataflag).num("pack", self.pack)
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
        r = InfoReader(info, "0x44 alarm info")
        dataflag, pack = r.num("DATAFLAG"), r.num("pack number")
        cells = tuple(_state(r, f"cell {i + 1}") for i in range(r.num("cell count")))
        temps = tuple(_state(r, f"temperature {i + 1}") for i in range(r.num("temperature count")))
        currents = _state(r, "charge current"), _state(r, "module voltage"), _state(r, "discharge current")
        status = Status1(r.num("Status1")), Status2(r.num("Status2")), Status3(r.num("Status3"))
        status4, status5 = r.num("Status4"), r.num("Status5")
        r.end()
        return cls(pack, cells, temps, *currents, *status, status4, status5, dataflag)


def _state(r: InfoReader, name: str) -> AlarmState:
    value = r.num(name)
    if value not in AlarmState._value2member_map_:
        raise r.fail(f"{name} state 0x{value:02X} is none of 00, 01, 02, F0")
    return AlarmState(value)
