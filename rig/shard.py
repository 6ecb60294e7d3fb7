"""A pytest plugin: run shard ``i`` of ``N`` of the collected tests (``--shard i/N``).

The split is deterministic, so N jobs on N machines run every test exactly once between them:
tests are dealt to the shards by duration, longest first, each to the shard with the least work
so far (ties by node id). The durations come from ``--shard-durations RUN`` (a run folder or its
``manifest.json``, e.g. the CI baseline, the same file for every job); a test it does not list
counts as that run's median, and without the option every test counts as one. Give all N jobs
the same durations file, or none: two different files give two different splits.

``packrig merge`` puts the shards' run folders back together into one run.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("packrig")
    group.addoption("--shard", metavar="i/N", default=None,
                    help="run only shard i of N (1-based), split deterministically by duration")
    group.addoption("--shard-durations", metavar="RUN", default=None,
                    help="run folder (or manifest.json) whose test durations balance the shards")


def parse(spec: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``; raises ``ValueError`` naming what is wrong."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected i/N, e.g. 1/4") from None
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"--shard {spec!r}: i must be within 1..N")
    return i, n


def durations(source: str | None) -> dict[str, float]:
    """Node id -> seconds, from a run folder or manifest (empty without one)."""
    if not source:
        return {}
    path = Path(source)
    path = path / "manifest.json" if path.is_dir() else path
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return {t["nodeid"]: float(t.get("duration_s") or 0.0) for t in manifest["tests"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--shard-durations {source}: not a run's manifest ({type(exc).__name__}: {exc})") from None


def split(nodeids: list[str], n: int, seconds: dict[str, float]) -> list[list[str]]:
    """Deal ``nodeids`` to ``n`` shards, longest first, each to the least loaded shard."""
    default = statistics.median(seconds.values()) if seconds else 1.0
    weight = {nid: seconds.get(nid, default) for nid in nodeids}
    shards: list[list[str]] = [[] for _ in range(n)]
    load = [0.0] * n
    for nid in sorted(nodeids, key=lambda x: (-weight[x], x)):
        k = min(range(n), key=lambda j: (load[j], j))
        shards[k].append(nid)
        load[k] += weight[nid]
    return shards


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--shard")
    if spec is None:
        return
    try:
        parse(spec)
        durations(config.getoption("--shard-durations"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    spec = config.getoption("--shard")
    if spec is None:
        return
    i, n = parse(spec)
    mine = set(split([item.nodeid for item in items], n, durations(config.getoption("--shard-durations")))[i - 1])
    keep = [item for item in items if item.nodeid in mine]
    drop = [item for item in items if item.nodeid not in mine]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
