"""The separable least squares of :mod:`rig.fit.pack_fit`: an outer
:func:`scipy.optimize.least_squares` over the few values the voltage is not linear in, each of its
evaluations an inner linear least squares over the tables (:mod:`rig.fit.circuit`).

The outer values (``theta``), in this order: the capacity (relative to the prior's), the log of
each time constant, the log of the hysteresis transition, each resistance's temperature strength
(the exponent on the prior's temperature factors: its activation energy relative to the prior's),
the BMS's own draw from the cells (A, not through the rig's instruments: over the two days of the
OCV steps 15 mA is 0.7 Ah, enough to misplace the top of charge), and each recording's starting
SOC. A starting SOC moves only its own recording's rows, so its column of the Jacobian is worked
out from that recording alone (the other recordings' rows are kept, the tables solved again), and
a strength from those away from 25 C: a Jacobian of the 17 characterisation recordings costs 6
evaluations of them all, not 25.

A *short* recording (:attr:`Recording.short`: pulses at one SOC, the HPPC tests) barely moves the
SOC, so nothing in it says where on the OCV curve it sits: on the plateau 3 mV a cell is 5 % of
SOC. Its starting SOC is not an outer value but given (:attr:`Separable.short_soc0`: read from its
rested voltage on the OCV the other recordings gave), and its OCV has an offset of its own in the
linear solve, so a misplaced SOC cannot bend the OCV tables (the curve's slope still moves it with
its pulses: at 10 % SOC a 64 A pulse moves the pack's OCV by 20 mV); its pulses fit the
resistances, the hysteresis and the temperature factors.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from rig.fit.circuit import Design, Recording, columns, states

#: Weight of the pull toward the prior's values (tables: V per mOhm or V; temperature strengths and
#: the time constants' logs: V per unit): weak against the thousands of samples where a value is
#: observed, decisive where it is not (no recording away from 25 C: the strengths stay at 1).
PRIOR_WEIGHT = 2e-2
#: The mean-group fit leaves out samples above this SOC: near full the groups' spread of SOC
#: meets a steeply climbing charge resistance.
MEAN_FIT_MAX_SOC = 0.985
#: The temperature strengths' range: half to twice the prior's activation energy.
STRENGTH = (0.5, 2.0)
#: Strengths fitted: R0's and the fast pair's, which the HPPC pulses show at each temperature; the
#: slower pairs' are held at the prior's (a 10 s pulse barely moves them: fitted, they traded with
#: the rest of the model, 85 A recording 1 -> 11 mV RMS)
STRENGTHS_FITTED = 2
#: The BMS's own draw from the cells at most, A.
DRAW_MAX_A = 0.5
#: Relative step of the forward differences (scipy's default for '2-point').
STEP = 1.5e-8
#: The outer fit stops when a step lowers the cost by less than this share of it (scipy's default
#: 1e-8 spent half the iterations of the round trip on changes below a microvolt).
FTOL = 1e-5


class Separable:
    """The fit of ``recs`` from the prior's tables in ``d``.

    With :attr:`groups` unset the model is the pack's mean group (16 x one group) below
    :data:`MEAN_FIT_MAX_SOC`; set to ``(rel, offsets)`` (each group's capacity relative to the
    mean, and its starting SOC less the mean's in each recording) it is the sum of the groups, over
    every sample.
    """

    def __init__(self, d: Design, recs: list[Recording], path_mohm: float, c_prior: float):
        self.d, self.recs, self.path, self.c_prior = d, recs, path_mohm, c_prior
        self.groups = None
        self.evaluations = 0
        p = d.pairs
        self.strengths = min(STRENGTHS_FITTED, 1 + p)
        self.n_global = 2 + p + self.strengths + 1
        #: recordings whose starting SOC is an outer value, in theta's order; the short ones' given
        self.free = [j for j, r in enumerate(recs) if not r.short]
        self.short_soc0: dict[int, float] = {}
        # the linear unknowns: the tables, then each short recording's OCV offset (pack volts)
        self.own = {j: len(d.x0) + k for k, j in enumerate(j for j, r in enumerate(recs) if r.short)}
        x0 = np.concatenate([d.x0, np.zeros(len(self.own))])
        self.prior_a, self.prior_b = PRIOR_WEIGHT * np.eye(len(x0)), PRIOR_WEIGHT * x0
        # a recording with few samples weighs more than its count (by the fourth root), so a
        # thermal run logged once a minute is not drowned by a pulse test logged every second
        sizes = np.array([len(r.t) for r in recs], dtype=float)
        self.weights = (sizes.mean() / sizes) ** 0.25

    def start(self, capacity_rel: float, taus, transition: float, soc0) -> tuple[np.ndarray, ...]:
        """``theta`` for these values (temperature strengths 1; ``soc0`` of the recordings in
        :attr:`free`) and its lower and upper bounds."""
        taus, n = np.asarray(taus, dtype=float), len(soc0)
        self.log_tau0 = np.log(taus)
        k = self.strengths
        theta = np.concatenate([[capacity_rel], np.log(taus), [np.log(transition)], np.ones(k), [0.0], soc0])
        lower = np.concatenate([[0.7], np.log(taus / 4), [np.log(0.005)], np.full(k, STRENGTH[0]), [0.0], [-0.1] * n])
        upper = np.concatenate([[1.3], np.log(taus * 4), [np.log(0.2)], np.full(k, STRENGTH[1]), [DRAW_MAX_A], [1.1] * n])
        return np.clip(theta, lower + 1e-9, upper - 1e-9), lower, upper

    def values(self, theta) -> dict:
        """The outer values of ``theta`` by name (capacity Ah, time constants s, ...; ``soc0`` of
        every recording, the short ones' as given)."""
        p = self.d.pairs
        soc0 = dict(self.short_soc0) | {j: float(v) for j, v in zip(self.free, theta[self.n_global:])}
        return {"capacity_ah": self.c_prior * float(theta[0]), "tau_s": np.exp(theta[1:1 + p]),
                "transition_soc": float(np.exp(theta[1 + p])), "strength": np.concatenate([theta[2 + p:self.n_global - 1], np.ones(1 + p - self.strengths)]),
                "draw_a": float(theta[self.n_global - 1]),
                "soc0": [soc0.get(j, float("nan")) for j in range(len(self.recs))]}

    # ------------------------------------------------------------------ the inner solve
    def block(self, j: int, theta) -> tuple[np.ndarray, ...]:
        """Recording ``j``'s weighted rows (design ``a``, right-hand side ``b``) and their share of
        the normal equations (``a'a``, ``a'b``)."""
        v, rec = self.values(theta), self.recs[j]
        s0 = v["soc0"][j]
        if self.groups is None:
            soc, h = states(rec, v["capacity_ah"], s0, 1.0 / v["transition_soc"], draw_a=v["draw_a"])
            w = self.weights[j] * (soc <= MEAN_FIT_MAX_SOC) * rec.on      # zero weight: the length stays
        else:
            rel, offsets = self.groups
            soc, h = states(rec, v["capacity_ah"] * (1.0 + rel), s0 + offsets[j], 1.0 / v["transition_soc"],
                            draw_a=v["draw_a"])
            w = self.weights[j] * rec.on
        a, known = columns(self.d, rec, soc, h, v["tau_s"], v["strength"])
        own = np.zeros((len(a), len(self.own)))
        if rec.short:
            own[:, self.own[j] - len(self.d.x0)] = 1.0
        y = np.where(rec.on, rec.y, 0.0)                # no terminal voltage off the cells: weight 0
        a, b = w[:, None] * np.hstack([a, own]), w * (y - known - self.path * 1e-3 * rec.i)
        return a, b, a.T @ a, a.T @ b

    def _solve(self, blocks):
        """Tables and residual of ``blocks``."""
        gram = self.prior_a.T @ self.prior_a + sum(blk[2] for blk in blocks)
        rhs = self.prior_a.T @ self.prior_b + sum(blk[3] for blk in blocks)
        # Normal equations: the prior rows keep them regular. Unbounded: a value that comes out
        # negative is clipped on writing; a bounded solve (scipy lsq_linear) was tried and fitted
        # the round trip worse (groups 4.6 mV RMS against 1.2 mV, benchmarks/bench_twin_roundtrip.py)
        x = np.linalg.solve(gram, rhs)
        res = np.concatenate([a @ x - b for a, b, *_ in blocks] + [self.prior_a @ x - self.prior_b])
        return x, np.concatenate([res, self._strength_rows(self._theta)])

    def _strength_rows(self, theta) -> np.ndarray:
        """The outer values' pull toward the prior: the time constants' logs and the strengths."""
        p = self.d.pairs
        return PRIOR_WEIGHT * np.concatenate([np.asarray(theta[1:1 + p]) - self.log_tau0,
                                              np.asarray(theta[2 + p:self.n_global - 1]) - 1.0])

    def residual(self, theta) -> np.ndarray:
        """Weighted residual of every recording, the tables' prior rows, the strengths' prior rows."""
        self.evaluations += 1
        self._theta = np.array(theta, dtype=float)
        blocks = [self.block(j, theta) for j in range(len(self.recs))]
        x, res = self._solve(blocks)
        self._last = (self._theta, blocks, x, res)
        return res

    def _moves(self, i: int) -> list[int]:
        """The recordings whose rows outer value ``i`` moves: a starting SOC its own; a
        temperature strength those whose temperature leaves 25 C (the factor there is 1 whatever
        the strength); the rest all."""
        n, p = self.n_global, self.d.pairs
        if i >= n:
            return [self.free[i - n]]
        if 2 + p <= i < n - 1:
            row = self.d.t_rows[i - 2 - p]
            return [j for j, rec in enumerate(self.recs) if np.any(np.interp(rec.temp, self.d.t_grid, row) != 1.0)]
        return list(range(len(self.recs)))

    def jacobian(self, theta) -> np.ndarray:
        """Forward differences, each from the recordings the moved value moves (:meth:`_moves`);
        the others' rows are kept."""
        if self._last is None or not np.array_equal(self._last[0], theta):
            self.residual(theta)
        theta, blocks, _, base = self._last
        jac = np.empty((len(base), len(theta)))
        for i in range(len(theta)):
            step = STEP * max(1.0, abs(theta[i]))
            self._theta = theta.copy()
            self._theta[i] += step
            moved = list(blocks)
            for j in self._moves(i):
                moved[j] = self.block(j, self._theta)
            jac[:, i] = (self._solve(moved)[1] - base) / step
        self.evaluations += self.n_global - self.strengths
        self._theta = theta
        return jac

    def run(self, theta0, lower, upper):
        """The outer fit from ``theta0``; returns (theta, tables, residual of the recordings and
        the tables' prior rows)."""
        self._last = None
        out = least_squares(self.residual, theta0, jac=self.jacobian, bounds=(lower, upper), x_scale="jac",
                            max_nfev=60, ftol=FTOL)
        self.residual(out.x)
        _, _, x, res = self._last
        return out.x, x, res[:len(res) - len(self._strength_rows(out.x))]
