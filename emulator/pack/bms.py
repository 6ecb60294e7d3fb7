"""The emulated BMS firmware: states, power on/off, protections' actions, failures, SOC, lights.

Every number and choice comes from the firmware profile; none is written here. The world
(:mod:`emulator.world`) owns the physics and calls, in virtual time:

- :meth:`Bms.read` and :meth:`Bms.sample` at the BMS's sample instants with the true quantities
  (the BMS measures them through its own sensing errors, :mod:`emulator.pack.bms_sensing`);
- :meth:`Bms.on_button`, :meth:`Bms.on_wake`, :meth:`Bms.on_pcs_frame`,
  :meth:`Bms.on_short_circuit` at the instant those happen.

The BMS files each timer it starts (a protection delay, the end of a button hold, of a
pre-charge, of the power-off flicker, of the PCS-loss wait) in the world's event queue
(:mod:`emulator.event_queue`), so the world lands exactly on it. It answers with the relay
commands (:attr:`Bms.relays`), the state, the current limits and enable bits, the report
(:class:`~emulator.pack.bms_sensing.Report`) and the panel's light patterns. Its parts: the
protection timers (:mod:`emulator.pack.protections`), the relay cuts they cause
(:mod:`emulator.pack.relay_cuts`), the SOC estimate (:mod:`emulator.pack.soc_estimate`), the
lights (:mod:`emulator.pack.lights`).

States (detail frame 0x18A001, byte 0): Off 0, Standby 1, Run 2, Fault 3, PoweringOff 4.
"""
from __future__ import annotations

import numpy as np

from emulator.event_queue import EventQueue
from emulator.firmware.profile import FirmwareProfile
from emulator.pack import lights
from emulator.pack.bms_sensing import Reading, Report, Sensing, Truth
from emulator.pack.protections import ProtectionEngine, quantity_values
from emulator.pack.relay_cuts import RelayCuts
from emulator.pack.soc_estimate import SocEstimate
from rig.clock import NS, ns
from rig.files.rows import FAILURES

OFF, STANDBY, RUN, FAULT, POWERING_OFF = "Off", "Standby", "Run", "Fault", "PoweringOff"


class Bms:
    """One pack's BMS. ``address``: 2 master (or single), 3 slave; ``groups``: series groups it
    senses; ``timers``: the world's event queue (its own when it runs alone)."""

    def __init__(self, profile: FirmwareProfile, rng: np.random.Generator, *, groups: int, address: int = 2,
                 capacity_ah: float = 128.0, soc_pct: float = 50.0, timers: EventQueue | None = None):
        self.p = profile
        self.address = address
        self.capacity_ah = capacity_ah
        self.timers = EventQueue() if timers is None else timers
        self.sense = Sensing(profile, rng, groups)
        self.engine = ProtectionEngine(profile, self.timers)
        self.cuts = RelayCuts(profile, self.timers)
        self.report = Report(np.full(groups, np.nan), soc_pct=soc_pct, soh_pct=profile.soc.initial_soh_pct)
        self.soc = SocEstimate(profile, self.report, capacity_ah)
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
        self._pcs_seen: int = 0
        self._poweroff_at: int | None = None
        self._panel_since = 0
        self._panel_key: tuple = ()
        self._fault_off = False                       # the power-off under way is a fault power-off
        self._pcs_watched = profile.pcs_loss.enabled and address == 2  # only the pack on the CAN bus hears the PCS
        self._pcs_alarm_ns = ns(profile.pcs_loss.alarm_after_s)
        self._pcs_off_ns = ns(profile.pcs_loss.power_off_after_s)
        self._relay_checks = [(i, getattr(profile.failures, name).failure_bit)
                              for i, name in enumerate(("relay1", "relay2")) if getattr(profile.failures, name).detect]

    # --- inputs the world reports as they happen ----------------------------------------------
    def on_button(self, pressed: bool, t_ns: int) -> None:
        self._button_down = t_ns if pressed else None
        self._time_button()

    def on_wake(self, active: bool, t_ns: int) -> None:
        if active and self.state == OFF and self.p.power_on.wake_enabled:
            self._power_on(t_ns)

    def on_pcs_frame(self, t_ns: int) -> None:
        self._pcs_seen = t_ns
        if self.awake:
            self._time_pcs_loss()

    def on_short_circuit(self, t_ns: int) -> None:
        """The hardware short-circuit detector fired: cut, latch until power cycle."""
        if self.awake:
            self.report.failures.add(self.p.short_circuit.failure_bit)
            self._open(t_ns)

    @property
    def awake(self) -> bool:
        return self.state != OFF

    # --- the sample ---------------------------------------------------------------------------
    def read(self, truth: Truth, t_ns: int) -> Reading:
        """The truth at ``t_ns`` through this BMS's sensors (and its inserted sensor faults). The
        world reads once per instant and circuit, and hands the reading to :meth:`conditions`
        and :meth:`sample`."""
        groups = (self.report.groups_v if "voltage_frontend" in self.sensor_faults
                  else self.sense.groups(truth.groups_v, t_ns))
        current = 0.0 if "current_sampling" in self.sensor_faults else self.sense.current(truth.current_a)
        temps = self.sense.temps(truth.temps_c)
        if "temperature_sampling" in self.sensor_faults:
            temps = self.report.temps_c  # an open/short sensor is ignored, the last good value held
        pack_v = float(groups.sum())
        q = quantity_values(groups, pack_v, current, temps[:4])
        return Reading(groups, pack_v, current, temps, q, self.engine.conditions(q))

    def conditions(self, truth: Truth, reading: Reading) -> tuple:
        """Everything a sample's decisions depend on, coarsely: equal at two instants means a
        sample in between would have changed nothing but counters (the world's step check)."""
        if self.state == OFF:
            return (self._activation_window(truth.bus_v),)
        q = reading.quantities
        return (reading.protections, abs(q["charge_current"] - q["discharge_current"])
                >= self.p.bms.run_current_a, self._lowest_group_zero(q), int(self.report.soc_pct),
                self.soc.full(q))

    def sample(self, truth: Truth, reading: Reading, t_ns: int) -> None:
        """One BMS sample at ``t_ns`` (the world calls it at sample instants and deadlines)."""
        dt = 0.0 if self._t_last is None else (t_ns - self._t_last) / NS
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
        q = reading.quantities
        r.groups_v, r.pack_v = reading.groups_v, reading.pack_v
        r.current_a, r.temps_c = reading.current_a, reading.temps_c
        if self.soc.reestimate:
            self.soc.from_rest_voltage()
        self.soc.count_charge(dt, q)
        self._detect_failures(truth, t_ns)
        for name, level, change in self.engine.update(t_ns, q, no_current=abs(r.current_a) < self.p.bms.run_current_a):
            if change == "trip" and level == 3:
                self._level3(name, t_ns)
            if change == "release":
                self.cuts.released(name, level)
        r.levels = self.engine.levels()
        self.cuts.update(r.levels, q, t_ns)
        if self._lowest_group_zero(q) and self.p.zero_volt_cell.enabled:
            r.failures.add(self.p.zero_volt_cell.failure_bit)
            self._start_power_off(t_ns, fault=True)
            return
        self._pcs(t_ns)
        if self.state == POWERING_OFF:
            return
        self._relays(truth, t_ns)

    def _lowest_group_zero(self, q) -> bool:
        return q["min_group_voltage"] < self.p.zero_volt_cell.threshold_v

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
            self.timers.cancel((self, "activation"))
            self._activation_armed = True
            return
        if not self._activation_armed:
            return
        if self._in_window_since is None:
            self._in_window_since = t_ns
            self.timers.schedule((self, "activation"), t_ns + ns(self.p.activation.dwell_s))
        if t_ns - self._in_window_since >= ns(self.p.activation.dwell_s):
            self._power_on(t_ns)

    def _buttons(self, t_ns: int) -> None:
        if self._button_down is None:
            return
        held = t_ns - self._button_down
        if self.state == OFF and held >= ns(self.p.power_on.button_hold_s):
            self.on_button(False, t_ns)
            self._power_on(t_ns)
        elif self.state in (STANDBY, RUN, FAULT) and held >= ns(self.p.power_off.button_hold_s):
            self.on_button(False, t_ns)
            # manual 2.2: forced power-off only when not connected to mains (no charge current)
            if self.report.current_a <= self.p.power_off.forced_off_max_charge_current_a:
                self._start_power_off(t_ns)

    def _power_on(self, t_ns: int) -> None:
        """Wake: a power cycle clears every latch; then pre-charge and close (unless a fault)."""
        self.engine.reset()
        self.report.failures.clear()
        self.report.levels = self.engine.levels()
        self.cuts.clear()
        if t_ns - self._off_since >= ns(self.p.soc.rest_reestimate_after_s):
            self.soc.reestimate = True
        self._pcs_seen, self._t_last = t_ns, t_ns
        self._in_window_since = None
        self.timers.cancel((self, "activation"))
        self.state = STANDBY
        self._time_pcs_loss()
        self._time_button()
        self._time_precharge(None)
        self._panel_since = t_ns

    def _start_power_off(self, t_ns: int, fault: bool = False) -> None:
        """The power-off sequence; a fault power-off shows ALM (red) while the lights flicker."""
        self._fault_off = fault
        self.relays = (False, False, False)
        self.state = POWERING_OFF
        self._poweroff_at = t_ns + lights.power_off_duration_ns(self.p)
        self.timers.schedule((self, "power_off"), self._poweroff_at)
        self._panel_since = t_ns

    def _become_off(self, t_ns: int) -> None:
        self._activation_armed = False  # re-armed by the first sample with the terminals out of the window
        self.state, self.relays, self._off_since = OFF, (False, False, False), t_ns
        self._poweroff_at = None
        for timer in ("power_off", "pcs_alarm", "pcs_off"):
            self.timers.cancel((self, timer))
        self._time_button()
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

    def _open_reasons(self) -> bool:
        failures = self.report.failures
        return (self.cuts.holding_open(self.report.levels)
                or bool(failures and failures - {self.p.pcs_loss.failure_bit}))

    def _open(self, t_ns: int) -> None:
        self.relays = (False, False, False)
        self._time_precharge(None)
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
            self._time_precharge(t_ns)
            self.relays = (False, True, True)  # relay 2 (negative) and pre-charge
            self.state = STANDBY
            return
        waited = t_ns - self._precharge_since
        pack_v = float(truth.groups_v.sum())
        if waited >= ns(po.precharge_s) and truth.bus_v >= po.precharge_min_ratio * pack_v:
            self.relays = (True, True, False)
            self._time_precharge(None)
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
        self.soc.conditioned(soc_pct, moved_ah)

    # --- outputs ---------------------------------------------------------------------------------
    def limits(self) -> tuple[float, float, bool, bool]:
        """Charge and discharge current limits (A, this pack) and their enable bits."""
        can, lv = self.p.can, self.p.levels
        factor = {"charge": 1.0, "discharge": 1.0}
        for name, level in self.report.levels.items():
            if level:
                row = getattr(self.p.protections, name)
                own = getattr(row, f"l{level}").current_limit_factor  # a row may derate on its own
                f = getattr(lv, f"l{level}").current_limit_factor if own is None else own
                for d in (("charge", "discharge") if row.direction == "both" else (row.direction,)):
                    factor[d] = min(factor[d], f)
        closed = self.relays[0] and self.relays[1] and self.state in (STANDBY, RUN)
        ccl = can.charge_current_limit_a * factor["charge"] if closed else 0.0
        dcl = can.discharge_current_limit_a * factor["discharge"] if closed else 0.0
        return ccl, dcl, ccl > 0, dcl > 0

    def panel(self, t_ns: int) -> dict[str, lights.Pattern]:
        """The light patterns of this pack at ``t_ns``."""
        if self.state == OFF:
            return lights.all_off()
        if self.state == POWERING_OFF:
            seq = lights.power_off_sequence(self.p, self._panel_since)
            return seq | {"run": lights.OFF, "alm": lights.ON} if self._fault_off else seq
        soc = round(self.report.soc_pct)
        charging = self.report.current_a >= self.p.bms.run_current_a
        alm = lights.alm(self.p, self.report)
        key = (soc, charging, alm)
        if key != self._panel_key:  # a new band restarts the flicker phase
            self._panel_key, self._panel_since = key, t_ns
        return lights.panel(self.p, soc_pct=soc, charging=charging, alm=alm, since_ns=self._panel_since,
                            run_flicker=self.run_pattern)

    # --- timers in the world's event queue -------------------------------------------------------
    def _time_button(self) -> None:
        """The end of the button hold, which depends on the state (power on when off, else off)."""
        if self._button_down is None:
            self.timers.cancel((self, "button"))
        else:
            hold = self.p.power_on.button_hold_s if self.state == OFF else self.p.power_off.button_hold_s
            self.timers.schedule((self, "button"), self._button_down + ns(hold))

    def _time_precharge(self, since_ns: int | None) -> None:
        """Start (at ``since_ns``) or stop (None) the pre-charge and its timeout."""
        self._precharge_since = since_ns
        po = self.p.power_on
        for timer, after_s in (("precharge", po.precharge_s), ("precharge_timeout", po.precharge_timeout_s)):
            self.timers.schedule((self, timer), None if since_ns is None else since_ns + ns(after_s))

    def _time_pcs_loss(self) -> None:
        """The PCS-loss alarm and power-off, counted from the last heartbeat (pack on the CAN bus)."""
        if self._pcs_watched:
            self.timers.schedule((self, "pcs_alarm"), self._pcs_seen + self._pcs_alarm_ns)
            self.timers.schedule((self, "pcs_off"), self._pcs_seen + self._pcs_off_ns)
