"""The emulated world: pack physics, BMS firmware, the DC circuit and the instruments' far ends.

The world lives in the rig's time. :meth:`World.advance_to` is the only way it moves; the
virtual clock calls it on every sleep (a wall-clock bench calls it from a thread). It steps
*by events*, not by a fixed tiny step:

- a step ends at the next event, the earliest timer in the world's one event queue
  (:mod:`emulator.event_queue`): a CAN report, a BMS timer (protection delay, button hold,
  pre-charge, power-off flicker, PCS-loss wait), an instrument watchdog, an e-load list step,
  the short-circuit detector; or at the target time;
- the physics takes any step exactly for constant currents, so an idle hour with the pack off
  is one step, and with the pack on one step per CAN period;
- a step is checked: if anything the BMS decides on changed across it (a threshold crossed,
  a relay fed back, the SOC band), it is undone and taken again at the BMS's sample period,
  so the crossing is seen at the sample where a real BMS would see it.

Same seed, same commands at the same times → the same run, bit for bit.
"""
from __future__ import annotations

import can
import numpy as np

from emulator.pack import circuit
from emulator.event_queue import EventQueue
from emulator.pack.bms import Bms
from emulator.pack.bms_sensing import Reading, Truth
from emulator.pack.can_reports import CanReporter, Frame
from emulator.instruments.chamber_air import ChamberModel
from emulator.pack.physics import PackPhysics
from emulator.pack.physics_params import DEFAULT_PHYSICS, PhysicsParams, load_physics
from emulator.plant import Plant
from emulator.firmware.profile import FirmwareProfile
from rig.clock import NS, ns
from rig.protocol.can_frames import dbc_message

#: The PCS heartbeat as the DBC defines it: the frame the pack on the CAN bus listens for.
PCS_HEARTBEAT = dbc_message("PcsHeartbeat")


class World:
    """Everything on the emulated bench that obeys physics or firmware.

    :param profile: the firmware profile both BMSs run.
    :param packs: 1, or 2 in parallel on one DC bus.
    :param seed: seeds the physics spread and the BMS sensing errors.
    :param physics: the pack's physical parameters, or the path of their file (default: the
        emulator's own, ``emulator/pack/physics.toml``).
    """

    def __init__(self, profile: FirmwareProfile, *, packs: int = 1, seed: int = 1,
                 initial_soc_pct: float = 50.0, ambient_c: float = 25.0,
                 capacity_spread: float | None = None, soc_spread: float | None = None,
                 physics: PhysicsParams | str | None = None):
        self.profile = profile
        self.t_ns = 0
        rng = np.random.Generator(np.random.PCG64(seed))
        spreads = {k: v for k, v in (("capacity_spread", capacity_spread), ("soc_spread", soc_spread))
                   if v is not None}
        params = physics if isinstance(physics, PhysicsParams) else load_physics(physics or DEFAULT_PHYSICS)
        self.physics = PackPhysics(params, packs=packs, seed=seed,
                                   initial_soc=initial_soc_pct / 100.0, ambient_c=ambient_c, **spreads)
        #: the timers of everything in the world, in time order
        self.timers = EventQueue()
        groups = self.physics.groups
        self.bms = [Bms(profile, rng, groups=groups, timers=self.timers, address=2 if i == 0 else 3,
                        capacity_ah=float(self.physics.capacity_ah[i].mean()),
                        soc_pct=float(self.physics.soc[i].mean() * 100.0)) for i in range(packs)]
        self.plant = Plant()
        self.plant.now_ns = lambda: self.t_ns
        self.plant.io.light_at = self.light_at
        self.chamber = ChamberModel(room_c=ambient_c)
        self.plant.chamber.air_c = ambient_c
        self.reporter = CanReporter(self.bms)
        #: CAN frames produced and not yet taken by the transport, in time order
        self.can_out: list[Frame] = []
        self.can_silenced = False
        #: other things in the world's time: emulated instruments with watchdogs, the RS485 link
        self.timed: list = []
        # fault-insertion state, per pack (see emulator.pack.faults)
        self.sense_offset_v = np.zeros((packs, groups))
        self.sense_offset_a = np.zeros(packs)
        self.sense_forced_v = np.full((packs, groups), np.nan)
        self.temp_forced_c = np.full((packs, 5), np.nan)
        self._sensing_faulted = False  # any offset or forced reading above (see sensing_changed)
        self.relay_stuck: list[dict[int, bool]] = [{} for _ in range(packs)]
        self.precharge_ok = [True] * packs
        self._outputs: dict[str, bool] = {}     # the IO box's relay outputs, as last acted on
        self._settings_seen: tuple = ()         # what instrument commands had set, as last solved
        self._next_report: int | None = None
        self._can_period_ns = ns(profile.can.period_s)
        self._tick_ns = ns(profile.bms.sample_period_s)
        self._sc_at: int | None = None
        self._panels = [b.panel(0) for b in self.bms]
        # worked out from the present circuit solution, dropped at each solve
        self._groups_now: np.ndarray | None = None
        self._sensed_now: list[tuple[Truth, Reading]] | None = None
        self._resolve()
        self._publish()
        self._sampled = self._signature()

    # --- what the instruments and the BMS see ------------------------------------------------
    def _actual_relays(self, i: int) -> tuple[bool, bool, bool]:
        if not self.relay_stuck[i]:
            return self.bms[i].relays
        commanded = list(self.bms[i].relays)
        for k, closed in self.relay_stuck[i].items():
            commanded[k] = closed
        return tuple(commanded)

    def _solve(self) -> circuit.Solution:
        vs, r = self.physics.thevenin()
        branches = []
        for i, (source_v, ohm) in enumerate(zip(vs.tolist(), r.tolist())):
            r1, r2, pre = self._actual_relays(i)
            branches.append(circuit.PackBranch(source_v, ohm, main=r1 and r2,
                                               precharge=r2 and pre, precharge_ok=self.precharge_ok[i]))
        p, out = self.plant, self._outputs
        src = circuit.Sources(
            breaker=out.get("breaker", False), psu_on=p.psu.on and not p.psu.tripped,
            psu_v=p.psu.voltage_set_v, psu_a=p.psu.current_set_a,
            load_on=p.eload.on, load_mode=p.eload.mode, load_value=self._load_setpoint(),
            load_short=p.eload.short, short_circuit=out.get("short_circuit", False))
        return circuit.solve(branches, src)

    def _load_setpoint(self) -> float:
        e = self.plant.eload
        if e.program and e.program_started_ns is not None:
            elapsed = self.t_ns - e.program_started_ns
            for step in e.program:
                elapsed -= ns(step.dwell_s)
                if elapsed < 0:
                    return step.value
            return 0.0  # the list ran once and ended
        return e.setpoint

    def sensing_changed(self) -> None:
        """A fault changed a sense offset or a forced reading: the BMS sees it from now on."""
        self._sensing_faulted = bool(self.sense_offset_v.any() or not np.isnan(self.sense_forced_v).all()
                                     or not np.isnan(self.temp_forced_c).all())
        self._sensed_now = None

    def cells_changed(self) -> None:
        """A fault moved the cells at once (conditioning, storage): the circuit is solved again
        and the instruments read the new cells from now on, as the BMS does at its next sample."""
        self._resolve()
        self._publish()

    def _truth(self, i: int, groups_v: np.ndarray, temps_c: np.ndarray) -> Truth:
        """Pack ``i``'s truth from every pack's group voltages and temperatures, with the
        inserted sensing faults (offsets, forced readings) applied."""
        groups, temps = groups_v[i], temps_c[i]
        if self._sensing_faulted:
            groups = groups + self.sense_offset_v[i]
            groups = np.where(np.isnan(self.sense_forced_v[i]), groups, self.sense_forced_v[i])
            temps = np.where(np.isnan(self.temp_forced_c[i]), temps, self.temp_forced_c[i])
        # an offset on the current sense is seen by the BMS while current can flow (relays closed)
        current = self._solution.pack_a[i]
        sensed = current + (float(self.sense_offset_a[i]) if self.bms[i].relays[0] else 0.0)
        return Truth(groups, sensed, temps, self._solution.pack_bus_v, self._actual_relays(i))

    def light_at(self, name: str, t_ns: int) -> bool:
        """Is this light lit at ``t_ns``? ``run``, ``alm``, ``led1``.. for pack 1, ``pack2_*`` for pack 2."""
        pack, _, light = name.rpartition("_") if name.startswith("pack2_") else ("", "", name)
        panel = self._panels[1 if pack else 0] if (not pack or len(self._panels) > 1) else {}
        pattern = panel.get(light)
        return bool(pattern and pattern.lit(t_ns))

    # --- time ----------------------------------------------------------------------------------
    def advance_to(self, t_ns: int) -> None:
        """Bring the world to ``t_ns`` (the clock's Advancer protocol)."""
        with self.plant.lock:
            self._inputs_changed()
            while self.t_ns < t_ns:
                self._step(min(t_ns, self._next_event()))
                self._inputs_changed()

    def _next_event(self) -> int:
        """The instant the next step ends: the earliest timer, at most a CAN period while a pack
        is awake, an hour when nothing is due."""
        now = self.t_ns
        # the instrument models and the cyclic CAN jobs keep their own timers and tell their next
        # instant, as do the e-load's list and the chamber
        devices = [d.next_deadline_ns() for d in self.timed]
        devices += [self._next_load_step(), self.chamber.next_event_ns(now, self.plant.chamber)]
        self.timers.schedule("devices", min((t for t in devices if t is not None and t > now), default=None))
        self.timers.step(now)  # what fell due by now was sampled at its instant
        longest = now + (self._can_period_ns if any(b.awake for b in self.bms) else 3600 * NS)
        due = self.timers.peek()
        return longest if due is None else min(due, longest)

    def _next_load_step(self) -> int | None:
        e = self.plant.eload
        if not (e.on and e.program and e.program_started_ns is not None):
            return None
        t = e.program_started_ns
        for step in e.program:
            t += ns(step.dwell_s)
            if t > self.t_ns:
                return t
        return None

    def _resolve(self) -> None:
        """Solve the circuit for the present; what was worked out from the last solution goes."""
        self._solution = self._solve()
        self._groups_now = self._sensed_now = None

    def _sensed(self) -> list[tuple[Truth, Reading]]:
        """What each BMS's sensors face now, and what they read (worked out once per solution:
        the step check and the sample look at the same instant)."""
        if self._sensed_now is None:
            groups_v = self._group_voltages()
            temps_c = self.physics.temperatures()
            truths = [self._truth(i, groups_v, temps_c) for i in range(len(self.bms))]
            self._sensed_now = [(truth, b.read(truth, self.t_ns)) for b, truth in zip(self.bms, truths)]
        return self._sensed_now

    def _group_voltages(self) -> np.ndarray:
        """``(packs, groups)`` true group voltages now (the cell taps; once per solution)."""
        if self._groups_now is None:
            self._groups_now = self.physics.group_voltages(self._solution.pack_a)
        return self._groups_now

    def _signature(self) -> tuple:
        return tuple(b.conditions(truth, reading) for b, (truth, reading) in zip(self.bms, self._sensed()))

    def _step(self, t1: int) -> None:
        before = self._signature()
        t0 = self.t_ns
        tick = self._tick_ns
        if before != self._sampled:
            # an input changed since the last sample (a command, an inserted fault): the BMS
            # sees it at its next sample instant, not at the end of a long step
            t1 = min(t1, (t0 // tick + 1) * tick)
        snap = self.physics.snapshot()
        self._advance_physics(t1)
        after = self._signature()
        if t1 - t0 > tick and after != before:
            # something the BMS decides on changed inside the step: retake it sample by sample
            self.physics.restore(snap)
            self.t_ns = t0
            self._resolve()
            t = (t0 // tick + 1) * tick
            while t < t1:
                self._advance_physics(t)
                after = self._signature()
                self._after_step(after)
                if after != before:
                    return  # the main loop carries on from here with fresh events
                t += tick
            self._advance_physics(t1)
            after = self._signature()
        self._after_step(after)

    def _advance_physics(self, t1: int) -> None:
        dt = (t1 - self.t_ns) / NS
        if dt > 0:
            # what flows at the terminals, plus the BMS's own supply (not through its shunt)
            current = [a - (b.p.bms.standby_draw_a if b.awake else b.p.bms.off_draw_a)
                       for a, b in zip(self._solution.pack_a, self.bms)]
            self.physics.step(dt, current, self.chamber.air_c)
            self.chamber.advance(dt, self.plant.chamber)
        self.t_ns = t1
        self._resolve()

    def _after_step(self, sampled: tuple) -> None:
        """Every BMS samples at the step's end; then relays, reports, lights and the rig's view."""
        t = self.t_ns
        commanded = [b.relays for b in self.bms]
        for b, (truth, reading) in zip(self.bms, self._sensed()):
            b.sample(truth, reading, t)
        if commanded != [b.relays for b in self.bms]:
            # the BMS switched relays: the circuit changed (unless a stuck relay ignored it, and
            # then solving again gives the same solution)
            self._resolve()
        self._short_circuit()
        for device in self.timed:
            device.on_time(t)
        if self._next_report is not None and t >= self._next_report:
            self._report(t)
        self._schedule_report()
        self._panels = [b.panel(t) for b in self.bms]
        self._publish()
        self._sampled = sampled

    def _short_circuit(self) -> None:
        """The BMS's hardware short-circuit detector: cut after the profile's delay."""
        sc = self.profile.short_circuit
        over = any(abs(a) >= sc.threshold_a for a in self._solution.pack_a)
        if not (sc.enabled and over):
            self._sc_at = None
        elif self._sc_at is None:
            self._sc_at = self.t_ns + max(ns(sc.delay_s), 1)
        elif self.t_ns >= self._sc_at:
            for i, a in enumerate(self._solution.pack_a):
                if abs(a) >= sc.threshold_a:
                    self.bms[i].on_short_circuit(self.t_ns)
            self._sc_at = None
            self._resolve()
        self.timers.schedule("short_circuit", self._sc_at)

    def _schedule_report(self) -> None:
        master = self.bms[0]
        if not master.awake:
            self._next_report = None
        elif self._next_report is None:
            # the BMS reports on the seconds of its own real-time clock: the first report falls on
            # the next whole period after it woke, then one every period
            period = self._can_period_ns
            self._next_report = (self.t_ns // period + 1) * period
        self.timers.schedule("can_report", self._next_report)

    def _report(self, t: int) -> None:
        self._next_report += self._can_period_ns
        if not self.can_silenced and self.bms[0].awake:  # an Off pack says nothing (PACK_SPEC.md 2)
            self.can_out.extend(self.reporter.frames(t))

    def _inputs_changed(self) -> None:
        """Relay outputs of the IO box act on the packs at the instant they change."""
        outputs = self.plant.io.outputs
        if outputs != self._outputs:
            for name in ("power_button", "wake", "pack2_power_button", "pack2_wake"):
                now = outputs.get(name, False)
                if now != self._outputs.get(name, False):
                    pack = 1 if name.startswith("pack2_") else 0
                    if pack < len(self.bms):
                        target = self.bms[pack]
                        (target.on_button if name.endswith("power_button") else target.on_wake)(now, self.t_ns)
            self._outputs = dict(outputs)
        key = self._settings()
        if key != self._settings_seen:  # a command changed the circuit: solve it again now
            self._settings_seen = key
            self._resolve()
            self._short_circuit()  # armed the instant a short appears, not at the next step's end
            self._publish()

    def _settings(self) -> tuple:
        """Everything an instrument command can change in the circuit."""
        p = self.plant
        return (tuple(sorted(self._outputs.items())), p.psu.on, p.psu.tripped, p.psu.voltage_set_v,
                p.psu.current_set_a, p.eload.on, p.eload.mode, p.eload.setpoint, p.eload.short,
                p.eload.program_started_ns, len(p.eload.program))

    # --- the rig's view ---------------------------------------------------------------------------
    def _publish(self) -> None:
        """Write what each instrument would measure into its plant object."""
        s, p = self._solution, self.plant
        p.psu.measured_a = s.psu_a
        p.psu.measured_v = s.rig_bus_v  # the solver gives 0 for an isolated supply that is off
        p.psu.in_cc = s.psu_cc
        p.eload.measured_v = s.rig_bus_v if self._outputs.get("breaker") else 0.0
        p.eload.measured_a = s.load_a
        p.dmm.measured_v = s.pack_bus_v
        p.scanner.group_v = self._group_voltages().tolist()
        p.scanner.case_c = [[c] * 4 for c in self.physics.case_temperature().tolist()]  # 4 thermocouples a pack
        p.chamber.air_c = self.chamber.air_c

    def on_can_frame(self, msg: can.Message) -> None:
        """A frame from the rig (the PCS stand-in) reached the pack on the CAN bus."""
        if msg.arbitration_id == PCS_HEARTBEAT.frame_id and msg.is_extended_id == PCS_HEARTBEAT.is_extended_frame:
            self.bms[0].on_pcs_frame(self.t_ns)

    def take_frames(self) -> list[Frame]:
        """The frames produced since the last call, in time order, as encoded records."""
        out, self.can_out = self.can_out, []
        return out

    def take_can_frames(self) -> list[can.Message]:
        """The frames produced since the last call, in time order, as python-can messages."""
        return [f.message() for f in self.take_frames()]
