"""Each group's capacity and starting SOC, from its cell-tap voltage at rest on the fitted OCV."""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from rig.fit.circuit import states
from rig.fit.series import GROUPS

#: A group's SOC is read from its voltage after this long at rest, s.
RESTED_S = 1500.0
#: ... and below this mean SOC (the rests after a full charge included: the OCV is steep there).
GROUP_SOC_MAX = 1.006


def group_capacities(d, recs, mean, half, capacity, soc0, transition):
    """Each group's capacity (relative to the mean) and starting SOC in each recording, from its
    cell-tap voltage at rest: ``V_g = OCV(SOC_g, h) + v``, with ``v`` what is left of the
    polarisation, the same for every group (the mean group's measured voltage less its model
    OCV) and ``SOC_g = SOC0 + a_g + Q / C_g``. Only where the OCV is steep does a group's SOC show,
    so the knee near empty and the top near full carry the fit."""
    k_hyst = 1.0 / transition
    rests = []
    for rec, s0 in zip(recs, soc0):
        soc, h = states(rec, capacity, s0, k_hyst)
        ocv_mean = np.interp(soc, d.ocv_soc, mean) + h * np.interp(soc, d.ocv_soc, half)
        g = rec.groups
        quiet = rested(rec, RESTED_S) & ~np.isnan(g).any(axis=1) & (soc > 0.0) & (soc < GROUP_SOC_MAX)
        left = g[quiet].mean(axis=1) - ocv_mean[quiet]          # polarisation still there
        rests.append((rec.cells_q()[quiet], h[quiet], s0, g[quiet] - left[:, None]))
    group_soc0 = [np.full(GROUPS, s) for s in soc0]
    if sum(len(q) for q, *_ in rests) < 10:
        return np.zeros(GROUPS), group_soc0
    caps = np.empty(GROUPS)
    # the capacity from the recordings that move the SOC; a short one (pulses at one SOC) only
    # places its groups, each alone, at the capacity found (it says nothing of the capacity, and
    # on the plateau its offsets are loose: fitted together they stalled the capacity's fit)
    long = [j for j, rec in enumerate(recs) if not rec.short] or list(range(len(recs)))

    def misfit(g, j, offset, inv_capacity):
        q, h, s0, volts = rests[j]
        soc_g = s0 + offset + q * inv_capacity
        return np.interp(soc_g, d.ocv_soc, mean) + h * np.interp(soc_g, d.ocv_soc, half) - volts[:, g]

    for g in range(GROUPS):
        start = np.concatenate([np.zeros(len(long)), [1.0 / capacity]])
        lower = np.concatenate([np.full(len(long), -0.05), [0.8 / capacity]])
        upper = np.concatenate([np.full(len(long), 0.05), [1.25 / capacity]])
        fit = least_squares(lambda th, g=g: np.concatenate([misfit(g, j, th[k], th[-1]) for k, j in enumerate(long)]),
                            start, bounds=(lower, upper),
                            x_scale=np.concatenate([np.full(len(long), 0.01), [0.01 / capacity]]))
        caps[g] = 1.0 / fit.x[-1]
        for k, j in enumerate(long):
            group_soc0[j][g] = soc0[j] + fit.x[k]
        for j in set(range(len(recs))) - set(long):
            if len(rests[j][0]):
                one = least_squares(lambda th, g=g, j=j: misfit(g, j, th[0], fit.x[-1]), [0.0], bounds=([-0.05], [0.05]),
                                    x_scale=[0.01])
                group_soc0[j][g] = soc0[j] + one.x[0]
    return caps / caps.mean() - 1.0, group_soc0


def rested(rec, seconds: float) -> np.ndarray:
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

