"""The pack model fitted to characterisation recordings (numpy / scipy least squares).

The model is the emulator's (:mod:`emulator.pack.physics`), per series group::

    V_group = OCV(SOC, h) + sum_k v_k + R0(SOC, dir) f0(T) I
    v_k: dv_k/dt = (R_k(SOC, dir) f_k(T) I - v_k) / tau_k,   V_pack = sum V_group + R_path I

For given capacity, time constants, hysteresis transition and starting SOC of each recording,
SOC(t), h(t) and the RC filters follow from the current alone, and the voltage is *linear* in
every table value: the OCV points of both branches, R0 and each R_k at every SOC point and
direction (hat functions over the SOC grid). So the fit is separable: an
outer :func:`scipy.optimize.least_squares` over those few nonlinear values, each of its
evaluations an inner linear least squares over the tables (with a weak pull toward the prior's
values, so a table point the recordings never visit keeps its prior value). The fit is of the
pack's mean group (terminal voltage less path, over 16).

Then, from the same model:

- each group's capacity from how its cell-tap voltage leaves the mean, where the OCV is steep
  (``dV_g = OCV'(SOC) dSOC_g``, ``dSOC_g = a_g + Q (1/C_g - 1/C)``): the capacity spread;
- the thermal node's heat capacity and conductance from the case thermocouples, heated by
  ``I (V_terminal - OCV_pack)``, in air at the first reading's temperature (a soaked start).

Held at the prior's values (not identified by these procedures): the OCV below 5 % (the knee below
the 48 V cut-off: it anchors the SOC scale, hence the capacity), the abuse extensions, the
temperature factors, the sensors' placement and lags, self-discharge.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from emulator.pack.physics_params import PhysicsParams
from emulator.pack.thermal import CASE, ThermalNetwork
from rig.fit.series import GROUPS, Series

#: Keep a sample at least this often (s), and every sample for this long after the current
#: changed by more than CHANGE_A (the RC pairs' fast part).
KEEP_EVERY_S, KEEP_AFTER_S, CHANGE_A = 60.0, 40.0, 0.5
#: Weight of the pull toward the prior's table values, V per unit (mOhm, V): weak against the
#: thousands of samples where a value is observed, decisive where it is not.
PRIOR_WEIGHT = 2e-2
#: The mean-group fit (capacity, time constants, hysteresis, starting SOCs) leaves out samples
#: above this SOC: near full the groups' spread of SOC meets a steeply climbing charge resistance.
MEAN_FIT_MAX_SOC = 0.985
#: A group's SOC is read from its voltage after this long at rest, s.
RESTED_S = 1500.0
#: ... and below this mean SOC (the rests after a full charge included: the OCV is steep there).
GROUP_SOC_MAX = 1.006
#: OCV points held at the prior: up to and including this SOC, %.
OCV_HELD_BELOW_PCT = 5.0


@dataclass
class FitResult:
    """What the fit found, in the physics file's terms plus the per-recording states."""

    params: PhysicsParams
    capacity_ah: float                    # mean group capacity, Ah
    group_capacity_rel: np.ndarray        # (16,) each group's capacity / the mean - 1
    soc0: list[float]                     # each recording's starting mean SOC, fraction
    group_soc0: list[np.ndarray]          # each recording's starting group SOCs, fraction
    cost: dict[str, float] = field(default_factory=dict)


class _Design:
    """The linear part: column layout of the tables and their prior values."""

    def __init__(self, prior: PhysicsParams):
        o, r = prior.ocv, prior.resistance
        self.cells = prior.pack.cells_per_group
        self.ocv_soc = np.concatenate([o.overdischarge_soc_pct, o.soc_pct, o.overcharge_soc_pct]) / 100.0
        dis, chg = np.array(o.discharge_v), np.array(o.charge_v)
        self.ocv_mean0 = np.concatenate([o.overdischarge_v, (dis + chg) / 2, o.overcharge_v])
        self.ocv_half0 = np.concatenate([np.zeros(len(o.overdischarge_v)), (chg - dis) / 2,
                                         np.zeros(len(o.overcharge_v))])
        pct = self.ocv_soc * 100.0
        # fitted: the table's points above the held knee, and the first over-charge point
        self.mean_free = np.flatnonzero((pct > OCV_HELD_BELOW_PCT) & (pct <= o.overcharge_soc_pct[0]))
        self.half_free = np.flatnonzero((pct > OCV_HELD_BELOW_PCT) & (pct < 100.0))
        self.r_soc = np.array(r.soc_pct) / 100.0
        tables = [r.r0, *r.rc]
        self.pairs = len(r.rc)
        self.r0_prior = np.array([[t.discharge_mohm for t in tables], [t.charge_mohm for t in tables]])
        self.t_grid = np.array(r.temperature_c, dtype=float)
        self.t_rows = np.array([t.temperature_factor for t in tables])
        self.path0 = r.path_mohm
        m = len(self.r_soc)
        self.n_r = 2 * (1 + self.pairs) * m
        self.sizes = [len(self.mean_free), len(self.half_free), self.n_r]
        self.x0 = np.concatenate([self.ocv_mean0[self.mean_free], self.ocv_half0[self.half_free],
                                  self.r0_prior.reshape(-1)])

    def split(self, x: np.ndarray):
        a, b, c = np.cumsum(self.sizes)
        mean, half = self.ocv_mean0.copy(), self.ocv_half0.copy()
        mean[self.mean_free], half[self.half_free] = x[:a], np.maximum(x[a:b], 0.0)
        r = x[b:c].reshape(2, 1 + self.pairs, len(self.r_soc))      # direction, element, SOC
        return mean, half, np.maximum(r, 1e-3)


def hat(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``(len(x), len(grid))`` weights of linear interpolation over ``grid`` (clamped ends)."""
    i = np.clip(np.searchsorted(grid, x, side="right"), 1, len(grid) - 1)
    w = np.clip((x - grid[i - 1]) / (grid[i] - grid[i - 1]), 0.0, 1.0)
    out = np.zeros((len(x), len(grid)))
    rows = np.arange(len(x))
    out[rows, i - 1] = 1.0 - w
    out[rows, i] += w
    return out


def keep_samples(s: Series) -> np.ndarray:
    """Indices of the samples the fit uses: around every current change, else one a minute."""
    keep, last_t, changed_t = [0], s.t[0], -np.inf
    for n in range(1, len(s)):
        if abs(s.current[n] - s.current[n - 1]) > CHANGE_A:
            changed_t = s.t[n]
        if s.t[n] - changed_t <= KEEP_AFTER_S or s.t[n] - last_t >= KEEP_EVERY_S or n == len(s) - 1 \
                or abs(s.current[n] - s.current[keep[-1]]) > CHANGE_A:
            keep.append(n)
            last_t = s.t[n]
    return np.array(keep)


class _Recording:
    """One series prepared for the fit: the kept samples, the charge through the pack up to each."""

    def __init__(self, s: Series):
        self.series = s
        self.idx = keep_samples(s)
        dt_all = np.diff(s.t)
        # charge by the held current of each interval (as the emulator steps), at every sample
        q_all = np.concatenate([[0.0], np.cumsum(s.current[:-1] * dt_all)]) / 3600.0
        self.q = q_all[self.idx]                          # Ah since the start
        self.t = s.t[self.idx]
        self.i = s.current[self.idx]
        self.dt = np.diff(self.t)
        self.y = s.pack_v[self.idx]
        self.temp = np.where(np.isnan(s.case_c[self.idx]), 25.0, s.case_c[self.idx])
        # the current held over each kept interval: the mean over it (its charge / its length)
        self.i_held = np.diff(self.q) * 3600.0 / np.maximum(self.dt, 1e-9)
        self.groups = s.groups_v[self.idx]


def _states(rec: _Recording, capacity: float, soc0: float, k_hyst: float, h0: float = -1.0):
    """SOC and h at each kept sample (h by its exact solution over each interval's throughput)."""
    soc = soc0 + rec.q / capacity
    dz = np.diff(soc)
    h = np.empty(len(soc))
    h[0] = h0
    for n, d in enumerate(dz):
        s = np.sign(d)
        h[n + 1] = s + (h[n] - s) * np.exp(-k_hyst * abs(d)) if d else h[n]
    return soc, h


def _columns(d: _Design, rec: _Recording, soc, h, taus, groups: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix (volts of ``groups`` series groups per unit of each table value: 16 for
    the pack's mean group, 1 for one group) and the part the held table values give."""
    n, m, k = len(soc), len(d.r_soc), d.pairs
    phi = hat(soc, d.ocv_soc)
    known = groups * (phi @ d.ocv_mean0 + (phi * h[:, None]) @ d.ocv_half0)
    a_mean = groups * phi[:, d.mean_free]
    a_half = groups * phi[:, d.half_free] * h[:, None]
    known -= a_mean @ d.ocv_mean0[d.mean_free] + a_half @ d.ocv_half0[d.half_free]
    factors = np.array([np.interp(rec.temp, d.t_grid, row) for row in d.t_rows])     # (1+k, n)
    psi = hat(soc, d.r_soc)                                                          # (n, m)
    scale = groups * 1e-3 / d.cells                # mOhm a cell -> ohm of the groups
    charging = (rec.i > 0).astype(float)
    r_cols = np.zeros((n, 2, 1 + k, m))
    # R0: the instant reading at each sample, this sample's current and direction
    for direction, mask in ((0, 1.0 - charging), (1, charging)):
        r_cols[:, direction, 0, :] = psi * (scale * rec.i * factors[0] * mask)[:, None]
    # R_k: each sample's filter state, driven over each interval by its held current toward the
    # end-of-interval resistance (as the emulator steps)
    held = rec.i_held
    held_dir = (held > 0).astype(float)
    for j in range(k):
        v = np.zeros((2, m))
        e = np.exp(-rec.dt / taus[j])
        for t in range(n - 1):
            drive = psi[t + 1] * (scale * held[t] * factors[1 + j, t + 1])
            v *= e[t]
            v[1 if held_dir[t] else 0] += (1.0 - e[t]) * drive
            r_cols[t + 1, :, 1 + j, :] = v
    return np.hstack([a_mean, a_half, r_cols.reshape(n, -1)]), known


def fit_pack(series: list[Series], prior: PhysicsParams) -> FitResult:
    """Fit the model to the recordings; returns the fitted parameters (see the module docstring)."""
    d = _Design(prior)
    recs = [_Recording(s) for s in series]
    path = _path_mohm(recs, prior.resistance.path_mohm)
    c_prior = prior.pack.cell_capacity_ah * prior.pack.cells_per_group
    taus0 = np.array([p.tau_s for p in prior.resistance.rc])
    # starting SOC of each recording: from its first (rested) voltage on the prior's OCV
    soc0_guess = [float(np.interp(r.y[0] / 16.0, d.ocv_mean0 + d.ocv_half0 * -1.0, d.ocv_soc)) for r in recs]
    theta0 = np.concatenate([[1.0], np.log(taus0), [np.log(prior.hysteresis.transition_soc)], soc0_guess])
    prior_rows = PRIOR_WEIGHT * np.eye(len(d.x0))
    # a recording with few samples weighs more than its count (by the fourth root), so a thermal
    # run logged once a minute is not drowned by a pulse test logged every second
    sizes = np.array([len(r.t) for r in recs], dtype=float)
    weights = (sizes.mean() / sizes) ** 0.25

    def solve(theta):
        capacity = c_prior * theta[0]
        taus, k_hyst = np.exp(theta[1:1 + d.pairs]), np.exp(-theta[1 + d.pairs])
        blocks, rhs = [], []
        for rec, soc0 in zip(recs, theta[2 + d.pairs:]):
            soc, h = _states(rec, capacity, soc0, k_hyst)
            a, known = _columns(d, rec, soc, h, taus)
            # zero weight above the limit, not fewer rows: the residual keeps its length
            w = weights[len(blocks)] * (soc <= MEAN_FIT_MAX_SOC)
            blocks.append(w[:, None] * a)
            rhs.append(w * (rec.y - known - path * 1e-3 * rec.i))
        a = np.vstack(blocks + [prior_rows])
        b = np.concatenate(rhs + [PRIOR_WEIGHT * d.x0])
        # Normal equations: the prior rows keep them regular. Unbounded: a value that comes out
        # negative is clipped on writing (split); a bounded solve (scipy lsq_linear) was tried and
        # fitted the round trip worse (groups 4.6 mV RMS against 1.2 mV, benchmarks/bench_twin_roundtrip.py)
        x = np.linalg.solve(a.T @ a, a.T @ b)
        return x, a @ x - b

    def residual(theta):
        return solve(theta)[1]

    lower = np.concatenate([[0.7], np.log(taus0 / 4), [np.log(0.005)], [-0.1] * len(recs)])
    upper = np.concatenate([[1.3], np.log(taus0 * 4), [np.log(0.2)], [1.1] * len(recs)])
    theta0 = np.clip(theta0, lower + 1e-9, upper - 1e-9)
    out = least_squares(residual, theta0, bounds=(lower, upper), x_scale="jac", max_nfev=60)
    x, res = solve(out.x)
    capacity = c_prior * out.x[0]
    taus, transition = np.exp(out.x[1:1 + d.pairs]), float(np.exp(out.x[1 + d.pairs]))
    soc0 = [float(v) for v in out.x[2 + d.pairs:]]
    mean, half, r = d.split(x)
    rel, group_soc0 = _group_capacities(d, recs, mean, half, capacity, soc0, transition)
    params = _write_params(prior, d, mean, half, r, path, capacity, taus, transition)
    params = _with_thermal(params, recs, d, mean, half, capacity, soc0, transition)
    spread = prior.spread.model_copy(update={"capacity_rel": float(np.std(rel)),
                                             "group_capacity_rel": [float(v) for v in rel]})
    params = params.model_copy(update={"spread": spread})
    used = res[:-len(d.x0)]
    used = used[used != 0.0]
    return FitResult(params, capacity, rel, soc0, group_soc0,
                     {"mean_group_rms_v": float(np.sqrt(np.mean(used ** 2))) / 16.0,
                      "outer_values": {"capacity_ah": capacity, "tau_s": taus.tolist(),
                                       "transition_soc": transition, "soc0": soc0},
                      "evaluations": float(out.nfev)})


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


def _write_params(prior, d: _Design, mean, half, r, path, capacity, taus, transition) -> PhysicsParams:
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


def _group_capacities(d, recs, mean, half, capacity, soc0, transition):
    """Each group's capacity (relative to the mean) and starting SOC in each recording, from its
    cell-tap voltage at rest: ``V_g = OCV(SOC_g, h) + v``, with ``v`` what is left of the
    polarisation, the same for every group (the mean group's measured voltage less its model
    OCV) and ``SOC_g = SOC0 + a_g + Q / C_g``. Only where the OCV is steep does a group's SOC show,
    so the knee near empty and the top near full carry the fit."""
    k_hyst = 1.0 / transition
    rests = []
    for rec, s0 in zip(recs, soc0):
        soc, h = _states(rec, capacity, s0, k_hyst)
        ocv_mean = np.interp(soc, d.ocv_soc, mean) + h * np.interp(soc, d.ocv_soc, half)
        g = rec.groups
        quiet = _rested(rec, RESTED_S) & ~np.isnan(g).any(axis=1) & (soc > 0.0) & (soc < GROUP_SOC_MAX)
        left = g[quiet].mean(axis=1) - ocv_mean[quiet]          # polarisation still there
        rests.append((rec.q[quiet], h[quiet], s0, g[quiet] - left[:, None]))
    group_soc0 = [np.full(GROUPS, s) for s in soc0]
    if sum(len(q) for q, *_ in rests) < 10:
        return np.zeros(GROUPS), group_soc0
    caps = np.empty(GROUPS)
    for g in range(GROUPS):
        def residual(theta, g=g):
            out = []
            for j, (q, h, s0, volts) in enumerate(rests):
                soc_g = s0 + theta[j] + q * theta[-1]
                out.append(np.interp(soc_g, d.ocv_soc, mean) + h * np.interp(soc_g, d.ocv_soc, half) - volts[:, g])
            return np.concatenate(out)
        start = np.concatenate([np.zeros(len(rests)), [1.0 / capacity]])
        lower = np.concatenate([np.full(len(rests), -0.05), [0.8 / capacity]])
        upper = np.concatenate([np.full(len(rests), 0.05), [1.25 / capacity]])
        fit = least_squares(residual, start, bounds=(lower, upper),
                            x_scale=np.concatenate([np.full(len(rests), 0.01), [0.01 / capacity]]))
        caps[g] = 1.0 / fit.x[-1]
        for j in range(len(rests)):
            group_soc0[j][g] = soc0[j] + fit.x[j]
    return caps / caps.mean() - 1.0, group_soc0


def _rested(rec, seconds: float) -> np.ndarray:
    """Samples at rest (no current) for at least ``seconds``."""
    out = np.zeros(len(rec.t), dtype=bool)
    since = None
    for n, (t, i) in enumerate(zip(rec.t, rec.i)):
        if abs(i) >= 1.0:
            since = None
        elif since is None:
            since = t
        out[n] = since is not None and t - since >= seconds
    return out


def _with_thermal(params, recs, d, mean, half, capacity, soc0, transition) -> PhysicsParams:
    """Heat capacity and conductance from the case temperature of the recordings that have one."""
    th = params.thermal
    runs = []
    for rec, s0 in zip(recs, soc0):
        if np.isnan(rec.series.case_c).all() or np.ptp(rec.temp) < 0.5:
            continue
        soc, h = _states(rec, capacity, s0, 1.0 / transition)
        ocv = 16.0 * (np.interp(soc, d.ocv_soc, mean) + h * np.interp(soc, d.ocv_soc, half))
        runs.append((rec, rec.i_held * (rec.y[:-1] - ocv[:-1])))
    if not runs:
        return params

    def residual(theta):
        trial = th.model_copy(update={"heat_capacity_j_per_k": theta[0] * 1e4, "ua_w_per_k": theta[1]})
        net = ThermalNetwork(trial, path_ohm=0.0)       # the heat is already I (V - OCV), path included
        out = []
        for rec, heat in runs:
            x = net.equilibrium(1, rec.temp[0])[:, 0]
            z = np.zeros(11)
            model = [x[CASE]]
            for n, dt in enumerate(rec.dt):
                z[:7], z[7:] = x, (heat[n], 0.0, rec.temp[0], 1.0)
                x = net.transition(float(dt)) @ z
                model.append(x[CASE])
            out.append(np.array(model) - rec.temp)
        return np.concatenate(out)

    start = [th.heat_capacity_j_per_k / 1e4, th.ua_w_per_k]
    fit = least_squares(residual, start, bounds=([1.0, 0.5], [500.0, 100.0]), max_nfev=40)
    return params.model_copy(update={"thermal": th.model_copy(update={
        "heat_capacity_j_per_k": round(float(fit.x[0] * 1e4), 1), "ua_w_per_k": round(float(fit.x[1]), 3)})})
