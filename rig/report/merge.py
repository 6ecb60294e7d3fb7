"""``packrig merge RUN... --reports DIR``: the run folders of shards made into one run.

The shards of one run (``packrig run --shard i/N`` on N machines, the same bench file, pack spec,
firmware profile and seed) each write a run folder. Merged, they are one run folder like any
other: ``manifest.json`` (the tests of all shards, counts, the earliest start and latest end,
``merged_from`` naming the shards), ``junit.xml`` (one ``<testsuites>`` holding every shard's
suite), ``allure-results/`` and ``recordings/`` (every shard's files; their names are unique per
test), the traceability matrix, and the HTML report when the Allure command line is there.

Refused in one line (exit 4): a folder that is not a finished run, shards of different builds
(pack spec, bench, firmware or seed differ), a test present in two shards (the splits did not
agree), a target folder that holds a run (unless ``--overwrite``).
"""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from rig import run_folder
from rig.report.runs import Run, RunFolderError, load_run

#: facts every shard of one run shares
SAME = (("pack_spec", "sha256"), ("bench", "sha256"), ("firmware", "sha256"), ("seed", None))


def _fact(run: Run, key: str, sub: str | None):
    value = run.manifest.get(key)
    return (value or {}).get(sub) if sub else value


def check_shards(runs: list[Run]) -> None:
    """:raises RunFolderError: the runs are not shards of one run."""
    if len(runs) < 2:
        raise RunFolderError(f"merge takes two or more run folders; got {len(runs)}")
    first = runs[0]
    for run in runs[1:]:
        for key, sub in SAME:
            if _fact(run, key, sub) != _fact(first, key, sub):
                raise RunFolderError(f"{run.folder.name} and {first.folder.name} are not shards of one run: "
                                     f"their {key}{'.' + sub if sub else ''} differ "
                                     f"({str(_fact(first, key, sub))[:12]} vs {str(_fact(run, key, sub))[:12]})")
    seen: dict[str, str] = {}
    for run in runs:
        for nodeid in run.tests:
            if nodeid in seen:
                raise RunFolderError(f"{nodeid} ran in two shards ({seen[nodeid]} and {run.folder.name}): "
                                     "the shards were split differently (same --shard-durations for every job)")
            seen[nodeid] = run.folder.name


def merged_manifest(runs: list[Run], run_id: str) -> dict:
    from rig.report.manifest import counts

    first = runs[0].manifest
    tests = sorted((t for r in runs for t in r.manifest["tests"]), key=lambda t: t["nodeid"])
    virtual = [r.manifest.get("virtual_s") for r in runs if r.manifest.get("virtual_s") is not None]
    return {**first, "run_id": run_id, "complete": True, "shard": None,
            "merged_from": [{"run_id": r.run_id, "folder": str(r.folder), "shard": r.manifest.get("shard")}
                            for r in runs],
            "wall_start": min(r.manifest.get("wall_start") or "" for r in runs),
            "wall_end": max(r.manifest.get("wall_end") or "" for r in runs),
            "wall_s": round(sum(r.manifest.get("wall_s") or 0.0 for r in runs), 1),
            "virtual_s": round(sum(virtual), 3) if virtual else None,
            "counts": counts(tests), "tests": tests}


#: files every shard's allure-results has once for the whole run: written anew for the merged run
RUN_WIDE = {"environment.properties"}


def _copy_tree(source: Path, target: Path) -> None:
    if not source.is_dir():
        return
    for path in source.rglob("*"):
        if path.is_file() and path.name not in RUN_WIDE:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                raise RunFolderError(f"{dest.name} is in two shards; refusing to overwrite it")
            shutil.copy2(path, dest)


def merge_junit(runs: list[Run], target: Path) -> None:
    suites = ET.Element("testsuites")
    for run in runs:
        path = run.folder / run_folder.JUNIT
        if not path.exists():
            continue
        root = ET.parse(path).getroot()
        for suite in ([root] if root.tag == "testsuite" else list(root)):
            suite.set("name", f"{suite.get('name', 'pytest')} ({run.run_id})")
            suites.append(suite)
    ET.ElementTree(suites).write(target, encoding="utf-8", xml_declaration=True)


def merge(folders: list[str], target: str, *, overwrite: bool = False) -> tuple[Path, dict]:
    """Merge shard run folders into ``target``; returns the folder and its manifest.

    :raises RunFolderError: see the module docstring.
    """
    runs = [load_run(f) for f in folders]
    check_shards(runs)
    try:
        out = run_folder.claim(target, overwrite=overwrite)
    except run_folder.RunFolderRefused as exc:
        raise RunFolderError(str(exc)) from None
    for run in runs:
        _copy_tree(run.folder / run_folder.RECORDINGS, out / run_folder.RECORDINGS)
        _copy_tree(run.folder / run_folder.ALLURE_RESULTS, out / run_folder.ALLURE_RESULTS)
    merge_junit(runs, out / run_folder.JUNIT)
    manifest = merged_manifest(runs, out.name)
    from rig.report.manifest import environment_properties
    results = out / run_folder.ALLURE_RESULTS
    results.mkdir(exist_ok=True)
    (results / "environment.properties").write_text(environment_properties(manifest), encoding="utf-8")
    run_folder.write_json(out / run_folder.MANIFEST, manifest)
    run_folder.mark_complete(out)
    return out, manifest
