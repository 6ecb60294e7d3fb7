"""The digital-twin round trip in full (issue 19): a pack drawn from the plausible spread of real
packs (emulator/pack/characterise.py ``perturbed``; the fit is not told it) records the
characterisation procedures, ``packrig fit`` fits the shipped model to them, and the fitted model
driven by the recorded current is compared with what was measured.

Two ways to record:

- default: the pack's physics alone in virtual time (``record_characterisation``: 5 % steps with
  1 h rests, pulses at every step, the rest after full, 85 A and the cool-down, the HPPC pulses at
  10/26/50/80 % SOC and 7/25/43 C), written in the run folder's format; a minute or so;
- ``--through-rig``: the real path. An emulated bench whose ``[emulator] physics`` names the drawn
  pack (one pack, the bench's seed = ``--seed``) runs ``testcases/test_characterisation.py -m
  characterisation`` through the rig (SCPI instruments, supervisor, recorder) into a run folder,
  and ``packrig fit RUNFOLDER`` reads it as it would a real bench's; 15-20 minutes, 1.1 GB of
  recordings (kept with ``--keep DIR``).

Prints: the true and fitted capacity (error, %), each group's capacity (the spread the pack
drew, the worst group's error), time constants, heat capacity and conductance, the temperature
factors at the HPPC temperatures, and per recording the residual RMS of the terminal voltage, the
group voltages and the case temperature; the issue's goal is 10 mV RMS and 2 % of capacity. The
measured-vs-model plot of the OCV-steps recording is copied to ``--png`` (default docs/twin-fit.png).

Run: ``python benchmarks/bench_twin_roundtrip.py [--seed N] [--through-rig] [--png PATH] [--keep DIR]
[--run RUNFOLDER]``
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tomli_w

from emulator.pack.characterise import HPPC_TEMPERATURES, perturbed, record_characterisation
from emulator.pack.physics import PackPhysics
from emulator.pack.physics_params import load_physics
from rig.cli import main as packrig
from rig.files.bench_file import EMULATED_BENCH

ROOT = Path(__file__).resolve().parents[1]
GOAL_V, GOAL_CAPACITY = 0.010, 0.02


def record_physics_only(truth, work: Path, seed: int) -> Path:
    run = work / "run"
    record_characterisation(truth, run / "recordings", seed=seed, step_pct=5.0, rest_s=3600.0, every_s=30.0)
    return run


def record_through_rig(truth, work: Path, seed: int) -> Path:
    """The characterisation procedures on an emulated bench whose pack is ``truth``."""
    physics = work / "truth.toml"
    physics.write_text(tomli_w.dumps(truth.model_dump(exclude_none=True)))
    text = EMULATED_BENCH.read_text().replace('"../../', f'"{ROOT}/')
    text = text.replace("[emulator]\n", f'[emulator]\nphysics = "{physics}"\n', 1)
    text = text.replace("packs = 2\nseed = 1\n", f"packs = 1\nseed = {seed}\n").replace("parallel_packs = 2", "parallel_packs = 1")
    bench = work / "bench.toml"
    bench.write_text(text)
    run = work / "run"
    cmd = [sys.executable, "-m", "pytest", "testcases/test_characterisation.py", "-m", "characterisation", "-q",
           "--plots", "none", "-p", "no:cacheprovider", "--bench", str(bench), "--run-dir", str(run),
           "--run-dir-overwrite"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print("  packrig run -m characterisation: " + done.stdout.strip().splitlines()[-1].strip("= "))
    if done.returncode != 0:
        raise SystemExit(f"the characterisation run failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
    return run


def factor_at(table, grid, celsius: float) -> float:
    return float(np.interp(celsius, grid, table.temperature_factor))


def compare(truth, seed: int, out: Path) -> dict:
    """Print fitted vs true and the residuals; returns the fit report."""
    fitted = load_physics(out)
    data = json.loads((out.parent / "fit-report.json").read_text())
    true_ah = truth.pack.cell_capacity_ah * truth.pack.cells_per_group
    err = data["capacity_ah"] / true_ah - 1
    print(f"capacity: true {true_ah:.2f} Ah a group, fitted {data['capacity_ah']:.2f} Ah ({err * 100:+.2f} %; "
          f"goal within {GOAL_CAPACITY * 100:g} %)")
    drawn = PackPhysics(truth, packs=1, seed=seed).capacity_ah[0]      # the groups this pack drew
    drawn = drawn / drawn.mean() - 1
    fit_rel = np.array(data["group_capacity_rel"])
    print(f"group capacities: spread (sigma of 16) drawn {drawn.std() * 100:.2f} %, fitted {fit_rel.std() * 100:.2f} %;"
          f" worst group off by {np.abs(fit_rel - drawn).max() * 100:.3f} %")
    tr, fr = truth.resistance, fitted.resistance
    print("time constants: true " + ", ".join(f"{p.tau_s:.0f}" for p in tr.rc) + " s; fitted "
          + ", ".join(f"{p.tau_s:.0f}" for p in fr.rc) + " s")
    th, ft = truth.thermal, fitted.thermal
    print(f"thermal: C {th.heat_capacity_j_per_k / 1e3:.1f} -> {ft.heat_capacity_j_per_k / 1e3:.1f} kJ/K, "
          f"UA {th.ua_w_per_k:.2f} -> {ft.ua_w_per_k:.2f} W/K")
    names = ["R0"] + [f"RC {p.tau_s:.0f} s" for p in tr.rc]
    cold, hot = HPPC_TEMPERATURES[0], HPPC_TEMPERATURES[-1]
    print(f"temperature factors at {cold:g} / {hot:g} C, true -> fitted: " + "; ".join(
        f"{n} {factor_at(t, tr.temperature_c, cold):.3f} -> {factor_at(f, fr.temperature_c, cold):.3f} / "
        f"{factor_at(t, tr.temperature_c, hot):.3f} -> {factor_at(f, fr.temperature_c, hot):.3f}"
        for n, t, f in zip(names, [tr.r0, *tr.rc], [fr.r0, *fr.rc])))
    print(f"BMS draw from the cells: fitted {data['bms_draw_a'] * 1e3:.1f} mA; terminal readings left out (not "
          f"taken with the cell taps): {data['fit'].get('terminal_readings_left_out', 0)}")
    for name, rec in data["recordings"].items():
        rms = rec["rms"]
        worst = max(v for k, v in rms.items() if k.startswith("group") and k != "groups_v")
        print(f"  {name.removeprefix('testcases.').removeprefix('test_characterisation.')}: terminal "
              f"{rms['terminal_v'] * 1e3:.1f} mV RMS, groups {rms['groups_v'] * 1e3:.1f} mV (worst group "
              f"{worst * 1e3:.1f}), case {rms['case_c']:.3f} K")
    terminal = max(r["rms"]["terminal_v"] for r in data["recordings"].values())
    groups = max(r["rms"]["groups_v"] for r in data["recordings"].values())
    met = terminal <= GOAL_V and groups <= GOAL_V and abs(err) <= GOAL_CAPACITY
    print(f"worst recording: terminal {terminal * 1e3:.1f} mV, groups {groups * 1e3:.1f} mV RMS; capacity "
          f"{err * 100:+.2f} %: goal {'met' if met else 'NOT met'}")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--through-rig", action="store_true",
                        help="record through the rig: the characterisation test cases on an emulated bench")
    parser.add_argument("--png", default=str(ROOT / "docs" / "twin-fit.png"))
    parser.add_argument("--keep", help="keep the run folder and the fit here (default: a temporary folder)")
    parser.add_argument("--run", help="fit this run folder (recorded before with the same --seed, e.g. kept by "
                                      "--through-rig --keep) instead of recording")
    args = parser.parse_args()
    truth = perturbed(load_physics(), args.seed)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="packrig-twin-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        how = f"the run folder {args.run}" if args.run else "through the rig" if args.through_rig else "physics only"
        print(f"seed {args.seed}, {how}:")
        t0 = time.perf_counter()
        if args.run:
            run = Path(args.run)
        else:
            run = (record_through_rig if args.through_rig else record_physics_only)(truth, work, args.seed)
        t1 = time.perf_counter()
        out = work / "fit" / "fitted.toml"
        code = packrig(["fit", str(run), "--out", str(out)])
        t2 = time.perf_counter()
        if code != 0:
            raise SystemExit(f"packrig fit exited {code}")
        print(("" if args.run else f"recorded in {t1 - t0:.0f} s, ") + f"packrig fit (read, fit, report) in {t2 - t1:.0f} s")
        data = compare(truth, args.seed, out)
        steps = next(k for k, name in enumerate(data["recordings"]) if "ocv" in name)
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out.parent / f"fit-{steps + 1}.png", args.png)
        print(f"measured vs fitted model: {args.png}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
