"""The pack model fitted to characterisation recordings (numpy / scipy least squares).

The model is the emulator's (:mod:`emulator.pack.physics`); :mod:`rig.fit.circuit` writes it as
a voltage linear in every table value once the capacity, time constants, hysteresis transition,
the temperature factors' strengths and each recording's starting SOC are given. So the fit is
separable (:mod:`rig.fit.separable`): an outer :func:`scipy.optimize.least_squares` over those few
nonlinear values, each of its evaluations an inner linear least squares over the tables (with a
weak pull toward the prior's values, so a table point the recordings never visit keeps its prior
value). In three passes:

1. the pack as 16 times its mean group (terminal voltage less path), below
   :data:`~rig.fit.separable.MEAN_FIT_MAX_SOC`, of the recordings that move the SOC: the capacity,
   time constants, hysteresis, temperature strengths and tables; then where the short recordings
   (pulses at one SOC) sit on that OCV;
2. each group's capacity and starting SOC from its rested cell-tap voltage on that OCV
   (:mod:`rig.fit.group_fit`), and the thermal node from the case thermocouples
   (:mod:`rig.fit.thermal_fit`): its temperature, not the lagging case's, is what the resistances see;
3. the same fit again with the pack as the sum of its 16 groups, each at its own SOC, over every
   sample. Near full the charge resistances climb tenfold within a percent of SOC, so the mean
   group at the mean SOC is not the mean of the groups there; leaving those samples out (pass 1)
   left the tables' top at the prior and cost 20 mV RMS on the terminal voltage of the round trip.

The temperature factors are the prior's curves, each raised to a fitted power (its activation
energy relative to the prior's: Arrhenius puts the log of the factor in proportion to it), seen in
the HPPC pulses at 7 and 43 C and the 85 A run's heating. Held at the prior's values (not
identified by these procedures): the OCV below 5 % (the knee below the 48 V cut-off: it anchors the
SOC scale, hence the capacity), the abuse extensions, the shape of the temperature factors, the
sensors' placement and lags, self-discharge; each recording is taken to start rested on the
discharge branch (as the emulated bench starts a test, and a pack discharged to its SOC rests).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emulator.pack.physics_params import PhysicsParams
from rig.fit.circuit import Design, Recording
from rig.fit.group_fit import group_capacities
from rig.fit.separable import Separable
from rig.fit.series import Series
from rig.fit.thermal_fit import with_thermal

#: A terminal reading further than this from the cell taps' sum plus the path's drop was not taken
#: with them (V; the pack's 16 taps agree with the DMM within millivolts)
SKEW_V = 0.1
#: A recording whose SOC moves less than this share of the capacity is short (pulses at one SOC:
#: see :mod:`rig.fit.separable`).
SHORT_SHARE = 0.02


@dataclass
class FitResult:
    """What the fit found, in the physics file's terms plus the per-recording states."""

    params: PhysicsParams
    capacity_ah: float                    # mean group capacity, Ah
    group_capacity_rel: np.ndarray        # (16,) each group's capacity / the mean - 1
    soc0: list[float]                     # each recording's starting mean SOC, fraction
    group_soc0: list[np.ndarray]          # each recording's starting group SOCs, fraction
    draw_a: float                         # the BMS's own draw from the cells while awake, A
    cost: dict[str, float] = field(default_factory=dict)


def fit_pack(series: list[Series], prior: PhysicsParams) -> FitResult:
    """Fit the model to the recordings; returns the fitted parameters (see the module docstring).
    A terminal reading not taken with the cell taps (:func:`unsynchronised_readings`) is set NaN in
    ``series``, so the report leaves it out too."""
    d = Design(prior)
    c_prior = prior.pack.cell_capacity_ah * prior.pack.cells_per_group
    path = _path_mohm(series, prior.resistance.path_mohm)
    skewed = unsynchronised_readings(series, path)
    recs = [Recording(s) for s in series]
    short = [np.ptp(r.q) < SHORT_SHARE * c_prior for r in recs]
    for rec, is_short in zip(recs, short):
        rec.short = is_short and not all(short)        # only pulses: nothing to place them by
    taus = [p.tau_s for p in prior.resistance.rc]
    # 1. the mean group, below full, of the recordings that move the SOC: capacity, time
    # constants, hysteresis, the tables; each starts from its first (rested) voltage on the prior's OCV
    first = Separable(d, [r for r in recs if not r.short], path, c_prior)
    guess = [soc_at(_first_v(r) / 16.0, d, d.ocv_mean0, d.ocv_half0) for r in first.recs]
    theta, lower, upper = first.start(1.0, taus, prior.hysteresis.transition_soc, guess)
    theta, x, _ = first.run(theta, lower, upper)
    mean, half, _ = d.split(x)
    v = first.values(theta)
    for rec in recs:
        rec.draw_a = v["draw_a"]
    # ... the short ones where their voltage at the end of their first rest sits on that OCV
    soc0 = iter(v["soc0"])
    v["soc0"] = [soc_at(_rested_v(r) / 16.0, d, mean, half) if r.short else next(soc0) for r in recs]
    # 2. each group's capacity and starting SOCs from its rested cell-tap voltage on that OCV
    rel, group_soc0 = group_capacities(d, recs, mean, half, v["capacity_ah"], v["soc0"], v["transition_soc"])
    # ... and the thermal node, whose temperature the resistances see (the case lags it)
    _, temps = with_thermal(prior, recs, d, mean, half, v["capacity_ah"], v["soc0"], v["transition_soc"])
    for rec, temp in zip(recs, temps):
        rec.temp = temp
    # 3. every recording, the pack as the sum of its 16 groups over every sample (the top of charge too)
    fit = Separable(d, recs, path, c_prior)
    fit.short_soc0 = {j: v["soc0"][j] for j, r in enumerate(recs) if r.short}
    fit.groups = (rel, [g - s for g, s in zip(group_soc0, v["soc0"])])
    _, lower, upper = fit.start(1.0, taus, prior.hysteresis.transition_soc, [v["soc0"][j] for j in fit.free])
    theta, x, res = fit.run(np.concatenate([theta[:fit.n_global], [v["soc0"][j] for j in fit.free]]), lower, upper)
    v = fit.values(theta)
    mean, half, r = d.split(x)
    group_soc0 = [s + off for s, off in zip(v["soc0"], fit.groups[1])]
    for j, k in fit.own.items():       # the short ones moved to where their OCV offset puts them
        shift = _shift_for(group_soc0[j], x[k], d, mean)
        v["soc0"][j] += shift
        group_soc0[j] = group_soc0[j] + shift
    params = _write_params(prior, d, mean, half, r, path, v)
    params, _ = with_thermal(params, recs, d, mean, half, v["capacity_ah"], v["soc0"], v["transition_soc"])
    spread = prior.spread.model_copy(update={"capacity_rel": float(np.std(rel)),
                                             "group_capacity_rel": [float(x) for x in rel]})
    params = params.model_copy(update={"spread": spread})
    used = res[:-len(fit.prior_b)]
    outer = {k: (val.tolist() if isinstance(val, np.ndarray) else val) for k, val in v.items()}
    return FitResult(params, v["capacity_ah"], rel, v["soc0"], group_soc0, v["draw_a"],
                     {"pack_rms_v": float(np.sqrt(np.mean(used ** 2))), "outer_values": outer,
                      "terminal_readings_left_out": skewed,
                      "evaluations": float(first.evaluations + fit.evaluations)})


def soc_at(volts: float, d: Design, mean, half, h: float = -1.0) -> float:
    """The SOC where a group's OCV (branch ``h``: -1 discharge) reads ``volts``."""
    curve = np.maximum.accumulate(mean + h * half) + np.arange(len(mean)) * 1e-9     # strictly rising
    return float(np.interp(volts, curve, d.ocv_soc))


def _shift_for(group_soc: np.ndarray, offset_v: float, d: Design, mean) -> float:
    """The SOC shift, common to the groups, that moves the sum of their OCVs by ``offset_v`` (the
    smallest, where the OCV is flat): each group on its own part of the curve, as at 10 % SOC the
    lower groups are on the knee and the others on the plateau."""
    shifts = np.linspace(-0.1, 0.1, 2001)
    ocv = np.interp(group_soc[None, :] + shifts[:, None], d.ocv_soc, mean).sum(axis=1)
    miss = np.abs(ocv - np.interp(group_soc, d.ocv_soc, mean).sum() - offset_v)
    return float(shifts[np.argmin(miss + 1e-6 * np.abs(shifts))])


def _first_v(rec: Recording) -> float:
    """The pack's voltage at the start: the cell taps' sum (read with the pack off too, before a
    procedure's first charge), else the first terminal reading."""
    taps = rec.groups[0].sum()
    return float(taps if np.isfinite(taps) else rec.y[rec.on][0])


def _rested_v(rec: Recording) -> float:
    """The terminal voltage just before the current first flows (the end of a first rest)."""
    moving = np.flatnonzero(np.abs(rec.i) > 0.5)
    before = rec.on & (np.arange(len(rec.y)) < (moving[0] if len(moving) else len(rec.y)))
    return float(rec.y[before][-1] if before.any() else rec.y[rec.on][0])


def _path_mohm(series: list[Series], prior_mohm: float) -> float:
    """The path resistance (relays, shunt, fuse, cables) from the terminal voltage less the sum of
    the cell taps, against the current: the one place the path shows on its own. The median of
    drop / current: a terminal reading taken a sample before or after the taps' (see
    :func:`unsynchronised_readings`) must not pull it."""
    ratios = []
    for s in series:
        ok = ~np.isnan(s.groups_v).any(axis=1) & (np.abs(s.current) > 5.0) & np.isfinite(s.pack_v)
        ratios.append((s.pack_v[ok] - s.groups_v[ok].sum(axis=1)) / s.current[ok])
    ratios = np.concatenate(ratios)
    return float(max(np.median(ratios), 0.0) * 1e3) if len(ratios) >= 10 else prior_mohm


def unsynchronised_readings(series: list[Series], path_mohm: float) -> int:
    """Set NaN each terminal reading that was not taken with the cell taps: the terminal voltage
    less the taps' sum is the path's drop, unless the DMM answered before (or after) the current
    changed and the scanner after (or before), as sequential instruments in one supervisor sample
    may (the emulated bench: now and then at a pulse's edges, 0.7 V off). Returns how many."""
    count = 0
    for s in series:
        taps = s.groups_v.sum(axis=1)                      # NaN where a tap is missing: kept
        skew = np.abs(s.pack_v - taps - path_mohm * 1e-3 * s.current) > SKEW_V
        s.pack_v[skew] = np.nan
        count += int(skew.sum())
    return count


def _write_params(prior, d: Design, mean, half, r, path, v: dict) -> PhysicsParams:
    o = prior.ocv
    n_lo, n_mid = len(o.overdischarge_soc_pct), len(o.soc_pct)
    # each branch must not fall as SOC rises, the charge branch not below the discharge branch
    dis = np.maximum.accumulate(np.round(mean - half, 4))
    chg = np.maximum(np.maximum.accumulate(np.round(mean + half, 4)), dis)
    top = n_lo + n_mid - 1
    dis[top] = chg[top] = max(dis[top], chg[:top].max())   # the branches meet at 100 %
    over = np.maximum.accumulate(np.maximum(np.round(mean[top + 1:], 4), chg[:top + 1].max()))
    ocv = o.model_copy(update={
        "discharge_v": [float(v) for v in dis[n_lo:n_lo + n_mid]],
        "charge_v": [float(v) for v in chg[n_lo:n_lo + n_mid]],
        "overcharge_v": [float(v) for v in over],
    })
    res = prior.resistance
    strength = v["strength"]
    r0 = res.r0.model_copy(update={"discharge_mohm": _mohm(r[0, 0]), "charge_mohm": _mohm(r[1, 0]),
                                   "temperature_factor": _factors(res.r0, strength[0])})
    rc = [pair.model_copy(update={"tau_s": round(float(tau), 2), "discharge_mohm": _mohm(r[0, 1 + j]),
                                  "charge_mohm": _mohm(r[1, 1 + j]),
                                  "temperature_factor": _factors(pair, strength[1 + j])})
          for j, (pair, tau) in enumerate(zip(res.rc, v["tau_s"]))]
    resistance = res.model_copy(update={"r0": r0, "rc": rc, "path_mohm": round(max(path, 0.0), 4)})
    pack = prior.pack.model_copy(update={"cell_capacity_ah": round(v["capacity_ah"] / prior.pack.cells_per_group, 3)})
    hyst = prior.hysteresis.model_copy(update={"transition_soc": round(v["transition_soc"], 5)})
    return prior.model_copy(update={"ocv": ocv, "resistance": resistance, "pack": pack, "hysteresis": hyst})


def _factors(table, strength: float) -> list[float]:
    """The prior's temperature factors raised to the fitted strength (1 at 25 C stays 1)."""
    return [round(float(min(f ** strength, 100.0)), 4) for f in table.temperature_factor]


def _mohm(values) -> list[float]:
    return [round(float(min(max(v, 0.0), 100.0)), 4) for v in values]
