"""Each requirement's worst margin across runs, in time order (``packrig trend RUN...``).

A margin is how far inside its limits a measurement landed, in tolerances (1 = at nominal,
0 = on the limit, below 0 = failed; :func:`rig.report.margin.margin`). A requirement's margin in
a run is the smallest of its measurements'. A trip delay that creeps from mid-window towards the
edge over several builds shows here as a falling line, before any build fails.

Writes ``trend.json`` (the table) and ``trend.png`` (one line per requirement, the worst few
labelled) and prints the table.
"""
from __future__ import annotations

import json
from pathlib import Path

from rig.report.margin import margin
from rig.report.runs import Run, same_requirements


def worst_margins(run: Run) -> dict[str, float]:
    """Requirement id -> the smallest margin of its measurements in ``run``."""
    worst: dict[str, float] = {}
    for test in run.manifest["tests"]:
        for m in test.get("measurements") or []:
            value = margin(m)
            req = m.get("requirement")
            if value is None or not req:
                continue
            worst[req] = min(worst.get(req, value), value)
    return worst


def trend(runs: list[Run]) -> dict:
    """The table of worst margins, runs ordered by their start time."""
    ordered = sorted(runs, key=lambda r: r.started)
    for run in ordered[1:]:
        same_requirements(ordered[0], run)
    per_run = [worst_margins(r) for r in ordered]
    requirements = sorted(set().union(*per_run)) if per_run else []
    rows = []
    for req in requirements:
        series = [m.get(req) for m in per_run]
        known = [v for v in series if v is not None]
        rows.append({"requirement": req, "margins": series,
                     "latest": known[-1] if known else None,
                     "change": (known[-1] - known[0]) if len(known) > 1 else None})
    # the requirements closest to failing first
    rows.sort(key=lambda r: (r["latest"] is None, r["latest"] if r["latest"] is not None else 0.0))
    return {"schema": "packrig-trend/1",
            "runs": [{"run_id": r.run_id, "folder": str(r.folder), "wall_start": r.started,
                      "firmware": r.firmware_name()} for r in ordered],
            "requirements": rows}


def print_table(table: dict) -> None:
    header = ["requirement"] + [r["run_id"][-6:] for r in table["runs"]] + ["change"]
    rows = [[row["requirement"]] + [("-" if v is None else f"{v:+.2f}") for v in row["margins"]]
            + ["-" if row["change"] is None else f"{row['change']:+.2f}"] for row in table["requirements"]]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in [header] + rows:
            print("  ".join(f"{c:>10}" for c in row))
        return
    t = Table(title="Worst margin per requirement (tolerances; 0 = on the limit), oldest run first",
              title_justify="left")
    for column in header:
        t.add_column(column, justify="left" if column == "requirement" else "right")
    for row in rows:
        latest = row[-2]
        style = "red" if latest.startswith("-") else "yellow" if latest not in ("-",) and float(latest) < 0.25 else None
        t.add_row(*row, style=style)
    Console(highlight=False).print(t)


def plot(table: dict, path: Path, labelled: int = 8) -> Path:
    """One line per requirement over the runs; the ``labelled`` closest to failing are named."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = table["runs"]
    fig, ax = plt.subplots(figsize=(12, 6.5), dpi=110)
    x = list(range(len(runs)))
    for i, row in enumerate(table["requirements"]):
        points = [(xi, v) for xi, v in zip(x, row["margins"]) if v is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        named = i < labelled
        ax.plot(xs, ys, marker="o", lw=2 if named else 0.8, alpha=1.0 if named else 0.35,
                label=row["requirement"] if named else None)
    ax.axhline(0.0, color="#b00020", lw=1.2)
    ax.text(0, 0.02, "limit", color="#b00020", va="bottom")
    ax.set_xticks(x, [f"{r['run_id'][-6:]}\n{r['firmware']}" for r in runs], fontsize=8)
    ax.set_ylabel("worst margin (tolerances; 1 = nominal, 0 = limit)")
    ax.set_title("Worst margin per requirement across runs (oldest first)")
    ax.grid(alpha=0.3)
    if table["requirements"]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="closest to failing")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(table: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "trend.json"
    json_path.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return [json_path, plot(table, out / "trend.png")]
