"""The live progress of ``packrig run`` in a terminal (rich), drawn from the run's progress feed.

The pytest process (the xdist controller, and each worker for the virtual time of its running
test) appends JSON lines to the feed file (:mod:`rig.run_session`); this side reads what is new
four times a second and draws: counts so far against the number collected, the tests running now
(worker, test, wall time, virtual time reached) and the last failures.
Only in a terminal: in CI logs ``packrig run`` lets pytest's own output through instead.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rig.report.manifest import OUTCOMES

SHOWN_FAILURES = 4


class FeedState:
    """What the feed said so far."""

    def __init__(self, path: Path):
        self.path, self._offset = Path(path), 0
        self.total: int | None = None
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.running: dict[str, dict] = {}
        self.failures: list[str] = []
        self.started = time.monotonic()

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self._offset += end
        for line in data[:end].splitlines():
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError):
                continue

    def _apply(self, e: dict) -> None:
        kind = e["event"]
        if kind == "collected":
            self.total = e["count"]
        elif kind == "start":
            self.running[e["nodeid"]] = {"worker": e.get("worker", ""), "since": time.monotonic(), "virtual_s": None}
        elif kind == "clock" and e["nodeid"] in self.running:
            self.running[e["nodeid"]]["virtual_s"] = e["virtual_s"]
        elif kind == "end":
            self.running.pop(e["nodeid"], None)
            outcome = e.get("outcome")
            if outcome in self.counts:
                self.counts[outcome] += 1
            if outcome in ("failed", "error"):
                reqs = ", ".join(e.get("requirements") or [])
                self.failures.append(f"{e['nodeid']} [{reqs}]: {e.get('message') or outcome}")

    @property
    def done(self) -> int:
        return sum(self.counts.values())


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 36000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def render(state: FeedState):
    """The rich renderable of the present state."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    c = state.counts
    head = Text()
    head.append(f"{state.done}/{state.total if state.total is not None else '?'} tests  ", style="bold")
    head.append(f"{c['passed']} passed  ", style="green")
    head.append(f"{c['failed']} failed  ", style="red" if c["failed"] else "dim")
    head.append(f"{c['error']} errors  ", style="red" if c["error"] else "dim")
    head.append(f"{c['skipped']} skipped  ", style="yellow" if c["skipped"] else "dim")
    head.append(f"{_clock(time.monotonic() - state.started)} wall", style="dim")
    parts = [head]
    if state.total:
        parts.append(ProgressBar(total=state.total, completed=state.done, width=60))
    table = Table(box=None, show_header=True, header_style="dim", pad_edge=False)
    table.add_column("worker", style="dim")
    table.add_column("running test", overflow="fold")
    table.add_column("wall", justify="right")
    table.add_column("virtual time", justify="right", style="cyan")
    now = time.monotonic()
    for nodeid, r in sorted(state.running.items(), key=lambda kv: kv[1]["since"]):
        table.add_row(r["worker"], nodeid.removeprefix("testcases/"), _clock(now - r["since"]),
                      _clock(r["virtual_s"]))
    parts.append(table)
    for line in state.failures[-SHOWN_FAILURES:]:
        parts.append(Text(f"FAILED {line}", style="red", overflow="ellipsis", no_wrap=True))
    return Group(*parts)
