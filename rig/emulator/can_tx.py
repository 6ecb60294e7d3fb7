"""What the emulated pack puts on the CAN bus (PACK_SPEC.md 6), encoded through pack.dbc.

The pack on the CAN bus (the master, or a single pack) sends every ``can.period_s``:

- the Pylon frames listed in the profile's ``can.frames`` for the *system* (with two packs:
  mean voltage, SOC and temperature, total current and limits, both modules counted);
- with ``can.detail_frames``, its own detail frames 0x18A0nn02 and, in parallel, the slave's
  0x18A0nn03 with what the slave reported over RS485.

Which bit reports what comes from the firmware profile (``can_alarm``, ``can_protection``,
``failure_bit``), so a profile with a swapped bit sends the swapped bit. Encoding is cantools'
(``strict``: a value outside the DBC range raises); identical payloads are reused from a cache
because a pack at rest repeats most frames.
"""
from __future__ import annotations

import can

from rig.emulator.bms import Bms
from rig.files.can_names import CHOICES
from rig.files.rows import FAILURES, PROTECTIONS
from rig.protocol.can_frames import encode

#: detail frame level signal of each protection row, in PACK_SPEC.md 4 order
LEVEL_SIGNALS = {name: "".join(w.capitalize() for w in name.split("_")) + "Level" for name in PROTECTIONS}
_LEVEL_NAMES = ("None", "L1", "L2", "L3")


class FrameEncoder:
    """cantools encoding, with a cache of the payloads already made (a resting pack repeats them)."""

    def __init__(self, size: int = 4096):
        self._cache: dict[tuple, tuple[int, bool, bytes]] = {}
        self._size = size

    def __call__(self, name: str, signals: dict, address: int | None, t_ns: int) -> can.Message:
        key = (name, address, tuple(signals.values()))
        hit = self._cache.get(key)
        if hit is None:
            msg = encode(name, signals, pack_address=address)
            if len(self._cache) >= self._size:
                self._cache.clear()
            hit = self._cache[key] = (msg.arbitration_id, msg.is_extended_id, bytes(msg.data))
        return can.Message(timestamp=t_ns / 1e9, arbitration_id=hit[0], is_extended_id=hit[1],
                           data=hit[2])


def system_signals(packs: list[Bms]) -> dict[str, dict]:
    """Signals of the Pylon frames for the system of ``packs`` (master first)."""
    master = packs[0]
    p = master.p
    reports = [b.report for b in packs]
    limits = [b.limits() for b in packs]
    n = len(packs)
    alarms = dict.fromkeys(CHOICES["can_protection"] + CHOICES["can_alarm"], 0)
    for b in packs:
        for sig in _active_bits(b):
            alarms[sig] = 1
    return {
        "ChargeLimits": {
            "ChargeVoltageLimit": p.can.charge_voltage_limit_v,
            "ChargeCurrentLimit": round(sum(l[0] for l in limits), 1),
            "DischargeCurrentLimit": round(sum(l[1] for l in limits), 1),
            "DischargeVoltageLimit": p.can.discharge_voltage_limit_v},
        "StateOfCharge": {"SOC": round(sum(r.soc_pct for r in reports) / n),
                          "SOH": round(sum(r.soh_pct for r in reports) / n)},
        "PackMeasurements": {
            "Voltage": round(sum(_known(r.pack_v) for r in reports) / n, 2),
            "Current": round(sum(r.current_a for r in reports), 1),
            "Temperature": round(sum(float(r.temps_c[:4].mean()) for r in reports) / n, 1)},
        "ProtectionsAlarms": alarms | {"ModuleCount": master.modules},
        "ChargeRequest": {"ChargeEnable": int(all(l[2] for l in limits)),
                          "DischargeEnable": int(all(l[3] for l in limits)),
                          "ForceChargeI": 0, "ForceChargeII": 0, "FullChargeRequest": 0},
        "ManufacturerName": {"ManufacturerName": p.can.manufacturer},
    }


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
    failures = r.failures - {p.pcs_loss.failure_bit}
    if failures:
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


def detail_signals(bms: Bms) -> dict[str, dict]:
    """Signals of one pack's detail frames (the pack's own view, PACK_SPEC.md 6)."""
    r = bms.report
    from rig.files.can_names import CHOICES
    status = {"State": bms.state, "Relay1Closed": int(bms.relays[0]),
              "Relay2Closed": int(bms.relays[1]), "PrechargeClosed": int(bms.relays[2]),
              "SOC": round(r.soc_pct), "ParallelRole": bms.parallel_role}
    status |= {bit: int(bit in r.failures) for bit in CHOICES["failure_bit"]}
    g = [min(max(_known(float(v)), 0.0), 65.535) for v in r.groups_v]
    t = [round(float(x), 1) for x in r.temps_c]
    out = {"DetailStatus": status,
           "DetailProtection": {LEVEL_SIGNALS[n]: _LEVEL_NAMES[r.levels.get(n, 0)] for n in PROTECTIONS}}
    for k, name in enumerate(("DetailGroupVoltages1to4", "DetailGroupVoltages5to8",
                              "DetailGroupVoltages9to12", "DetailGroupVoltages13to16")):
        out[name] = {f"Group{4 * k + i + 1}Voltage": g[4 * k + i] for i in range(4)}
    out["DetailTemperatures"] = {f"Temperature{i + 1}": t[i] for i in range(4)}
    out["DetailSummary"] = {"Temperature5PowerStage": t[4], "MinGroupVoltage": min(g),
                            "MaxGroupVoltage": max(g),
                            "RemainingCapacity": round(bms.capacity_ah * r.soc_pct / 100.0, 2)}
    return out


class CanReporter:
    """Builds and encodes the frames one CAN report (one period) consists of."""

    def __init__(self):
        self.encode = FrameEncoder()

    def frames(self, packs: list[Bms], t_ns: int) -> list[can.Message]:
        """The burst sent at ``t_ns`` by the pack on the CAN bus, ``packs[0]``."""
        master = packs[0]
        out = []
        for name, signals in system_signals(packs).items():
            if name in master.p.can.frames:
                out.append(self.encode(name, signals, None, t_ns))
        if master.p.can.detail_frames:
            for bms in packs:
                for name, signals in detail_signals(bms).items():
                    out.append(self.encode(name, signals, bms.address, t_ns))
        return out
