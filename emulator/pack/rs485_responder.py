"""What one emulated pack answers on the RS485 link (PACK_SPEC.md 7, Pylontech RS485 v3.3).

:class:`PackResponder` turns a request into the reply frame its :class:`~emulator.pack.bms.Bms` would
send, or ``None`` when the pack stays silent. Pure logic: the line is :mod:`emulator.transports.rs485_line`,
the wire format :mod:`rig.protocol.rs485`.

Who answers:

* An Off pack (``not bms.awake``) is silent: its transceiver is unpowered (PACK_SPEC.md 2).
* A frame for another ADR gets no reply: on a multi-drop line only the addressed pack talks.
* ADR 0 (a console that knows no address yet) is accepted for 0x4F and 0x51. Two packs answering
  on one line would collide, so only one answers ADR 0: by default the master (ADR 2), the pack a
  console is cabled to. Its reply carries its own ADR, which is how the console learns it; ADR 0
  with another command gets RTN 0x90 from it.
* A frame that does not decode (0x02 CHKSUM, 0x03 LCHKSUM, 0x05 format; 0x01 VER from a strict
  reader) gets its RTN only when its ADR characters (the 4th and 5th after ``~``) are hex and name
  this pack; otherwise nobody knows whom it was for, and replies from every pack would collide.
  With a bad CHKSUM those characters may be corrupt too: the risk v3.3 takes by defining RTN 0x02.
  A :class:`~rig.errors.FrameError` carries no bytes, so they come as ``raw`` or on the error's
  ``raw`` attribute (:class:`RawFrameReader`).
* A frame that decodes is judged by its ADR, then by :func:`~rig.protocol.rs485.parse_request`
  (0x04 CID1/CID2, 0x01 VER, 0x90 ADR, 0x06 INFO size). A command value (INFO's first byte) that
  is neither this ADR nor 0xFF (the whole group, answered with this pack's data) is RTN 0x06.

0x42 with command value 0xFF (the whole group) is answered in the group layout
(:class:`~rig.protocol.rs485_commands.GroupAnalogValues`): this pack's values first, then those of
each partner in :attr:`PackResponder.partners` while the pair is joined (``bms.modules`` > 1), as a
Pylontech master answers for its group.

0x44: which rows show in which reading's state and Status1 bit, and which readings a failed
sampler turns to 0xF0, is protocol, :mod:`rig.protocol.rs485_alarm_rows`; how this BMS decides
(every number comes from the firmware profile):

* **States** follow what the BMS reports on CAN: a reading is out of range when it is past the
  alarm limit (lowest enabled level, normally L1) of a row that watches it, or when such a row is
  tripped (any level) and the reading is the row's extreme one (the hysteresis of the release).
  No reading (nan) is 0xF0 "other", as is every reading of a failed sampler.
* **Status1** is what has *tripped* (level 2 or 3, with the BMS's delays).
* **Status2**: pre-MOSFET = pre-charge relay closed; charge / discharge MOSFET = the enables of
  :meth:`~emulator.pack.bms.Bms.limits` (relays closed, not cut); "using module power" always.
* **Status3**: fully charged at 100 % SOC; effective charge / discharge current above 0.1 A (v3.3).
  This pack has no buzzer and no heater.
* **Status4/5** (cell 1-8 / 9-16 fault): a cell past its row's protection limit (lowest enabled of
  L2, L3); all cells on FailureVoltageFrontEnd; the highest and lowest while the cell voltage
  difference is at level 2 or 3 (and on FailureCellVoltageDifference).

Relay, pre-charge, current-limitation, parallel, PCS and short-circuit failures have no v3.3 field;
they show as open switches in Status2 and cleared enable bits in 0x92.
"""
from __future__ import annotations

import math

from emulator.pack.bms import Bms
from rig.errors import FrameError
from rig.files.rows import PROTECTIONS
from rig.protocol.rs485 import (
    ADDRESSED, MASTER_ADR, Cid2, Frame, FrameReader, Request, Rtn, decode_frame, parse_request, reply)
from rig.protocol.rs485_commands import (
    ALL_PACKS, AlarmInfo, AlarmState, AnalogValues, ChargeManagement, ChargeStatus, GroupAnalogValues,
    ManufacturerInfo, SerialNumber, Status1, Status2, Status3, SystemParameters)
from rig.protocol.rs485_alarm_rows import CELL_SENSORS, SAMPLER_FIELDS, STATUS1_ROWS, rows_of

#: 0x51 software version bytes (major, minor) of the emulated firmware.
SOFTWARE_VERSION = (1, 0)
#: Status3 "effective" current: more than this, A, either way (Pylontech v3.3).
EFFECTIVE_A = 0.1


class RawFrameReader(FrameReader):
    """A :class:`~rig.protocol.rs485.FrameReader` for a pack's receiver: any VER is let through
    (consoles send 0x4F with VER 0x00; :func:`~rig.protocol.rs485.parse_request` checks VER per
    command), and a malformed frame's bytes, ``~`` to ``\\r``, are kept on its error as ``raw``."""

    def __init__(self) -> None:
        super().__init__(version=None)

    def _decode(self, candidate: bytes) -> Frame | FrameError:
        # FrameReader decodes every ~...\r candidate here; only here are its bytes still at hand
        item = super()._decode(candidate)
        if isinstance(item, FrameError):
            item.raw = candidate
        return item


def frame_adr(raw: bytes | None) -> int | None:
    """The ADR of a frame's bytes (``~`` VER ADR ...), or ``None`` when those characters are not hex."""
    if not raw or len(raw) < 5 or raw[:1] != b"~":
        return None
    try:
        return int(raw[3:5].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        return None


def serial_for(address: int) -> str:
    """The fixed 16-character serial number of the emulated pack at ``address``."""
    return f"PACKRIG-EMU-{address:04d}"


def _mv(volts: float) -> int:
    """Volts to wire mV; no reading (nan) is 0, and a real BMS saturates at the U16 ends."""
    return 0 if math.isnan(volts) else min(max(round(volts * 1000), 0), 0xFFFF)


def _celsius(value: float) -> float:
    """A temperature for the wire; no reading (nan) goes out as wire value 0 (-273.1 C)."""
    return -273.1 if math.isnan(value) else min(max(value, -273.1), 6280.4)


def _amps(value: float) -> float:
    """A current for the S16 0.1 A wire field, saturated at its ends; no reading (nan) is 0."""
    return 0.0 if math.isnan(value) else min(max(value, -3276.8), 3276.7)


def _first_enabled(levels) -> float | None:
    return next((level.threshold for level in levels if level.enabled), None)


def _flags(kind, pairs):
    """The flags of IntFlag ``kind`` whose condition is true, from (flag, condition) pairs."""
    out = kind(0)
    for flag, on in pairs:
        out |= flag if on else kind(0)
    return out


def _state(value: float, low: float | None, high: float | None, broken: bool = False) -> AlarmState:
    """Alarm state of one reading against its lower and upper limit (``None``: no limit)."""
    if broken or math.isnan(value):
        return AlarmState.OTHER
    if low is not None and value < low:
        return AlarmState.BELOW_LOWER
    if high is not None and value > high:
        return AlarmState.ABOVE_UPPER
    return AlarmState.NORMAL


def _states(values: list[float], rows: tuple[tuple[str, ...], tuple[str, ...]], alarm: dict,
            levels: dict, broken: bool) -> list[AlarmState]:
    """States of readings watched by (below rows, above rows): past the tightest alarm limit, or
    the extreme reading of a tripped row (module docstring)."""
    below, above = rows
    lows = [alarm[r] for r in below if alarm[r] is not None]
    highs = [alarm[r] for r in above if alarm[r] is not None]
    states = [_state(v, max(lows, default=None), min(highs, default=None), broken) for v in values]
    known = [n for n, v in enumerate(values) if not math.isnan(v)]
    if broken or not known:
        return states
    for tripped, pick, state in ((below, min, AlarmState.BELOW_LOWER), (above, max, AlarmState.ABOVE_UPPER)):
        if any(levels.get(r, 0) for r in tripped):
            n = pick(known, key=values.__getitem__)
            states[n] = state if states[n] == AlarmState.NORMAL else states[n]
    return states


class PackResponder:
    """The RS485 side of one pack's BMS: request in, reply out (no I/O).

    :param bms: the pack; its ``address``, ``awake``, ``report``, ``limits()`` and profile are read
        at each request, so the reply is what the BMS knows at that instant.
    :param answers_adr0: whether this pack answers ADR 0; default: it is the master (ADR 2).
    """

    def __init__(self, bms: Bms, *, answers_adr0: bool | None = None):
        self.bms = bms
        self._answers_adr0 = answers_adr0
        #: the other packs of the group, whose values this pack gives for command value 0xFF
        #: while joined (the emulated bench sets the master's)
        self.partners: list[PackResponder] = []

    @property
    def answers_adr0(self) -> bool:
        """True when this pack is the one that answers requests to ADR 0 (module docstring)."""
        return self.bms.address == MASTER_ADR if self._answers_adr0 is None else self._answers_adr0

    def respond(self, item: Frame | FrameError, raw: bytes | None = None) -> Frame | None:
        """The reply to one received frame, or ``None`` when this pack stays silent.

        :param item: a decoded frame, or the error a :class:`~rig.protocol.rs485.FrameReader` gave.
        :param raw: the frame's bytes, ``~`` to ``\\r``, to answer a ``FrameError``; default: the
            error's ``raw`` (:class:`RawFrameReader`).
        :return: an RTN 0x00 reply with the command's INFO, an error reply with an empty INFO, or None.
        """
        adr = self.bms.address
        if not self.bms.awake:
            return None
        if isinstance(item, FrameError):
            raw = getattr(item, "raw", None) if raw is None else raw
            return reply(adr, item.rtn) if frame_adr(raw) == adr else None
        if item.adr != adr and not (item.adr == 0 and self.answers_adr0):
            return None
        try:
            return reply(adr, Rtn.OK, self._info(parse_request(item)))
        except FrameError as error:
            return reply(adr, error.rtn)

    def respond_bytes(self, raw: bytes) -> Frame | None:
        """The reply to one frame's bytes (``~`` to ``\\r``), decoded here with any VER accepted."""
        try:
            return self.respond(decode_frame(raw, version=None), raw)  # parse_request checks VER
        except FrameError as error:  # respond() itself raises none: this is the decode's
            return self.respond(error, raw)

    # --- INFO of each command ----------------------------------------------------------------
    def _info(self, req: Request) -> bytes:
        """INFO of the reply to ``req``; raises FrameError RTN 0x06 for another pack's data."""
        if req.cid2 in ADDRESSED and req.command not in (self.bms.address, ALL_PACKS):
            raise FrameError(Rtn.DATA, f"command value 0x{req.command:02X} names another pack; "
                                       f"this is ADR {self.bms.address}")
        if req.cid2 == Cid2.PROTOCOL_VERSION:
            return b""  # the version is the reply's VER (0x20)
        if req.cid2 == Cid2.ANALOG_VALUES and req.command == ALL_PACKS:
            return self.group_analog_values().encode()
        return {Cid2.ANALOG_VALUES: self.analog_values, Cid2.ALARM_INFO: self.alarm_info,
                Cid2.SYSTEM_PARAMETERS: self.system_parameters, Cid2.SERIAL_NUMBER: self.serial_number,
                Cid2.MANUFACTURER_INFO: self.manufacturer_info,
                Cid2.CHARGE_MANAGEMENT: self.charge_management}[req.cid2]().encode()

    def analog_values(self) -> AnalogValues:
        """0x42: 16 cell mV, 5 temperatures, current (+ = charge), module mV, capacities in mAh."""
        b, r = self.bms, self.bms.report
        total_mah = round(b.capacity_ah * 1000)  # > 65 Ah: AnalogValues.encode uses the U24 form
        remaining_mah = round(total_mah * min(max(r.soc_pct, 0.0), 100.0) / 100.0)
        return AnalogValues(
            pack=b.address, cell_mv=tuple(_mv(float(v)) for v in r.groups_v),
            temps_c=tuple(_celsius(float(t)) for t in r.temps_c), current_a=_amps(r.current_a),
            module_mv=_mv(r.pack_v), remaining_mah=remaining_mah, total_mah=total_mah, cycles=0)

    def group_analog_values(self) -> GroupAnalogValues:
        """0x42 for the whole group: this pack, then its partners while joined (module docstring)."""
        joined = [p for p in self.partners if p.bms.awake] if self.bms.modules > 1 else []
        return GroupAnalogValues([self.analog_values()] + [p.analog_values() for p in joined])

    def alarm_info(self) -> AlarmInfo:
        """0x44: per-value alarm states and Status1-5, mapped as the module docstring says."""
        b, r, p = self.bms, self.bms.report, self.bms.p
        rows, failed = p.protections, r.failures
        alarm = {name: _first_enabled(getattr(rows, name).levels()) for name in PROTECTIONS}
        broken = {field for sampler, fields in SAMPLER_FIELDS.items()  # the fields of failed samplers
                  if getattr(p.failures, sampler).failure_bit in failed for field in fields}
        cells = [float(v) for v in r.groups_v]
        cell_states = _states(cells, rows_of("cell_states"), alarm, r.levels, "cell_states" in broken)
        sampling = "temp_states" in broken
        temps = [float(t) for t in r.temps_c]
        temp_states = _states(temps[:CELL_SENSORS], rows_of("cell_temp_states"), alarm, r.levels, sampling)
        temp_states += [_state(t, None, None, sampling) for t in temps[CELL_SENSORS:]]
        faults = self._cell_faults(cells, every_cell="cell_states" in broken)
        tripped = ((bit, r.levels.get(name, 0) >= 2) for name, bit in STATUS1_ROWS.items())
        _, _, charge_enabled, discharge_enabled = b.limits()
        return AlarmInfo(
            pack=b.address, cell_states=cell_states, temp_states=temp_states,
            charge_current_state=_states([max(r.current_a, 0.0)], rows_of("charge_current_state"), alarm,
                                         r.levels, "charge_current_state" in broken)[0],
            module_voltage_state=_states([r.pack_v], rows_of("module_voltage_state"), alarm, r.levels,
                                         "module_voltage_state" in broken)[0],
            discharge_current_state=_states([max(-r.current_a, 0.0)], rows_of("discharge_current_state"), alarm,
                                            r.levels, "discharge_current_state" in broken)[0],
            status1=_flags(Status1, tripped),
            status2=_flags(Status2, ((Status2.USING_MODULE_POWER, True), (Status2.PRE_MOSFET, b.relays[2]),
                                     (Status2.CHARGE_MOSFET, charge_enabled),
                                     (Status2.DISCHARGE_MOSFET, discharge_enabled))),
            status3=_flags(Status3, ((Status3.FULLY_CHARGED, r.soc_pct >= 100.0),
                                     (Status3.EFFECTIVE_CHARGE_CURRENT, r.current_a > EFFECTIVE_A),
                                     (Status3.EFFECTIVE_DISCHARGE_CURRENT, r.current_a < -EFFECTIVE_A))),
            status4=faults & 0xFF, status5=faults >> 8)

    def _cell_faults(self, cells: list[float], every_cell: bool) -> int:
        """Bit n set: cell n+1 has a voltage fault (Status4 bits 0-7, Status5 bits 8-15);
        ``every_cell``: the cells' sampler (the voltage front-end) has failed."""
        if every_cell:
            return (1 << len(cells)) - 1
        p = self.bms.p
        low, high = (_first_enabled(getattr(p.protections, row).levels()[1:])
                     for row in ("cell_under_voltage", "cell_over_voltage"))
        bits = sum(1 << n for n, v in enumerate(cells) if _state(v, low, high) in (AlarmState.BELOW_LOWER,
                                                                                     AlarmState.ABOVE_UPPER))
        known = [n for n, v in enumerate(cells) if not math.isnan(v)]
        r = self.bms.report
        if known and (r.levels.get("cell_voltage_difference", 0) >= 2
                      or p.failures.cell_voltage_difference.failure_bit in r.failures):
            bits |= 1 << max(known, key=cells.__getitem__) | 1 << min(known, key=cells.__getitem__)
        return bits

    def system_parameters(self) -> SystemParameters:
        """0x47: "high"/"low" limits are the rows' L1 alarm thresholds, "under" the L2 protection ones."""
        rows = self.bms.p.protections
        return SystemParameters(
            cell_high_mv=_mv(rows.cell_over_voltage.l1.threshold),
            cell_low_mv=_mv(rows.cell_under_voltage.l1.threshold),
            cell_under_mv=_mv(rows.cell_under_voltage.l2.threshold),
            charge_high_temp_c=rows.charge_over_temperature.l1.threshold,
            charge_low_temp_c=rows.charge_under_temperature.l1.threshold,
            charge_current_limit_a=rows.charge_over_current.l1.threshold,
            module_high_mv=_mv(rows.pack_over_voltage.l1.threshold),
            module_low_mv=_mv(rows.pack_under_voltage.l1.threshold),
            module_under_mv=_mv(rows.pack_under_voltage.l2.threshold),
            discharge_high_temp_c=rows.discharge_over_temperature.l1.threshold,
            discharge_low_temp_c=rows.discharge_under_temperature.l1.threshold,
            discharge_current_limit_a=-rows.discharge_over_current.l1.threshold)

    def manufacturer_info(self) -> ManufacturerInfo:
        """0x51: model name from the pack's size, firmware version, the profile's CAN manufacturer."""
        name = f"LFP16S{round(self.bms.capacity_ah)}"[:10]
        return ManufacturerInfo(name, SOFTWARE_VERSION, self.bms.p.can.manufacturer.strip())

    def charge_management(self) -> ChargeManagement:
        """0x92: the profile's voltage limits and the BMS's present current limits and enables."""
        can = self.bms.p.can
        ccl, dcl, charge_enabled, discharge_enabled = self.bms.limits()
        status = _flags(ChargeStatus, ((ChargeStatus.CHARGE_ENABLE, charge_enabled),
                                       (ChargeStatus.DISCHARGE_ENABLE, discharge_enabled)))
        return ChargeManagement(
            pack=self.bms.address, charge_voltage_limit_mv=_mv(can.charge_voltage_limit_v),
            discharge_voltage_limit_mv=_mv(can.discharge_voltage_limit_v),
            charge_current_limit_a=_amps(ccl), discharge_current_limit_a=_amps(-dcl), status=status)

    def serial_number(self) -> SerialNumber:
        """0x93: the fixed serial number of this address (:func:`serial_for`)."""
        return SerialNumber(self.bms.address, serial_for(self.bms.address))
