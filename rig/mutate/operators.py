"""Broken firmware builds, made mechanically: one field of a firmware profile changed at a time.

Each operator reads the pack spec (what the pack must do, with its tolerances) and a base
firmware profile (what the emulated BMS does) and changes one value of the profile so that the
emulated pack no longer meets one requirement: a threshold moved twice its tolerance past the
spec's value, a delay lengthened past delay + tolerance or halved, a level switched off, a level's
action weakened, a release moved, a CAN bit swapped with its neighbour, a derating changed, a
light band's edge, pattern or period changed, a failure no longer detected, a procedure value
moved. Twice the tolerance, not just past it: the BMS model measures with errors of up to half a
tolerance (PACK_MODEL_FACTS.md 6), and a mutant the BMS's own sensing could hide says nothing
about the suite.

A :class:`Mutant` is named ``<requirement id>:<field>:<operator>``; its ``targets`` are the
requirement ids whose tests should notice it (a level of every row: all protections).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from rig.files.pack_spec import PackSpec
from rig.files.rows import FAILURES, PROTECTIONS

#: 0x359 bits in the DBC's order, for "swap with a neighbour"
ALARM_BITS = ("AlarmHighVoltage", "AlarmLowVoltage", "AlarmHighTemperature", "AlarmLowTemperature",
              "AlarmDischargeHighCurrent", "AlarmChargeHighCurrent", "AlarmInternalCommunicationFail")
PROTECTION_BITS = ("ProtectionOverVoltage", "ProtectionUnderVoltage", "ProtectionOverTemperature",
                   "ProtectionUnderTemperature", "ProtectionDischargeOverCurrent",
                   "ProtectionChargeOverCurrent", "ProtectionSystemError")
#: 0x18A001aa failure bits in order (PACK_SPEC.md 6)
FAILURE_BITS = ("FailureRelay1", "FailureRelay2", "FailurePrecharge", "FailureVoltageFrontEnd",
                "FailureTemperatureSampling", "FailureCurrentSampling", "FailureCurrentLimitation",
                "FailureParallelConnection", "FailurePcsCommunication", "FailureZeroVoltCell",
                "FailureCellVoltageDifference", "FailureShortCircuit")
OTHER_LIGHT = {"alm_on": "alm_flicker", "alm_flicker": "alm_on"}


@dataclass(frozen=True)
class Mutant:
    """One broken build: ``path`` of the profile set to ``value`` (``None`` deletes the key)."""

    requirement: str
    operator: str
    path: tuple
    value: object
    before: object
    why: str
    targets: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.requirement}:{'.'.join(map(str, self.path))}:{self.operator}"

    def apply(self, base: dict) -> dict:
        """The base profile (a TOML dict) with this one change."""
        profile = copy.deepcopy(base)
        node = profile
        for key in self.path[:-1]:
            node = node[key]
        if self.value is None:
            node.pop(self.path[-1], None)
        else:
            node[self.path[-1]] = self.value
        profile["meta"] = {"name": self.name, "description": f"mutant of {base['meta']['name']}: {self.why}"}
        return profile


def _neighbour(bits: tuple[str, ...], bit: str) -> str | None:
    if bit not in bits:
        return None
    i = bits.index(bit)
    return bits[i + 1] if i + 1 < len(bits) else bits[i - 1]


def _round(x: float) -> float:
    return round(x, 6)


class _Maker:
    """Collects mutants; ``add`` skips a change that changes nothing."""

    def __init__(self, base: dict):
        self.base, self.mutants = base, []

    def get(self, path):
        node = self.base
        for key in path:
            node = node[key]
        return node

    def add(self, requirement, operator, path, value, why, targets=None):
        before = self.get(path) if self._has(path) else None
        if value == before:
            return
        self.mutants.append(Mutant(requirement, operator, tuple(path), value, before, why,
                                   tuple(targets or (requirement,))))

    def _has(self, path) -> bool:
        try:
            self.get(path)
            return True
        except (KeyError, IndexError, TypeError):
            return False


def _row_tolerance(spec: PackSpec, row) -> float:
    t = spec.tolerance
    if row.unit == "V":
        return t.pack_voltage_v if row.quantity == "pack_voltage" else t.group_voltage_v
    return t.current_a if row.unit == "A" else t.temperature_c


def protection_mutants(m: _Maker, spec: PackSpec) -> None:
    late = spec.tolerance.delay_late_s
    for name in PROTECTIONS:
        row, req, path = getattr(spec.protections, name), getattr(spec.protections, name).id, ("protections", name)
        tol, up = _row_tolerance(spec, row), 1.0 if row.trips == "above" else -1.0
        for i, level in enumerate(row.levels(), start=1):
            lp = path + (f"l{i}",)
            m.add(req, "threshold_late", lp + ("threshold",), _round(level.threshold + up * 2 * tol),
                  f"L{i} trips {2 * tol:g} {row.unit} past the spec's {level.threshold:g}")
            m.add(req, "threshold_early", lp + ("threshold",), _round(level.threshold - up * 2 * tol),
                  f"L{i} trips {2 * tol:g} {row.unit} short of the spec's {level.threshold:g}")
            m.add(req, "delay_late", lp + ("delay_s",), _round(level.delay_s + 2 * late),
                  f"L{i} trips {2 * late:g} s after its {level.delay_s:g} s delay")
            m.add(req, "delay_early", lp + ("delay_s",), _round(level.delay_s / 2),
                  f"L{i} trips after half its {level.delay_s:g} s delay")
            m.add(req, "disabled", lp + ("enabled",), False, f"L{i} never trips")
        action = row.l3.action
        weaker = {"power_off": "open_latch", "failure": "open_latch", "open_latch": "power_off"}[action]
        m.add(req, "action", path + ("l3", "action"), weaker, f"L3 does {weaker} instead of {action}")
        rel = row.release
        if rel.value is not None:
            m.add(req, "release_early", path + ("release", "value"), _round(rel.value + up * 2 * tol),
                  f"releases {2 * tol:g} {row.unit} closer to the trip than {rel.value:g}")
            m.add(req, "release_late", path + ("release", "value"), _round(rel.value - up * 2 * tol),
                  f"releases {2 * tol:g} {row.unit} further from the trip than {rel.value:g}")
        elif rel.margin is not None:
            m.add(req, "release_early", path + ("release", "margin"), _round(max(rel.margin - 2 * tol, tol / 2)),
                  f"releases {2 * tol:g} {row.unit} closer to the trip than a {rel.margin:g} margin")
        elif rel.after_cut_s is not None:
            m.add(req, "release_early", path + ("release", "after_cut_s"), _round(rel.after_cut_s / 2),
                  f"releases after half the {rel.after_cut_s:g} s")
        for kind, bits in (("can_alarm", ALARM_BITS), ("can_protection", PROTECTION_BITS)):
            other = _neighbour(bits, getattr(row, kind))
            if other:
                m.add(req, "bit_swapped", path + (kind,), other, f"reports {other} instead of {getattr(row, kind)}")
        m.add(req, "light", path + ("light",), OTHER_LIGHT[row.light], f"ALM {OTHER_LIGHT[row.light]}, not {row.light}")
        m.add(req, "no_light", path + ("light",), "none", f"no ALM light, not {row.light}")
        factor = spec.levels.l1.current_limit_factor   # this row alone does not derate at L1
        if factor < 1.0:
            m.add(req, "row_derating", path + ("l1", "current_limit_factor"), 1.0,
                  f"L1 of this row keeps the full current limit, not {factor:g} x")


def level_mutants(m: _Maker, spec: PackSpec) -> None:
    rows = tuple(getattr(spec.protections, n).id for n in PROTECTIONS)
    for i, action in enumerate((spec.levels.l1, spec.levels.l2, spec.levels.l3), start=1):
        lp = ("levels", f"l{i}")
        derated = 0.5 if action.current_limit_factor < 0.5 else 1.0
        m.add("REQ-PROT", "derating", lp + ("current_limit_factor",), derated,
              f"L{i} sets the current limit to {derated:g} x, not {action.current_limit_factor:g} x", rows)
        other = "protection" if action.can == "alarm" else "alarm"
        m.add("REQ-PROT", "can_kind", lp + ("can",), other, f"L{i} raises the {other} bit, not the {action.can} bit", rows)
        hold = action.open_relays_if_current_for_s
        if hold is not None:
            m.add("REQ-PROT", "relays_kept_closed", lp + ("open_relays_if_current_for_s",),
                  _round(hold + 2 * spec.tolerance.delay_late_s + 2.0),
                  f"L{i} keeps the relays closed {2 * spec.tolerance.delay_late_s + 2:g} s longer", rows)


def failure_mutants(m: _Maker, spec: PackSpec) -> None:
    for name in FAILURES:
        f = getattr(spec.failures, name)
        path = ("failures", name)
        m.add(f.id, "not_detected", path + ("detect",), False, f"the {name} failure is never detected")
        other = _neighbour(FAILURE_BITS, f.failure_bit)
        m.add(f.id, "bit_swapped", path + ("failure_bit",), other, f"reports {other} instead of {f.failure_bit}")
    ids = tuple(getattr(spec.failures, n).id for n in FAILURES)
    other = _neighbour(PROTECTION_BITS, spec.failure_response.can_protection)
    m.add("REQ-FAIL", "bit_swapped", ("failure_response", "can_protection"), other,
          f"a failure reports {other} instead of {spec.failure_response.can_protection}", ids)
    m.add("REQ-FAIL", "light", ("failure_response", "light"), OTHER_LIGHT[spec.failure_response.light],
          "a failure shows the other ALM light", ids)
    sc, zv = spec.short_circuit, spec.zero_volt_cell
    m.add(sc.id, "disabled", ("short_circuit", "enabled"), False, "a short circuit is never cut")
    # delay + the timing tolerance (the profile allows at most 1 s here): far past the rig's 10 ms
    m.add(sc.id, "delay_late", ("short_circuit", "delay_s"), _round(sc.delay_s + spec.tolerance.delay_late_s),
          f"the short circuit is cut {spec.tolerance.delay_late_s:g} s late")
    m.add(sc.id, "bit_swapped", ("short_circuit", "failure_bit"), _neighbour(FAILURE_BITS, sc.failure_bit),
          "reports the wrong failure bit")
    m.add(zv.id, "disabled", ("zero_volt_cell", "enabled"), False, "a 0 V cell is never noticed")
    m.add(zv.id, "bit_swapped", ("zero_volt_cell", "failure_bit"), _neighbour(FAILURE_BITS, zv.failure_bit),
          "reports the wrong failure bit")


def light_mutants(m: _Maker, spec: PackSpec) -> None:
    lights, req, tol = spec.lights, spec.lights.id, spec.tolerance
    for table in ("charging", "discharging"):
        bands = getattr(lights, table)
        for i, band in enumerate(bands):
            path = ("lights", table, i)
            if i + 1 < len(bands):   # move the edge between band i and i+1 up, keeping the cover
                edge = min(band.soc[1] + 2 * int(tol.soc_pct), bands[i + 1].soc[1] - 1)
                moved = copy.deepcopy(m.get(("lights", table)))
                moved[i]["soc"], moved[i + 1]["soc"] = [band.soc[0], edge], [edge + 1, bands[i + 1].soc[1]]
                m.add(req, f"band{i}_edge", ("lights", table), moved, f"{table} band {i} ends at {edge} %, not {band.soc[1]} %")
            leds = list(m.get(path + ("leds",)))
            j = next((k for k, s in enumerate(leds) if s == "off"), 0)
            pattern = leds[:j] + ["on" if leds[j] == "off" else "off"] + leds[j + 1:]
            m.add(req, "pattern", path + ("leds",), pattern, f"{table} band {list(band.soc)}: LED{j + 1} wrong")
            k = next((k for k, s in enumerate(leds) if isinstance(s, float)), None)
            if k is not None:
                slower = leds[:k] + [_round(leds[k] * 2)] + leds[k + 1:]
                m.add(req, "period", path + ("leds",), slower, f"{table} band {list(band.soc)}: LED{k + 1} flickers at twice the period")
    m.add(req, "alm_period", ("lights", "alm_flicker_period_s"), _round(lights.alm_flicker_period_s * 2), "ALM flickers at twice the period")
    m.add(req, "low_soc_edge", ("lights", "low_soc_alm_max_pct"), _round(lights.low_soc_alm_max_pct + 2 * tol.soc_pct),
          "ALM low-SOC flicker band ends too high")
    m.add(req, "low_soc_light", ("lights", "low_soc_light"), OTHER_LIGHT[lights.low_soc_light], "the low-SOC ALM light is the other one")


def procedure_mutants(m: _Maker, spec: PackSpec) -> None:
    act, pon, poff, pcs, par, can = spec.activation, spec.power_on, spec.power_off, spec.pcs_loss, spec.parallel, spec.can
    edge = 2 * act.edge_tolerance_v
    m.add(act.id, "min_v", ("activation", "min_v"), _round(act.min_v + edge), f"activates only from {act.min_v + edge:g} V")
    m.add(act.id, "max_v", ("activation", "max_v"), _round(act.max_v - edge), f"activates only up to {act.max_v - edge:g} V")
    m.add(pon.id, "hold_longer", ("power_on", "button_hold_s"), _round(pon.button_hold_s + 1.0), "needs a 1 s longer press")
    m.add(pon.id, "hold_shorter", ("power_on", "button_hold_s"), _round(pon.ignore_shorter_than_s / 2),
          "turns on at a press shorter than the spec ignores")
    m.add(pon.id, "wake_off", ("power_on", "wake_enabled"), False, "WAKE does nothing")
    m.add(pon.id, "precharge_slow", ("power_on", "precharge_s"), _round(pon.relays_closed_within_s + 1.0),
          "closes the main relays late")
    m.add(poff.id, "hold_longer", ("power_off", "button_hold_s"), _round(poff.button_hold_s + 1.0), "needs a 1 s longer press")
    m.add(poff.id, "flickers", ("power_off", "flicker_count"), poff.flicker_count + 1, "one flicker too many")
    m.add(poff.id, "flicker_period", ("power_off", "flicker_period_s"), _round(poff.flicker_period_s * 2), "flickers slowly")
    m.add(poff.id, "forced_off", ("power_off", "forced_off_max_charge_current_a"),
          _round(poff.forced_off_max_charge_current_a * 20), "turns off while charging")
    m.add(pcs.id, "disabled", ("pcs_loss", "enabled"), False, "never notices a lost PCS")
    m.add(pcs.id, "alarm_late", ("pcs_loss", "alarm_after_s"), _round(pcs.alarm_after_s * 1.5), "PCS-loss alarm late")
    m.add(pcs.id, "power_off_late", ("pcs_loss", "power_off_after_s"), _round(pcs.power_off_after_s * 1.5), "PCS-loss power-off late")
    m.add(pcs.id, "bit_swapped", ("pcs_loss", "can_alarm"), _neighbour(ALARM_BITS, pcs.can_alarm), "PCS loss reports the wrong bit")
    m.add(par.id, "max_difference", ("parallel", "max_voltage_difference_v"), _round(par.max_voltage_difference_v * 3),
          "joins packs too far apart")
    m.add(par.id, "window", ("parallel", "power_on_window_s"), _round(par.power_on_window_s / 3), "parallel power-on window too short")
    m.add(par.id, "flickers", ("parallel", "success_flicker_count"), par.success_flicker_count + 1, "one success flicker too many")
    m.add(par.id, "missed_polls", ("parallel", "rs485_missed_polls"), m.get(("parallel", "rs485_missed_polls")) + 3,
          "notices a lost partner late")
    m.add(spec.soc.id, "full_tail", ("soc", "full_tail_current_a"), _round(spec.soc.full_tail_current_a * 4),
          "calls the pack full too early")
    for key, step in (("charge_voltage_limit_v", 0.5), ("discharge_voltage_limit_v", -0.5),
                      ("charge_current_limit_a", 5.0), ("discharge_current_limit_a", 5.0)):
        m.add(can.id, key, ("can", key), _round(getattr(can, key) + step), f"reports {key} {step:+g} off")
    m.add(can.id, "manufacturer", ("can", "manufacturer"), "PYLONTEC", "another manufacturer name")
    m.add(can.id, "period", ("can", "period_s"), _round(can.period_s * 1.5), "reports every 1.5 s")
    low = 1.0 - 3 * spec.tolerance.soc_pct / 100.0    # past the SOC tolerance at a full pack
    m.add(spec.soc.id, "soc_scale", ("can", "soc_scale"), _round(low), f"sends the SOC x {low:g} in 0x355")
    for frame in can.frames:
        m.add(can.id, f"no_{frame}", ("can", "frames"), [f for f in m.get(("can", "frames")) if f != frame],
              f"never sends {frame}")


def generate(base: dict, spec: PackSpec, only: str | None = None) -> list[Mutant]:
    """Every mutant of ``base`` (a firmware profile as a TOML dict), optionally only those whose
    requirement or targets include ``only``."""
    maker = _Maker(base)
    for make in (protection_mutants, level_mutants, failure_mutants, light_mutants, procedure_mutants):
        make(maker, spec)
    mutants = maker.mutants
    if only:
        mutants = [x for x in mutants if x.requirement == only or only in x.targets]
    return mutants
