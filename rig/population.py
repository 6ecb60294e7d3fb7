"""``packrig run --population N``: the physics-dependent tests against N emulated packs drawn from
the plausible spread of real packs (issue 19), so an engineer sees, before touching a real pack,
whether each criterion of the manual holds with margin.

Pack k (1..N) is the bench's physics (its ``[emulator] physics``, else the emulator's own) drawn
with seed ``S + k - 1`` (``--population-seed S``, default 1000) by
:func:`emulator.pack.characterise.perturbed` (capacity, hysteresis, low-plateau OCV, resistances,
time constants, capacity spread, thermal capacity and conductance within their plausible ranges).
Each pack is written as a physics file and a bench file naming it, and the tests run against it
exactly as ``packrig run`` runs them (the same pytest command, one ordinary run folder each),
one pack after another. From the runs' ``manifest.json`` alone (:mod:`rig.report.population`),
the population's figures: per measurement the margin distribution, per test how many packs
pass, and the long-storage recharge's line. Everything goes into one population folder::

    reports/populations/<UTC time>-<6 hex>/      (or --reports DIR)
      population.json                            schema packrig-population/1 (reports/README.md)
      storage-recharge-margin.png                histogram of the long-storage recharge margin
      INCOMPLETE                                 while running, after Ctrl-C or a crash
      pack001/physics.toml  pack001/bench.toml  pack001/run/   (an ordinary run folder) ...

Default selection: the tests marked :data:`PHYSICS_MARKER`; test paths (or node ids) given as arguments replace
it, ``-k`` and ``-m`` narrow it. Exit codes are a run's: 0 every test passed on every pack,
1 a test failed on some pack, 2 interrupted (Ctrl-C, a safety trip), 3 a pack's run crashed,
4 usage (one line, before any pack runs), 5 nothing collected.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rig import run_command as rc
from rig import run_folder
from rig.errors import ConfigError

SCHEMA = "packrig-population/1"
POPULATIONS = "populations"
MAX_PACKS = 200
DEFAULT_SEED = 1000
POPULATION_JSON, HISTOGRAM = "population.json", "storage-recharge-margin.png"
#: The marker of the tests whose verdict depends on the pack's physics (rig/pytest_plugin.py): the
#: long-storage recharge (manual 1.4), the full-charge SOC (PACK_SPEC 2), the activation window
#: (manual 2.2), IEC 62619 8.2.2-8.2.4. The test author marks them; the population runs them.
PHYSICS_MARKER = "physics"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--population", metavar="N", help=f"run the physics-dependent tests against N emulated packs "
                   f"(1-{MAX_PACKS}) drawn from the plausible spread of real packs; one population folder")
    p.add_argument("--population-seed", metavar="S", help=f"pack k draws seed S + k - 1 (default {DEFAULT_SEED})")


def _count(text: str | None, flag: str, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise rc.BadInput(f"{flag} must be a whole number {span}, got {text!r}")
    return value


def _selection(args: argparse.Namespace) -> tuple[list[str], list[str], str | None]:
    """(test paths or node ids, other pytest arguments, the -m expression): paths given replace the
    default, every test marked :data:`PHYSICS_MARKER`; ``-m`` narrows either."""
    paths, others = [], []
    for a in args.pytest_args:
        file_part = a.split("::", 1)[0]
        if not a.startswith("-") and (file_part.endswith(".py") or "::" in a or Path(file_part).is_dir()):
            if not Path(file_part).exists():
                raise rc.BadInput(f"no such test file: {file_part}")
            paths.append(str(Path(file_part).resolve()) + a[len(file_part):])
        else:
            others.append(a)
    if paths:
        return paths, others, args.markers
    markers = f"{PHYSICS_MARKER} and ({args.markers})" if args.markers else PHYSICS_MARKER
    return [str(rc.TESTCASES)], others, markers


def validate(args: argparse.Namespace):
    """Every input checked before a pack runs; returns (bench, spec, N, seed, selection, folder).

    :raises rc.BadInput: the first bad input, in one line.
    """
    n = _count(args.population, "--population", 1, MAX_PACKS)
    seed = _count(args.population_seed, "--population-seed", 0, None) if args.population_seed is not None \
        else DEFAULT_SEED
    for flag, given in (("--lab", getattr(args, "lab", None)), ("--want", getattr(args, "want", None)),
                        ("--shard", args.shard), ("--shard-durations", args.shard_durations)):
        if given:
            raise rc.BadInput(f"--population runs emulated packs on this machine, one after another; {flag} "
                              "does not apply")
    bench, spec = rc.validate(args)
    if not bench.emulated:
        raise rc.BadInput(f"--population draws emulated packs; {bench.path} is the real bench "
                          f"{bench.file.bench.name!r}: give an emulated bench file")
    tests, others, args.markers = _selection(args)  # the manifest and each pack's run record -m
    folder = Path(args.reports) if args.reports else run_folder.REPORTS / POPULATIONS / run_folder.new_run_id()
    why = run_folder.writable(folder)
    if why:
        raise rc.BadInput(f"cannot write the population folder {folder.resolve()}: {why}")
    folder = folder.resolve()
    if (folder / run_folder.RUNS).is_dir() or (folder / run_folder.MANIFEST).exists():
        raise rc.BadInput(f"{folder} holds a run or runs; give a folder for this population or leave --reports out")
    if _holds_population(folder) and not args.overwrite:
        raise rc.BadInput(f"{folder} already holds a population; give another --reports folder or add --overwrite")
    return bench, spec, n, seed, (tests, others), folder


def _prior(bench):
    """The physics the packs are drawn around, and its path (the emulator's own model: like
    ``packrig fit``, this command is about the emulated pack's physics)."""
    from emulator.pack.physics_params import DEFAULT_PHYSICS, load_physics

    path = bench.physics_path or DEFAULT_PHYSICS
    try:
        return load_physics(path), path
    except ConfigError as exc:
        raise rc.BadInput(f"bad physics file: {exc}") from None


def _holds_population(folder: Path) -> bool:
    """A population (finished or cut short) was written here: its ``population.json`` or a pack's folder."""
    return (folder / POPULATION_JSON).exists() or any(folder.glob("pack[0-9][0-9][0-9]"))


def _claim(folder: Path) -> None:
    """Empty a population folder of a former population's own files (``--overwrite``) and mark it."""
    if _holds_population(folder):
        for path in [folder / POPULATION_JSON, folder / HISTOGRAM, folder / run_folder.INCOMPLETE,
                     *folder.glob("pack[0-9][0-9][0-9]")]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    run_folder.mark_incomplete(folder, "running")


def run_population(args: argparse.Namespace, argv: list[str]) -> int:
    """``packrig run --population N``: validate, draw and run the packs, write and print the figures."""
    from rig.population_pack import run_pack, write_pack
    from rig.report.allure_html import allure_cli

    try:
        bench, spec, n, seed, (tests, others), folder = validate(args)
        prior, prior_path = _prior(bench)
    except rc.BadInput as exc:
        print(f"packrig run: {exc}", file=sys.stderr)
        return rc.USAGE
    allure = None if args.no_html else allure_cli(run_folder.REPORTS)
    if allure is None and not args.no_html:
        print("packrig run: no HTML reports (the Allure 3 command line is not installed: ./quickstart "
              "installs it with npm into reports/.allure)")
    live = sys.stdout.isatty() and not args.plain and os.environ.get("TERM") != "dumb"
    _claim(folder)
    print(f"packrig run --population {n}: {folder} (population seed {seed}; packs run one after another)",
          flush=True)
    population = _head(args, argv, bench, n, seed, prior_path, tests, folder)
    started, packs, interrupted = time.monotonic(), [], False
    for k in range(1, n + 1):
        pack_folder = folder / f"pack{k:03d}"
        try:
            bench_path = write_pack(prior, prior_path, seed + k - 1, bench, pack_folder)
            code, interrupted = run_pack(args, argv, tests, others, bench_path, pack_folder / "run",
                                         allure, live)
        except KeyboardInterrupt:
            code, interrupted = rc.INTERRUPTED, True
        except (rc.BadInput, ConfigError, run_folder.RunFolderRefused) as exc:  # the pack's own files
            print(f"packrig run: pack {k}: {exc}", file=sys.stderr)
            code = 3
        manifest = _manifest(pack_folder / "run")
        packs.append({"pack": k, "seed": seed + k - 1, "manifest": manifest, "exit_code": code})
        print(_pack_line(k, n, seed + k - 1, code, manifest, pack_folder / "run"), flush=True)
        last = k == n or interrupted or (k == 1 and code == 5)  # a selection that collects nothing stops at once
        code = _write(population, packs, spec, folder, started, interrupted, final=last)
        if last:
            break
    _print(population, folder)
    if interrupted:
        print("packrig run: bench made safe, population interrupted", file=sys.stderr)
    return code


def _head(args, argv, bench, n: int, seed: int, prior_path: Path, tests: list[str], folder: Path) -> dict:
    """The facts of the population known before its first pack (``population.json``'s first keys)."""
    from rig.report.manifest import file_facts, git_facts, packrig_version, utc_now

    return {"schema": SCHEMA, "population_id": folder.name, "complete": False, "incomplete_reason": "running",
            "packrig_version": packrig_version(), "git": git_facts(),
            "command": ["packrig", *argv], "wall_start": utc_now(), "wall_end": None, "wall_s": None,
            "population_seed": seed, "packs_asked": n, "drawn_by": "emulator.pack.characterise.perturbed",
            "prior_physics": str(prior_path), "bench": file_facts(bench.path, bench.file.bench.name),
            "pack_spec": file_facts(args.pack_spec or bench.pack_spec_path),
            "selection": {"tests": [os.path.relpath(t, rc.TESTCASES.parent) for t in tests],
                          "markers": args.markers, "keyword": args.keyword}}


def _manifest(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / run_folder.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pack_line(k: int, n: int, seed: int, code: int, manifest: dict | None, run_dir: Path) -> str:
    if manifest is None:
        return f"pack {k}/{n} (seed {seed}): no manifest, exit code {code}: {run_dir}"
    c = manifest.get("counts") or {}
    parts = ", ".join(f"{c[o]} {o}" for o in ("passed", "failed", "error", "skipped") if c.get(o)) or "no tests"
    return f"pack {k}/{n} (seed {seed}): {parts}, {manifest.get('wall_s') or 0:.0f} s: {run_dir}"


def exit_code(codes: list[int], interrupted: bool) -> int:
    """The population's exit code from its packs' (pytest's codes): the worst one, in the order
    interrupted, crashed, tripped, failed; 5 only when no pack collected anything."""
    if interrupted:
        return rc.INTERRUPTED
    for code in (3, rc.INTERRUPTED, 1):
        if code in codes:
            return code
    return 5 if codes and all(c == 5 for c in codes) else 0


def _write(population: dict, packs: list[dict], spec, folder: Path, started: float, interrupted: bool,
           final: bool) -> int:
    """(Re)write ``population.json`` with the figures of the packs so far (after every pack, so a
    population cut short still has them) and, when ``final``, the histogram; returns the exit code."""
    from rig.report.manifest import utc_now
    from rig.report.population import histogram, summarise

    code = exit_code([p["exit_code"] for p in packs], interrupted)
    reason = ("running" if not final else "interrupted (Ctrl-C): bench made safe" if interrupted else
              "nothing collected" if code == 5 else
              f"a pack's run ended with exit code {code}" if code in (2, 3) else
              None if len(packs) == population["packs_asked"] else f"{len(packs)} of {population['packs_asked']} packs ran")
    population["packs"] = [{"pack": p["pack"], "seed": p["seed"], "exit_code": p["exit_code"],
                            "physics": f"pack{p['pack']:03d}/physics.toml", "bench": f"pack{p['pack']:03d}/bench.toml",
                            "run": f"pack{p['pack']:03d}/run", "run_id": (p["manifest"] or {}).get("run_id"),
                            "counts": (p["manifest"] or {}).get("counts")} for p in packs]
    population.update(summarise(packs, spec))
    png = histogram(population["storage_recharge"], folder / HISTOGRAM) if final else None
    population.update({"complete": reason is None, "incomplete_reason": reason, "histogram": png and png.name,
                       "wall_end": utc_now(), "wall_s": round(time.monotonic() - started, 1), "exit_code": code})
    run_folder.write_json(folder / POPULATION_JSON, population)
    if reason is None:
        run_folder.mark_complete(folder)
    else:
        run_folder.mark_incomplete(folder, reason)
    return code


def _print(population: dict, folder: Path) -> None:
    from rig.report.population_render import print_population

    print_population(population, {"population": folder / POPULATION_JSON,
                                  "histogram": folder / population["histogram"] if population["histogram"] else None,
                                  "pack runs": folder / "pack*/run"})
    print(f"wall time {population['wall_s']:.0f} s for {len(population['packs'])} pack(s)")
