"""The HTML report of one run, rendered by the Allure 3 command line into the run's own folder.

What Allure 3 (3.x, ``allure generate``) does, and why this module is careful with it:

- its default "awesome" plugin writes into ``<output>/awesome/`` and moves that up to
  ``<output>/`` only when the output folder held nothing else; so a second render into a used
  folder leaves the first ``index.html`` in place and the new report one level down. Here the
  output is always the run's fresh, empty ``html/`` folder, and the page returned is the
  ``index.html`` that exists after rendering (``html/index.html``; ``html/awesome/index.html``
  is looked for too, should a later Allure keep the plugin folder);
- ``singleFile``: one self-contained ``index.html`` (data and attachments inside), which opens
  from the file system without a web server and can be mailed to a lab;
- ``groupBy: ["requirement"]``: the tree is grouped by the ``requirement`` label the plugin sets;
- history: Allure 3 keeps it in a JSON-lines file (``historyPath``), one data point per report,
  appended at each render. Each run keeps its own ``allure-history.jsonl``, made from the last
  data point of every earlier run beside it (``reports/runs/*``) plus its own, so the report shows
  the runs before it and no run's file is ever changed by another run.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from rig import run_folder

HISTORY = "allure-history.jsonl"
CONFIG = "allurerc.json"
HISTORY_LIMIT = 20  # runs shown in the history tab


def allure_cli(reports: Path) -> str | None:
    """The Allure 3 command line ``./quickstart`` installs (``reports/.allure``), else one on PATH."""
    for root in (Path(reports), run_folder.REPORTS):
        local = root / ".allure" / "node_modules" / ".bin" / "allure"
        if local.exists():
            return str(local)
    return shutil.which("allure")


def earlier_history(run_dir: Path, limit: int = HISTORY_LIMIT) -> list[str]:
    """The own data point (last line) of each earlier rendered run beside ``run_dir``, oldest first."""
    points = []
    for other in sorted(p for p in run_dir.parent.iterdir() if p.is_dir() and p != run_dir):
        if other.name >= run_dir.name and run_dir.parent.name == run_folder.RUNS:
            continue  # runs/ is sorted by start time: only the runs before this one
        try:
            lines = (other / HISTORY).read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        if lines and (other / run_folder.MANIFEST).exists():
            try:
                json.loads(lines[-1])
            except ValueError:
                continue
            points.append(lines[-1])
    return points[-(limit - 1):] if limit > 1 else []


def render(run_dir: Path, allure: str, name: str, timeout_s: float = 600.0) -> tuple[Path | None, str]:
    """Render ``run_dir/allure-results`` into ``run_dir/html``.

    :returns: (the ``index.html`` that shows this run, or None; a line saying what happened).
    """
    run_dir = Path(run_dir).resolve()
    if "/" in allure:
        allure = str(Path(allure).resolve())  # it runs from the run folder
    results, html = run_dir / run_folder.ALLURE_RESULTS, run_dir / run_folder.HTML
    if not results.is_dir():
        return None, f"no Allure results in {results}"
    if html.exists():
        shutil.rmtree(html)  # always rendered into an empty folder (see the module docstring)
    history = run_dir / HISTORY
    earlier = earlier_history(run_dir)
    history.write_text("".join(f"{line}\n" for line in earlier), encoding="utf-8")
    config = {
        "name": name,
        "output": str(html),
        "historyPath": str(history),
        "historyLimit": HISTORY_LIMIT,
        "plugins": {"awesome": {"options": {"singleFile": True, "reportName": name,
                                            "groupBy": ["requirement"]}}},
    }
    (run_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    try:
        done = subprocess.run([allure, "generate", "--config", str(run_dir / CONFIG), str(results),
                               "--output", str(html)], cwd=run_dir, capture_output=True, text=True,
                              timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"the Allure command line failed: {exc}"
    for index in (html / "index.html", html / "awesome" / "index.html"):
        if index.is_file():
            return index, f"rendered with {len(earlier)} earlier run(s) in its history"
    tail = " ".join((done.stderr or done.stdout or "").split())[-300:]
    return None, f"allure generate exited {done.returncode} without an index.html: {tail}"
