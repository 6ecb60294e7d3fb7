"""One pack of a population (``packrig run --population``): its files, and the tests run against it.

:func:`write_pack` draws the pack's physics and writes the bench file that names it;
:func:`run_pack` runs the tests against that bench exactly as ``packrig run`` does (the same
pytest command, :mod:`rig.run_command`), into the pack's own ordinary run folder.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import tomli_w

from rig import run_command as rc
from rig import run_folder
from rig.files.loader import read_toml


def write_pack(prior, prior_path: Path, seed: int, bench, folder: Path) -> Path:
    """Pack ``folder``: ``physics.toml`` (the prior drawn with ``seed``) and ``bench.toml`` (the
    bench file with its paths made absolute and ``[emulator] physics`` naming that file)."""
    from emulator.pack.characterise import perturbed
    from emulator.pack.physics_params import load_physics

    folder.mkdir(parents=True, exist_ok=True)
    physics = folder / "physics.toml"
    physics.write_text(f"# drawn by packrig run --population: {prior_path} perturbed with seed {seed}\n"
                       + tomli_w.dumps(perturbed(prior, seed).model_dump(exclude_none=True)), encoding="utf-8")
    load_physics(physics)  # what the emulated pack will load
    data = read_toml(bench.path)
    data["bench"]["pack_spec"] = str(bench.pack_spec_path)
    data["emulator"]["firmware"] = str(bench.firmware_path)
    data["emulator"]["physics"] = str(physics)
    if "recording" in data:
        data["recording"]["directory"] = str(bench.recording_dir)
    path = folder / "bench.toml"
    path.write_text(f"# {bench.path} with the physics of this pack (packrig run --population)\n"
                    + tomli_w.dumps(data), encoding="utf-8")
    return path


def run_pack(args, argv: list[str], tests: list[str], others: list[str], bench_path: Path, run_dir: Path,
             allure: str | None, live: bool) -> tuple[int, bool]:
    """The tests against one pack, as ``packrig run`` runs them, into ``run_dir``.

    :param args: ``packrig run``'s arguments (-m, -k, --firmware, --seed, --workers, --plots ...).
    :param tests: the test paths or node ids to run (absolute); ``others``: further pytest arguments.
    :param allure: the Allure command line, or None for no HTML page.
    :param live: draw ``packrig run``'s live display of the tests.
    :return: (pytest's exit code, interrupted). pytest's output goes to the run folder's
        ``pytest-output.txt``.
    """
    pack_args = copy.copy(args)
    pack_args.bench, pack_args.reports, pack_args.overwrite = str(bench_path), str(run_dir), False
    pack_args.pytest_args = others
    pack_args.no_html = args.no_html or allure is None  # no Allure command line: said once, not per pack
    bench, spec = rc.validate(pack_args)
    run_dir = run_folder.claim(run_dir)
    feed_dir = Path(tempfile.mkdtemp(prefix="packrig-feed-"))
    feed = feed_dir / "progress.jsonl" if live else None
    cmd = rc.pytest_command(pack_args, bench, run_dir, feed)
    at = cmd.index(str(rc.TESTCASES))
    cmd[at:at + 1] = tests  # the population's selection instead of the whole testcases folder
    env = {**os.environ, "PACKRIG_COMMAND": json.dumps(["packrig", *argv])}
    interrupted = False
    with open(run_dir / "pytest-output.txt", "w", encoding="utf-8") as output:
        child = subprocess.Popen(cmd, cwd=rc.TESTCASES.parent, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            code = rc.wait_live(child, feed) if live else child.wait()
        except KeyboardInterrupt:
            interrupted, code = True, rc.stop_child(child)
    shutil.rmtree(feed_dir, ignore_errors=True)
    if interrupted:
        rc.ensure_incomplete(run_dir, "interrupted (Ctrl-C): bench made safe")
    elif code not in rc.COMPLETE_EXITS:  # a safety trip (2), a crash (3)
        rc.ensure_incomplete(run_dir, f"pytest ended with exit code {code}")
    if (run_dir / run_folder.MANIFEST).exists() and not interrupted:
        rc.after_tests(run_dir, spec, pack_args, allure)  # the matrix, and the HTML page if asked
    return code, interrupted
