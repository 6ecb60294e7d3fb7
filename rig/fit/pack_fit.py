"""The pack model fitted to characterisation recordings (numpy / scipy least squares).

The model is the emulator's (:mod:`emulator.pack.physics`); :mod:`rig.fit.circuit` writes it as
a voltage linear in every table value once the capacity, time constants, hysteresis transition
and each recording's starting SOC are given. So the fit is separable: an outer
:func:`scipy.optimize.least_squares` over those few nonlinear values, each of its evaluations an
inner linear least squares over the tables (with a weak pull toward the prior's values, so a
table point the recordings never visit keeps its prior value). In three passes:

1. the pack as 16 times its mean group (terminal voltage less path), below
   :data:`MEAN_FIT_MAX_SOC`: the capacity, time constants, hysteresis and tables;
2. each group's capacity and starting SOC from its rested cell-tap voltage on that OCV
   (:mod:`rig.fit.group_fit`), and the thermal node from the case thermocouples
   (:mod:`rig.fit.thermal_fit`): its temperature, not the lagging case's, is what the resistances see;
3. the same fit again with the pack as the sum of its 16 groups, each at its own SOC, over every
   sample. Near full the charge resistances climb tenfold within a percent of SOC, so the mean
   group at the mean SOC is not the mean of the groups there; leaving those samples out (pass 1)
   left the tables' top at the prior and cost 20 mV RMS on the terminal voltage of the round trip.

Held at the prior's values (not identified by these procedures): the OCV below 5 % (the knee below
the 48 V cut-off: it anchors the SOC scale, hence the capacity), the abuse extensions, the
temperature factors, the sensors' placement and lags, self-discharge.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from emulator.pack.physics_params import PhysicsParams
from rig.fit.circuit import Design, Recording, columns, states
from rig.fit.group_fit import group_capacities
from rig.fit.series import Series
from rig.fit.thermal_fit import with_thermal

#: Weight of the pull toward the prior's table values, V per unit (mOhm, V): weak against the
#: thousands of samples where a value is observed, decisive where it is not.
PRIOR_WEIGHT = 2e-2
#: The mean-group fit (capacity, time constants, hysteresis, starting SOCs) leaves out samples
#: above this SOC: near full the groups' spread of SOC meets a steeply climbing charge resistance.
MEAN_FIT_MAX_SOC = 0.985


@dataclass
class FitResult:
    """What the fit found, in the physics file's terms plus the per-recording states."""

    params: PhysicsParams
    capacity_ah: float                    # mean group capacity, Ah
    group_capacity_rel: np.ndarray        # (16,) each group's capacity / the mean - 1
    soc0: list[float]                     # each recording's starting mean SOC, fraction
    group_soc0: list[np.ndarray]          # each recording's starting group SOCs, fraction
    cost: dict[str, float] = field(default_factory=dict)


def fit_pack(series: list[Series], prior: PhysicsParams) -> FitResult:
    """Fit the model to the recordings; returns the fitted parameters (see the module docstring)."""
    d = Design(prior)
    recs = [Recording(s) for s in series]
    path = _path_mohm(recs, prior.resistance.path_mohm)
    c_prior = prior.pack.cell_capacity_ah * prior.pack.cells_per_group
    taus0 = np.array([p.tau_s for p in prior.resistance.rc])
    # starting SOC of each recording: from its first (rested) voltage on the prior's OCV
    soc0_guess = [float(np.interp(r.y[0] / 16.0, d.ocv_mean0 + d.ocv_half0 * -1.0, d.ocv_soc)) for r in recs]
    theta0 = np.concatenate([[1.0], np.log(taus0), [np.log(prior.hysteresis.transition_soc)], soc0_guess])
    lower = np.concatenate([[0.7], np.log(taus0 / 4), [np.log(0.005)], [-0.1] * len(recs)])
    upper = np.concatenate([[1.3], np.log(taus0 * 4), [np.log(0.2)], [1.1] * len(recs)])
    fit = _Separable(d, recs, path, c_prior)
    # 1. the mean group, below full: capacity, time constants, hysteresis, the tables
    theta, x, _ = fit.run(np.clip(theta0, lower + 1e-9, upper - 1e-9), lower, upper)
    capacity, taus, transition, soc0 = fit.outer_values(theta)
    mean, half, r = d.split(x)
    # 2. each group's capacity and starting SOCs from its rested cell-tap voltage on that OCV
    rel, group_soc0 = group_capacities(d, recs, mean, half, capacity, soc0, transition)
    # ... and the thermal node, whose temperature the resistances see (the case lags it)
    _, temps = with_thermal(prior, recs, d, mean, half, capacity, soc0, transition)
    for rec, temp in zip(recs, temps):
        rec.temp = temp
    # 3. everything again as the sum of the 16 groups, over every sample (the top of charge too)
    fit.groups = (rel, [g - s for g, s in zip(group_soc0, soc0)])
    theta, x, res = fit.run(theta, lower, upper)
    capacity, taus, transition, soc0 = fit.outer_values(theta)
    group_soc0 = [s + off for s, off in zip(soc0, fit.groups[1])]
    mean, half, r = d.split(x)
    params = _write_params(prior, d, mean, half, r, path, capacity, taus, transition)
    params, _ = with_thermal(params, recs, d, mean, half, capacity, soc0, transition)
    spread = prior.spread.model_copy(update={"capacity_rel": float(np.std(rel)),
                                             "group_capacity_rel": [float(v) for v in rel]})
    params = params.model_copy(update={"spread": spread})
    used = res[:-len(d.x0)]
    return FitResult(params, capacity, rel, soc0, group_soc0,
                     {"pack_rms_v": float(np.sqrt(np.mean(used ** 2))),
                      "outer_values": {"capacity_ah": capacity, "tau_s": taus.tolist(),
                                       "transition_soc": transition, "soc0": soc0},
                      "evaluations": float(fit.evaluations)})


class _Separable:
    """The separable least squares: an outer :func:`scipy.optimize.least_squares` over capacity,
    time constants, hysteresis transition and each recording's starting SOC, each of its
    evaluations an inner linear solve for the tables.

    With ``groups`` unset the model is the pack's mean group (16 x one group) below
    :data:`MEAN_FIT_MAX_SOC`; set to ``(rel, offsets)`` (each group's capacity relative to the
    mean, and its starting SOC less the mean's in each recording) it is the sum of the groups, over
    every sample."""

    def __init__(self, d: Design, recs: list[Recording], path_mohm: float, c_prior: float):
        self.d, self.recs, self.path, self.c_prior = d, recs, path_mohm, c_prior
        self.groups = None
        self.evaluations = 0
        self.prior_rows = PRIOR_WEIGHT * np.eye(len(d.x0))
        # a recording with few samples weighs more than its count (by the fourth root), so a
        # thermal run logged once a minute is not drowned by a pulse test logged every second
        sizes = np.array([len(r.t) for r in recs], dtype=float)
        self.weights = (sizes.mean() / sizes) ** 0.25

    def outer_values(self, theta):
        """(capacity Ah, time constants s, transition SOC, starting SOCs) of ``theta``."""
        p = self.d.pairs
        return (self.c_prior * float(theta[0]), np.exp(theta[1:1 + p]), float(np.exp(theta[1 + p])),
                [float(v) for v in theta[2 + p:]])

    def solve(self, theta):
        """The tables for ``theta`` and the weighted residual (prior rows last)."""
        d = self.d
        capacity, taus, transition, soc0 = self.outer_values(theta)
        blocks, rhs = [], []
        for j, (rec, s0) in enumerate(zip(self.recs, soc0)):
            if self.groups is None:
                soc, h = states(rec, capacity, s0, 1.0 / transition)
                w = self.weights[j] * (soc <= MEAN_FIT_MAX_SOC)      # zero weight: the length stays
            else:
                rel, offsets = self.groups
                soc, h = states(rec, capacity * (1.0 + rel), s0 + offsets[j], 1.0 / transition)
                w = np.full(len(soc), self.weights[j])
            a, known = columns(d, rec, soc, h, taus)
            blocks.append(w[:, None] * a)
            rhs.append(w * (rec.y - known - self.path * 1e-3 * rec.i))
        a = np.vstack(blocks + [self.prior_rows])
        b = np.concatenate(rhs + [PRIOR_WEIGHT * d.x0])
        # Normal equations: the prior rows keep them regular. Unbounded: a value that comes out
        # negative is clipped on writing (split); a bounded solve (scipy lsq_linear) was tried and
        # fitted the round trip worse (groups 4.6 mV RMS against 1.2 mV, benchmarks/bench_twin_roundtrip.py)
        x = np.linalg.solve(a.T @ a, a.T @ b)
        return x, a @ x - b

    def run(self, theta0, lower, upper):
        """The outer fit from ``theta0``; returns (theta, tables, residual)."""
        out = least_squares(lambda th: self.solve(th)[1], theta0, bounds=(lower, upper), x_scale="jac",
                            max_nfev=60)
        self.evaluations += out.nfev
        x, res = self.solve(out.x)
        return out.x, x, res


def _path_mohm(recs, prior_mohm: float) -> float:
    """The path resistance (relays, shunt, fuse, cables) from the terminal voltage less the sum of
    the cell taps, against the current: the one place the path shows on its own."""
    i, drop = [], []
    for rec in recs:
        ok = ~np.isnan(rec.groups).any(axis=1) & (np.abs(rec.i) > 5.0)
        i.append(rec.i[ok])
        drop.append(rec.y[ok] - rec.groups[ok].sum(axis=1))
    i, drop = np.concatenate(i), np.concatenate(drop)
    if len(i) < 10:
        return prior_mohm
    return float(max(np.dot(i, drop) / np.dot(i, i), 0.0) * 1e3)


def _write_params(prior, d: Design, mean, half, r, path, capacity, taus, transition) -> PhysicsParams:
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
    r0 = res.r0.model_copy(update={"discharge_mohm": _mohm(r[0, 0]), "charge_mohm": _mohm(r[1, 0])})
    rc = [pair.model_copy(update={"tau_s": round(float(tau), 2), "discharge_mohm": _mohm(r[0, 1 + j]),
                                  "charge_mohm": _mohm(r[1, 1 + j])})
          for j, (pair, tau) in enumerate(zip(res.rc, taus))]
    resistance = res.model_copy(update={"r0": r0, "rc": rc, "path_mohm": round(max(path, 0.0), 4)})
    pack = prior.pack.model_copy(update={"cell_capacity_ah": round(capacity / prior.pack.cells_per_group, 3)})
    hyst = prior.hysteresis.model_copy(update={"transition_soc": round(transition, 5)})
    return prior.model_copy(update={"ocv": ocv, "resistance": resistance, "pack": pack, "hysteresis": hyst})


def _mohm(values) -> list[float]:
    return [round(float(min(max(v, 0.0), 100.0)), 4) for v in values]
