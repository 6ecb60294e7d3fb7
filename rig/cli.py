"""The ``packrig`` command.

- ``packrig run``: the main job. Runs the test cases against a bench (default: the emulated
  pack), writes JUnit XML and Allure results under ``reports/`` and, where the Allure 3 command
  line is installed (``reports/.allure``, see the README), renders the HTML report.
- ``packrig check FILE...``: validates bench files, pack specs and firmware profiles and says
  what is wrong (file, field, allowed range) or that they are good.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from rig.errors import ConfigError
from rig.files.bench_file import EMULATED_BENCH, load_bench
from rig.files.firmware_profile import load_firmware_profile
from rig.files.pack_spec import load_pack_spec

TESTCASES = Path(__file__).resolve().parents[1] / "testcases"
LOADERS = {"bench": load_bench, "spec": load_pack_spec, "firmware": load_firmware_profile}


def _kind_of(path: Path) -> str:
    """Tell a file's kind from its top-level sections."""
    try:
        keys = set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read it as TOML: {exc}") from None
    if "bench" in keys:
        return "bench"
    if "bms" in keys:
        return "firmware"
    if "ratings" in keys:
        return "spec"
    raise ConfigError(path, "", "not a bench file ([bench]), firmware profile ([bms]) "
                                "or pack spec ([ratings])")


def check(args: argparse.Namespace) -> int:
    bad = 0
    for name in args.files:
        path = Path(name)
        try:
            kind = args.kind or _kind_of(path)
            LOADERS[kind](path)
            print(f"ok: {path} ({kind})")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
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
    p_run.add_argument("pytest_args", nargs="*", help="further pytest arguments (after --)")
    p_run.set_defaults(func=run)

    p_check = sub.add_parser("check", help="validate bench / pack spec / firmware profile files")
    p_check.add_argument("files", nargs="+")
    p_check.add_argument("--kind", choices=sorted(LOADERS), help="file kind (default: guessed)")
    p_check.set_defaults(func=check)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
