"""The thermal node's heat capacity and conductance from the case thermocouples."""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from emulator.pack.physics_params import PhysicsParams
from emulator.pack.thermal import CASE, N_INPUTS, N_STATES, PACK, ThermalNetwork
from rig.fit.circuit import states


def with_thermal(params, recs, d, mean, half, capacity, soc0, transition) -> tuple[PhysicsParams, list]:
    """Heat capacity and conductance from the case temperature of the recordings that have one,
    heated by ``I (V_terminal - OCV_pack)`` in air at the first reading's temperature (a soaked
    start). Returns the parameters and, per recording, the cell temperature the resistances see:
    the fitted thermal node's, where the pack heated, else the case reading."""
    th = params.thermal
    runs = []
    for k, (rec, s0) in enumerate(zip(recs, soc0)):
        if np.isnan(rec.series.case_c).all() or np.ptp(rec.case) < 0.5:
            continue
        soc, h = states(rec, capacity, s0, 1.0 / transition)
        ocv = 16.0 * (np.interp(soc, d.ocv_soc, mean) + h * np.interp(soc, d.ocv_soc, half))
        # (no voltage off the cells: no current either)
        runs.append((k, rec, np.nan_to_num(rec.i_held * (rec.y[:-1] - ocv[:-1]))))
    temps = [rec.case for rec in recs]
    if not runs:
        return params, temps

    def residual(theta):
        trial = th.model_copy(update={"heat_capacity_j_per_k": theta[0] * 1e4, "ua_w_per_k": theta[1]})
        return np.concatenate([_node(trial, rec, heat)[:, CASE] - rec.case for _, rec, heat in runs])

    start = [th.heat_capacity_j_per_k / 1e4, th.ua_w_per_k]
    fit = least_squares(residual, start, bounds=([1.0, 0.5], [500.0, 100.0]), max_nfev=40)
    th = th.model_copy(update={"heat_capacity_j_per_k": round(float(fit.x[0] * 1e4), 1),
                               "ua_w_per_k": round(float(fit.x[1]), 3)})
    for k, rec, heat in runs:
        temps[k] = _node(th, rec, heat)[:, PACK]
    return params.model_copy(update={"thermal": th}), temps


def _node(th, rec, heat) -> np.ndarray:
    """``(samples, states)`` of the thermal network (:mod:`emulator.pack.thermal`) heated by ``heat``
    (W over each interval), in air at the first case reading."""
    net = ThermalNetwork(th, path_ohm=0.0)       # the heat is already I (V - OCV), path included
    air = rec.case[0]
    x = net.equilibrium(1, air)[:, 0]
    z = np.zeros(N_STATES + N_INPUTS)
    out = [x]
    for n, dt in enumerate(rec.dt):
        z[:N_STATES], z[N_STATES:] = x, (heat[n], 0.0, air, 1.0)
        x = net.transition(float(dt)) @ z
        out.append(x)
    return np.array(out)
