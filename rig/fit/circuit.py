"""The equivalent circuit as the fit sees it: for given capacity, time constants, hysteresis
transition and starting SOC, SOC(t), h(t) and the RC filters follow from the current alone, and the
voltage is *linear* in every table value: the OCV points of both branches, R0 and each R_k at every
SOC point and direction (hat functions over the SOC grid). This module builds that linear part: the
kept samples of a recording, its states, and the design matrix.

The model is the emulator's (:mod:`emulator.pack.physics`), per series group::

    V_group = OCV(SOC, h) + sum_k v_k + R0(SOC, dir) f0(T) I
    v_k: dv_k/dt = (R_k(SOC, dir) f_k(T) I - v_k) / tau_k,   V_pack = sum V_group + R_path I
"""
from __future__ import annotations

import numpy as np

from emulator.pack.physics_params import PhysicsParams
from rig.fit.series import Series

#: Keep a sample at least this often (s) at rest, and every sample for this long after the current
#: changed by more than CHANGE_A (the RC pairs' fast part).
KEEP_EVERY_S, KEEP_AFTER_S, CHANGE_A = 60.0, 40.0, 0.5
#: OCV points held at the prior: up to and including this SOC, %.
OCV_HELD_BELOW_PCT = 5.0


class Design:
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
    """Indices of the samples the fit uses: every one while current flows (the resistances move
    with SOC along the way: at the top of charge by tens of percent a minute) and for
    KEEP_AFTER_S after it changed, else one every KEEP_EVERY_S (at rest the RC pairs' decay is
    exact over any interval)."""
    keep, last_t, changed_t = [0], s.t[0], -np.inf
    for n in range(1, len(s)):
        if abs(s.current[n] - s.current[n - 1]) > CHANGE_A:
            changed_t = s.t[n]
        if s.t[n] - changed_t <= KEEP_AFTER_S or s.t[n] - last_t >= KEEP_EVERY_S or n == len(s) - 1 \
                or abs(s.current[n]) > CHANGE_A or abs(s.current[n] - s.current[keep[-1]]) > CHANGE_A:
            keep.append(n)
            last_t = s.t[n]
    return np.array(keep)


class Recording:
    """One series prepared for the fit: the kept samples, the charge through the pack up to each.

    :param short: the recording barely moves the SOC (pulses at one SOC): it says nothing about
        where on the OCV curve it sits (see :mod:`rig.fit.separable`).
    """

    def __init__(self, s: Series, short: bool = False):
        self.series = s
        self.short = short
        self.idx = keep_samples(s)
        dt_all = np.diff(s.t)
        # charge at every sample, each interval at the current of the sample that ends it: the rig
        # samples at a tick of its clock before a test acts at that tick, so a current read at a
        # sample flowed since the sample before (fitted the other way, every pulse's edge was a
        # second late: 10 mV RMS on the round trip's 85 A recording)
        q_all = np.concatenate([[0.0], np.cumsum(s.current[1:] * dt_all)]) / 3600.0
        self.q = q_all[self.idx]                          # Ah since the start
        self.t = s.t[self.idx]
        self.i = s.current[self.idx]
        self.dt = np.diff(self.t)
        self.y = s.pack_v[self.idx]
        self.on = np.isfinite(self.y)                    # the terminals on the cells
        # the BMS is awake from the first sample with the terminals on the cells: its own supply
        # (not through the rig's instruments) drains the cells from then on (draw_a, A)
        self.t_awake = np.maximum(self.t - self.t[np.argmax(self.on)], 0.0)
        self.draw_a = 0.0
        self.case = np.where(np.isnan(s.case_c[self.idx]), 25.0, s.case_c[self.idx])
        # the cell temperature the resistances see: the case reading until the thermal node is fitted
        self.temp = self.case.copy()
        # the current held over each kept interval: the mean over it (its charge / its length)
        self.i_held = np.diff(self.q) * 3600.0 / np.maximum(self.dt, 1e-9)
        self.groups = s.groups_v[self.idx]

    def cells_q(self, draw_a: float | None = None) -> np.ndarray:
        """Ah into the cells since the start: through the terminals, less the BMS's own draw
        (default :attr:`draw_a`)."""
        return self.q - (self.draw_a if draw_a is None else draw_a) * self.t_awake / 3600.0


def states(rec: Recording, capacity, soc0, k_hyst: float, h0: float = -1.0, draw_a: float | None = None):
    """SOC and h at each kept sample (h by its exact solution over the throughput), of the mean
    group (scalar ``capacity`` and ``soc0``: ``(n,)`` arrays) or of each group (one capacity and
    starting SOC a group: ``(n, groups)``); the BMS's draw as :meth:`Recording.cells_q`."""
    q = rec.cells_q(draw_a)
    soc = np.add.outer(q, np.zeros(np.shape(soc0))) / capacity + soc0
    z = np.concatenate([np.zeros((1,) + soc.shape[1:]), np.cumsum(np.abs(np.diff(soc, axis=0)), axis=0)])
    h = np.empty_like(soc)
    h[0] = h0
    # runs of one current direction: h -> s + (h_start - s) exp(-k z) over the run's throughput
    sign = np.sign(np.diff(q))
    ends = np.flatnonzero(np.diff(sign)) + 1
    for a, b in zip(np.concatenate([[0], ends]), np.concatenate([ends, [len(sign)]])):
        s = sign[a]
        h[a + 1:b + 1] = s + (h[a] - s) * np.exp(-k_hyst * (z[a + 1:b + 1] - z[a])) if s else h[a]
    return soc, h


def hat_sum(soc: np.ndarray, grid: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """``(n, len(grid))``: :func:`hat` of each column of ``soc`` (one a group), summed over the
    groups, each row of a group times its ``weights`` (same shape as ``soc``)."""
    n, m = soc.shape[0], len(grid)
    x = soc.reshape(-1)
    i = np.clip(np.searchsorted(grid, x, side="right"), 1, m - 1)
    w = np.clip((x - grid[i - 1]) / (grid[i] - grid[i - 1]), 0.0, 1.0)
    weight = np.ones_like(x) if weights is None else weights.reshape(-1)
    cell = np.repeat(np.arange(n) * m, soc.shape[1]) + i - 1      # row-major index of the left point
    out = np.bincount(cell, (1.0 - w) * weight, minlength=n * m) + np.bincount(cell + 1, w * weight, minlength=n * m)
    return out[:n * m].reshape(n, m)


def relax(dt: np.ndarray, tau: float, drive: np.ndarray) -> np.ndarray:
    """An RC pair's voltage at each sample (from 0): over each interval it moves toward that
    interval's ``drive`` row by ``1 - exp(-dt / tau)`` (exact for a held target). Vectorised: with
    ``w = v exp(t / tau)`` the recurrence is a cumulative sum, taken in blocks short enough for
    ``exp`` to stay in range."""
    t = np.concatenate([[0.0], np.cumsum(dt)])
    v = np.zeros((len(t),) + drive.shape[1:])
    gain = -np.expm1(-dt / tau)
    start = 0
    while start < len(dt):
        stop = start + max(1, int(np.searchsorted(t, t[start] + 300.0 * tau, side="right")) - 1 - start)
        stop = min(stop, len(dt))
        grow = np.exp((t[start + 1:stop + 1] - t[start]) / tau)
        w = np.cumsum((grow * gain[start:stop])[:, None] * drive[start:stop].reshape(stop - start, -1), axis=0)
        base = v[start].reshape(-1)
        v[start + 1:stop + 1] = ((base + w) / grow[:, None]).reshape((stop - start,) + drive.shape[1:])
        start = stop
    return v


def columns(d: Design, rec: Recording, soc, h, taus, strength=None,
            groups: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix (volts of ``groups`` series groups per unit of each table value) and the
    part the held table values give. ``strength``: each resistance's temperature factors are the
    prior's raised to it (default 1: the prior's). ``soc`` and ``h`` of the mean group (``(n,)``: it stands
    for all ``groups``) or of each group (``(n, groups)``: the pack is their sum, which matters
    where a table bends within the groups' spread of SOC, at the top of charge)."""
    soc, h = soc.reshape(len(soc), -1), h.reshape(len(h), -1)
    n, m, k = len(soc), len(d.r_soc), d.pairs
    each = groups / soc.shape[1]                   # groups a column of ``soc`` stands for
    phi = each * hat_sum(soc, d.ocv_soc)
    phi_h = each * hat_sum(soc, d.ocv_soc, h)
    known = phi @ d.ocv_mean0 + phi_h @ d.ocv_half0
    a_mean, a_half = phi[:, d.mean_free], phi_h[:, d.half_free]
    known -= a_mean @ d.ocv_mean0[d.mean_free] + a_half @ d.ocv_half0[d.half_free]
    strength = np.ones(1 + k) if strength is None else strength
    factors = np.array([np.interp(rec.temp, d.t_grid, row ** e) for row, e in zip(d.t_rows, strength)])
    psi = each * hat_sum(soc, d.r_soc)                                                # (n, m)
    scale = 1e-3 / d.cells                         # mOhm a cell -> ohm of a group
    charging = (rec.i > 0).astype(float)
    r_cols = np.zeros((n, 2, 1 + k, m))
    # R0: the instant reading at each sample, this sample's current and direction
    for direction, mask in ((0, 1.0 - charging), (1, charging)):
        r_cols[:, direction, 0, :] = psi * (scale * rec.i * factors[0] * mask)[:, None]
    # R_k: each sample's filter state, driven over each interval by its held current toward the
    # end-of-interval resistance (as the emulator steps)
    held = rec.i_held
    held_dir = (held > 0).astype(int)
    for j in range(k):
        drive = np.zeros((n - 1, 2, m))
        drive[np.arange(n - 1), held_dir] = psi[1:] * (scale * held * factors[1 + j, 1:])[:, None]
        r_cols[:, :, 1 + j, :] = relax(rec.dt, taus[j], drive)
    return np.hstack([a_mean, a_half, r_cols.reshape(n, -1)]), known
