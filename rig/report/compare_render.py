"""The comparison of two runs, shown: a terminal table (rich) and ``compare.html``.

Both read the dict :func:`rig.report.compare.compare` returns (the content of ``compare.json``);
neither computes anything of its own.
"""
from __future__ import annotations

import html
import json
from pathlib import Path


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _rows(result: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Each section of the report as (header, rows) of text, shared by the terminal and HTML."""
    verdicts = [[v["change"], v["nodeid"], ", ".join(v["requirements"]), _fmt(v["before"]), _fmt(v["after"]),
                 (v.get("message") or "")[:160]] for v in result["verdicts"]]
    requirements = [[r["change"], r["requirement"], _fmt(r["before"]), _fmt(r["after"])]
                    for r in result["requirements"]]
    drifts = [["FLAG" if d["flagged"] else "", d["requirement"], d["name"], d["nodeid"],
               f"{_fmt(d['before'])} -> {_fmt(d['after'])} {d['unit']}".strip(), f"{d['drift']:+.2f}",
               f"{_fmt(d['margin_before'])} -> {_fmt(d['margin_after'])}"]
              for d in sorted(result["drifts"], key=lambda d: -abs(d["drift"]))
              if d["flagged"] or abs(d["drift"]) > 0.1 * result["drift_limit"]]
    frames = [[p["nodeid"], str(p["index"]), _frame_text(p["a"]), _frame_text(p["b"])]
              for p in result["divergences"]]
    return {
        "Verdicts that changed (per test)": (
            ["change", "test", "requirements", "baseline", "candidate", "message"], verdicts),
        "Verdicts that changed (per requirement)": (["change", "requirement", "baseline", "candidate"], requirements),
        f"Measurements that moved (|drift| > {0.1 * result['drift_limit']:.2g} tolerance; "
        f"flagged > {result['drift_limit']:g})": (
            ["", "requirement", "measurement", "test", "baseline -> candidate", "drift (tol)",
             "margin (tol)"], drifts),
        "First CAN frame where the logs part (same seed)": (["test", "frame #", "baseline", "candidate"], frames),
    }


def _frame_text(frame: dict | None) -> str:
    return "(log ended)" if frame is None else f"t={frame['t']:.6f} {frame['id']} [{frame['data']}]"


def verdict_line(result: dict) -> str:
    s = result["summary"]
    if not result["regressed"]:
        return (f"no regression: {s['fixed_tests']} test(s) fixed, {s['measurements_compared']} "
                f"measurements compared, none drifted past {result['drift_limit']:g} tolerance")
    return (f"REGRESSED: {s['regressed_tests']} test(s) worse, {s['flagged_drifts']} drift(s) past "
            f"{result['drift_limit']:g} tolerance; requirements: {', '.join(s['regressed_requirements'])}")


def print_terminal(result: dict, paths: list[Path]) -> None:
    """The comparison as tables on the terminal (plain text when rich is not installed)."""
    a, b = result["baseline"], result["candidate"]
    head = (f"baseline  {a['run_id']}  firmware {a['firmware']}  seed {a['seed']}  {a['counts']}\n"
            f"candidate {b['run_id']}  firmware {b['firmware']}  seed {b['seed']}  {b['counts']}")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(head)
        for title, (header, rows) in _rows(result).items():
            if rows:
                print(f"\n{title}")
                for row in [header] + rows:
                    print("  " + " | ".join(row))
    else:
        console = Console(highlight=False)
        console.print(head)
        for title, (header, rows) in _rows(result).items():
            if not rows:
                continue
            table = Table(title=title, title_justify="left")
            for column in header:
                table.add_column(column, overflow="fold")
            for row in rows:
                style = "red" if row[0] in ("regressed", "new failing", "ran -> skipped", "lost coverage", "FLAG") \
                    else "green" if row[0] == "fixed" else None
                table.add_row(*row, style=style)
            console.print(table)
    if not result["frames_compared"]:
        print("(CAN logs not compared: the runs are not two emulated runs of the same seed)")
    print(verdict_line(result))
    for path in paths:
        print(f"  {path}")


def write_json(result: dict, path: Path) -> Path:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return path


_CSS = """body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 2em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
.bad td{background:#fde2e2}.good td{background:#e3f6e3}.verdict{font-size:1.2em;font-weight:600}
.regressed{color:#b00020}.clean{color:#1b7f1b}code{font-size:12px}"""


def write_html(result: dict, path: Path) -> Path:
    """``compare.html``: one page, no scripts, printable."""
    a, b = result["baseline"], result["candidate"]
    esc = html.escape
    parts = [f"<!doctype html><meta charset=utf-8><title>packrig compare {esc(a['run_id'])} .. "
             f"{esc(b['run_id'])}</title><style>{_CSS}</style>",
             "<h1>Firmware regression: baseline vs candidate</h1><table><tr><th></th><th>run</th>"
             "<th>firmware</th><th>seed</th><th>bench</th><th>started</th><th>outcomes</th></tr>"]
    for label, run in (("baseline", a), ("candidate", b)):
        parts.append(f"<tr><th>{label}</th><td><code>{esc(run['run_id'])}</code></td><td>{esc(str(run['firmware']))}"
                     f"</td><td>{esc(str(run['seed']))}</td><td>{esc(str(run['bench']))}</td>"
                     f"<td>{esc(str(run['wall_start']))}</td><td>{esc(str(run['counts']))}</td></tr>")
    parts.append("</table>")
    klass = "regressed" if result["regressed"] else "clean"
    parts.append(f"<p class='verdict {klass}'>{esc(verdict_line(result))}</p>")
    for title, (header, rows) in _rows(result).items():
        parts.append(f"<h2>{esc(title)}</h2>")
        if not rows:
            parts.append("<p>none</p>")
            continue
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            klass = ("bad" if row[0] in ("regressed", "new failing", "ran -> skipped", "lost coverage", "FLAG")
                     else "good" if row[0] == "fixed" else "")
            parts.append(f"<tr class='{klass}'>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    if not result["frames_compared"]:
        parts.append("<p>CAN logs not compared: the runs are not two emulated runs of the same seed.</p>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
