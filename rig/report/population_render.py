"""A population's figures in the terminal: margin distributions and tests passing, as tables (rich).

Reads the dict ``population.json`` holds (:mod:`rig.population`, :mod:`rig.report.population`);
computes nothing of its own.
"""
from __future__ import annotations

from pathlib import Path


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:+.0f}" if abs(x) >= 1000 else f"{x:+.4g}"  # seconds of margin read as seconds, not 2.77e+04


def _limit(row: dict) -> str:
    """The limit as the measurements had it (from the first pack; a limit that moved with the
    pack, e.g. a window around a reading, shows as a range)."""
    lows = {r["low"] for r in row["packs"] if r["low"] is not None}
    highs = {r["high"] for r in row["packs"] if r["high"] is not None}
    side = lambda values: (f"{min(values):.6g}" if len(values) == 1 else   # noqa: E731
                           f"{min(values):.6g}..{max(values):.6g}")
    if lows and highs:
        return f"[{side(lows)}, {side(highs)}]"
    return f">= {side(lows)}" if lows else f"<= {side(highs)}" if highs else "="


def tables(population: dict) -> dict[str, tuple[list[str], list[list[str]], list[str | None]]]:
    """Each table as (header, rows, row styles), shared by rich and the plain-text fallback."""
    n = len(population["packs"])
    margins, styles = [], []
    exact = [m for m in population["measurements"] if m["kind"] == "exact"]
    for m in population["measurements"]:
        if m["kind"] == "exact" and not m["packs_failing"]:
            continue  # bits, states, lights that held on every pack: counted in one line below
        d = m["margin"] or {}
        margins.append([m["requirement"], m["name"], m["unit"], _limit(m),
                        *(_fmt(d.get(k)) for k in ("min", "p5", "median", "p95", "max")),
                        f"{m['packs_failing']}/{m['packs_measured']}"])
        styles.append("red" if m["packs_failing"] else None)
    tests = [[t["nodeid"], f"{t['passed']}/{n}", str(t["failed"] + t["error"]), str(t["skipped"])]
             for t in population["tests"]]
    test_styles = ["red" if t["failed"] + t["error"] else None for t in population["tests"]]
    held = sum(1 for m in exact if not m["packs_failing"])
    return {
        f"Margins over {n} pack{'s' if n != 1 else ''} (value - limit in the measurement's unit, + inside; worst reading of each pack)"
        + (f"; {held} exact checks (bits, states, lights) held on every pack" if held else ""):
            (["requirement", "measurement", "unit", "limit", "min", "5 %", "median", "95 %", "max", "failing"],
             margins, styles),
        f"Tests passing, of {n} pack{'s' if n != 1 else ''}": (["test", "passed", "failed", "skipped"], tests, test_styles),
    }


def print_population(population: dict, paths: dict[str, Path | None]) -> None:
    """The tables, the long-storage recharge line, the verdict and where everything is."""
    ran, asked, seed = len(population["packs"]), population["packs_asked"], population["population_seed"]
    head = (f"packrig run --population {asked}{'' if ran == asked else f' ({ran} ran)'}: population seed {seed} "
            f"(pack k drew seed {seed} + k - 1), bench {population['bench']['name']}, physics drawn around "
            f"{population['prior_physics']}")
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        print(head)
        for title, (header, rows, _) in tables(population).items():
            print(f"\n{title}")
            for row in [header] + rows:
                print("  " + " | ".join(row))
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=max(console.width, 200))  # a CI log: no folded names
        console.print(head)
        for title, (header, rows, styles) in tables(population).items():
            table = Table(title=title, title_justify="left")
            for column in header:
                table.add_column(column, overflow="fold",
                                 justify="left" if column in ("requirement", "measurement", "test", "limit") else "right")
            for row, style in zip(rows, styles):
                table.add_row(*(Text(c) for c in row), style=style)  # node ids' [...] are no markup
            console.print(table)
    sr = population["storage_recharge"]
    print(f"\nlong-storage recharge: {sr['text']}")
    if sr["margin"]:
        d = sr["margin"]
        print(f"  rest voltage - {sr['limit_v']:g} V over {sr['packs_measured']} packs, V: min {d['min']:+.3f} / "
              f"5 % {d['p5']:+.3f} / median {d['median']:+.3f} / 95 % {d['p95']:+.3f} / max {d['max']:+.3f}")
    print(verdict_line(population))
    width = max(len(k) for k in paths)
    for name, path in paths.items():
        if path:
            print(f"  {name:{width}}  {path}")


def verdict_line(population: dict) -> str:
    packs = population["packs"]
    bad = [p["pack"] for p in packs if p["exit_code"] != 0]
    state = "" if population["complete"] else f" — INCOMPLETE ({population['incomplete_reason']})"
    if not bad:
        return f"every test passed on {'the one pack' if len(packs) == 1 else f'all {len(packs)} packs'}{state}"
    return (f"{len(bad)} of {len(packs)} packs did not pass every test (packs "
            f"{', '.join(str(k) for k in bad[:20])}{' ...' if len(bad) > 20 else ''}){state}")
