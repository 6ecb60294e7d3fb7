"""Two runs side by side: what a firmware build changed (``packrig compare A B``).

Run A is the baseline (the last good build, or ``--baseline DIR``), run B the candidate. The
comparison has three parts, each from the run folders alone (``manifest.json`` and the CAN logs):

- **verdicts** per test and per requirement: pass -> fail (regressed), fail -> pass (fixed),
  new, removed, ran <-> skipped. A requirement's verdict is its worst test's (failed over
  passed over skipped), so a requirement whose last passing test disappeared regressed too;
- **drift** of every measurement present in both runs (same test, requirement, name and
  occurrence): the change as a fraction of the measurement's tolerance, and the margin (how far
  inside its limits, in tolerances) before and after. A drift beyond ``drift_limit`` is flagged
  even where both runs pass: a trip delay that moved from mid-window to the edge still passes
  today and fails on the next build;
- **the first CAN frame where a test's logs part**, for two emulated runs of the same seed
  (the emulator is deterministic for a seed, so any difference is the firmware's or the rig's).

:func:`compare` returns a plain dict (the content of ``compare.json``); :mod:`rig.report.compare_render`
turns it into the terminal table and ``compare.html``.
"""
from __future__ import annotations

import filecmp
import math
from collections import Counter, defaultdict
from pathlib import Path

from rig.report.margin import margin
from rig.report.runs import Run, same_requirements

#: how bad an outcome is, for a requirement's verdict (its worst test's)
SEVERITY = {"failed": 3, "error": 3, "passed": 1, "skipped": 0}
BAD = ("failed", "error")


def verdict_change(before: str | None, after: str | None) -> str | None:
    """The kind of change between two outcomes (``None``: no change worth listing)."""
    if before == after or (before in BAD and after in BAD):
        return None
    if before is None:
        return "new failing" if after in BAD else "new"
    if after is None:
        return "removed"
    if after in BAD:
        return "regressed"
    if before in BAD:
        return "fixed" if after == "passed" else "failed -> skipped"
    return "ran -> skipped" if after == "skipped" else "skipped -> ran"


#: changes that make the candidate worse than the baseline (exit code 1)
WORSE = {"regressed", "new failing", "ran -> skipped", "lost coverage"}


def requirement_outcomes(run: Run) -> dict[str, str]:
    """Requirement id -> the worst outcome among the tests that cover it."""
    worst: dict[str, str] = {}
    for test in run.manifest["tests"]:
        outcome = test.get("outcome", "error")
        for req in test.get("requirements") or []:
            if req not in worst or SEVERITY.get(outcome, 3) > SEVERITY.get(worst[req], 3):
                worst[req] = outcome
    return worst


def _requirement_change(before: str | None, after: str | None) -> str | None:
    if before == "passed" and after in (None, "skipped"):
        return "lost coverage"
    return verdict_change(before, after)


def _keyed_measurements(test: dict) -> dict[tuple, dict]:
    """A test's measurements keyed by (requirement, name, occurrence): a test that measures the
    same quantity several times (each protection level) is matched occurrence by occurrence."""
    seen: Counter = Counter()
    keyed = {}
    for m in test.get("measurements") or []:
        base = (m.get("requirement"), m.get("name"))
        keyed[base + (seen[base],)] = m
        seen[base] += 1
    return keyed


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def drift_of(before: dict, after: dict) -> float | None:
    """``(after - before) / tolerance``, or None when either value is not a number or the
    measurement has no tolerance (an exact expectation: a state, a bit)."""
    va, vb = _number(before.get("value")), _number(after.get("value"))
    tolerance = _number(after.get("tolerance")) or _number(before.get("tolerance"))
    if va is None or vb is None or not tolerance:
        return None
    return (vb - va) / tolerance


def first_divergence(log_a: Path, log_b: Path) -> dict | None:
    """The first CAN frame at which two logs part: ``{"index", "a": frame, "b": frame}`` with
    each frame as ``{"t", "id", "data"}`` (or None where one log ended); None when they agree."""
    if filecmp.cmp(log_a, log_b, shallow=False):
        return None
    import can  # only when two logs differ

    with can.LogReader(str(log_a)) as ra, can.LogReader(str(log_b)) as rb:
        a_frames, b_frames = iter(ra), iter(rb)
        index = 0
        while True:
            fa, fb = next(a_frames, None), next(b_frames, None)
            if fa is None and fb is None:
                return None  # same frames, other bytes (a header's date)
            if fa is None or fb is None or _frame(fa) != _frame(fb):
                return {"index": index, "a": _frame(fa), "b": _frame(fb)}
            index += 1


def _frame(msg) -> dict | None:
    if msg is None:
        return None
    return {"t": round(msg.timestamp, 6), "id": f"0x{msg.arbitration_id:X}",
            "data": bytes(msg.data).hex(" ").upper()}


def compare(a: Run, b: Run, *, drift_limit: float = 0.5, frames: bool = True) -> dict:
    """Compare baseline ``a`` with candidate ``b``; see the module docstring.

    :raises RunFolderError: the runs were made against different pack specs.
    """
    same_requirements(a, b)
    tests_a, tests_b = a.tests, b.tests
    verdicts = []
    for nodeid in sorted(tests_a.keys() | tests_b.keys()):
        ta, tb = tests_a.get(nodeid), tests_b.get(nodeid)
        before, after = (ta or {}).get("outcome"), (tb or {}).get("outcome")
        change = verdict_change(before, after)
        if change:
            verdicts.append({"nodeid": nodeid, "requirements": (tb or ta).get("requirements") or [],
                             "before": before, "after": after, "change": change,
                             "message": (tb or {}).get("message")})
    reqs_a, reqs_b = requirement_outcomes(a), requirement_outcomes(b)
    requirements = []
    for req in sorted(reqs_a.keys() | reqs_b.keys()):
        change = _requirement_change(reqs_a.get(req), reqs_b.get(req))
        if change:
            requirements.append({"requirement": req, "before": reqs_a.get(req),
                                 "after": reqs_b.get(req), "change": change})
    drifts = _drifts(tests_a, tests_b, drift_limit)
    same_seed = a.emulated and b.emulated and a.seed is not None and a.seed == b.seed
    divergences = _divergences(a, b, tests_a, tests_b) if frames and same_seed else []
    regressed_reqs = sorted({r["requirement"] for r in requirements if r["change"] in WORSE}
                            | {req for v in verdicts if v["change"] in WORSE for req in v["requirements"]}
                            | {d["requirement"] for d in drifts if d["flagged"]})
    worse = [v for v in verdicts if v["change"] in WORSE]
    return {
        "schema": "packrig-compare/1",
        "baseline": _describe(a), "candidate": _describe(b),
        "drift_limit": drift_limit,
        "verdicts": verdicts, "requirements": requirements,
        "drifts": drifts, "divergences": divergences,
        "frames_compared": bool(frames and same_seed),
        "summary": {"regressed_tests": len(worse),
                    "fixed_tests": sum(v["change"] == "fixed" for v in verdicts),
                    "flagged_drifts": sum(d["flagged"] for d in drifts),
                    "measurements_compared": len(drifts),
                    "diverging_logs": len(divergences),
                    "regressed_requirements": regressed_reqs},
        "regressed": bool(worse or any(r["change"] in WORSE for r in requirements)
                          or any(d["flagged"] for d in drifts)),
    }


def _drifts(tests_a: dict, tests_b: dict, drift_limit: float) -> list[dict]:
    drifts = []
    for nodeid in sorted(tests_a.keys() & tests_b.keys()):
        ma, mb = _keyed_measurements(tests_a[nodeid]), _keyed_measurements(tests_b[nodeid])
        for key in sorted(ma.keys() & mb.keys(), key=str):
            before, after = ma[key], mb[key]
            fraction = drift_of(before, after)
            if fraction is None:
                continue
            drifts.append({
                "nodeid": nodeid, "requirement": key[0], "name": key[1], "occurrence": key[2],
                "unit": after.get("unit") or "", "before": before.get("value"), "after": after.get("value"),
                "tolerance": after.get("tolerance") or before.get("tolerance"),
                "drift": fraction, "margin_before": margin(before), "margin_after": margin(after),
                "outcome_before": before.get("outcome"), "outcome_after": after.get("outcome"),
                "flagged": abs(fraction) > drift_limit,
            })
    return drifts


def _divergences(a: Run, b: Run, tests_a: dict, tests_b: dict) -> list[dict]:
    parted = []
    for nodeid in sorted(tests_a.keys() & tests_b.keys()):
        log_a = a.path_of((tests_a[nodeid].get("recordings") or {}).get("can"))
        log_b = b.path_of((tests_b[nodeid].get("recordings") or {}).get("can"))
        if log_a is None or log_b is None:
            continue
        where = first_divergence(log_a, log_b)
        if where is not None:
            parted.append({"nodeid": nodeid, **where,
                           "log_a": str(log_a.relative_to(a.folder)), "log_b": str(log_b.relative_to(b.folder))})
    return parted


def _describe(run: Run) -> dict:
    m = run.manifest
    counts = m.get("counts") or dict(Counter(t.get("outcome") for t in m["tests"]))
    return {"folder": str(run.folder), "run_id": run.run_id, "firmware": run.firmware_name(),
            "seed": run.seed, "bench": (m.get("bench") or {}).get("name"),
            "wall_start": m.get("wall_start"), "counts": counts,
            "git": (m.get("git") or {}).get("revision")}


def regressions_by_requirement(result: dict) -> dict[str, list[str]]:
    """Requirement id -> why it regressed (verdicts, coverage, drifts), for the exit message."""
    why: dict[str, list[str]] = defaultdict(list)
    for v in result["verdicts"]:
        if v["change"] in WORSE:
            for req in v["requirements"] or ["(no requirement)"]:
                why[req].append(f"{v['nodeid']}: {v['before']} -> {v['after']}")
    for r in result["requirements"]:
        if r["change"] == "lost coverage":
            why[r["requirement"]].append("no passing test any more")
    for d in result["drifts"]:
        if d["flagged"]:
            why[d["requirement"]].append(f"{d['name']} drifted {d['drift']:+.2f} tolerance")
    return dict(why)
