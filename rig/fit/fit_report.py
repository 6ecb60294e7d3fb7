"""What ``packrig fit`` writes: the physics file, the residual RMS per channel, the plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tomli_w

from rig.fit.pack_fit import FitResult
from rig.fit.replay import replay, residual_rms
from rig.fit.series import Series

HEADER = """# Physical parameters fitted by `packrig fit` to the characterisation recordings
#   {runs}
# Load it in a bench file: [emulator] physics = "<this file>". Fitted: OCV of both branches above
# 5 % SOC, R0 and the RC pairs per SOC and direction, their time constants, the strength of each
# one's temperature factors (the prior's curve raised to a fitted power), hysteresis transition,
# capacity and its per-group spread, path resistance, heat capacity and conductance. Held from the
# prior (not identified by the procedures): the OCV knee below 5 %, the abuse extensions, the shape
# of the temperature factors, sensors, self-discharge. Residual RMS: see fit-report.json beside it.
"""


def write_physics(result: FitResult, out: Path, runs: list[str]) -> None:
    data = result.params.model_dump(exclude_none=True)
    out.write_text(HEADER.format(runs="\n#   ".join(runs)) + "\n" + tomli_w.dumps(data))


def report(result: FitResult, series: list[Series], out_dir: Path) -> dict:
    """Replay every recording with the fitted model; write ``fit-report.json`` and one PNG per
    recording (measured vs model: terminal, groups, case temperature); returns the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = {}
    for k, s in enumerate(series):
        model = replay(result.params, s, result.group_soc0[k], result.draw_a)
        rms = residual_rms(s, model)
        png = out_dir / f"fit-{k + 1}.png"
        plot(s, model, png)
        recordings[s.name] = {"rms": rms, "plot": png.name, "samples": len(s)}
    data = {"capacity_ah": result.capacity_ah, "bms_draw_a": result.draw_a, "capacity_spread_rel": float(np.std(result.group_capacity_rel)),
            "group_capacity_rel": [float(v) for v in result.group_capacity_rel],
            "fit": result.cost, "recordings": recordings}
    (out_dir / "fit-report.json").write_text(json.dumps(data, indent=2))
    return data


def plot(s: Series, model: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = s.t / 3600.0
    fig, ax = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    ax[0].plot(h, s.pack_v, label="measured", lw=1)
    ax[0].plot(h, model["pack_v"], "--", label="fitted model", lw=1)
    ax[0].set_ylabel("terminal V")
    ax[0].legend(loc="best")
    ax[0].set_title(s.name)
    d = (s.groups_v - model["groups_v"]) * 1e3
    ax[1].plot(h, d, lw=0.6)
    ax[1].set_ylabel("group: measured - model, mV")
    ax[2].plot(h, s.case_c, label="measured")
    ax[2].plot(h, model["case_c"], "--", label="fitted model")
    ax[2].set_ylabel("case C")
    ax[2].set_xlabel("h")
    ax[2].legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
