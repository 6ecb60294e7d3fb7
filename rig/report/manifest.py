"""``manifest.json``: the facts of one run, in a stable, documented shape (schema ``packrig-run/1``).

The comparison of runs (``packrig compare``, ``packrig trend``), the traceability matrix and a
lab reading the run later all read this file; keys are never renamed (new ones may be added).
The schema is in ``reports/README.md``. Paths inside are relative to the run folder.

This module only builds the dictionaries; :mod:`rig.run_session` feeds it from pytest's hooks.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

SCHEMA = "packrig-run/1"
OUTCOMES = ("passed", "failed", "skipped", "error")
ROOT = Path(__file__).resolve().parents[2]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_facts(path: str | Path | None, name: str | None = None) -> dict | None:
    """``{"path", "name", "sha256"}`` of a file the run used (None if there is none)."""
    if path is None:
        return None
    path = Path(path).resolve()
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {"path": str(path), "name": name or path.stem, "sha256": digest}


def git_facts(root: Path = ROOT) -> dict:
    """The checkout's revision and whether it has uncommitted changes (None where git cannot say)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if revision else None
    return {"revision": revision.strip() if revision else None,
            "dirty": None if status is None else bool(status.strip())}


def packrig_version() -> str:
    try:
        from importlib.metadata import version
        return version("packrig")
    except Exception:  # noqa: BLE001 - not installed as a distribution: the source tree's
        return "0+unknown"


def header(*, run_id: str, command: list[str], bench: dict, pack_spec: dict | None, firmware: dict | None,
           seed: int | None, markers: str | None, keyword: str | None, shard: str | None = None) -> dict:
    """The manifest as written at the start of a run: ``complete`` false, no tests yet."""
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "complete": False,
        "packrig_version": packrig_version(),
        "git": git_facts(),
        "command": command,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "wall_start": utc_now(), "wall_end": None, "wall_s": None,
        "virtual_s": None,
        "bench": bench,
        "pack_spec": pack_spec,
        "firmware": firmware,
        "pack_identity": None,
        "lab_place": lab_place(),
        "seed": seed,
        "markers": markers or None, "keyword": keyword or None, "shard": shard,
        "counts": {**dict.fromkeys(OUTCOMES, 0), "total": 0},
        "tests": [],
    }


def lab_place() -> dict | None:
    """The lab place the run held (``packrig run --lab``: coordinator, place, holder, reservation,
    tags, the wait, the bench's name and kind), or None for a bench of one's own."""
    text = os.environ.get("PACKRIG_LAB_PLACE")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return {"unreadable": text[:200]}


def new_test(nodeid: str) -> dict:
    """A test's entry before any of its reports arrived."""
    return {"nodeid": nodeid, "title": nodeid.rsplit("::", 1)[-1], "requirements": [], "outcome": None,
            "message": None, "duration_s": 0.0, "virtual_s": None,
            "recordings": {"can": None, "samples": None, "plot": None}, "measurements": []}


def counts(tests: list[dict]) -> dict:
    out = dict.fromkeys(OUTCOMES, 0)
    for t in tests:
        if t["outcome"] in out:
            out[t["outcome"]] += 1
    out["total"] = len(tests)
    return out


def finish(manifest: dict, tests: list[dict], *, complete: bool, why: str | None = None) -> dict:
    """The manifest at the end of a run: tests, counts, end time, virtual time covered."""
    start = dt.datetime.strptime(manifest["wall_start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    end = dt.datetime.now(dt.timezone.utc)
    virtual = [t["virtual_s"] for t in tests if t.get("virtual_s") is not None]
    manifest.update(
        complete=complete,
        wall_end=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        wall_s=round((end - start).total_seconds(), 1),
        virtual_s=round(sum(virtual), 3) if virtual else None,
        counts=counts(tests),
        tests=tests,
    )
    if why:
        manifest["incomplete_reason"] = why
    else:
        manifest.pop("incomplete_reason", None)
    return manifest


def by_requirement(tests: list[dict]) -> dict[str, dict]:
    """Requirement id -> {"passed": n, "failed": n, "skipped": n, "error": n, "messages": [...]}:
    the tests that declare it or measured against it."""
    out: dict[str, dict] = {}
    for t in tests:
        for req in t.get("requirements") or ["(no requirement)"]:
            row = out.setdefault(req, {**dict.fromkeys(OUTCOMES, 0), "messages": []})
            if t["outcome"] in OUTCOMES:
                row[t["outcome"]] += 1
            if t["outcome"] in ("failed", "error") and t.get("message"):
                # the failure's own line when it names this requirement (it says value, limit,
                # stimulus and time); else this requirement's first failed measurement
                failed_here = [m for m in t.get("measurements", [])
                               if m.get("outcome") == "failed" and m.get("requirement") == req]
                line = t["message"] if req in t["message"] or not failed_here else _measurement_line(failed_here[0])
                row["messages"].append(f"{t['nodeid'].removeprefix('testcases/')}: {line}")
    return out


def _measurement_line(m: dict) -> str:
    value, unit = m.get("value"), m.get("unit") or ""
    want = []
    if m.get("low") is not None:
        want.append(f">= {m['low']:g}")
    if m.get("high") is not None:
        want.append(f"<= {m['high']:g}")
    if m.get("expected") is not None:
        want.append(f"== {m['expected']!r}")
    shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
    stim = f"; after: {m['stimulus']}" if m.get("stimulus") else ""
    at = f" (t = {m['at_s']:.3f} s)" if isinstance(m.get("at_s"), (int, float)) else ""
    return (f"{m.get('requirement')}: {m.get('name')} = {shown} {unit}".rstrip()
            + f", expected {' and '.join(want) or '?'}{stim}{at}")


def environment_properties(manifest: dict) -> str:
    """The Allure environment (``allure-results/environment.properties``): the manifest's facts."""
    bench, fw, ident = manifest.get("bench") or {}, manifest.get("firmware"), manifest.get("pack_identity")
    spec = manifest.get("pack_spec") or {}
    rows = {
        "run": manifest["run_id"],
        "packrig": manifest.get("packrig_version"),
        "git": (manifest.get("git") or {}).get("revision"),
        "bench": f"{bench.get('name')} ({bench.get('path')})",
        "bench.sha256": bench.get("sha256"),
        "pack_spec": f"{spec.get('name')} ({spec.get('path')})",
        "pack_spec.sha256": spec.get("sha256"),
        "firmware": f"{fw['name']} ({fw['path']})" if fw else None,
        "firmware.sha256": fw["sha256"] if fw else None,
        "pack": ", ".join(f"{k}={v}" for k, v in ident.items() if v is not None) if ident else None,
        "seed": manifest.get("seed"),
        "clock": bench.get("clock"),
        "host": manifest.get("host"),
        "started": manifest.get("wall_start"),
    }
    return "".join(f"{k}={_escape(v)}\n" for k, v in rows.items() if v is not None)


def report_name(manifest: dict) -> str:
    """One line naming the run, the firmware (or pack) and the bench: the HTML report's title."""
    fw = manifest.get("firmware")
    ident = manifest.get("pack_identity") or {}
    if fw:  # a copied profile keeps its [meta] name: the file says which build it is
        what = fw["name"] if Path(fw["path"]).stem == fw["name"] else f"{fw['name']} ({Path(fw['path']).name})"
    else:
        what = ident.get("rs485_version") or ident.get("can_name") or "pack"
    return f"packrig {manifest['run_id']}: firmware {what} on {(manifest.get('bench') or {}).get('name')}"


def _escape(value) -> str:
    # Java properties: backslash escapes; ':' and '=' in values are fine after the first '='
    return str(value).replace("\\", "\\\\").replace("\n", "\\n")
