"""One folder per run: where it is, how it is claimed, marked incomplete, pointed at as ``latest``.

A run folder holds everything of one run (see ``reports/README.md``)::

    manifest.json  junit.xml  allure-results/  html/index.html  recordings/
    requirements.html  requirements.csv  INCOMPLETE (while running, or after a crash / Ctrl-C)

``packrig run`` makes ``reports/runs/<UTC time>-<6 hex>/`` by default and points
``reports/latest`` (a symlink, and ``reports/latest.txt`` for systems without them) at it.
A folder that already holds a run is refused unless ``overwrite`` is asked for, and then only
the run's own files are removed: nothing else in it, and no other run, is touched.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
from pathlib import Path

from rig.errors import RigError

#: the repository's report folder (``pytest testcases`` and ``packrig run`` default to it)
REPORTS = Path(__file__).resolve().parents[1] / "reports"
RUNS = "runs"
MANIFEST = "manifest.json"
INCOMPLETE = "INCOMPLETE"
RECORDINGS = "recordings"
ALLURE_RESULTS = "allure-results"
HTML = "html"
JUNIT = "junit.xml"
#: what a run writes into its folder: removed by ``--overwrite``, and nothing else
RUN_FILES = (MANIFEST, INCOMPLETE, JUNIT, ALLURE_RESULTS, HTML, RECORDINGS, "requirements.html",
             "requirements.csv", "allure-history.jsonl", "allurerc.json", "pytest-output.txt")


class RunFolderRefused(RigError):
    """The folder cannot take this run (it holds one already, or cannot be written): exit 4."""


def new_run_id(now: dt.datetime | None = None) -> str:
    """``20261205T103500Z-ab12cd``: sortable by start time, unique with 6 random hex digits."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def default_run_dir(reports: Path = REPORTS, run_id: str | None = None) -> Path:
    return Path(reports) / RUNS / (run_id or new_run_id())


def holds_run(folder: Path) -> bool:
    """A folder holds a run when a run's manifest (or its INCOMPLETE mark) is in it."""
    return (folder / MANIFEST).exists() or (folder / INCOMPLETE).exists()


def claim(folder: str | Path, *, overwrite: bool = False) -> Path:
    """Make ``folder`` this run's folder and mark it INCOMPLETE; returns it resolved.

    :param overwrite: a folder that holds a run is emptied of that run's files (only those).
    :raises RunFolderRefused: it holds a run and ``overwrite`` is false, or it cannot be written.
    """
    folder = Path(folder).resolve()
    if folder.exists() and not folder.is_dir():
        raise RunFolderRefused(f"{folder}: not a folder")
    if (folder / RUNS).is_dir():  # e.g. --reports reports: the root of many runs, not one run
        raise RunFolderRefused(f"{folder} holds the runs in {folder / RUNS}; give a folder for this run "
                               f"(e.g. {folder / RUNS / 'my-run'}) or leave --reports out")
    if holds_run(folder):
        if not overwrite:
            raise RunFolderRefused(f"{folder} already holds a run ({_run_id_in(folder)}); "
                                   "give another --reports folder or add --overwrite")
        for name in RUN_FILES:
            path = folder / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mark_incomplete(folder, "running")
    except OSError as exc:
        raise RunFolderRefused(f"{folder}: cannot write the run folder ({exc.strerror or exc})") from None
    return folder


def mark_incomplete(folder: Path, why: str) -> None:
    """Mark the run incomplete, saying why (``running``, ``interrupted``, ``crashed: ...``)."""
    (Path(folder) / INCOMPLETE).write_text(f"{why}\n", encoding="utf-8")


def mark_complete(folder: Path) -> None:
    (Path(folder) / INCOMPLETE).unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` whole or not at all (temporary file, then rename): a reader never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def point_latest(folder: Path, reports: Path = REPORTS) -> None:
    """``reports/latest`` -> this run (a relative symlink, swapped atomically) and ``latest.txt``."""
    reports.mkdir(parents=True, exist_ok=True)
    try:
        target = os.path.relpath(folder, reports)
    except ValueError:  # another drive (Windows)
        target = str(folder)
    link, tmp = reports / "latest", reports / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        if link.exists() and not link.is_symlink():
            raise OSError(f"{link} is not a symlink")
        tmp.replace(link)
    except OSError:
        tmp.unlink(missing_ok=True)  # no symlinks here: latest.txt still says where
    (reports / "latest.txt").write_text(f"{folder}\n", encoding="utf-8")


def writable(folder: Path) -> str | None:
    """None if a run folder can be made at ``folder``; else why not (the nearest existing parent
    is read-only, or a file is in the way)."""
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def _run_id_in(folder: Path) -> str:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("run_id") or "run"
    except (OSError, ValueError, AttributeError):
        return "an incomplete run" if (folder / INCOMPLETE).exists() else "a run"
