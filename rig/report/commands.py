"""``packrig compare`` and ``packrig trend``: the command-line side of run comparison.

Exit codes follow the rest of packrig (pytest's): 0 nothing regressed, 1 a verdict got worse or
a drift passed ``--drift`` (the requirement ids are named), 4 bad input (not a run folder, runs of
different pack specs), said in one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rig.report.runs import RunFolderError, load_run

USAGE_ERROR = 4


def add_parsers(sub) -> None:
    """Register ``compare`` and ``trend`` on the ``packrig`` sub-command parser."""
    p = sub.add_parser("compare", help="compare two runs: verdicts, measurement drift, first diverging CAN frame",
                       description="Compare a candidate run with a baseline run (run folders).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="BASELINE CANDIDATE, or just CANDIDATE with --baseline")
    p.add_argument("--baseline", metavar="DIR", help="the stored baseline run folder (CI)")
    p.add_argument("--drift", type=float, default=0.5,
                   help="flag a measurement that moved more than this fraction of its tolerance (default 0.5)")
    p.add_argument("--out", metavar="DIR",
                   help="where compare.json and compare.html go (default: CANDIDATE/compare-<baseline id>)")
    p.add_argument("--no-frames", action="store_true", help="skip the CAN-log comparison")
    p.set_defaults(func=compare_command)

    t = sub.add_parser("trend", help="each requirement's worst margin across runs (table and PNG)")
    t.add_argument("runs", nargs="+", metavar="RUN", help="run folders (ordered by their start time)")
    t.add_argument("--out", metavar="DIR", default="reports/trend",
                   help="where trend.json and trend.png go (default: reports/trend)")
    t.set_defaults(func=trend_command)

    g = sub.add_parser("merge", help="merge the run folders of shards (packrig run --shard i/N) into one run")
    g.add_argument("runs", nargs="+", metavar="RUN", help="the shards' run folders")
    g.add_argument("--reports", required=True, metavar="DIR", help="the merged run's folder")
    g.add_argument("--overwrite", action="store_true", help="reuse a folder that holds a run")
    g.add_argument("--no-html", action="store_true", help="skip rendering the HTML report")
    g.set_defaults(func=merge_command)


def _usage(message: str) -> int:
    print(f"packrig: {message}", file=sys.stderr)
    return USAGE_ERROR


def compare_command(args: argparse.Namespace) -> int:
    from rig.report import compare_render
    from rig.report.compare import compare, regressions_by_requirement

    names = ([args.baseline] if args.baseline else []) + list(args.runs)
    if len(names) != 2:
        return _usage(f"compare takes two runs (BASELINE CANDIDATE, or --baseline DIR CANDIDATE); got {len(names)}")
    if not args.drift > 0:
        return _usage(f"--drift must be above 0 (a fraction of the tolerance); got {args.drift:g}")
    try:
        baseline, candidate = (load_run(n) for n in names)
        result = compare(baseline, candidate, drift_limit=args.drift, frames=not args.no_frames)
    except RunFolderError as exc:
        return _usage(str(exc))
    out = Path(args.out) if args.out else candidate.folder / f"compare-{baseline.run_id}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [compare_render.write_json(result, out / "compare.json"),
                 compare_render.write_html(result, out / "compare.html")]
    except OSError as exc:
        return _usage(f"{out}: cannot write the comparison ({exc.strerror or exc})")
    compare_render.print_terminal(result, paths)
    if result["regressed"]:
        for req, why in sorted(regressions_by_requirement(result).items()):
            print(f"  {req}: {'; '.join(why[:3])}{' ...' if len(why) > 3 else ''}")
        return 1
    return 0


def trend_command(args: argparse.Namespace) -> int:
    from rig.report import trend

    try:
        runs = [load_run(n) for n in args.runs]
        table = trend.trend(runs)
    except RunFolderError as exc:
        return _usage(str(exc))
    try:
        paths = trend.write(table, Path(args.out))
    except OSError as exc:
        return _usage(f"{args.out}: cannot write the trend ({exc.strerror or exc})")
    trend.print_table(table)
    for path in paths:
        print(f"  {path}")
    return 0


def merge_command(args: argparse.Namespace) -> int:
    from rig import run_folder
    from rig.errors import ConfigError
    from rig.files.pack_spec import load_pack_spec
    from rig.report.allure_html import allure_cli, render
    from rig.report.manifest import report_name
    from rig.report.matrix import write_matrix
    from rig.report.merge import merge
    from rig.report.summary import summary_text

    try:
        out, manifest = merge(args.runs, args.reports, overwrite=args.overwrite)
    except RunFolderError as exc:
        return _usage(str(exc))
    paths: dict = {"run folder": out, "manifest": out / run_folder.MANIFEST, "junit": out / run_folder.JUNIT,
                   "recordings": out / run_folder.RECORDINGS}
    try:
        spec = load_pack_spec((manifest.get("pack_spec") or {}).get("path") or "")
        paths["matrix"] = write_matrix(manifest, spec, out)[0]
    except (ConfigError, OSError) as exc:
        print(f"packrig merge: no traceability matrix: {exc}")
    allure = allure_cli(run_folder.REPORTS)
    if allure and not args.no_html:
        index, said = render(out, allure, report_name(manifest))
        paths["HTML report"] = index
        if index is None:
            print(f"packrig merge: no HTML report: {said}")
    print(summary_text(manifest, paths), end="", flush=True)
    return 1 if manifest["counts"].get("failed") or manifest["counts"].get("error") else 0
