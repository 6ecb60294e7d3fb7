"""What the emulated pack puts on the CAN bus (PACK_SPEC.md 6), encoded through pack.dbc.

The pack on the CAN bus (the master, or a single pack) sends every ``can.period_s``:

- the Pylon frames listed in the profile's ``can.frames`` for the *system* (with two packs:
  mean voltage, SOC and temperature, total current and limits, both modules counted);
- with ``can.detail_frames``, its own detail frames 0x18A0nn02 and, in parallel, the slave's
  0x18A0nn03 with what the slave reported over RS485.

Which bit reports what comes from the firmware profile (``can_alarm``, ``can_protection``,
``failure_bit``), so a profile with a swapped bit sends the swapped bit. Encoding is cantools'
(``strict``: a value outside the DBC range raises).

A pack sends ~15 frames a second and at rest most repeat, so a report is built as one tuple of
values per frame, in the fixed signal order of :data:`SIGNALS`; each frame keeps the payloads it
made (:class:`FrameCodec`), and a frame of plain numbers it has not seen is put together from the
bits of its signals, which cantools encodes one value at a time. The status frames (limits, bits,
state, levels) are rebuilt only when a pack's status changes.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import can
from cantools.database.can import Message as DbcMessage

from emulator.pack.bms import Bms
from rig.clock import NS
from rig.files.can_names import CHOICES
from rig.files.rows import FAILURES, PROTECTIONS
from rig.protocol.can_frames import dbc_message, encode

#: detail frame level signal of each protection row, in PACK_SPEC.md 4 order
LEVEL_SIGNALS = {name: "".join(w.capitalize() for w in name.split("_")) + "Level" for name in PROTECTIONS}
_LEVEL_NAMES = ("None", "L1", "L2", "L3")
_ALARM_BITS = tuple(dict.fromkeys(CHOICES["can_protection"] + CHOICES["can_alarm"]))
_FAILURE_BITS = tuple(CHOICES["failure_bit"])
_GROUP_FRAMES = ("DetailGroupVoltages1to4", "DetailGroupVoltages5to8", "DetailGroupVoltages9to12",
                 "DetailGroupVoltages13to16")

#: frame name -> its signals, in the order of the values the report builds for it
SIGNALS: dict[str, tuple[str, ...]] = {
    "ChargeLimits": ("ChargeVoltageLimit", "ChargeCurrentLimit", "DischargeCurrentLimit",
                     "DischargeVoltageLimit"),
    "StateOfCharge": ("SOC", "SOH"),
    "PackMeasurements": ("Voltage", "Current", "Temperature"),
    "ProtectionsAlarms": (*_ALARM_BITS, "ModuleCount"),
    "ChargeRequest": ("ChargeEnable", "DischargeEnable", "ForceChargeI", "ForceChargeII", "FullChargeRequest"),
    "ManufacturerName": ("ManufacturerName",),
    "DetailStatus": ("State", "Relay1Closed", "Relay2Closed", "PrechargeClosed", "SOC", "ParallelRole",
                     *_FAILURE_BITS),
    "DetailProtection": tuple(LEVEL_SIGNALS[n] for n in PROTECTIONS),
    **{name: tuple(f"Group{4 * k + i + 1}Voltage" for i in range(4)) for k, name in enumerate(_GROUP_FRAMES)},
    "DetailTemperatures": ("Temperature1", "Temperature2", "Temperature3", "Temperature4"),
    "DetailSummary": ("Temperature5PowerStage", "MinGroupVoltage", "MaxGroupVoltage", "RemainingCapacity"),
}


SYSTEM_FRAMES = ("ChargeLimits", "StateOfCharge", "PackMeasurements", "ProtectionsAlarms", "ChargeRequest",
                 "ManufacturerName")
DETAIL_FRAMES = ("DetailStatus", "DetailProtection", *_GROUP_FRAMES, "DetailTemperatures", "DetailSummary")
Payload = tuple[int, bool, bytes]  # arbitration ID, extended, data


class Frame(NamedTuple):
    """One frame the pack sent, encoded: what a transport puts on the wire. It reads like a
    python-can message (the attributes a socketcand or log writer looks at); :meth:`message`
    makes one where a python-can bus needs it (a python-can Message costs ~1 us, a record a
    third of that, and the socketcand server formats records as they are)."""

    timestamp: float        #: s, the world's (virtual) time
    arbitration_id: int
    is_extended_id: bool
    data: bytes
    is_error_frame = False  # the pack sends classic data frames only
    is_remote_frame = False
    is_fd = False

    def message(self) -> can.Message:
        return can.Message(timestamp=self.timestamp, arbitration_id=self.arbitration_id,
                           is_extended_id=self.is_extended_id, data=self.data)


class FrameCodec:
    """One frame (name, pack address) encoded by cantools, with a cache of the payloads made (a
    resting pack repeats them).

    A frame of plain numeric signals (no value table, start value or float) that is not in the
    cache is put together from its signals' bits: each signal is encoded once per value by cantools
    on its own (as a one-signal message of the frame's length, strict as ever) and kept. The signals
    are disjoint bit fields, so the frame is the OR of them, and a frame in which one group voltage
    moved by a millivolt costs dict lookups rather than a cantools encode.

    Kept for speed, measured: encoding every missed frame through cantools instead costs 16 %
    on ``benchmarks/bench_world.py``'s idle hour (727 k -> 843 k instructions per virtual second,
    callgrind) and 31 % on its 64 A charge (871 k -> 1142 k). ``tests/test_can_tx.py`` holds the
    payloads to cantools' whole-frame encoding.
    """

    def __init__(self, name: str, address: int | None, size: int = 4096):
        self.name, self.address = name, address
        self._cache: dict[tuple, Payload] = {}
        self._size = size
        message = dbc_message(name, address)
        self._id, self._extended, self._length = message.frame_id, message.is_extended_frame, message.length
        self._fields = _single_signal_messages(message) if _plain(message, SIGNALS[name]) else None
        self._bits: list[dict[float, int]] = [{} for _ in SIGNALS[name]]

    def payload(self, values: tuple) -> Payload:
        """The payload of this frame with ``values`` in the order of ``SIGNALS[name]``."""
        hit = self._cache.get(values)
        if hit is None:
            hit = self._encode(values)
            if len(self._cache) >= self._size:
                self._cache.clear()
            self._cache[values] = hit
        return hit

    def _encode(self, values: tuple) -> Payload:
        if self._fields is None:
            msg = encode(self.name, dict(zip(SIGNALS[self.name], values)), pack_address=self.address)
            return msg.arbitration_id, msg.is_extended_id, bytes(msg.data)
        bits = 0
        for value, known, (signal, message) in zip(values, self._bits, self._fields):
            field = known.get(value)
            if field is None:
                if len(known) >= self._size:
                    known.clear()
                field = known[value] = int.from_bytes(message.encode({signal: value}), "big")
            bits |= field
        return self._id, self._extended, bits.to_bytes(self._length, "big")


def _plain(message: DbcMessage, names: tuple[str, ...]) -> bool:
    """The frame's signals are exactly ``names``, all plain numbers: equal values encode alike."""
    return (not message.is_multiplexed() and not message.is_container
            and [s.name for s in message.signals] == list(names)
            and all(s.conversion.choices is None and not s.conversion.is_float and s.initial is None
                    for s in message.signals))


def _single_signal_messages(message: DbcMessage) -> list[tuple[str, DbcMessage]]:
    """Each signal of ``message`` alone in a message of the same length and ID."""
    return [(s.name, DbcMessage(frame_id=message.frame_id, name=message.name, length=message.length,
                                signals=[s], is_extended_frame=message.is_extended_frame, strict=True))
            for s in message.signals]


def status_values(packs: list[Bms]) -> dict[tuple[str, int | None], tuple]:
    """(frame, pack address) -> values, of the frames that change only with a pack's state,
    relays, levels, failures, parallel role or SOC % (see :func:`status_key`)."""
    master = packs[0]
    p = master.p
    limits = [b.limits() for b in packs]
    active = set().union(*(_active_bits(b) for b in packs))
    out = {
        ("ChargeLimits", None): (p.can.charge_voltage_limit_v, round(sum(l[0] for l in limits), 1),
                                 round(sum(l[1] for l in limits), 1), p.can.discharge_voltage_limit_v),
        ("ProtectionsAlarms", None): (*(int(bit in active) for bit in _ALARM_BITS), master.modules),
        ("ChargeRequest", None): (int(all(l[2] for l in limits)), int(all(l[3] for l in limits)), 0, 0, 0),
        ("ManufacturerName", None): (p.can.manufacturer,),
    }
    for bms in packs:
        r = bms.report
        out["DetailStatus", bms.address] = (
            bms.state, int(bms.relays[0]), int(bms.relays[1]), int(bms.relays[2]), round(r.soc_pct),
            bms.parallel_role, *(int(bit in r.failures) for bit in _FAILURE_BITS))
        out["DetailProtection", bms.address] = tuple(_LEVEL_NAMES[r.levels.get(n, 0)] for n in PROTECTIONS)
    return out


def status_key(bms: Bms) -> tuple:
    """Everything :func:`status_values` reads from one pack (its profile aside)."""
    r = bms.report
    return (bms.state, bms.relays, bms.parallel_role, bms.modules, r.pcs_alarm, round(r.soc_pct),
            tuple(r.levels.items()), frozenset(r.failures))


def measured_values(packs: list[Bms]) -> dict[tuple[str, int | None], tuple]:
    """(frame, pack address) -> values, of the frames with what the packs measure (the system
    frames average the packs' readings, or add their currents)."""
    out = {}
    soc = soh = volts = amps = temp = 0
    for bms in packs:
        r, address = bms.report, bms.address
        soc += r.soc_pct
        soh += r.soh_pct
        volts += _known(r.pack_v)
        amps += r.current_a
        temps = r.temps_c.tolist()
        temp += sum(temps[:4]) / 4
        g = r.groups_v.tolist()
        lo, hi = min(g), max(g)
        if not 0.0 <= lo <= hi <= 65.535 or math.isnan(sum(g)):  # out of the DBC's range, or never read
            g = [min(max(v, 0.0), 65.535) if v == v else 0.0 for v in g]
            lo, hi = min(g), max(g)
        for name, four in zip(_GROUP_FRAMES, zip(*[iter(g)] * 4)):  # groups 1-4, 5-8, ...
            out[name, address] = four
        t = [round(x, 1) for x in temps]  # 0.1 C, as sent
        out["DetailTemperatures", address] = tuple(t[:4])
        out["DetailSummary", address] = (t[4], lo, hi, round(bms.capacity_ah * r.soc_pct / 100.0, 2))
    n = len(packs)
    sent_soc = min(max(soc / n * packs[0].p.can.soc_scale, 0.0), 100.0)  # 1 in a conforming build
    out["StateOfCharge", None] = (round(sent_soc), round(soh / n))
    out["PackMeasurements", None] = (round(volts / n, 2), round(amps, 1), round(temp / n, 1))
    return out


def _known(value: float) -> float:
    """A reading the BMS does not have (its front-end never answered) goes out as 0."""
    return value if value == value else 0.0


def _active_bits(bms: Bms) -> set[str]:
    """0x359 signals this pack sets, as its firmware profile maps them."""
    p, r = bms.p, bms.report
    bits = set()
    for name, level in r.levels.items():
        if level:
            row = getattr(p.protections, name)
            kind = getattr(p.levels, f"l{level}").can
            bits.add(row.can_alarm if kind == "alarm" else row.can_protection)
    if r.failures:
        if r.failures - {p.pcs_loss.failure_bit}:
            bits.add(p.failure_response.can_protection)
        for name in FAILURES:
            f = getattr(p.failures, name)
            if f.failure_bit in r.failures and f.can_alarm:
                bits.add(f.can_alarm)
        if p.short_circuit.failure_bit in r.failures:
            bits.add(p.short_circuit.can_protection)
    if r.pcs_alarm:
        bits.add(p.pcs_loss.can_alarm)
    return bits


class CanReporter:
    """Builds and encodes the CAN reports of ``packs`` (the pack on the CAN bus first): every
    report, the frames of the burst in the order sent (:func:`burst`, fixed by the profile and the
    packs).

    The status frames are encoded again only when a pack's status changed (:func:`status_key`):
    building them at every report costs 18 % on ``benchmarks/bench_world.py``'s idle hour
    (727 k -> 861 k instructions per virtual second, callgrind) and 15 % on its 64 A charge.
    """

    def __init__(self, packs: list[Bms]):
        self.packs = packs
        self._burst = burst(packs)
        self._codecs = {key: FrameCodec(*key) for key in self._burst}
        self._status_key: tuple = ()
        self._status: dict[tuple[str, int | None], Payload] = {}  # (frame, address) -> payload

    def frames(self, t_ns: int) -> list[Frame]:
        """The burst sent at ``t_ns``."""
        key = tuple(status_key(b) for b in self.packs)
        if key != self._status_key:
            self._status_key = key
            self._status = {k: self._codecs[k].payload(v) for k, v in status_values(self.packs).items()
                            if k in self._codecs}
        measured = measured_values(self.packs)
        t_s = t_ns / NS
        return [Frame(t_s, *(self._status.get(k) or self._codecs[k].payload(measured[k]))) for k in self._burst]


def burst(packs: list[Bms]) -> list[tuple[str, int | None]]:
    """(frame, pack address) of a burst, in the order sent: the profile's Pylon frames, then each
    pack's detail frames."""
    p = packs[0].p
    order = [(name, None) for name in SYSTEM_FRAMES if name in p.can.frames]
    if p.can.detail_frames:
        order += [(name, bms.address) for bms in packs for name in DETAIL_FRAMES]
    return order
