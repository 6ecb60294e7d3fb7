"""packrig mutate: the generated mutants are valid broken builds; the kill table is right."""
from __future__ import annotations

import json
import tomllib
from collections import Counter

import pytest
import tomli_w

from rig.cli import main
from rig.files.bench_file import EMULATED_BENCH, load_bench
from emulator.firmware.profile import CONFORMING_PROFILE, load_firmware_profile
from rig.files.pack_spec import load_pack_spec
from rig.mutate.operators import Mutant, generate
from rig.mutate.runner import MutationRun, shard

BASE = tomllib.loads(CONFORMING_PROFILE.read_text(encoding="utf-8"))
SPEC = load_pack_spec(load_bench(EMULATED_BENCH).pack_spec_path)


@pytest.fixture(scope="module")
def mutants() -> list[Mutant]:
    return generate(BASE, SPEC)


def test_every_mutant_is_a_valid_profile_with_one_field_changed(mutants, tmp_path):
    assert len(mutants) >= 100
    names = [m.name for m in mutants]
    assert len(set(names)) == len(names), "mutant names are unique"
    for m in mutants:
        path = tmp_path / "m.toml"
        profile = m.apply(BASE)
        path.write_text(tomli_w.dumps(profile))
        load_firmware_profile(path)   # raises ConfigError for an invalid mutant
        changed = {k for k in BASE if k != "meta" and profile[k] != BASE[k]}
        assert changed == {m.path[0]}, m.name
        assert m.name.startswith(f"{m.requirement}:") and m.requirement in m.targets or m.targets


def test_operators_cover_every_protection_row_and_level(mutants):
    kinds = Counter((m.path[0], m.operator) for m in mutants)
    for op in ("threshold_late", "threshold_early", "delay_late", "delay_early", "disabled"):
        assert kinds[("protections", op)] == 11 * 3, op
    assert kinds[("protections", "action")] == 11 and kinds[("protections", "release_early")] == 11
    assert kinds[("failures", "not_detected")] == 9
    assert {m.requirement for m in mutants} >= {SPEC.activation.id, SPEC.power_on.id, SPEC.power_off.id,
                                                 SPEC.pcs_loss.id, SPEC.parallel.id, SPEC.can.id, SPEC.lights.id}


def test_a_threshold_moves_two_tolerances_in_the_unsafe_direction(mutants):
    cov = {m.name: m for m in mutants}["REQ-PROT-COV:protections.cell_over_voltage.l2.threshold:threshold_late"]
    assert cov.value == pytest.approx(SPEC.protections.cell_over_voltage.l2.threshold
                                      + 2 * SPEC.tolerance.group_voltage_v)
    cuv = {m.name: m for m in mutants}["REQ-PROT-CUV:protections.cell_under_voltage.l2.threshold:threshold_late"]
    assert cuv.value < SPEC.protections.cell_under_voltage.l2.threshold   # trips below: later is lower


def test_shards_split_the_set_without_overlap(mutants):
    parts = [shard(mutants, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(m.name for p in parts for m in p) == sorted(m.name for m in mutants)
    assert shard(mutants, "2/3") == parts[1]
    with pytest.raises(ValueError):
        shard(mutants, "4/3")


def test_list_and_bad_input(capsys):
    assert main(["mutate", "--list", "--only", SPEC.protections.cell_over_voltage.id]) == 0
    assert "REQ-PROT-COV:protections.cell_over_voltage.l3.action:action" in capsys.readouterr().out
    assert main(["mutate", "--list", "--only", "REQ-NOPE"]) == 4
    assert main(["mutate", "--list", "--base", "/nonexistent.toml"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no mutant matches" in err[0] and "nonexistent.toml" in err[1]


def test_the_kill_table_of_a_handful(mutants, tmp_path):
    """Two killed, one survivor, one equivalent, each classified by really running the tests (the
    suite narrowed to the cell over-voltage L2 case to keep it short)."""
    by_name = {m.name: m for m in mutants}
    killed = [by_name["REQ-PROT-COV:protections.cell_over_voltage.l2.enabled:disabled"],
              by_name["REQ-PROT-COV:protections.cell_over_voltage.l2.delay_s:delay_late"]]
    # the BMS's own draw while on: no requirement of the spec says how much it is
    invisible = Mutant("REQ-PROT-COV", "standby_draw", ("bms", "standby_draw_a"), 0.02, 0.015,
                       "draws 5 mA more while on")
    equivalent = Mutant("REQ-PROT-COV", "off_draw", ("bms", "off_draw_a"), 0.0004, 0.0003,
                        "draws 0.1 mA more while off")
    run = MutationRun(BASE, tmp_path, bench=EMULATED_BENCH, workers=2,
                      pytest_args=("-k", "test_holds_short_of_the_threshold_then_trips_in_time and cell_over_voltage-L2"),
                      equivalents={equivalent.name: "a 0.1 mA draw takes years to show"})
    assert run.baseline() == (0, [])   # the base passes the narrowed suite: kills mean something
    outcomes = {o.mutant.name: o for o in run.run(killed + [invisible, equivalent])}
    for m in killed:
        o = outcomes[m.name]
        assert o.status == "killed" and o.stage == "targets", (m.name, o.reason)
        assert o.killed_by and "cell_over_voltage-L2" in o.killed_by[0]
        assert o.requirements == [SPEC.protections.cell_over_voltage.id]
    assert outcomes[invisible.name].status == "survived"
    assert outcomes[equivalent.name].status == "equivalent"
    assert outcomes[equivalent.name].reason == "a 0.1 mA draw takes years to show"
    table = {"mutants": [o.as_dict() for o in outcomes.values()], "wall_s": 1.0}
    json.dumps(table)
    from rig.mutate.command import summary
    assert summary(table, tmp_path) == 1   # a survivor: not all killed


def test_a_base_profile_the_suite_fails_is_caught_before_any_mutant(mutants, tmp_path):
    """A base that already fails (here: cell over-voltage L2 switched off) would let every mutant
    look killed; the baseline run names the failing test, and packrig mutate stops there."""
    broken = next(m for m in mutants if m.name == "REQ-PROT-COV:protections.cell_over_voltage.l2.enabled:disabled")
    run = MutationRun(broken.apply(BASE), tmp_path, bench=EMULATED_BENCH, workers=1,
                      pytest_args=("-k", "test_holds_short_of_the_threshold_then_trips_in_time and cell_over_voltage-L2"))
    code, failed = run.baseline()
    assert code == 1 and len(failed) == 1 and "cell_over_voltage-L2" in failed[0]
