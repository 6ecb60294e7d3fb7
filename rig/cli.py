"""The ``packrig`` command.

- ``packrig run``: the main job. Runs the test cases against a bench (default: the emulated
  pack) and writes everything of the run into one folder (``reports/runs/<UTC time>-<id>/``,
  ``reports/latest`` names it; ``--reports DIR``): JUnit XML, Allure results, recordings,
  ``manifest.json``, the traceability matrix and, where the Allure 3 command line is installed
  (``reports/.allure``), the HTML report of this run. See :mod:`rig.run_command`.
  ``packrig run --population N``: the physics-dependent tests against N emulated packs drawn
  from the plausible spread of real packs, each criterion's margin distribution. See
  :mod:`rig.population`.
- ``packrig check FILE...``: validates bench files, pack specs and firmware profiles and says
  what is wrong (file, field, allowed range) or that they are good.
- ``packrig emulate``: runs the emulated bench on its own and prints how to reach it (VISA
  resource strings, the socketcand endpoint, the RS485 serial URL, the control port), so a
  person can drive it with any VISA client, python-can tool or serial terminal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rig.errors import ConfigError
from rig.files.bench_file import EMULATED_BENCH, load_bench
from rig.backends import load_firmware
from rig.files.envelope import check_bench_against, limits_in_force
from rig.files.loader import read_toml
from rig.files.pack_spec import load_pack_spec

LOADERS = {"bench": load_bench, "spec": load_pack_spec, "firmware": load_firmware}


def _kind_of(path: Path) -> str:
    """Tell a file's kind from its top-level sections; a file that is not a small UTF-8 TOML
    file is the same one-line ConfigError as in the loaders."""
    keys = set(read_toml(path))
    if "bench" in keys:
        return "bench"
    if "bms" in keys:
        return "firmware"
    if "ratings" in keys:
        return "spec"
    raise ConfigError(path, "", "not a bench file ([bench]), firmware profile ([bms]) "
                                "or pack spec ([ratings])")


def check(args: argparse.Namespace) -> int:
    """Validate each file; for a bench, show the limits in force. A pack spec named beside a bench
    is one it may run against (``--pack-spec``), so the bench must fit its safety envelope too."""
    bad, benches, specs = 0, [], []
    for name in args.files:
        path = Path(name)
        try:
            kind = args.kind or _kind_of(path)
            loaded = LOADERS[kind](path)
            print(f"ok: {path} ({kind})")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
            continue
        if kind == "bench":
            benches.append(loaded)
        elif kind == "spec":
            specs.append((path, loaded))
    for bench in benches:
        for spec_path, spec in specs:
            try:
                check_bench_against(spec, bench, spec_path)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                bad += 1
        print("\n" + "\n".join(limits_in_force(bench)))
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    from rig import run_command  # see rig/run_command.py: the run folder, the child pytest, the reports

    run_command.install_sigterm()
    if args.population is not None or args.population_seed is not None:  # N emulated packs: rig/population.py
        from rig.population import run_population
        if args.population is None:
            print("packrig run: --population-seed needs --population N", file=sys.stderr)
            return 4
        return run_population(args, args.argv)
    if args.lab or args.want:  # on a place of a shared lab: reserve, run, always release
        from rig.lab.run_on_place import run_on_lab
        return run_on_lab(args, args.argv, run_command.run)
    return run_command.run(args, args.argv)


def emulate(args: argparse.Namespace) -> int:
    from emulator.serve import serve  # the emulator's code only for this command

    return serve(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packrig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"packrig {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the test cases against a bench: one run folder, reports, summary")
    from rig.run_command import add_arguments
    add_arguments(p_run, str(EMULATED_BENCH))
    from rig.lab.run_on_place import add_arguments as add_lab_arguments  # --lab, --want, --lab-timeout
    add_lab_arguments(p_run)
    from rig.population import add_arguments as add_population_arguments  # --population N, --population-seed
    add_population_arguments(p_run)
    p_run.set_defaults(func=run)

    p_check = sub.add_parser("check", help="validate bench / pack spec / firmware profile files")
    p_check.add_argument("files", nargs="+")
    p_check.add_argument("--kind", choices=sorted(LOADERS), help="file kind (default: guessed)")
    p_check.set_defaults(func=check)

    p_emu = sub.add_parser("emulate", help="run the emulated bench standalone and print how to reach it")
    p_emu.add_argument("--bench", default=str(EMULATED_BENCH), help="emulated bench file (wiring, defaults)")
    p_emu.add_argument("--firmware", help="firmware profile (default: the bench file's)")
    p_emu.add_argument("--packs", type=int, choices=(1, 2), help="one pack, or two in parallel")
    p_emu.add_argument("--seed", type=int)
    p_emu.add_argument("--soc", type=float, help="initial state of charge, %%")
    p_emu.add_argument("--temperature", type=float, help="pack and room temperature, C")
    p_emu.add_argument("--clock", choices=("virtual", "wall"), help="default: the bench file's")
    p_emu.add_argument("--endpoints-file", help="write the endpoints here as JSON when ready")
    p_emu.add_argument("--quiet", action="store_true")
    p_emu.add_argument("--owner-pid", type=int, help="the rig process that starts this emulator: stop (safe "
                       "state first) when it is gone or its control connection closes")
    p_emu.add_argument("--exit-file", help="write the safe-state outcome here as JSON when stopping")
    p_emu.set_defaults(func=emulate)

    from rig.mutate.command import add_parser as add_mutate
    from rig.report.commands import add_parsers  # compare, trend: run folders only
    add_parsers(sub)
    add_mutate(sub)
    from rig.fit.command import add_parser as add_fit  # the emulated pack fitted to characterisation runs
    add_fit(sub)
    from rig.lab.export_command import add_parser as add_export  # a bench as a labgrid place
    add_export(sub)

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except ConfigError as exc:  # a bad file named on the command line: one line, a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 4


def _version() -> str:
    from rig.report.manifest import git_facts, packrig_version
    revision = git_facts()["revision"]
    return packrig_version() + (f" (git {revision[:12]})" if revision else "")


if __name__ == "__main__":
    sys.exit(main())
