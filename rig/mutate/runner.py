"""Running the suite against mutants: which tests kill each, which survive.

Each mutant is written as a firmware profile, validated like any profile a user writes, and run
as an ordinary ``pytest testcases --firmware M.toml`` in a child process (a mutant's BMS is a
separate emulator, so mutants run side by side, ``workers`` at a time). Fast by default:

1. the tests of the mutant's own requirements first (``-p rig.mutate.select --requirement``),
   stopping at the first failure;
2. only a survivor of those runs the whole suite (``-x``), so a gap in the suite shows as a
   survivor, not as a requirement's tests being blind.

Before any mutant, :meth:`MutationRun.baseline` runs the same suite on the base profile: a kill
means something only where the base passes (a rig, bench or suite that fails by itself would
"kill" every mutant), so ``packrig mutate`` stops when the base fails.

On a lab (``packrig mutate --lab``) each run takes a bench of its own from a pool of benches
(``benches``: one per lab place held, its emulators started by that place) for as long as it
runs, so each place runs one mutant at a time; the outcome names the bench it ran on. A bench
``usable`` says is no longer ours (a place released under the run) is not taken again; when none
is left, the run stops with :class:`NoBenchLeft`.

``matrix=True`` runs every test on every mutant (no stop at the first failure), for the full
kill matrix. A mutant is *killed* when a test failed (a supervisor trip counts: the rig caught the
broken build), *survived* when every test passed, *equivalent* when it survived and
``equivalent.toml`` says why no test can see it, *error* when the run itself broke (a usage
error, a crash): an error is never counted as a kill.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from rig.errors import ConfigError
from rig.backends import load_firmware
from rig.mutate.operators import Mutant

ROOT = Path(__file__).resolve().parents[2]
TESTCASES = ROOT / "testcases"
EQUIVALENTS = Path(__file__).with_name("equivalent.toml")


@dataclass
class Outcome:
    """What the suite did to one mutant."""

    mutant: Mutant
    status: str = "error"                      # killed | survived | equivalent | error | invalid
    killed_by: list[str] = field(default_factory=list)         # test node ids that failed
    requirements: list[str] = field(default_factory=list)      # their requirement ids
    stage: str = ""                             # "targets" or "suite": which run killed it
    reason: str = ""                            # equivalent: why; error/invalid: what broke
    seconds: float = 0.0
    ran_on: list[str] = field(default_factory=list)             # the benches (lab places) its runs took

    def as_dict(self) -> dict:
        m = self.mutant
        return {"name": m.name, "requirement": m.requirement, "operator": m.operator,
                "field": ".".join(map(str, m.path)), "before": m.before, "after": m.value, "why": m.why,
                "status": self.status, "killed_by": self.killed_by, "killed_by_requirements": self.requirements,
                "stage": self.stage, "reason": self.reason, "seconds": round(self.seconds, 2), "ran_on": self.ran_on}


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, str]:
    """Mutant name -> why no test can tell it from the base profile (reviewed by hand)."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {e["name"]: e["reason"] for e in data.get("equivalent", [])}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _failures(junit: Path) -> tuple[list[str], list[str]]:
    """Failed test ids and their requirement ids, from a JUnit XML file."""
    if not junit.exists():
        return [], []
    tests, reqs = [], []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        tests.append(f"{case.get('classname', '')}::{case.get('name', '')}")
        for prop in case.iter("property"):
            if prop.get("name") == "requirement" and prop.get("value") not in reqs:
                reqs.append(prop.get("value"))
    return tests, reqs


class NoBenchLeft(RuntimeError):
    """Every bench of the pool was found unusable (each place released under the run)."""


class MutationRun:
    """Runs mutants against the suite; see the module docstring.

    :param base: the base firmware profile as a TOML dict.
    :param out: folder for the mutants' profiles and runs.
    :param bench: the (emulated) bench file.
    :param workers: mutants run at a time.
    :param matrix: run every test on every mutant.
    :param pytest_args: more pytest arguments for every run (e.g. ``-k`` to narrow the suite).
    :param benches: ``{name: bench file}``, a pool of benches each run takes one of (lab places;
        ``workers`` is then at most their number); default: ``bench`` for every run.
    :param usable: ``name -> bool``, asked before each run takes a bench of the pool.
    :param equivalents: mutant name -> reason (default: ``equivalent.toml``).
    """

    def __init__(self, base: dict, out: Path, *, bench: Path, workers: int = 2, matrix: bool = False,
                 seed: int | None = None, timeout_s: float = 900.0, pytest_args: tuple[str, ...] = (),
                 equivalents: dict[str, str] | None = None, benches: dict[str, Path] | None = None,
                 usable=None):
        self.base, self.out, self.bench = base, out, bench
        self.workers, self.matrix, self.seed, self.timeout_s = max(1, workers), matrix, seed, timeout_s
        self._pool: queue.Queue | None = None
        self.usable, self.dropped = usable, []  # dropped: the benches no longer taken
        self._live = len(benches or {})
        self._lock = threading.Lock()
        if benches:
            self.workers = min(self.workers, len(benches))
            self._pool = queue.Queue()
            for item in benches.items():
                self._pool.put(item)
        self.pytest_args = tuple(pytest_args)
        #: the bench the baseline ran on
        self.baseline_ran_on: list[str] = []
        self.equivalents = load_equivalents() if equivalents is None else equivalents

    def run(self, mutants: list[Mutant], progress=None) -> list[Outcome]:
        (self.out / "profiles").mkdir(parents=True, exist_ok=True)
        (self.out / "runs").mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self.one, m) for m in mutants]
            try:
                for future in as_completed(futures):   # progress as each ends; a survivor takes long
                    if progress:
                        progress(future.result())
            except BaseException:  # Ctrl-C, no bench left: no new run starts
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        return [f.result() for f in futures]

    def baseline(self) -> tuple[int, list[str]]:
        """The base profile through the whole (narrowed) suite: pytest's exit code and the tests
        that failed or errored. Mutants mean nothing unless this passes."""
        (self.out / "profiles").mkdir(parents=True, exist_ok=True)
        profile = self.out / "profiles" / "base.toml"
        profile.write_text(tomli_w.dumps(self.base), encoding="utf-8")
        code, failed, _ = self._pytest(profile, self.out / "runs" / "base", stop_at_first=False,
                                       ran_on=self.baseline_ran_on)
        return code, failed

    def one(self, mutant: Mutant) -> Outcome:
        started = time.perf_counter()
        outcome = Outcome(mutant)
        profile = self.out / "profiles" / f"{_safe(mutant.name)}.toml"
        profile.write_text(tomli_w.dumps(mutant.apply(self.base)), encoding="utf-8")
        try:
            load_firmware(profile)
        except ConfigError as exc:
            outcome.status, outcome.reason = "invalid", str(exc)
            return outcome
        stages = [("suite", None)] if self.matrix else [("targets", mutant.targets), ("suite", None)]
        for stage, targets in stages:
            folder = self.out / "runs" / f"{_safe(mutant.name)}-{stage}"
            code, failed, reqs = self._pytest(profile, folder, targets, stop_at_first=not self.matrix,
                                              ran_on=outcome.ran_on)
            if failed:
                outcome.status, outcome.stage, outcome.killed_by, outcome.requirements = "killed", stage, failed, reqs
                break
            if code not in (0, 5):   # 5: the requirement has no test; the whole suite is next
                outcome.status, outcome.reason = "error", f"pytest exit code {code} in the {stage} run"
                break
        else:
            outcome.status = "equivalent" if mutant.name in self.equivalents else "survived"
            outcome.reason = self.equivalents.get(mutant.name, "")
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _pytest(self, profile: Path, folder: Path, targets=None, *, stop_at_first: bool,
                ran_on: list[str]) -> tuple[int, list[str], list[str]]:
        if self._pool is None:
            return self._pytest_on(self.bench, profile, folder, targets, stop_at_first)
        name, bench = self._take()  # a bench of our own for this run
        try:
            ran_on.append(name)
            return self._pytest_on(bench, profile, folder, targets, stop_at_first)
        finally:
            self._pool.put((name, bench))

    def _take(self) -> tuple[str, Path]:
        while True:
            name, bench = self._pool.get()
            if name is None:  # the last bench was dropped: tell the next one too
                self._pool.put((None, None))
                raise NoBenchLeft(f"no bench left to run on ({', '.join(self.dropped)} no longer usable)")
            if self.usable is None or self.usable(name):
                return name, bench
            print(f"packrig mutate: {name} is no longer ours: no more runs on it", file=sys.stderr, flush=True)
            with self._lock:
                self.dropped.append(name)
                self._live -= 1
                if self._live == 0:
                    self._pool.put((None, None))

    def _pytest_on(self, bench: Path, profile: Path, folder: Path, targets,
                   stop_at_first: bool) -> tuple[int, list[str], list[str]]:
        junit = folder / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", str(TESTCASES), "--bench", str(bench),
               "--firmware", str(profile), "--run-dir", str(folder), "--junitxml", str(junit),
               "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "console_output_style=classic",
               "--plots", "none"]   # a verdict is all a mutant needs: plots would double its CPU
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if stop_at_first:
            cmd.append("-x")
        cmd += self.pytest_args
        if targets:
            cmd += ["-p", "rig.mutate.select"] + [a for t in targets for a in ("--requirement", t)]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=self.timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return 3, [], []
        failed, reqs = _failures(junit)
        return done.returncode, failed, reqs


def shard(mutants: list[Mutant], spec: str) -> list[Mutant]:
    """Mutants of shard ``i/N`` (1-based): every N-th by name, the same split on every machine."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected i/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {spec!r}: i must be within 1..N")
    ordered = sorted(mutants, key=lambda m: m.name)
    return [m for k, m in enumerate(ordered) if k % n == i - 1]
