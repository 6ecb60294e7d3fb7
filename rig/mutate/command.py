"""``packrig mutate``: generate broken firmware builds and see which tests kill each.

Writes into ``--out`` (default ``reports/mutants/<UTC time>/``): ``profiles/`` (every mutant as
a firmware profile), ``runs/`` (each mutant's run folders), ``mutants.json`` and ``mutants.html``
(the kill table), and ends with ``kill rate: K/N`` on the terminal. Exit 0 only when every
mutant is killed or listed as equivalent (with its reason) in ``rig/mutate/equivalent.toml``;
1 when one survived or its run broke; 4 for bad input, in one line.

``--lab HOST:PORT --want TAG=VALUE...`` runs the baseline and the mutants on a labgrid lab's free
emulated places instead, one worker per place held (:mod:`rig.lab.mutate_on_lab`).
"""
from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
import tomllib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from rig.errors import ConfigError

USAGE_ERROR = 4


def add_parser(sub) -> None:
    from rig.files.bench_file import EMULATED_BENCH
    from rig.backends import CONFORMING_FIRMWARE

    p = sub.add_parser("mutate", help="generate broken firmware profiles and show which tests kill each",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=str(CONFORMING_FIRMWARE), help="firmware profile to mutate (default: conforming)")
    p.add_argument("--bench", help=f"emulated bench file (default: {EMULATED_BENCH.name}; none with --lab)")
    p.add_argument("--pack-spec", help="pack spec (default: the one the bench names)")
    p.add_argument("--only", metavar="REQ-ID", help="only the mutants of this requirement")
    p.add_argument("--operator", action="append", default=[], help="only this operator (repeatable)")
    p.add_argument("--list", action="store_true", help="list the mutants and stop")
    p.add_argument("--matrix", action="store_true", help="run every test on every mutant (the full kill matrix)")
    p.add_argument("--shard", metavar="i/N", help="run only shard i of N (deterministic split by name)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                   help="mutants run at a time (with --lab: places held at most, one mutant each)")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="only the tests matching this pytest -k "
                   "expression, in every run (the baseline's too)")
    p.add_argument("--seed", type=int, help="seed of the emulated packs")
    p.add_argument("--out", help="output folder (default: reports/mutants/<UTC time>)")
    from rig.lab.run_on_place import add_arguments as add_lab_arguments  # --lab, --want, --lab-timeout
    add_lab_arguments(p)
    p.set_defaults(func=mutate_command)


def _usage(message: str) -> int:
    print(f"packrig: {message}", file=sys.stderr)
    return USAGE_ERROR


def mutate_command(args: argparse.Namespace) -> int:
    from rig.files.bench_file import EMULATED_BENCH, load_bench
    from rig.backends import load_firmware
    from rig.files.pack_spec import load_pack_spec
    from rig.mutate.operators import generate
    from rig.mutate.runner import shard

    try:
        bench = load_bench(args.bench or EMULATED_BENCH)
        if not bench.emulated:
            return _usage(f"{args.bench}: mutate needs an emulated bench (it has no [emulator] section)")
        spec = load_pack_spec(args.pack_spec or bench.pack_spec_path)
        load_firmware(args.base)
        base = tomllib.loads(Path(args.base).read_text(encoding="utf-8"))
    except ConfigError as exc:
        return _usage(str(exc))
    mutants = generate(base, spec, only=args.only)
    if args.operator:
        mutants = [m for m in mutants if m.operator in args.operator]
    if args.shard:
        try:
            mutants = shard(mutants, args.shard)
        except ValueError as exc:
            return _usage(str(exc))
    if not mutants:
        return _usage(f"no mutant matches (--only {args.only!r}, --operator {args.operator})")
    if args.list:
        for m in mutants:
            print(f"{m.name}  {m.before!r} -> {m.value!r}  ({m.why})")
        print(f"{len(mutants)} mutants")
        return 0
    out = Path(args.out or f"reports/mutants/{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    if (out / "mutants.json").exists():
        return _usage(f"{out}: already holds a mutation run; choose another --out")
    if args.lab or args.want:  # on a lab's places: hold them, run there, always release them
        from rig.lab.mutate_on_lab import mutate_on_lab
        return mutate_on_lab(args, lambda benches, places, usable: run_mutants(
            args, base, mutants, out, bench.path, benches, places, usable))
    return run_mutants(args, base, mutants, out, bench.path)


def run_mutants(args: argparse.Namespace, base: dict, mutants: list, out: Path, bench: Path,
                benches: dict[str, Path] | None = None, places: list[dict] | None = None, usable=None) -> int:
    """The baseline, then the mutants (on ``benches``, lab places, when given); the kill table."""
    from rig.mutate.runner import MutationRun

    started = time.perf_counter()
    pytest_args = ("-k", args.keyword) if args.keyword else ()
    runner = MutationRun(base, out, bench=bench, workers=args.workers, matrix=args.matrix, seed=args.seed,
                         pytest_args=pytest_args, benches=benches, usable=usable)
    total = len(mutants)
    print(f"packrig mutate: {total} mutants of {Path(args.base).name}, {runner.workers} at a time -> {out}",
          flush=True)
    code, failed = runner.baseline()
    if code != 0:
        print(f"packrig mutate: the base profile {Path(args.base).name} does not pass the suite (pytest exit {code}"
              + (f"; {len(failed)} failed, first {failed[0]}" if failed else "")
              + f"; run in {out / 'runs' / 'base'}): every mutant would look killed. Fix that first.",
              file=sys.stderr, flush=True)
        return 1
    print(f"  base profile: the suite passes ({time.perf_counter() - started:.0f} s"
          + (f", on {', '.join(runner.baseline_ran_on)})" if runner.baseline_ran_on else ")"), flush=True)
    done = Counter()

    def progress(outcome) -> None:
        done[outcome.status] += 1
        n = sum(done.values())
        print(f"  [{n}/{total}] {outcome.status:10} {outcome.mutant.name}"
              + (f"  <- {outcome.killed_by[0]}" if outcome.killed_by else f"  {outcome.reason}"[:140])
              + (f"  [{', '.join(dict.fromkeys(outcome.ran_on))}]" if benches else ""), flush=True)

    outcomes = runner.run(mutants, progress)
    wall = time.perf_counter() - started
    result = {"schema": "packrig-mutants/1", "base": str(Path(args.base).resolve()), "matrix": args.matrix,
              "shard": args.shard, "wall_s": round(wall, 1), "workers": runner.workers,
              "lab_places": places or [], "baseline_ran_on": runner.baseline_ran_on,
              "lab_places_lost": runner.dropped,
              "counts": dict(Counter(o.status for o in outcomes)),
              "mutants": [o.as_dict() for o in outcomes]}
    (out / "mutants.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    write_html(result, out / "mutants.html")
    return summary(result, out)


def summary(result: dict, out: Path) -> int:
    """The terminal summary, ending with ``kill rate: K/N``; returns the exit code."""
    counts = Counter(m["status"] for m in result["mutants"])
    total = len(result["mutants"])
    killed, equivalent = counts["killed"], counts["equivalent"]
    for m in result["mutants"]:
        if m["status"] in ("survived", "error", "invalid"):
            print(f"  {m['status'].upper():9} {m['name']}: {m['why']}" + (f" ({m['reason']})" if m["reason"] else ""))
    for m in result["mutants"]:
        if m["status"] == "equivalent":
            print(f"  equivalent {m['name']}: {m['reason']}")
    rate = total and 60.0 * total / max(result["wall_s"], 1e-9)
    print(f"{total} mutants in {result['wall_s']:.0f} s ({rate:.1f} per minute): {killed} killed, "
          f"{counts['survived']} survived, {equivalent} equivalent, {counts['error'] + counts['invalid']} errors")
    print(f"  {out / 'mutants.html'}\n  {out / 'mutants.json'}")
    print(f"kill rate: {killed}/{total - equivalent}")
    return 0 if killed + equivalent == total else 1


_CSS = """body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
.killed td:first-child{background:#e3f6e3}.survived td{background:#fde2e2}.equivalent td{background:#f4f4f4}
.error td,.invalid td{background:#fff3cd}code{font-size:12px}"""


def write_html(result: dict, path: Path) -> Path:
    esc = html.escape
    counts = Counter(m["status"] for m in result["mutants"])
    equivalent = counts["equivalent"]
    rows = ["<tr><th>status</th><th>mutant</th><th>change</th><th>killed by</th><th>stage</th><th>s</th></tr>"]
    order = {"survived": 0, "error": 1, "invalid": 1, "equivalent": 2, "killed": 3}
    for m in sorted(result["mutants"], key=lambda m: (order.get(m["status"], 0), m["name"])):
        killers = "<br>".join(esc(t) for t in m["killed_by"][:3]) or esc(m["reason"])
        rows.append(f"<tr class='{m['status']}'><td>{m['status']}</td><td><code>{esc(m['name'])}</code></td>"
                    f"<td>{esc(repr(m['before']))} &rarr; {esc(repr(m['after']))}<br><small>{esc(m['why'])}</small></td>"
                    f"<td>{killers}</td><td>{esc(m['stage'])}</td><td>{m['seconds']}</td></tr>")
    path.write_text(f"<!doctype html><meta charset=utf-8><title>packrig mutate</title><style>{_CSS}</style>"
                    f"<h1>Mutants of {esc(Path(result['base']).name)}</h1>"
                    f"<p><b>kill rate: {counts['killed']}/{len(result['mutants']) - equivalent}</b> "
                    f"({esc(str(dict(counts)))}; {result['wall_s']} s, {result['workers']} workers)</p>"
                    f"<table>{''.join(rows)}</table>\n", encoding="utf-8")
    return path
