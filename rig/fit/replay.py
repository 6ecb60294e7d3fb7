"""The fitted model driven by a recording's own current, against what the recording measured."""
from __future__ import annotations

import numpy as np

from emulator.pack.physics import PackPhysics
from emulator.pack.physics_params import PhysicsParams
from rig.fit.series import Series


def replay(params: PhysicsParams, s: Series, group_soc0: np.ndarray, draw_a: float = 0.0) -> dict[str, np.ndarray]:
    """The model's terminal voltage, group voltages and case temperature at each sample of ``s``,
    each sample's current held since the sample before (:class:`rig.fit.circuit.Recording`) (less the BMS's own ``draw_a`` from the first
    sample with the terminals on the cells), starting at ``group_soc0`` in air at the first case
    reading."""
    air = float(s.case_c[0]) if not np.isnan(s.case_c[0]) else 25.0
    pack = PackPhysics(params, packs=1, initial_soc=float(np.mean(group_soc0)), soc_spread=0.0, ambient_c=air)
    for g, soc in enumerate(group_soc0):
        pack.set_group_soc(0, g, float(soc))
    n = len(s)
    pack_v, groups, case = np.empty(n), np.empty((n, 16)), np.empty(n)
    awake = np.cumsum(np.isfinite(s.pack_v)) > 0
    for k in range(n):
        if k:
            pack.step(float(s.t[k] - s.t[k - 1]), np.array([s.current[k] - draw_a * awake[k - 1]]), air)
        i = np.array([s.current[k]])
        vs, r = pack.thevenin()
        pack_v[k] = vs[0] + r[0] * i[0]
        groups[k] = pack.group_voltages(i)[0]
        case[k] = pack.case_temperature()[0]
    return {"pack_v": pack_v, "groups_v": groups, "case_c": case}


def residual_rms(s: Series, model: dict[str, np.ndarray]) -> dict[str, float]:
    """RMS of measured minus model per channel: terminal, each group, the groups together, case."""
    out = {"terminal_v": float(np.sqrt(np.nanmean((s.pack_v - model["pack_v"]) ** 2)))}   # NaN: off the cells
    for g in range(16):
        d = s.groups_v[:, g] - model["groups_v"][:, g]
        if not np.isnan(d).all():
            out[f"group{g + 1}_v"] = float(np.sqrt(np.nanmean(d ** 2)))
    d = s.groups_v - model["groups_v"]
    if not np.isnan(d).all():
        out["groups_v"] = float(np.sqrt(np.nanmean(d ** 2)))
    d = s.case_c - model["case_c"]
    if not np.isnan(d).all():
        out["case_c"] = float(np.sqrt(np.nanmean(d ** 2)))
    return out
