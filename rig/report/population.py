"""What a population of packs says about each criterion: margin distributions from the runs' manifests.

``packrig run --population N`` (:mod:`rig.population`) runs the same tests against N emulated
packs, one ordinary run folder each. This module reads only those runs' ``manifest.json``
(schema ``packrig-run/1``) and knows nothing of any test: every measurement that was recorded
with limits has a margin,

    margin = signed distance from the value to the nearer limit, in the measurement's unit
             (value - low for ``at_least``, high - value for ``at_most``; + inside, - outside)

and the measurements are grouped across packs by requirement id and name. Where one pack
measured the same (requirement, name) more than once, its worst margin counts: a criterion holds
on a pack only if it held every time. Margins are in the measurement's own unit (V, A, s), not
in tolerances, so the distribution reads as "how far a real pack may be from the limit".

The long-storage recharge (manual 1.4) gets its own line: the pack spec names its requirement id
and its success voltage, the measurements of that requirement whose lower limit is that voltage
are the manual's criterion, and it *holds with margin* when every pack passed by more than the
pack-voltage tolerance of the spec (what a reading of the pack voltage may be off by).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rig.report.manifest import OUTCOMES

#: the quantiles shown of each margin distribution (linear interpolation between packs, numpy's default)
QUANTILES = {"min": 0.0, "p5": 5.0, "median": 50.0, "p95": 95.0, "max": 100.0}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def margin_of(m: dict) -> float | None:
    """The margin of one manifest measurement in its unit, or None when it has no numeric limit
    (an exact expectation: a bit, a state, a light) or its value is not a finite number."""
    value, low, high = m.get("value"), m.get("low"), m.get("high")
    if not _number(value) or not math.isfinite(value):
        return None
    distances = [d for d in ((value - low) if _number(low) else None,
                             (high - value) if _number(high) else None) if d is not None]
    return min(distances) if distances else None


def _limited(m: dict) -> bool:
    return _number(m.get("low")) or _number(m.get("high"))


def pack_measurements(manifest: dict) -> dict[tuple[str, str], dict]:
    """(requirement, name) -> this pack's worst reading of it: ``value``, ``low``, ``high``,
    ``unit``, ``margin``, ``outcome`` (failed if any reading failed), ``readings``, ``tests``."""
    out: dict[tuple[str, str], dict] = {}
    for test in manifest.get("tests") or []:
        for m in test.get("measurements") or []:
            key = (m.get("requirement") or "", m.get("name") or "")
            here = {"value": m.get("value"), "low": m.get("low"), "high": m.get("high"),
                    "expected": m.get("expected"), "unit": m.get("unit") or "", "margin": margin_of(m),
                    "outcome": m.get("outcome"), "limited": _limited(m), "readings": 1, "tests": [test["nodeid"]]}
            seen = out.get(key)
            if seen is None:
                out[key] = here
                continue
            worse = _worse(here, seen)
            kept = dict(worse)
            kept["outcome"] = "failed" if "failed" in (here["outcome"], seen["outcome"]) else worse["outcome"]
            kept["readings"] = seen["readings"] + 1
            kept["tests"] = sorted(set(seen["tests"]) | set(here["tests"]))
            out[key] = kept
    return out


def _worse(a: dict, b: dict) -> dict:
    """The reading that counts for the pack: a failed one over a passed one, then the smaller margin."""
    rank = lambda r: (r["outcome"] != "failed", math.inf if r["margin"] is None else r["margin"])  # noqa: E731
    return a if rank(a) < rank(b) else b


def distribution(margins: list[float]) -> dict[str, float] | None:
    """min / 5 % / median / 95 % / max of the finite margins (None when there is none)."""
    known = [m for m in margins if m is not None and math.isfinite(m)]
    if not known:
        return None
    return {k: float(np.percentile(known, q)) for k, q in QUANTILES.items()}


def summarise(packs: list[dict], spec) -> dict:
    """The population's figures from its packs' manifests.

    :param packs: one dict per pack: ``pack`` (1-based), ``seed`` and ``manifest`` (None for a
        pack whose run left none).
    :param spec: the pack spec the runs asserted against (for the long-storage recharge line).
    :return: ``measurements``, ``tests`` and ``storage_recharge``, as ``population.json`` keeps them.
    """
    rows: dict[tuple[str, str], dict] = {}
    tests: dict[str, dict] = {}
    for p in packs:
        manifest = p.get("manifest") or {}
        for key, reading in pack_measurements(manifest).items():
            row = rows.setdefault(key, {"requirement": key[0], "name": key[1], "unit": reading["unit"],
                                        "limited": False, "tests": set(), "packs": []})
            row["limited"] |= reading["limited"]
            row["tests"] |= set(reading["tests"])
            row["packs"].append({"pack": p["pack"], "seed": p["seed"],
                                 **{k: reading[k] for k in ("value", "low", "high", "margin", "outcome", "readings")}})
        for t in manifest.get("tests") or []:
            entry = tests.setdefault(t["nodeid"], {"nodeid": t["nodeid"], **dict.fromkeys(OUTCOMES, 0),
                                                    "failed_packs": []})
            if t.get("outcome") in OUTCOMES:
                entry[t["outcome"]] += 1
            if t.get("outcome") in ("failed", "error"):
                entry["failed_packs"].append(p["pack"])
    measurements = []
    for row in sorted(rows.values(), key=lambda r: (r["requirement"], r["name"])):
        measurements.append({
            "requirement": row["requirement"], "name": row["name"], "unit": row["unit"],
            "kind": "limits" if row["limited"] else "exact",
            "tests": sorted(row["tests"]),
            "packs_measured": len(row["packs"]),
            "packs_failing": sum(r["outcome"] == "failed" for r in row["packs"]),
            "margin": distribution([r["margin"] for r in row["packs"]]) if row["limited"] else None,
            "packs": row["packs"]})
    return {"measurements": measurements, "tests": sorted(tests.values(), key=lambda t: t["nodeid"]),
            "storage_recharge": storage_recharge(measurements, spec, len(packs))}


def storage_recharge(measurements: list[dict], spec, n_packs: int) -> dict:
    """Does the manual's long-storage recharge criterion (1.4: at least ``min_rest_voltage_v``
    after the rest) hold with margin across the packs? Read from the generic rows: the
    measurements of the spec's requirement whose lower limit is that voltage."""
    sr = spec.storage_recharge
    tolerance = spec.tolerance.pack_voltage_v
    rows = [m for m in measurements if m["requirement"] == sr.id and m["kind"] == "limits"
            and any(_number(r["low"]) and math.isclose(r["low"], sr.min_rest_voltage_v) for r in m["packs"])]
    per_pack: dict[int, dict] = {}
    for row in rows:
        for r in row["packs"]:
            seen = per_pack.get(r["pack"])
            if seen is None or _worse(r, seen) is r:
                per_pack[r["pack"]] = {"measurement": row["name"], **r}
    worst = [per_pack[k] for k in sorted(per_pack)]
    margins = [r["margin"] for r in worst]
    failing = sum(r["outcome"] == "failed" for r in worst)
    within = sum(r["outcome"] != "failed" and r["margin"] is not None and r["margin"] < tolerance for r in worst)
    limit = f">= {sr.min_rest_voltage_v:g} V after the {sr.rest_s:g} s rest"
    if not worst:
        verdict, text = "not run", f"{sr.id} (manual 1.4, {limit}): not measured in this population"
    elif failing:
        verdict = "fails"
        text = (f"{sr.id} (manual 1.4, {limit}) does NOT hold: fails on {failing} of {len(worst)} packs "
                "drawn; a real pack may fail where the emulated one passes")
    elif within:
        verdict = "holds without margin"
        text = (f"{sr.id} (manual 1.4, {limit}) holds on every pack, but within the {tolerance:g} V "
                f"pack-voltage tolerance on {within} of {len(worst)}: a real pack's reading may fail it")
    else:
        verdict = "holds with margin"
        text = (f"{sr.id} (manual 1.4, {limit}) holds with margin: more than the {tolerance:g} V "
                f"pack-voltage tolerance on all {len(worst)} packs")
    return {"requirement": sr.id, "limit_v": sr.min_rest_voltage_v, "tolerance_v": tolerance,
            "measurements": [m["name"] for m in rows], "packs_measured": len(worst), "packs_drawn": n_packs,
            "packs": worst, "margin": distribution(margins), "packs_failing": failing,
            "packs_within_tolerance": within, "verdict": verdict, "text": text}


def histogram(criterion: dict, path: Path) -> Path | None:
    """A PNG of the storage-recharge margins (mV, + passes); None when none was measured."""
    margins = [p["margin"] for p in criterion["packs"] if p["margin"] is not None]
    if not margins:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist([m * 1e3 for m in margins], bins=max(5, len(margins) // 2), color="tab:blue", edgecolor="white")
    ax.axvline(0.0, color="tab:red", label=f"criterion: {criterion['limit_v']:g} V after the rest")
    tol = criterion["tolerance_v"] * 1e3
    ax.axvspan(0.0, tol, color="tab:orange", alpha=0.15, label=f"within the {tol:g} mV pack-voltage tolerance")
    ax.set_xlabel(f"{criterion['requirement']}: rest voltage - {criterion['limit_v']:g} V, mV (+ passes)")
    ax.set_ylabel("packs")
    ax.yaxis.get_major_locator().set_params(integer=True)  # a count of packs
    ax.set_title(f"{criterion['packs_measured']} emulated packs drawn from the plausible spread of real packs")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)  # never over the bars
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
