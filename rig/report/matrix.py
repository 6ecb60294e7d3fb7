"""The traceability matrix of a run: every requirement of the pack spec, what tested it, how it went.

``requirements.html`` (one printable page for a lab) and ``requirements.csv`` (the same rows
for a spreadsheet), written into the run folder from its ``manifest.json`` and the pack spec.
One row per requirement ``id`` in the spec (every section that has one: rows, failures,
procedures, lights, CAN ...), with

- its section of the pack spec, the manual's section and the IEC 62619 clause / UL 1973 test
  (the spec's ``[traceability]`` table, plus what the covering tests' ``requirement`` markers add);
- the tests covering it (a test covers a requirement it declares, or one it measured against)
  and their outcomes; the requirement's status: *failed* if any covering test failed or broke,
  *passed* if every one that ran passed, *skipped* if none ran, *gap* if no test of the run
  covers it;
- the worst margin of its measurements (:func:`rig.report.margin.margin`: 1 = nominal, 0 = on
  the limit, negative = outside) and which measurement it was.

Gaps are listed first (the CSV's first rows; on the page a list above the table, which follows
the spec's order). To (re)make the matrix of an existing run folder::

    python -m rig.report.matrix reports/latest
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rig.report.margin import margin
from rig.report.titles import test_title

HTML_NAME, CSV_NAME = "requirements.html", "requirements.csv"
#: the order in which a requirement's status reads worst-first.
STATUSES = ("gap", "failed", "error", "skipped", "passed")
CSV_COLUMNS = ("requirement", "section", "title", "manual", "iec_62619", "ul_1973", "status", "tests",
               "passed", "failed", "error", "skipped", "worst_margin", "worst_measurement", "covering_tests",
               "failed_measurements")


@dataclass
class Row:
    """One requirement's line of the matrix."""

    id: str
    section: str
    title: str
    manual: list[str] = field(default_factory=list)
    iec: list[str] = field(default_factory=list)
    ul: list[str] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)
    worst: float | None = None
    worst_what: str = ""
    worst_name: str = ""
    failures: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tests if t.get("outcome") == outcome)

    @property
    def status(self) -> str:
        if not self.tests:
            return "gap"
        for outcome in ("failed", "error"):
            if self.count(outcome):
                return outcome
        return "passed" if self.count("passed") else "skipped"


def rows_of(manifest: dict, spec) -> list[Row]:
    """The matrix's rows, in the spec's order (:func:`write_matrix` puts gaps first)."""
    from rig.files.pack_spec import requirement_ids

    rows = {req: Row(req, section, _title(spec, section)) for req, section in requirement_ids(spec).items()}
    for req, row in rows.items():
        clauses = getattr(spec, "traceability", {}).get(req)
        if clauses is not None:
            _add(row.manual, clauses.manual)
            _add(row.iec, clauses.iec)
            _add(row.ul, clauses.ul)
    for test in manifest.get("tests", []):
        declared = list(test.get("requirements") or [])
        measured = [m.get("requirement") for m in test.get("measurements") or []]
        for req in dict.fromkeys(declared + measured):
            row = rows.get(req)
            if row is None:
                continue
            row.tests.append(test)
            refs = test.get("references") or {}
            if req in declared[:1]:  # a marker's clauses are the test's first requirement's
                _add(row.manual, refs.get("manual"))
                _add(row.iec, refs.get("iec"))
                _add(row.ul, refs.get("ul"))
            for m in test.get("measurements") or []:
                if m.get("requirement") != req:
                    continue
                value = margin(m)
                if value is not None and (row.worst is None or value < row.worst):
                    row.worst, row.worst_name = value, str(m.get("name"))
                    row.worst_what = f"{row.worst_name} ({test_title(test['nodeid'])})"
                if m.get("outcome") == "failed":
                    row.failures.append(f"{test_title(test['nodeid'])}: {_measurement_text(m)}")
    return list(rows.values())


def uncovered_tests(manifest: dict, spec) -> list[dict]:
    """Tests of the run that name no requirement of this spec (neither declared nor measured)."""
    from rig.files.pack_spec import requirement_ids

    ids = requirement_ids(spec)
    return [t for t in manifest.get("tests", [])
            if not any(r in ids for r in list(t.get("requirements") or [])
                       + [m.get("requirement") for m in t.get("measurements") or []])]


def write_matrix(manifest: dict, spec, out_dir: Path) -> tuple[Path, Path]:
    """Write ``requirements.html`` and ``requirements.csv`` into ``out_dir``; returns their paths.

    :param manifest: the run's manifest (``manifest.json`` as a dict; schema ``packrig-run/1``).
    :param spec: the :class:`~rig.files.pack_spec.PackSpec` the run asserted against.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = rows_of(manifest, spec)
    ordered = [r for r in rows if r.status == "gap"] + [r for r in rows if r.status != "gap"]
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    _write_atomic(csv_path, _csv_text(ordered))
    spec_order = {r.id: i for i, r in enumerate(rows)}
    _write_atomic(html_path, _html_text(manifest, ordered, uncovered_tests(manifest, spec), spec_order))
    return html_path, csv_path


# --- CSV -------------------------------------------------------------------------------------------

def _csv_text(rows: list[Row]) -> str:
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow((r.id, r.section, r.title, "; ".join(r.manual), "; ".join(r.iec), "; ".join(r.ul),
                         r.status, len(r.tests), r.count("passed"), r.count("failed"), r.count("error"),
                         r.count("skipped"), "" if r.worst is None else f"{r.worst:.3f}", r.worst_what,
                         "; ".join(f"{t['nodeid']} ({t.get('outcome')})" for t in r.tests),
                         " | ".join(r.failures)))
    return out.getvalue()


# --- HTML ------------------------------------------------------------------------------------------

_CSS = """
body { font: 11pt/1.35 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #111;
       margin: 1.5em auto; max-width: 75em; padding: 0 1em; }
h1 { font-size: 1.5em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 1.4em 0 .4em; }
.facts { border-collapse: collapse; margin: .4em 0 1em; font-size: .92em; }
.facts th { text-align: left; font-weight: 600; padding: 1px 1.2em 1px 0; vertical-align: top; }
.facts td { padding: 1px 0; word-break: break-all; }
.summary span { display: inline-block; margin-right: 1.4em; }
table.matrix { border-collapse: collapse; width: 100%; font-size: .9em; table-layout: fixed; }
table.matrix th, table.matrix td { border: 1px solid #bbb; padding: 3px 6px; vertical-align: top; text-align: left;
                                   overflow-wrap: break-word; word-break: break-word; }
table.matrix thead th { background: #eee; }
table.matrix tr { page-break-inside: avoid; break-inside: avoid; }
td.num { font-variant-numeric: tabular-nums; } .margin { font-weight: 700; white-space: nowrap; }
.id { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: nowrap; }
.status { font-weight: 700; white-space: nowrap; text-transform: uppercase; font-size: .85em; }
.gap { background: #fff1c2; } .failed, .error { background: #ffd6d6; } .passed { background: #dcf5dc; }
.skipped { background: #eeeeee; } .neg { color: #b00000; font-weight: 700; }
ul.tests { margin: 0; padding-left: 1.1em; } ul.tests li { margin: 0; }
.o-passed { color: #1b6e1b; } .o-failed, .o-error { color: #b00000; font-weight: 600; } .o-skipped { color: #666; }
.fail { color: #b00000; font-size: .92em; margin-top: 2px; }
.muted { color: #666; } .banner { border: 2px solid #b00000; padding: .5em .8em; margin: .6em 0; font-weight: 600; }
@media print { body { margin: 0; max-width: none; font-size: 9pt; } a { color: inherit; text-decoration: none; }
               thead { display: table-header-group; } }
"""


def _html_text(manifest: dict, rows: list[Row], orphans: list[dict], spec_order: dict[str, int]) -> str:
    """The page: the run's facts, the counts, the gaps, then every requirement in the spec's order."""
    e = html.escape
    run = manifest.get("run_id", "?")
    gaps = [r for r in rows if r.status == "gap"]
    by_status = {s: sum(1 for r in rows if r.status == s) for s in STATUSES}
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Requirements of run {e(run)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Traceability matrix — run {e(run)}</h1>", _facts(manifest)]
    if not manifest.get("complete", False):
        reason = manifest.get("incomplete_reason")
        parts.append('<p class="banner">This run is INCOMPLETE' + (f": {e(str(reason))}" if reason else "")
                     + ". The outcomes below are what it recorded before it stopped.</p>")
    parts.append('<p class="summary">' + "".join(
        f"<span><b>{by_status[s]}</b> {label}</span>" for s, label in
        (("passed", "passed"), ("failed", "failed"), ("error", "broken (error)"), ("skipped", "skipped only"),
         ("gap", "not covered (gaps)"))) + f"<span>of <b>{len(rows)}</b> requirements</span></p>")
    parts.append("<h2>Gaps: requirements no test of this run covers</h2>")
    if gaps:
        parts.append("<ul>" + "".join(f'<li><span class="id">{e(r.id)}</span> {e(r.title)} '
                                      f'<span class="muted">({e(r.section)}; manual {e(", ".join(r.manual) or "–")})'
                                      "</span></li>" for r in gaps) + "</ul>")
        chosen = " ".join(f"{flag} {manifest[key]!r}" for flag, key in (("-m", "markers"), ("-k", "keyword"))
                          if manifest.get(key))
        if chosen:
            parts.append(f'<p class="muted">The run selected its tests with {e(chosen)}: a gap may be a test '
                         "it did not select.</p>")
    else:
        parts.append("<p>None: every requirement of the pack spec has at least one test in this run.</p>")
    parts.append("<h2>Requirements</h2>")
    parts.append('<p class="muted">Margin: distance of a measured value from its nearer limit, as a fraction of the '
                 "tolerance (1 = nominal, 0 = on the limit, negative = outside); the worst of the requirement's "
                 "measurements that have limits and a tolerance.</p>")
    parts.append('<table class="matrix"><colgroup><col style="width:19%"><col style="width:7%">'
                 '<col style="width:7%"><col style="width:11%"><col style="width:8%"><col style="width:37%">'
                 '<col style="width:11%"></colgroup><thead><tr><th>Requirement</th><th>Manual</th><th>IEC 62619</th>'
                 "<th>UL 1973</th><th>Status</th><th>Tests</th><th>Worst margin</th></tr></thead><tbody>")
    for r in sorted(rows, key=lambda r: spec_order[r.id]):
        parts.append(_row_html(r))
    parts.append("</tbody></table>")
    if orphans:
        parts.append("<h2>Tests that name no requirement of this pack spec</h2><ul class=\"tests\">" + "".join(
            f'<li><span class="o-{e(str(t.get("outcome")))}">{e(str(t.get("outcome")))}</span> '
            f'{e(test_title(t["nodeid"]))} <span class="muted">({e(t["nodeid"])})</span></li>'
            for t in orphans) + "</ul>")
    parts.append('<p class="muted">Written by packrig (rig/report/matrix.py) from manifest.json; '
                 f"the same rows are in {CSV_NAME}.</p></body></html>")
    return "\n".join(parts)


def _facts(manifest: dict) -> str:
    e = html.escape
    bench, spec, fw = manifest.get("bench") or {}, manifest.get("pack_spec") or {}, manifest.get("firmware")
    ident = manifest.get("pack_identity") or {}
    counts = manifest.get("counts") or {}
    rows = [("Pack spec", _file_fact(spec)),
            ("Firmware", _file_fact(fw)),
            ("Pack", ", ".join(f"{k} {v}" for k, v in ident.items() if v is not None) or None),
            ("Bench", f"{bench.get('name')} — {bench.get('path')}" if bench else None),
            ("Seed", manifest.get("seed")),
            ("Started / ended (UTC)", f"{manifest.get('wall_start')} / {manifest.get('wall_end') or '–'}"),
            ("packrig / git", f"{manifest.get('packrig_version')} / "
                              f"{(manifest.get('git') or {}).get('revision') or '–'}"),
            ("Tests", ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped") if k in counts)
             or None)]
    return '<table class="facts">' + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
                                              for k, v in rows if v is not None) + "</table>"


def _tally(r: Row) -> str:
    return f"{r.count('passed')}/{len(r.tests)} passed" if r.tests else "no test"


def _file_fact(facts: dict | None) -> str | None:
    """``name — path, sha256 …`` of a file the run used (the full digest: a lab checks it)."""
    if not facts:
        return None
    return f"{facts.get('name')} — {facts.get('path')}, sha256 {facts.get('sha256') or 'unknown'}"


def _row_html(r: Row) -> str:
    e = html.escape
    tests = "".join(f'<li><span class="o-{e(str(t.get("outcome")))}">{e(str(t.get("outcome")))}</span> '
                    f'{e(test_title(t["nodeid"]))} <span class="muted">({e(_file(t["nodeid"]))})</span></li>'
                    for t in r.tests)
    failures = "".join(f'<div class="fail">{e(f)}</div>' for f in r.failures[:8])
    if len(r.failures) > 8:
        failures += f'<div class="fail">… {len(r.failures) - 8} more failed measurements</div>'
    if r.worst is None:
        worst = '<span class="muted">–</span>'
    else:
        worst = f'<span class="margin{" neg" if r.worst < 0 else ""}">{r.worst:.2f}</span><br>' \
                f'<span class="muted">{e(r.worst_name)}</span>'
    return (f'<tr class="{r.status}"><td><span class="id">{e(r.id)}</span><br>{e(r.title)}<br>'
            f'<span class="muted">{e(r.section)}</span></td>'
            f"<td>{e(', '.join(r.manual) or '–')}</td><td>{e(', '.join(r.iec) or '–')}</td>"
            f"<td>{e(', '.join(r.ul) or '–')}</td>"
            f'<td class="status">{e(r.status)}<br><span class="muted">{_tally(r)}</span></td>'
            f'<td>{"<ul class=tests>" + tests + "</ul>" if tests else "<span class=muted>none</span>"}{failures}</td>'
            f'<td class="num">{worst}</td></tr>')


# --- helpers ---------------------------------------------------------------------------------------

def _title(spec, section: str) -> str:
    node = spec
    for part in section.split("."):
        node = getattr(node, part, None) if part else node
    title = getattr(node, "title", None)
    if isinstance(title, str) and title:
        return title[0].upper() + title[1:]
    words = section.replace(".", ": ").replace("_", " ").split(" ")
    text = " ".join(_ACRONYMS.get(w, w) for w in words)
    return text[0].upper() + text[1:]


#: words of section names that are written in capitals (or otherwise) in the manual
_ACRONYMS = {"pcs": "PCS", "soc": "SOC", "soh": "SOH", "can": "CAN", "iec62619": "IEC 62619", "rs485": "RS485",
             "relay1": "relay 1", "relay2": "relay 2"}


def _add(into: list[str], refs) -> None:
    """Add each comma-separated reference once, keeping the order first seen."""
    for ref in str(refs).split(",") if refs else ():
        ref = ref.strip()
        if ref and ref not in into:
            into.append(ref)


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def _measurement_text(m: dict) -> str:
    value, unit = m.get("value"), m.get("unit") or ""
    shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
    limits = [f">= {m['low']:.6g}" if isinstance(m.get("low"), (int, float)) else None,
              f"<= {m['high']:.6g}" if isinstance(m.get("high"), (int, float)) else None]
    want = " and ".join(x for x in limits if x) or f"{m.get('expected')!r}"
    after = f"; after: {m['stimulus']}" if m.get("stimulus") else ""
    return f"{m.get('name')} = {shown} {unit}".rstrip() + f", expected {want} {unit}".rstrip() + after


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m rig.report.matrix RUN_DIR [--pack-spec FILE]``: (re)write a run's matrix."""
    parser = argparse.ArgumentParser(prog="python -m rig.report.matrix",
                                     description="Write requirements.html and requirements.csv of a run folder.")
    parser.add_argument("run_dir", type=Path, help="the run folder (holds manifest.json)")
    parser.add_argument("--pack-spec", type=Path, default=None,
                        help="the pack spec (default: the one the manifest names)")
    args = parser.parse_args(argv)
    from rig.errors import ConfigError
    from rig.files.pack_spec import load_pack_spec

    manifest_path = args.run_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{manifest_path}: cannot read the run's manifest: {exc}", file=sys.stderr)
        return 4
    spec_path = args.pack_spec or (manifest.get("pack_spec") or {}).get("path")
    if spec_path is None:
        print(f"{manifest_path}: names no pack spec; give --pack-spec FILE", file=sys.stderr)
        return 4
    try:
        spec = load_pack_spec(spec_path)
    except ConfigError as exc:
        print(f"bad pack spec: {exc}", file=sys.stderr)
        return 4
    recorded = (manifest.get("pack_spec") or {}).get("sha256")
    if recorded and hashlib.sha256(Path(spec_path).read_bytes()).hexdigest() != recorded:
        print(f"warning: {spec_path} is not the pack spec the run used (sha256 differs from the manifest's)",
              file=sys.stderr)
    html_path, csv_path = write_matrix(manifest, spec, args.run_dir)
    print(html_path)
    print(csv_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
