"""A characterisation run of an emulated pack's cells, recorded as a rig recording.

For proving ``packrig fit`` without hours of bench time: the pack's physics alone (no BMS, no
instruments) driven through the procedures of testcases/test_characterisation.py in a short form
(full charge, discharge and charge in SOC steps with rests, 10 s pulses at 64/96 A both ways at
each step, 85 A with the cool-down, the HPPC pulses at each of its SOCs and temperatures), and every sample written by :class:`rig.recorder.Recorder`
under the names the supervisor uses (``pack_v``, ``psu_a``, ``eload_a``, ``groupN_v``,
``caseN_c``), so the fit reads it exactly as it reads a run folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.pack.physics import PackPhysics
from emulator.pack.physics_params import PhysicsParams
from rig.clock import VirtualClock
from rig.recorder import Recorder


class RecordedPack:
    """A pack's physics with a recorder: every call moves time and writes samples."""

    def __init__(self, params: PhysicsParams, path: Path, name: str, *, seed: int = 1,
                 initial_soc: float = 0.5, ambient_c: float = 25.0):
        self.pack = PackPhysics(params, packs=1, seed=seed, initial_soc=initial_soc, ambient_c=ambient_c)
        self.clock = VirtualClock()
        self.t = 0.0
        self.amps = 0.0
        self.air = ambient_c
        self.rec = Recorder(path, name, can_format="asc", clock=self.clock, time_origin=0.0)
        self._sample(0.0)

    def _sample(self, amps: float) -> None:
        i = np.array([amps])
        vs, r = self.pack.thevenin()
        values = {"pack_v": float(vs[0] + r[0] * amps), "psu_a": max(amps, 0.0), "eload_a": max(-amps, 0.0)}
        values |= {f"group{g + 1}_v": float(v) for g, v in enumerate(self.pack.group_voltages(i)[0])}
        values |= {f"case{k + 1}_c": float(self.pack.case_temperature()[0]) for k in range(4)}
        self.rec.record_sample(self.t, **values)

    def hold(self, amps: float, seconds: float, every_s: float) -> None:
        """``amps`` (+ charges) for ``seconds``, a sample every ``every_s`` (every second for the
        first 30 s after a step in the current, as a supervisor logs a pulse)."""
        end = self.t + seconds
        fast_until = self.t + 30.0 if abs(amps - self.amps) > 1.0 else self.t
        self.amps = amps
        while self.t < end - 1e-9:
            dt = min(1.0 if self.t < fast_until else every_s, end - self.t)
            self.pack.step(dt, np.array([amps]), self.air)
            self.t += dt
            self._sample(amps)

    def until(self, amps: float, stop, every_s: float = 5.0, limit_s: float = 6 * 3600) -> None:
        """``amps`` until ``stop(terminal volts)`` is true."""
        start = self.t
        while self.t - start < limit_s:
            self.hold(amps, every_s, every_s)
            vs, r = self.pack.thevenin()
            if stop(float(vs[0] + r[0] * amps)):
                return

    def cccv(self, amps: float = 64.0, volts: float = 56.0, tail: float = 3.0) -> None:
        self.until(amps, lambda v: v >= volts)
        while True:
            vs, r = self.pack.thevenin()
            i = float(min(amps, (volts - vs[0]) / r[0]))
            if i < tail:
                return
            self.hold(i, 10.0, 10.0)

    def close(self) -> None:
        self.rec.close()


#: the HPPC grid of testcases/test_characterisation.py on the shipped pack spec: SOC %, and the
#: temperatures its hppc_temperatures gives (C)
HPPC_SOCS = (10, 26, 50, 80)
HPPC_TEMPERATURES = (7.0, 25.0, 43.0)
#: the charge pulses stay below the charge over-current alarm (68 A) by the spec's 1 A tolerance;
#: the peak discharge current (above the continuous 85 A) only for its rated 3 s
CHARGE_PULSE_MAX_A, PEAK_S = 67.0, 3.0


def record_characterisation(params: PhysicsParams, folder: Path, *, seed: int = 1, step_pct: float = 10.0,
                            rest_s: float = 1800.0, every_s: float = 20.0,
                            hppc_socs=HPPC_SOCS, hppc_temperatures=HPPC_TEMPERATURES) -> list[Path]:
    """Record the short characterisation of a pack with ``params`` into ``folder``; returns the CSVs."""
    # 1. capacity and OCV steps: full, then steps down to 48 V with rests and pulses, then back up
    p = RecordedPack(params, folder, "test_characterisation.py::test_ocv_steps_and_pulses", seed=seed)
    p.cccv()
    p.hold(0.0, rest_s, every_s * 3)
    step_s = step_pct / 100.0 * 128.0 * 3600.0 / 64.0
    for direction in (-1.0, 1.0):
        done = False
        while not done:
            for amps in (-64.0, 64.0, -96.0, 96.0):
                p.hold(amps, 10.0, 1.0)
                p.hold(0.0, 120.0, every_s)
            vs, r = p.pack.thevenin()
            if direction < 0:
                p.until(-64.0, lambda v: v <= 48.0, every_s=5.0, limit_s=step_s)
                done = float(vs[0] + r[0] * -64.0) <= 48.5 or p.pack.thevenin()[0][0] - 64.0 * p.pack.thevenin()[1][0] <= 48.0
            else:
                p.until(64.0, lambda v: v >= 56.0, every_s=5.0, limit_s=step_s)
                done = p.pack.thevenin()[0][0] + 64.0 * p.pack.thevenin()[1][0] >= 56.0
            p.hold(0.0, rest_s, every_s * 3)
    p.cccv()
    p.hold(0.0, 2 * 3600.0, every_s * 3)          # rest after charge
    p.close()
    # 2. thermal: 85 A for an hour from full, then the cool-down
    p = RecordedPack(params, folder, "test_characterisation.py::test_85a_and_cool_down", seed=seed, initial_soc=0.95)
    p.hold(-85.0, 3600.0, every_s)
    p.hold(0.0, 3 * 3600.0, every_s * 6)
    p.close()
    # 3. HPPC: soaked at each temperature and SOC, 10 s pulses of 64 and 96 A (96 A discharge for
    # 3 s), discharge then charge, 40 min rests
    for celsius in hppc_temperatures:
        for soc in hppc_socs:
            p = RecordedPack(params, folder, f"test_characterisation.py::test_hppc_pulses[soc{soc}-{celsius:g}C]",
                             seed=seed, initial_soc=soc / 100.0, ambient_c=celsius)
            p.hold(0.0, 2400.0, every_s * 3)
            for amps in (64.0, 96.0):
                for sign in (-1.0, 1.0):
                    p.hold(sign * (amps if sign < 0 else min(amps, CHARGE_PULSE_MAX_A)),
                           PEAK_S if sign < 0 and amps > 85.0 else 10.0, 1.0)
                    p.hold(0.0, 2400.0, every_s * 3)
            p.close()
    return sorted(Path(folder).glob("*test_characterisation*.samples.csv"))


def perturbed(params: PhysicsParams, seed: int) -> PhysicsParams:
    """A pack drawn from the plausible spread of real packs around ``params`` (research note
    physics-fidelity.md): capacity +-3 %, hysteresis gap 5-25 mV a cell (x0.25-1.25 of the 20 mV),
    the OCV of the low plateau (15-40 % SOC) shifted -15..+5 mV a cell, R0 and each RC pair's
    resistance x0.75-1.35, the time constants x0.7-1.4, group capacity spread 0.3-1 %, heat
    capacity x0.85-1.15, conductance x0.7-1.3 (UA 5.6-10.4 W/K), and each resistance's temperature
    dependence (its activation energy) x0.7-1.3."""
    rng = np.random.Generator(np.random.PCG64(seed))
    u = lambda lo, hi: float(rng.uniform(lo, hi))        # noqa: E731 - a one-line draw
    o, r, th = params.ocv, params.resistance, params.thermal
    gap = u(0.25, 1.25)
    shift = u(-0.015, 0.005)
    dis = np.array(o.discharge_v)
    chg = dis + (np.array(o.charge_v) - dis) * gap
    # the shift in full from 20 to 35 %, tapering to nothing at 10 and 45 % (the curve keeps rising)
    low = np.interp(o.soc_pct, [10.0, 20.0, 35.0, 45.0], [0.0, 1.0, 1.0, 0.0]) * shift
    ocv = o.model_copy(update={"discharge_v": list(np.maximum.accumulate(dis + low)),
                               "charge_v": list(np.maximum.accumulate(np.maximum(chg + low, dis + low)))})

    def scaled(table, k):
        return table.model_copy(update={"charge_mohm": [v * k for v in table.charge_mohm],
                                        "discharge_mohm": [v * k for v in table.discharge_mohm]})
    rc = [scaled(p, u(0.75, 1.35)).model_copy(update={"tau_s": p.tau_s * u(0.7, 1.4)}) for p in r.rc]
    rc.sort(key=lambda p: p.tau_s)
    resistance = r.model_copy(update={"r0": scaled(r.r0, u(0.75, 1.35)), "rc": rc})
    thermal = th.model_copy(update={"heat_capacity_j_per_k": th.heat_capacity_j_per_k * u(0.85, 1.15),
                                    "ua_w_per_k": th.ua_w_per_k * u(0.7, 1.3)})
    pack = params.pack.model_copy(update={"cell_capacity_ah": params.pack.cell_capacity_ah * u(0.97, 1.03)})
    spread = params.spread.model_copy(update={"capacity_rel": u(0.003, 0.01)})
    # drawn last, so every draw above is what it was before these were added
    resistance = resistance.model_copy(update={
        "r0": stronger(resistance.r0, u(0.7, 1.3)),
        "rc": [stronger(p, u(0.7, 1.3)) for p in resistance.rc]})
    return params.model_copy(update={"ocv": ocv, "resistance": resistance, "thermal": thermal,
                                     "pack": pack, "spread": spread})


def stronger(table, k: float):
    """``table`` with its temperature factors raised to the power ``k``: its activation energy
    times ``k`` (Arrhenius: the log of the factor is proportional to it), 1 at 25 C staying 1."""
    return table.model_copy(update={"temperature_factor": [float(f ** k) for f in table.temperature_factor]})
