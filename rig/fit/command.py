"""``packrig fit RUN... --out physics.toml``: fit the emulated pack to characterisation runs.

Reads the characterisation recordings of each run folder (``packrig run -m characterisation``
on a real bench), fits the model (:mod:`rig.fit.pack_fit`) starting from the emulator's shipped
parameters (or ``--prior``), writes the physics file, and beside it ``fit-report.json`` (residual
RMS per channel and recording) and one measured-vs-model PNG per recording. Exit 0 done, 4 a bad
run folder or file (one line).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit the emulated pack's physics to characterisation run folders")
    p.add_argument("runs", nargs="+", help="run folders (or samples CSVs) of the characterisation procedures")
    p.add_argument("--out", default="physics.toml", help="physics file to write (default: physics.toml)")
    p.add_argument("--prior", help="physics file to start from (default: the emulator's own)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from emulator.pack.physics_params import DEFAULT_PHYSICS, load_physics
    from rig.fit.fit_report import report, write_physics
    from rig.fit.pack_fit import fit_pack
    from rig.fit.series import read_runs

    series = read_runs(args.runs)               # ConfigError -> exit 4 in rig.cli
    prior = load_physics(args.prior or DEFAULT_PHYSICS)
    result = fit_pack(series, prior)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_physics(result, out, [str(r) for r in args.runs])
    load_physics(out)                           # what the emulated bench will load
    data = report(result, series, out.parent)
    print(f"wrote {out} (capacity {result.capacity_ah:.2f} Ah a group, spread "
          f"{data['capacity_spread_rel'] * 100:.2f} %, BMS draw {result.draw_a * 1e3:.0f} mA) and "
          f"{out.parent / 'fit-report.json'}")
    for name, rec in data["recordings"].items():
        rms = rec["rms"]
        print(f"  {name}: terminal {rms['terminal_v'] * 1e3:.1f} mV RMS, groups "
              f"{rms.get('groups_v', float('nan')) * 1e3:.1f} mV, case {rms.get('case_c', float('nan')):.2f} K "
              f"({rec['plot']})")
    return 0
