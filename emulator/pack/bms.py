"""The emulated BMS firmware: states, power on/off, protections' actions, failures, SOC, lights.

Every number and choice comes from the firmware profile; none is written here. The world
(:mod:`emulator.world`) owns the physics and calls, in virtual time:

- :meth:`Bms.sample` at the BMS's sample instants with the true quantities (the BMS measures
  them through its own sensing errors, :class:`Sensing`);
- :meth:`Bms.on_button`, :meth:`Bms.on_wake`, :meth:`Bms.on_pcs_frame`,
  :meth:`Bms.on_short_circuit` at the instant those happen;
- :meth:`Bms.next_deadline_ns` to land exactly on the next timer (a protection delay, the end
  of a button hold, of a pre-charge, of the power-off flicker, of the PCS-loss wait).

It answers with the relay commands (:attr:`Bms.relays`), the state, the current limits and
enable bits, the CAN report (:class:`Report`) and the panel's light patterns.

States (detail frame 0x18A001, byte 0): Off 0, Standby 1, Run 2, Fault 3, PoweringOff 4.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emulator.pack import lights
from emulator.pack.protections import ProtectionEngine, quantity_values
from emulator.firmware.profile import FirmwareProfile
from rig.files.rows import FAILURES

_NS = 1_000_000_000
OFF, STANDBY, RUN, FAULT, POWERING_OFF = "Off", "Standby", "Run", "Fault", "PoweringOff"


def ns(seconds: float) -> int:
    return round(seconds * _NS)


@dataclass
class Truth:
    """What is physically there at one instant (the world's side of the BMS's sensors)."""

    groups_v: np.ndarray        # 16 group voltages at the cell taps, V
    current_a: float            # pack current, A, + = charge
    temps_c: np.ndarray         # T1-T4 cell sensors, T5 power stage, C
    bus_v: float                # P+/P- on the outside of the relays, V
    relays_closed: tuple[bool, bool, bool]  # feedback contacts: relay 1, relay 2, pre-charge


class Sensing:
    """The BMS's measurement errors (PACK_MODEL_FACTS.md 6, sized by the profile).

    A fixed per-channel offset plus noise drawn from a table indexed by the sample number, so
    a reading at a given instant is the same however the world stepped to it.
    """

    def __init__(self, profile: FirmwareProfile, rng: np.random.Generator, groups: int = 16):
        m = profile.measurement
        self.m = m
        self.group_offset = rng.uniform(-m.group_offset_max_v, m.group_offset_max_v, groups)
        noise = rng.normal(0.0, m.group_noise_rms_v, (4096, groups)) if m.group_noise_rms_v else np.zeros((1, groups))
        self._error = self.group_offset + noise  # the error at each sample number, summed once
        self.temp_offset = rng.uniform(-m.temperature_offset_max_c, m.temperature_offset_max_c, 5)
        self.sample_ns = ns(profile.bms.sample_period_s)

    def groups(self, true_v: np.ndarray, t_ns: int) -> np.ndarray:
        v = true_v + self._error[(t_ns // self.sample_ns) % len(self._error)]
        return v.round(3)  # the AFE reports whole millivolts

    def current(self, true_a: float) -> float:
        """The shunt reading; within the firmware's dead band it counts as no current at all (a
        standing offset would otherwise be counted as charge for hours)."""
        measured = true_a * (1.0 + self.m.current_gain_error) + self.m.current_offset_a
        return 0.0 if abs(measured) < self.m.current_deadband_a else measured

    def temps(self, true_c: np.ndarray) -> np.ndarray:
        r = self.m.temperature_resolution_c
        return ((true_c + self.temp_offset) / r).round() * r


@dataclass
class Report:
    """What the BMS last measured and decided, for CAN, RS485 and the tests."""

    groups_v: np.ndarray = field(default_factory=lambda: np.full(16, np.nan))  # nan: never read
    pack_v: float = 0.0
    current_a: float = 0.0
    temps_c: np.ndarray = field(default_factory=lambda: np.full(5, 25.0))
    soc_pct: float = 50.0
    soh_pct: float = 100.0
    levels: dict[str, int] = field(default_factory=dict)
    failures: set[str] = field(default_factory=set)   # failure_bit signal names
    pcs_alarm: bool = False


class Bms:
    """One pack's BMS. ``address``: 2 master (or single), 3 slave."""

    def __init__(self, profile: FirmwareProfile, rng: np.random.Generator, *, address: int = 2,
                 capacity_ah: float = 128.0, soc_pct: float = 50.0):
        self.p = profile
        self.address = address
        self.capacity_ah = capacity_ah
        self.sense = Sensing(profile, rng)
        self.engine = ProtectionEngine(profile)
        self.report = Report(soc_pct=soc_pct, soh_pct=profile.soc.initial_soh_pct)
        self.state = OFF
        self.relays = (False, False, False)           # commanded: relay 1, relay 2, pre-charge
        self.sensor_faults: set[str] = set()          # inserted: voltage_frontend, temperature_sampling ...
        self.parallel_role = "Single"
        self.parallel_mode = False   # set by the parallel link: relays wait for the partner
        self.parallel_ok = False
        self.modules = 1
        self.run_pattern: lights.Pattern | None = None  # parallel success flicker
        self._t_last: int | None = None
        self._off_since = 0
        self._button_down: int | None = None
        self._in_window_since: int | None = None
        self._activation_armed = True                 # off with no voltage in the window since: wakes on one
        self._precharge_since: int | None = None
        self._cut_since: dict[str, int] = {}          # row -> current flowing against an L2 since
        self._cut_rows: set[str] = set()              # rows whose L2 opened the relays
        self._l3_since: dict[str, int] = {}           # row -> current flowing against a timed L3 since
        self._l3_cut_rows: set[str] = set()           # rows whose timed L3 opened the relays
        self._pcs_seen: int = 0
        self._poweroff_at: int | None = None
        self._panel_since = 0
        self._panel_key: tuple = ()
        self._panel_shown: tuple = ((), {})
        self._reestimate = False                      # re-read SOC from rest voltage at next sample
        self._fault_off = False                       # the power-off under way is a fault power-off
        self._out_since_full: float | None = None     # Ah discharged since the last full recalibration
        self._measured: tuple = (None, None, None)    # (t_ns, truth, quantities) of the last reading
        # timers looked at every sample, in ns once (a profile is immutable)
        self._pcs_alarm_ns = ns(profile.pcs_loss.alarm_after_s)
        self._pcs_off_ns = ns(profile.pcs_loss.power_off_after_s)
        self._pcs_watched = profile.pcs_loss.enabled and address == 2  # only the pack on the CAN bus hears the PCS
        hold = profile.levels.l2.open_relays_if_current_for_s
        self._cut_hold_ns = None if hold is None else ns(hold)
        # L3 opens the relays at once when its hold is 0 (PACK_SPEC 4); a build with a hold opens
        # them only after current kept flowing that long, one without (None) never
        l3_hold = profile.levels.l3.open_relays_if_current_for_s
        self._l3_at_once = l3_hold == 0.0
        self._l3_hold_ns = ns(l3_hold) if l3_hold else None
        self._relay_checks = [(i, getattr(profile.failures, name).failure_bit)
                              for i, name in enumerate(("relay1", "relay2")) if getattr(profile.failures, name).detect]

    # --- inputs the world reports as they happen ----------------------------------------------
    def on_button(self, pressed: bool, t_ns: int) -> None:
        self._button_down = t_ns if pressed else None

    def on_wake(self, active: bool, t_ns: int) -> None:
        if active and self.state == OFF and self.p.power_on.wake_enabled:
            self._power_on(t_ns)

    def on_pcs_frame(self, t_ns: int) -> None:
        self._pcs_seen = t_ns

    def on_short_circuit(self, t_ns: int) -> None:
        """The hardware short-circuit detector fired: cut, latch until power cycle."""
        if self.awake:
            self.report.failures.add(self.p.short_circuit.failure_bit)
            self._open(t_ns)

    @property
    def awake(self) -> bool:
        return self.state != OFF

    # --- the sample ---------------------------------------------------------------------------
    def conditions(self, truth: Truth, t_ns: int) -> tuple:
        """Everything a sample's decisions depend on, coarsely: equal at two instants means a
        sample in between would have changed nothing but counters (the world's step check)."""
        if self.state == OFF:
            return (self._activation_window(truth.bus_v),)
        q = self._quantities(truth, t_ns)
        return (self.engine.conditions(q), abs(q["charge_current"] - q["discharge_current"])
                >= self.p.bms.run_current_a, self._lowest_group_zero(q), int(self.report.soc_pct),
                self._full(q))

    def sample(self, truth: Truth, t_ns: int) -> None:
        """One BMS sample at ``t_ns`` (the world calls it at sample instants and deadlines)."""
        dt = 0.0 if self._t_last is None else (t_ns - self._t_last) / _NS
        self._t_last = t_ns
        self._buttons(t_ns)
        if self.state == OFF:
            self._activation(truth.bus_v, t_ns)
            return
        if self.state == POWERING_OFF:
            if t_ns >= self._poweroff_at:
                self._become_off(t_ns)
            return
        r = self.report
        q = self._quantities(truth, t_ns)
        r.groups_v, r.current_a = self._groups_now, self._current_now
        r.pack_v, r.temps_c = self._pack_v_now, self._temps_now
        if self._reestimate:
            self._soc_from_rest_voltage()
        self._count_charge(dt, q)
        self._detect_failures(truth, t_ns)
        for name, level, change in self.engine.update(t_ns, q, no_current=abs(r.current_a) < self.p.bms.run_current_a):
            if change == "trip" and level == 3:
                self._level3(name, t_ns)
            if change == "release":
                self._cut_rows.discard(name) if level == 2 else self._l3_cut_rows.discard(name)
        r.levels = self.engine.levels()
        self._level2_cuts(q, t_ns)
        if self._l3_hold_ns is not None:
            self._level3_cuts(q, t_ns)
        if self._lowest_group_zero(q) and self.p.zero_volt_cell.enabled:
            r.failures.add(self.p.zero_volt_cell.failure_bit)
            self._start_power_off(t_ns, fault=True)
            return
        self._pcs(t_ns)
        if self.state == POWERING_OFF:
            return
        self._relays(truth, t_ns)

    def _quantities(self, truth: Truth, t_ns: int) -> dict[str, float]:
        if self._measured[0] == t_ns and self._measured[1] is truth:
            return self._measured[2]  # the world asks twice per instant: conditions, then sample
        groups = (self.report.groups_v if "voltage_frontend" in self.sensor_faults
                  else self.sense.groups(truth.groups_v, t_ns))
        current = 0.0 if "current_sampling" in self.sensor_faults else self.sense.current(truth.current_a)
        temps = self.sense.temps(truth.temps_c)
        if "temperature_sampling" in self.sensor_faults:
            temps = self.report.temps_c  # an open/short sensor is ignored, the last good value held
        pack_v = float(np.add.reduce(groups))
        self._groups_now, self._current_now, self._temps_now, self._pack_v_now = groups, current, temps, pack_v
        q = quantity_values(groups, pack_v, current, temps[:4])
        self._measured = (t_ns, truth, q)
        return q

    def _lowest_group_zero(self, q) -> bool:
        return q["min_group_voltage"] < self.p.zero_volt_cell.threshold_v

    def _full(self, q) -> bool:
        s = self.p.soc
        return self.report.pack_v >= s.full_voltage_v and 0.0 < q["charge_current"] < s.full_tail_current_a

    # --- power on / off -------------------------------------------------------------------------
    def _activation_window(self, bus_v: float) -> bool:
        a = self.p.activation
        return a.min_v <= bus_v <= a.max_v

    def _activation(self, bus_v: float, t_ns: int) -> None:
        """Manual 2.2: a voltage *applied* in the window wakes the pack. A pack that turned off with
        its terminals live (its partner in a pair, a charger left on) waits for them to leave the
        window first, or the voltage it turned off with would turn it on again at once."""
        if not self._activation_window(bus_v):
            self._in_window_since = None
            self._activation_armed = True
            return
        if not self._activation_armed:
            return
        if self._in_window_since is None:
            self._in_window_since = t_ns
        if t_ns - self._in_window_since >= ns(self.p.activation.dwell_s):
            self._power_on(t_ns)

    def _buttons(self, t_ns: int) -> None:
        if self._button_down is None:
            return
        held = t_ns - self._button_down
        if self.state == OFF and held >= ns(self.p.power_on.button_hold_s):
            self._button_down = None
            self._power_on(t_ns)
        elif self.state in (STANDBY, RUN, FAULT) and held >= ns(self.p.power_off.button_hold_s):
            self._button_down = None
            # manual 2.2: forced power-off only when not connected to mains (no charge current)
            if self.report.current_a <= self.p.power_off.forced_off_max_charge_current_a:
                self._start_power_off(t_ns)

    def _power_on(self, t_ns: int) -> None:
        """Wake: a power cycle clears every latch; then pre-charge and close (unless a fault)."""
        self.engine.reset()
        self.report.failures.clear()
        self.report.levels = self.engine.levels()
        self._cut_rows.clear()
        self._cut_since.clear()
        self._l3_cut_rows.clear()
        self._l3_since.clear()
        if t_ns - self._off_since >= ns(self.p.soc.rest_reestimate_after_s):
            self._reestimate = True
        self._pcs_seen, self._t_last = t_ns, t_ns
        self._in_window_since = None
        self.state = STANDBY
        self._precharge_since = None
        self._panel_since = t_ns

    def _start_power_off(self, t_ns: int, fault: bool = False) -> None:
        """The power-off sequence; a fault power-off shows ALM (red) while the lights flicker."""
        self._fault_off = fault
        self.relays = (False, False, False)
        self.state = POWERING_OFF
        self._poweroff_at = t_ns + lights.power_off_duration_ns(self.p)
        self._panel_since = t_ns

    def _become_off(self, t_ns: int) -> None:
        self._activation_armed = False  # re-armed by the first sample with the terminals out of the window
        self.state, self.relays, self._off_since = OFF, (False, False, False), t_ns
        self._poweroff_at = None
        self.run_pattern = None
        self.parallel_ok, self.modules = False, 1
        self.parallel_role = "Single"

    # --- parallel connection (manual 5, 6.2) ------------------------------------------------------
    def parallel_joined(self, t_ns: int, modules: int) -> None:
        """The partner answered within the window and within the voltage difference."""
        pp = self.p.parallel
        self.parallel_ok, self.modules = True, modules
        self.parallel_role = "Master" if self.address == 2 else "Slave"
        self.run_pattern = lights.flicker(pp.success_flicker_period_s, t_ns, pp.success_flicker_count,
                                          then_on=True)

    def parallel_failure(self, t_ns: int) -> None:
        """Parallel connection failure: ALM on, then the fault power-off (manual 2.2). A build
        that does not detect it (``detect = false``) runs on as if alone."""
        if not self.p.failures.parallel_connection.detect:
            return
        self.report.failures.add(self.p.failures.parallel_connection.failure_bit)
        self._start_power_off(t_ns, fault=True)

    # --- protections' actions -----------------------------------------------------------------
    def _level3(self, name: str, t_ns: int) -> None:
        row = getattr(self.p.protections, name)
        if row.l3.action == "power_off":
            self._start_power_off(t_ns, fault=True)
        elif row.l3.action == "failure" and getattr(self.p.failures, name).detect:
            self.report.failures.add(getattr(self.p.failures, name).failure_bit)

    def _against(self, row, q) -> bool:
        """Current flows in the direction this row protects."""
        run = self.p.bms.run_current_a
        if row.direction == "charge":
            return q["charge_current"] >= run
        if row.direction == "discharge":
            return q["discharge_current"] >= run
        return max(q["charge_current"], q["discharge_current"]) >= run

    def _level2_cuts(self, q, t_ns: int) -> None:
        if not self._cut_since and 2 not in self.report.levels.values():
            return  # no L2 tripped, none timed: nothing to start or stop
        hold = self.p.levels.l2.open_relays_if_current_for_s
        for name, level in self.report.levels.items():
            row = getattr(self.p.protections, name)
            if level == 2 and hold is not None and self._against(row, q):
                since = self._cut_since.setdefault(name, t_ns)
                if t_ns - since >= ns(hold):
                    self._cut_rows.add(name)
            else:
                self._cut_since.pop(name, None)

    def _level3_cuts(self, q, t_ns: int) -> None:
        """A build whose L3 waits for current (a hold above 0): the same timing as L2's."""
        for name, level in self.report.levels.items():
            if level == 3 and self._against(getattr(self.p.protections, name), q):
                if t_ns - self._l3_since.setdefault(name, t_ns) >= self._l3_hold_ns:
                    self._l3_cut_rows.add(name)
            else:
                self._l3_since.pop(name, None)

    def _open_reasons(self) -> bool:
        failures = self.report.failures
        return bool(self._cut_rows or self._l3_cut_rows
                    or (self._l3_at_once and 3 in self.report.levels.values())
                    or (failures and failures - {self.p.pcs_loss.failure_bit}))

    def _open(self, t_ns: int) -> None:
        self.relays = (False, False, False)
        self._precharge_since = None
        if self.state in (STANDBY, RUN):
            self.state = FAULT

    def _relays(self, truth: Truth, t_ns: int) -> None:
        if self._open_reasons():
            self._open(t_ns)
            self.state = FAULT
            return
        r1, r2, pre = self.relays
        if self.parallel_mode and not self.parallel_ok:
            return  # manual 5: a parallel pack connects only once the partner has answered
        if not (r1 and r2):
            self._precharge(truth, t_ns)
        else:
            running = abs(self.report.current_a) >= self.p.bms.run_current_a
            self.state = RUN if running else STANDBY

    def _precharge(self, truth: Truth, t_ns: int) -> None:
        """Manual 6.2: relays close through the pre-charge relay."""
        po = self.p.power_on
        if self._precharge_since is None:
            self._precharge_since = t_ns
            self.relays = (False, True, True)  # relay 2 (negative) and pre-charge
            self.state = STANDBY
            return
        waited = t_ns - self._precharge_since
        pack_v = float(truth.groups_v.sum())
        if waited >= ns(po.precharge_s) and truth.bus_v >= po.precharge_min_ratio * pack_v:
            self.relays = (True, True, False)
            self._precharge_since = None
        elif waited >= ns(po.precharge_timeout_s) and self.p.failures.precharge.detect:
            self.report.failures.add(self.p.failures.precharge.failure_bit)
            self._open(t_ns)

    # --- failures ---------------------------------------------------------------------------------
    def _detect_failures(self, truth: Truth, t_ns: int) -> None:
        f = self.p.failures
        for fault in self.sensor_faults:
            if fault in FAILURES and getattr(f, fault).detect:
                self.report.failures.add(getattr(f, fault).failure_bit)
        # relay feedback disagreeing with the command: stuck open or welded
        for i, failure_bit in self._relay_checks:
            if truth.relays_closed[i] != self.relays[i]:
                self.report.failures.add(failure_bit)

    # --- PCS communication --------------------------------------------------------------------------
    def _pcs(self, t_ns: int) -> None:
        if not self._pcs_watched:
            return
        bit = self.p.pcs_loss.failure_bit
        silent = t_ns - self._pcs_seen
        self.report.pcs_alarm = silent >= self._pcs_alarm_ns
        if self.report.pcs_alarm:
            self.report.failures.add(bit)
        else:
            self.report.failures.discard(bit)
        if silent >= self._pcs_off_ns:
            self._start_power_off(t_ns)

    # --- SOC ---------------------------------------------------------------------------------------
    def stored(self, seconds: float) -> None:
        """The pack sat switched off for ``seconds`` more (storage ageing): its SOC is stale."""
        self._off_since -= ns(seconds)

    def conditioned(self, soc_pct: float, moved_ah: float) -> None:
        """The bench moved ``moved_ah`` through the pack at once, to ``soc_pct`` (fault insertion's
        conditioning): the BMS's counts follow as if it had counted that charge."""
        self.report.soc_pct = soc_pct
        if soc_pct >= 100.0:
            self._out_since_full = 0.0
        elif self._out_since_full is not None:
            self._out_since_full -= moved_ah

    def _soc_from_rest_voltage(self) -> None:
        """After a long rest the SOC is read from the mean group voltage on the firmware's table."""
        table = self.p.soc.ocv_table_v
        self.report.soc_pct = float(np.interp(float(self.report.groups_v.mean()), table,
                                              np.linspace(0.0, 100.0, len(table))))
        self._reestimate = False

    def _count_charge(self, dt: float, q) -> None:
        """Coulomb counting on the measured current; recalibrate to 100 % at full charge.

        SOH is learned on a full discharge: the charge counted out from a full recalibration down
        to the cell under-voltage alarm, net of any charge in between, is the capacity the pack
        still has, against its rating.
        """
        r = self.report
        ah = r.current_a * dt / 3600.0
        r.soc_pct = min(max(r.soc_pct + ah / self.capacity_ah * 100.0, 0.0), 100.0)
        if self._full(q):
            r.soc_pct = 100.0
        if r.soc_pct >= 100.0:
            self._out_since_full = 0.0
        elif self._out_since_full is not None:
            self._out_since_full -= ah
            if q["min_group_voltage"] <= self.p.protections.cell_under_voltage.l1.threshold:
                r.soh_pct = min(100.0, self._out_since_full / self.capacity_ah * 100.0)
                self._out_since_full = None

    # --- outputs ---------------------------------------------------------------------------------
    def limits(self) -> tuple[float, float, bool, bool]:
        """Charge and discharge current limits (A, this pack) and their enable bits."""
        can, lv = self.p.can, self.p.levels
        factor = {"charge": 1.0, "discharge": 1.0}
        for name, level in self.report.levels.items():
            if level:
                row = getattr(self.p.protections, name)
                f = getattr(lv, f"l{level}").current_limit_factor
                for d in (("charge", "discharge") if row.direction == "both" else (row.direction,)):
                    factor[d] = min(factor[d], f)
        closed = self.relays[0] and self.relays[1] and self.state in (STANDBY, RUN)
        ccl = can.charge_current_limit_a * factor["charge"] if closed else 0.0
        dcl = can.discharge_current_limit_a * factor["discharge"] if closed else 0.0
        return ccl, dcl, ccl > 0, dcl > 0

    def alm(self) -> str:
        """The ALM light: "", "alm_on" or "alm_flicker" (manual 7.4, PACK_SPEC.md 3)."""
        p, r = self.p, self.report
        if r.failures:
            latched = r.failures - {p.pcs_loss.failure_bit}
            if p.short_circuit.failure_bit in latched:
                return p.short_circuit.light
            if latched:
                return p.failure_response.light
        shown = ({getattr(p.protections, name).light for name, level in r.levels.items() if level >= 2}
                 if max(r.levels.values(), default=0) >= 2 else set())
        if "alm_on" in shown:
            return "alm_on"
        if r.pcs_alarm:
            return p.pcs_loss.light
        if shown or round(r.soc_pct) <= p.lights.low_soc_alm_max_pct:  # the SOC as shown and sent
            return shown.pop() if shown else p.lights.low_soc_light
        return ""

    def panel(self, t_ns: int) -> dict[str, lights.Pattern]:
        """The light patterns of this pack at ``t_ns``."""
        if self.state == OFF:
            return lights.all_off()
        if self.state == POWERING_OFF:
            seq = lights.power_off_sequence(self.p, self._panel_since)
            return seq | {"run": lights.OFF, "alm": lights.ON} if self._fault_off else seq
        soc = round(self.report.soc_pct)
        charging = self.report.current_a >= self.p.bms.run_current_a
        alm = self.alm()
        key = (soc, charging, alm)
        if key != self._panel_key:  # a new band restarts the flicker phase
            self._panel_key, self._panel_since = key, t_ns
        shown = (key, self._panel_since, self.run_pattern)
        if shown != self._panel_shown[0]:  # the same lights as at the last call: the same patterns
            self._panel_shown = (shown, lights.panel(self.p, soc_pct=soc, charging=charging, alm=alm,
                                                     since_ns=self._panel_since, run_flicker=self.run_pattern))
        return self._panel_shown[1]

    def next_deadline_ns(self) -> int | None:
        """The next instant a timer of this BMS falls due."""
        times = [self.engine.next_deadline_ns()]
        if self._button_down is not None:
            hold = self.p.power_on.button_hold_s if self.state == OFF else self.p.power_off.button_hold_s
            times.append(self._button_down + ns(hold))
        if self._in_window_since is not None:
            times.append(self._in_window_since + ns(self.p.activation.dwell_s))
        if self._precharge_since is not None:
            times += [self._precharge_since + ns(self.p.power_on.precharge_s),
                      self._precharge_since + ns(self.p.power_on.precharge_timeout_s)]
        if self._poweroff_at is not None:
            times.append(self._poweroff_at)
        if self._cut_hold_ns is not None and self._cut_since:
            times += [since + self._cut_hold_ns for since in self._cut_since.values()]
        if self._l3_since:
            times += [since + self._l3_hold_ns for since in self._l3_since.values()]
        if self.awake and self._pcs_watched:
            times += [self._pcs_seen + self._pcs_alarm_ns, self._pcs_seen + self._pcs_off_ns]
        last = self._t_last
        return min([t for t in times if t is not None and (last is None or t > last)], default=None)
