"""The digital-twin round trip in full (issue 19): a pack drawn from the plausible spread of real
packs (emulator/pack/characterise.py ``perturbed``; the fit is not told it) records the
characterisation procedures in their full form (5 % steps with 1 h rests, pulses at every step,
the rest after full, 85 A and the cool-down), ``packrig fit`` fits the shipped model to them, and
the fitted model driven by the recorded current is compared with what was measured.

Prints: the true and fitted capacity (error, %), the capacity spread, time constants, heat
capacity and conductance, and per recording the residual RMS of the terminal voltage, the group
voltages and the case temperature; the issue's goal is 10 mV RMS and 2 % of capacity. The
measured-vs-model plot of the steps recording is copied to ``--png`` (default docs/twin-fit.png).

Run: ``python benchmarks/bench_twin_roundtrip.py [--seed N] [--png PATH]``
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from emulator.pack.characterise import perturbed, record_characterisation
from emulator.pack.physics_params import load_physics
from rig.fit.fit_report import report, write_physics
from rig.fit.pack_fit import fit_pack
from rig.fit.series import read_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--png", default=str(Path(__file__).resolve().parents[1] / "docs" / "twin-fit.png"))
    args = parser.parse_args()
    prior = load_physics()
    truth = perturbed(prior, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run" / "recordings"
        t0 = time.perf_counter()
        record_characterisation(truth, folder, seed=args.seed, step_pct=5.0, rest_s=3600.0, every_s=30.0)
        t1 = time.perf_counter()
        series = read_runs([folder.parent])
        result = fit_pack(series, prior)
        t2 = time.perf_counter()
        out = Path(tmp) / "fit" / "physics.toml"
        out.parent.mkdir()
        write_physics(result, out, [str(folder.parent)])
        load_physics(out)
        data = report(result, series, out.parent)
        true_ah = truth.pack.cell_capacity_ah * truth.pack.cells_per_group
        print(f"seed {args.seed}: recorded {sum(len(s) for s in series)} samples in {t1 - t0:.1f} s, "
              f"fit in {t2 - t1:.1f} s")
        print(f"capacity: true {true_ah:.2f} Ah a group, fitted {result.capacity_ah:.2f} Ah "
              f"({(result.capacity_ah / true_ah - 1) * 100:+.2f} %; goal within 2 %)")
        print(f"capacity spread (sigma): drawn {truth.spread.capacity_rel * 100:.2f} %, fitted "
              f"{result.params.spread.capacity_rel * 100:.2f} %")
        print("time constants: true " + ", ".join(f"{p.tau_s:.0f}" for p in truth.resistance.rc) + " s; fitted "
              + ", ".join(f"{p.tau_s:.0f}" for p in result.params.resistance.rc) + " s")
        th, ft = truth.thermal, result.params.thermal
        print(f"thermal: C {th.heat_capacity_j_per_k / 1e3:.1f} -> {ft.heat_capacity_j_per_k / 1e3:.1f} kJ/K, "
              f"UA {th.ua_w_per_k:.2f} -> {ft.ua_w_per_k:.2f} W/K")
        for name, rec in data["recordings"].items():
            rms = rec["rms"]
            worst = max(v for k, v in rms.items() if k.startswith("group") and k != "groups_v")
            print(f"  {name}: terminal {rms['terminal_v'] * 1e3:.1f} mV RMS, groups {rms['groups_v'] * 1e3:.1f} mV "
                  f"(worst group {worst * 1e3:.1f}), case {rms['case_c']:.3f} K  [goal: 10 mV]")
        steps = next(k for k, (name, _) in enumerate(data["recordings"].items()) if "ocv" in name)
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out.parent / f"fit-{steps + 1}.png", args.png)
        print(f"measured vs fitted model: {args.png}")


if __name__ == "__main__":
    main()
