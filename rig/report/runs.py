"""A finished run folder, read back: its manifest, its tests and their measurements.

``packrig compare`` and ``packrig trend`` read runs through :func:`load_run`, never by globbing
files, so a folder that is not a run (no ``manifest.json``, another schema, a run that never
finished) is refused in one line, as any bad input is (:class:`RunFolderError`, exit code 4).
The manifest's schema is documented in ``reports/README.md`` (schema ``packrig-run/1``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rig.errors import RigError

SCHEMA = "packrig-run/1"


class RunFolderError(RigError):
    """A path given as a run folder is not one (or cannot be compared): one line, exit 4."""


@dataclass(frozen=True)
class Run:
    """A run folder and its manifest."""

    folder: Path
    manifest: dict

    @property
    def run_id(self) -> str:
        return self.manifest.get("run_id") or self.folder.name

    @property
    def tests(self) -> dict[str, dict]:
        """Node id -> the test's entry of the manifest."""
        return {t["nodeid"]: t for t in self.manifest.get("tests", [])}

    @property
    def emulated(self) -> bool:
        return bool((self.manifest.get("bench") or {}).get("emulated"))

    @property
    def seed(self):
        return self.manifest.get("seed")

    @property
    def started(self) -> str:
        return self.manifest.get("wall_start") or ""

    def firmware_name(self) -> str:
        fw = self.manifest.get("firmware") or {}
        ident = self.manifest.get("pack_identity") or {}
        return fw.get("name") or ident.get("rs485_version") or ident.get("can_name") or "?"

    def path_of(self, relative: str | None) -> Path | None:
        """A path the manifest names (relative to the run folder), if the file is there."""
        if not relative:
            return None
        path = self.folder / relative
        return path if path.is_file() else None


def load_run(folder: str | Path, *, allow_incomplete: bool = False) -> Run:
    """Read a run folder.

    :raises RunFolderError: not a folder, no readable ``manifest.json``, another schema, or a
        run that did not finish (unless ``allow_incomplete``).
    """
    path = Path(folder)
    manifest_path = path / "manifest.json"
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a run folder (no such folder)")
    if not manifest_path.is_file():
        raise RunFolderError(f"{path}: not a run folder (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{manifest_path}: unreadable manifest ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        got = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise RunFolderError(f"{manifest_path}: schema {got!r}, expected {SCHEMA!r}")
    if not isinstance(manifest.get("tests"), list):
        raise RunFolderError(f"{manifest_path}: tests: expected a list")
    if not manifest.get("complete") and not allow_incomplete:
        raise RunFolderError(f"{path}: the run did not finish (manifest 'complete' is false); "
                             "its verdicts are partial")
    return Run(path.resolve(), manifest)


def same_requirements(a: Run, b: Run) -> None:
    """Two runs are comparable only against the same pack spec.

    :raises RunFolderError: the pack specs' sha256 differ (or one is unknown).
    """
    sa = (a.manifest.get("pack_spec") or {}).get("sha256")
    sb = (b.manifest.get("pack_spec") or {}).get("sha256")
    if not sa or not sb or sa != sb:
        raise RunFolderError(f"{a.folder.name} and {b.folder.name} ran against different pack specs "
                             f"(sha256 {str(sa)[:12]} vs {str(sb)[:12]}): their verdicts do not compare")
