"""The end of a run in the terminal: verdict by requirement, what failed and why, where it all is.

Read from the run's manifest only (so ``packrig run`` and a plain ``pytest testcases`` print the
same thing): counts, firmware, bench, seed, time covered, one row per requirement id (passed /
failed / skipped / error), each failed requirement with the first line of its failure, then the
paths of the run folder, HTML report, traceability matrix, recordings and manifest.
"""
from __future__ import annotations

from pathlib import Path

from rig.report.manifest import OUTCOMES, by_requirement

MAX_MESSAGES = 3  # per failed requirement; the manifest and the report have them all


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _file(facts: dict | None) -> str:
    if not facts:
        return "-"
    digest = (facts.get("sha256") or "")[:12]
    return f"{facts.get('name')} ({facts.get('path')}, sha256 {digest})"


def headline(manifest: dict) -> str:
    c = manifest.get("counts") or {}
    parts = [f"{c.get(k, 0)} {k}" for k in OUTCOMES if c.get(k)] or ["no tests"]
    state = "" if manifest.get("complete") else f" — INCOMPLETE ({manifest.get('incomplete_reason') or 'running'})"
    return f"packrig run {manifest.get('run_id')}: {', '.join(parts)} of {c.get('total', 0)}{state}"


def summary_text(manifest: dict, paths: dict[str, Path | str | None]) -> str:
    """The summary as text lines (no colour codes: it also goes to CI logs)."""
    lines = ["", "=" * 100, headline(manifest)]
    bench = manifest.get("bench") or {}
    fw = manifest.get("firmware")
    ident = manifest.get("pack_identity")
    if fw:
        lines.append(f"  firmware  {_file(fw)}")
    elif ident:
        lines.append("  pack      " + ", ".join(f"{k} {v}" for k, v in ident.items() if v is not None))
    lines.append(f"  bench     {_file(bench)}, {bench.get('clock')} clock")
    lines.append(f"  pack spec {_file(manifest.get('pack_spec'))}")
    extra = [f"seed {manifest['seed']}" if manifest.get("seed") is not None else None,
             f"-m {manifest['markers']!r}" if manifest.get("markers") else None,
             f"-k {manifest['keyword']!r}" if manifest.get("keyword") else None,
             f"wall {_duration(manifest.get('wall_s'))}",
             f"virtual time covered {_duration(manifest.get('virtual_s'))}" if manifest.get("virtual_s") else None]
    lines.append("  " + ", ".join(e for e in extra if e))

    rows = by_requirement(manifest.get("tests") or [])
    if rows:
        width = max(12, *(len(r) for r in rows))
        lines += ["", f"  {'requirement':{width}}  passed  failed   error skipped  verdict"]
        for req in sorted(rows):
            r = rows[req]
            verdict = "FAIL" if r["failed"] or r["error"] else ("pass" if r["passed"] else "not run")
            lines.append(f"  {req:{width}}  {r['passed']:6}  {r['failed']:6}  {r['error']:6}  {r['skipped']:6}  {verdict}")
        failed = {req: r for req, r in rows.items() if r["failed"] or r["error"]}
        if failed:
            lines += ["", f"  failed requirements ({len(failed)}):"]
            for req in sorted(failed):
                messages = failed[req]["messages"]
                lines.append(f"  {req}:")
                lines += [f"      {m}" for m in messages[:MAX_MESSAGES]]
                if len(messages) > MAX_MESSAGES:
                    lines.append(f"      ... and {len(messages) - MAX_MESSAGES} more (see the manifest)")
    shown = {name: path for name, path in paths.items() if path}
    if shown:
        lines.append("")
        width = max(len(n) for n in shown)
        lines += [f"  {name:{width}}  {path}" for name, path in shown.items()]
    lines.append("=" * 100)
    return "\n".join(lines) + "\n"
