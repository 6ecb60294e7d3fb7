"""The ``packrig`` command.

- ``packrig run``: the main job. Runs the test cases against a bench (default: the emulated
  pack), writes JUnit XML and Allure results under ``reports/`` and, where the Allure 3 command
  line is installed (``reports/.allure``, see the README), renders the HTML report.
- ``packrig check FILE...``: validates bench files, pack specs and firmware profiles and says
  what is wrong (file, field, allowed range) or that they are good.
- ``packrig emulate``: runs the emulated bench on its own and prints how to reach it (VISA
  resource strings, the socketcand endpoint, the RS485 serial URL, the control port), so a
  person can drive it with any VISA client, python-can tool or serial terminal.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from rig.errors import ConfigError
from rig.files.bench_file import EMULATED_BENCH, load_bench
from rig.files.envelope import check_bench_against, limits_in_force
from rig.files.firmware_profile import load_firmware_profile
from rig.files.loader import read_toml
from rig.files.pack_spec import load_pack_spec

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"
LOADERS = {"bench": load_bench, "spec": load_pack_spec, "firmware": load_firmware_profile}


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
        print("\n".join(limits_in_force(bench)))
    return 1 if bad else 0


def _allure_cli(reports: Path) -> str | None:
    local = reports / ".allure" / "node_modules" / ".bin" / "allure"
    if local.exists():
        return str(local)
    return shutil.which("allure")


def run(args: argparse.Namespace) -> int:
    reports = Path(args.reports).resolve()
    results, html = reports / "allure-results", reports / "html"
    reports.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", str(TESTCASES), "--bench", str(args.bench),
           "--alluredir", str(results), "--clean-alluredir",
           "--junitxml", str(reports / "junit.xml"), "-p", "no:cacheprovider"]
    if args.firmware:
        cmd += ["--firmware", args.firmware]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    if args.markers:
        cmd += ["-m", args.markers]
    workers = args.workers
    if workers == "auto" and not load_bench(args.bench).emulated:
        workers = "0"  # one real bench: one test at a time
    if workers != "0" and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", workers]  # each emulated test has its own bench (own emulator, own ports)
    cmd += args.pytest_args
    print("packrig run:", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=TESTCASES.parent)
    allure = _allure_cli(reports)
    if allure and not args.no_html:
        subprocess.call([allure, "generate", str(results), "--output", str(html)])
        print(f"packrig run: HTML report in {html}/index.html")
    else:
        print(f"packrig run: results in {results} and {reports / 'junit.xml'} "
              "(install the Allure 3 command line to render HTML: see README)")
    return code


def emulate(args: argparse.Namespace) -> int:
    from rig.emulator.serve import serve  # the emulator's code only for this command

    return serve(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packrig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the test cases against a bench, with the report")
    p_run.add_argument("--bench", default=str(EMULATED_BENCH), help="bench file (default: emulated)")
    p_run.add_argument("--firmware", help="firmware profile to emulate (emulated bench only)")
    p_run.add_argument("--seed", type=int, help="seed of the emulated pack")
    p_run.add_argument("-m", dest="markers", help="pytest marker expression, e.g. 'not slow'")
    p_run.add_argument("--reports", default="reports", help="report folder (default: reports)")
    p_run.add_argument("--no-html", action="store_true", help="skip rendering the HTML report")
    p_run.add_argument("--workers", default="auto",
                       help="pytest-xdist workers: 'auto' (default; a real bench always runs one test at a "
                            "time), a number, or 0")
    p_run.add_argument("pytest_args", nargs="*", help="further pytest arguments (after --)")
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

    from rig.report.commands import add_parsers  # compare, trend: run folders only
    add_parsers(sub)

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except ConfigError as exc:  # a bad file named on the command line: one line, a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
