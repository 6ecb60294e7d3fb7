"""The emulated pack's physics against the numbers of PACK_MODEL_FACTS.md and PACK_SPEC.md.

Each test drives the model the way the rig does (constant current over a step, chamber air as
an input) and checks a number a real 2P16S 128 Ah LFP pack would show, with the tolerance stated
next to it. "Empty" and "full" are the spec's: a 64 A discharge down to 48.0 V at the terminals
(3.00 V a group), and a CC 64 A / CV 56.0 V charge until the current falls below 3 A.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emulator.pack.physics import PackPhysics
from emulator.pack.physics_params import DEFAULT_PHYSICS, load_physics
from rig.errors import ConfigError

PARAMS = load_physics()


def pack(**kw) -> PackPhysics:
    kw.setdefault("packs", 1)
    return PackPhysics(PARAMS, **kw)


def terminal(phys: PackPhysics, current: np.ndarray) -> np.ndarray:
    vs, r = phys.thevenin()
    return vs + r * current


def discharge_to(phys: PackPhysics, volts: float, amps: float = 64.0, dt: float = 1.0) -> float:
    """Discharge at ``amps`` until any pack's terminal voltage reaches ``volts``; returns seconds."""
    i = np.full(phys.packs, -amps)
    t = 0.0
    while terminal(phys, i).min() > volts:
        phys.step(dt, i, 25.0)
        t += dt
    return t


def cccv(phys: PackPhysics, cv: float = 56.0, cc: float = 64.0, tail: float = 3.0,
         dt: float = 1.0) -> tuple[float, np.ndarray, float]:
    """Charge CC/CV like a bench supply; returns (seconds, Ah per pack, max group voltage seen)."""
    t, ah, vmax = 0.0, np.zeros(phys.packs), 0.0
    while True:
        vs, r = phys.thevenin()
        i = np.minimum(cc, (cv - vs) / r)
        if i.max() < tail:
            return t, ah, vmax
        vmax = max(vmax, phys.group_voltages(i).max())
        phys.step(dt, i, 25.0)
        t += dt
        ah += i * dt / 3600.0


# ---------------------------------------------------------------- OCV and circuit
def test_ocv_is_the_libre_solar_table_on_the_discharge_branch():
    """FACTS 1: 50 % -> 3.265 V a cell, 52.24 V a pack; a new pack sits on the discharge branch."""
    phys = pack(initial_soc=0.5, capacity_spread=0.0, soc_spread=0.0)
    assert phys.ocv() == pytest.approx(np.full((1, 16), 3.265), abs=1e-9)
    assert phys.thevenin()[0] == pytest.approx([52.24], abs=1e-9)


def test_charging_moves_the_ocv_onto_the_charge_branch():
    """FACTS 1: the charge branch is 20 mV higher on the plateau; 25 % charged -> 16 x 3.246 V."""
    phys = pack(initial_soc=0.10, capacity_spread=0.0, soc_spread=0.0)
    phys.step(0.15 * 128 * 3600 / 64.0, np.array([64.0]), 25.0)   # 10 % -> 25 % at 64 A
    assert phys.soc.mean() == pytest.approx(0.25, abs=1e-12)
    # 15 % of throughput with a 3 % transition: h = 1 - 2 exp(-5) = 0.987.
    assert phys.ocv().mean() == pytest.approx(3.226 + (1 + 1 - 2 * math.exp(-5)) / 2 * 0.020, abs=1e-6)


def test_hysteresis_state_follows_charge_throughput_not_time():
    phys = pack(initial_soc=0.5, capacity_spread=0.0, soc_spread=0.0)
    phys.step(0.03 * 128 * 3600 / 64.0, np.array([64.0]), 25.0)   # 3 % SOC in
    h = 1.0 - 2.0 * math.exp(-1.0)                                # one transition length
    discharge_branch = np.interp(0.53, [0.5, 0.55], [3.265, 3.268])
    assert phys.ocv().mean() == pytest.approx(discharge_branch + (1 + h) / 2 * 0.020, abs=1e-6)
    before = phys.ocv()
    phys.step(3 * 3600.0, np.zeros(1), 25.0)                      # a rest changes nothing
    assert np.array_equal(phys.ocv(), before)


@pytest.mark.parametrize("soc, volts", [(1.015, 3.65), (1.03, 3.90), (-0.01, 2.50), (-0.02, 2.00)])
def test_abuse_voltages_are_reachable(soc, volts):
    """Over-charge reaches the 3.65-3.90 V limits, over-discharge the 2.5-2.0 V ones (FACTS 5)."""
    phys = pack(initial_soc=0.5)
    phys.set_group_soc(0, 7, soc)
    assert phys.ocv()[0, 7] == pytest.approx(volts, abs=1e-9)
    assert phys.soc[0, 7] == soc


def test_a_zero_volt_cell():
    """PACK_SPEC 2: a group below 0.5 V is a 0 V cell; far below empty the OCV is 0 V."""
    phys = pack(initial_soc=0.5)
    phys.set_group_soc(0, 3, -0.045)
    assert phys.ocv()[0, 3] < 0.5
    phys.set_group_soc(0, 3, -0.2)
    assert phys.ocv()[0, 3] == 0.0
    assert np.delete(phys.ocv()[0], 3).min() > 3.2


def test_terminal_voltage_sags_under_load_and_relaxes_at_rest():
    """FACTS 2: a 96 A, 3 s pulse sags about 0.6 V; 85 A settles near 0.85 V below the OCV."""
    phys = pack(initial_soc=0.6)
    ocv = phys.thevenin()[0][0]
    i = np.array([-96.0])
    phys.step(3.0, i, 25.0)
    assert ocv - terminal(phys, i)[0] == pytest.approx(0.6, abs=0.1)
    phys = pack(initial_soc=0.95)
    i = np.array([-85.0])
    for _ in range(40):                                             # 40 min: tau2 has settled
        phys.step(60.0, i, 25.0)
    sag = phys.ocv().sum() - terminal(phys, i)[0]
    assert sag == pytest.approx(0.85, abs=0.1)
    rest = np.zeros(1)
    seen = [phys.thevenin()[0][0]]
    for _ in range(45):
        phys.step(60.0, rest, 25.0)
        seen.append(phys.thevenin()[0][0])
    assert all(b > a for a, b in zip(seen, seen[1:]))                # recovers monotonically
    # after 45 min the 15 s and 10 min pairs are gone; the slow pair (2 h) is still relaxing, as
    # LFP keeps doing for hours (issue 19: before, the model was relaxed within 50 minutes)
    slow = phys.rc_voltages()[-1].sum()
    assert seen[-1] == pytest.approx(phys.ocv().sum() + slow, abs=0.005)
    assert slow < -0.01
    phys.step(8 * 3600.0, rest, 25.0)
    assert phys.thevenin()[0][0] == pytest.approx(phys.ocv().sum(), abs=0.002)


def test_group_voltages_add_up_to_the_terminal_voltage_less_the_path():
    phys = pack(packs=2, initial_soc=[0.4, 0.7])
    i = np.array([30.0, -50.0])
    phys.step(120.0, i, 25.0)
    vs, r = phys.thevenin()
    path = PARAMS.resistance.path_mohm * 1e-3
    assert phys.group_voltages(i).sum(axis=1) == pytest.approx(vs + r * i - path * i, abs=1e-9)


def test_cold_raises_the_resistance():
    """FACTS 2: R0 x 2.2 and R1/R2 x 3.5 at 0 C."""
    warm, cold = pack(ambient_c=25.0), pack(ambient_c=0.0)
    assert cold.thevenin()[1] - 2.5e-3 == pytest.approx(2.2 * (warm.thevenin()[1] - 2.5e-3))
    i = np.array([-64.0])
    for p, t in ((warm, 25.0), (cold, 0.0)):
        p.step(600.0, i, t)
    assert terminal(cold, i)[0] < terminal(warm, i)[0] - 0.3


# ---------------------------------------------------------------- the manual's numbers
def test_charge_at_64a_from_empty_to_full():
    """Usable 118 Ah at 64 A is about 1.8 h of CC (PACK_SPEC 1). Between 48.0 V and CV 56.0 V the
    128 Ah cells give 97 % of nominal: at least the rated 118 Ah, at most 126 Ah. The CV tail down
    to 3 A takes a few minutes more than it did before issue 19 (LFP's charge resistance climbs in
    the last percent), so the whole charge takes 1.8-2.1 h."""
    phys = pack(packs=2, seed=5, initial_soc=0.5)
    discharge_to(phys, 48.0)
    seconds, ah, vmax = cccv(phys)
    assert 1.8 <= seconds / 3600 <= 2.1
    assert ah == pytest.approx([122.0, 122.0], abs=4.0)
    assert vmax < 3.55          # a balanced pack reaches full below the cell alarm (PACK_SPEC 4)
    assert phys.soc.mean() == pytest.approx(1.005, abs=0.005)


def test_energy_of_a_full_cycle():
    """6.5 kWh nominal / 6.0 kWh usable (PACK_SPEC 1): a 64 A cycle delivers 6.0-6.5 kWh; the
    charge takes that plus the round-trip loss (95-99 % efficiency for LFP at 0.5 C)."""
    phys = pack(seed=2, initial_soc=0.5)
    discharge_to(phys, 48.0)
    e0 = phys.energy_wh()[0]
    cccv(phys)
    e_in = phys.energy_wh()[0] - e0
    discharge_to(phys, 48.0)
    e_out = e0 + e_in - phys.energy_wh()[0]
    assert 6000.0 <= e_out <= 6500.0
    assert 0.95 <= e_out / e_in <= 0.99


def test_storage_recharge_rests_above_52v():
    """Manual 1.4: after > 6 months in storage, charge (CV 55 V, 64 A) until LED2 flickers (26 %
    SOC), open, rest 5 minutes: >= 52 V. After a charge the terminal voltage FALLS during the rest
    (the RC pairs give back the charge polarisation) towards the charge-branch OCV at 26 %,
    16 x 3.249 = 51.98 V: the 5-minute reading passes because tau2 = 10 min has not decayed. This
    pack, 10 % after storage, passes with >= 40 mV to spare."""
    phys = pack(initial_soc=0.17)
    phys.age(7.0, 25.0)
    assert phys.soc.mean() == pytest.approx(0.10, abs=1e-9)
    i = np.array([64.0])
    while phys.soc.mean() < 0.26:
        vs, r = phys.thevenin()
        i = np.minimum(64.0, (55.0 - vs) / r)
        phys.step(1.0, i, 25.0)
    rest = np.zeros(1)
    volts = []
    for second in range(301):
        volts.append(phys.thevenin()[0][0])
        phys.step(1.0, rest, 25.0)
    ocv = phys.ocv().sum()
    assert volts[300] >= 52.0 + 0.040
    assert all(b < a for a, b in zip(volts, volts[1:]))        # relaxation: falls monotonically
    assert volts[0] - volts[60] > 0.05                          # visibly, mostly the 15 s pair
    assert ocv == pytest.approx(16 * 3.249, abs=0.01) and volts[300] > ocv


def test_a_rested_full_pack_reads_3_40_v_a_cell_after_an_hour():
    """Issue 19: real LFP rests near 3.40 V a cell an hour after a full charge (CALB CA180 log:
    3.4005 V after 1 h, 3.389 V after 6 days; vendor notes 3.33-3.40 V), not 3.49 V; and it is
    still relaxing then, over hours."""
    phys = pack(initial_soc=0.5)
    discharge_to(phys, 48.0)
    cccv(phys)
    rest = np.zeros(1)
    phys.step(3600.0, rest, 25.0)
    after_1h = phys.thevenin()[0][0]
    assert after_1h / 16 == pytest.approx(3.40, abs=0.01)
    phys.step(5 * 3600.0, rest, 25.0)
    after_6h = phys.thevenin()[0][0]
    assert 0.02 < after_1h - after_6h < 0.2
    assert 3.33 <= after_6h / 16 <= 3.40


def test_resistance_depends_on_direction_and_soc():
    """Issue 19: the charge resistance climbs before full, the discharge one does not; a 10 s
    pulse at mid SOC is 6.1 mOhm instantly and ~6.9 mOhm after 10 s (research note, (f))."""
    def pulse_mohm(soc: float, amps: float) -> tuple[float, float]:
        phys = pack(initial_soc=soc, capacity_spread=0.0, soc_spread=0.0)
        ocv, i = phys.thevenin()[0][0], np.array([amps])
        phys.step(1e-3, i, 25.0)
        instant = (terminal(phys, i)[0] - ocv) / amps
        phys.step(10.0, i, 25.0)
        return instant * 1e3, (terminal(phys, i)[0] - phys.ocv().sum()) / amps * 1e3

    mid_dis, mid_chg = pulse_mohm(0.5, -64.0), pulse_mohm(0.5, 64.0)
    assert mid_dis[0] == pytest.approx(6.1, abs=0.1) and mid_dis[1] == pytest.approx(6.9, abs=0.2)
    assert mid_chg == pytest.approx(mid_dis, abs=0.2)
    top_dis, top_chg = pulse_mohm(0.995, -64.0), pulse_mohm(0.995, 64.0)
    assert top_chg[1] > 1.5 * top_dis[1]


def test_heat_is_i_times_the_drop_over_the_same_resistances():
    """Issue 19: the heat comes from the resistances of the voltage model: I (V - OCV) over the
    groups plus I^2 R_path, so a step's heating follows the polarisation it builds."""
    phys = pack(initial_soc=0.5)
    i = np.array([-85.0])
    phys.step(1800.0, i, 25.0)
    drop = phys.ocv().sum() - phys.group_voltages(i).sum()
    path = PARAMS.resistance.path_mohm * 1e-3
    heat = 85.0 * drop + 85.0 ** 2 * path
    c, ua = PARAMS.thermal.heat_capacity_j_per_k, PARAMS.thermal.ua_w_per_k
    before = phys.pack_temperature()[0]
    phys.step(1.0, i, 25.0)
    rate = (phys.pack_temperature()[0] - before) / 1.0
    assert rate == pytest.approx((heat - ua * (before - 25.0)) / c, rel=0.02)


# ---------------------------------------------------------------- thermal
def test_85a_continuous_warms_the_pack():
    """FACTS 3: 85 A is about 73 W; steady rise 9 K, about +4 K after 1 h (tau 1.8 h)."""
    phys = pack(initial_soc=0.95)
    i = np.array([-85.0])
    for _ in range(3600):
        phys.step(1.0, i, 25.0)
    rise = phys.temperatures()[0] - 25.0
    assert rise[:4] == pytest.approx(np.full(4, 4.0), abs=1.0)   # cell sensors T1-T4
    assert rise[4] > rise[:4].max() + 1.0                         # power stage: path heat on top
    assert 25.0 < phys.case_temperature()[0] < 25.0 + rise[:4].min()


def test_the_pack_follows_the_chamber_with_its_time_constant():
    phys = pack()
    rest = np.zeros(1)
    t = 0.0
    while phys.temperatures()[0, :4].mean() < 25.0 + (1 - math.exp(-1)) * 20.0:
        phys.step(60.0, rest, 45.0)
        t += 60.0
    assert 1.5 <= t / 3600 <= 3.0
    phys.step(24 * 3600.0, rest, 45.0)
    assert phys.temperatures()[0, :4] == pytest.approx(45.0 + np.array([0.2, -0.1, 0.0, -0.2]))
    assert phys.case_temperature()[0] == pytest.approx(45.0)


# ---------------------------------------------------------------- time stepping
@pytest.mark.parametrize("amps, socs", [(64.0, [0.3, 0.4]), (-85.0, [0.9, 0.6])])
def test_one_big_step_equals_many_small_ones(amps, socs):
    """dt is the caller's choice: one 3600 s step vs 3600 x 1 s at constant current."""
    big = pack(packs=2, seed=4, initial_soc=socs)
    small = pack(packs=2, seed=4, initial_soc=socs)
    i = np.array([amps, amps / 2])
    big.step(3600.0, i, 25.0)
    for _ in range(3600):
        small.step(1.0, i, 25.0)
    assert big.soc == pytest.approx(small.soc, abs=1e-12)
    assert big.ocv() == pytest.approx(small.ocv(), abs=1e-9)
    assert np.abs(big.group_voltages(i) - small.group_voltages(i)).max() < 1e-3
    # The heat is taken at the step's start (R at 25 C for the whole hour): within 5 % of the rise.
    assert big.temperatures() == pytest.approx(small.temperatures(), abs=0.2)


def test_millisecond_steps_agree_with_one_second():
    fine, coarse = pack(seed=3), pack(seed=3)
    i = np.array([-96.0])
    for _ in range(1000):
        fine.step(1e-3, i, 25.0)
    coarse.step(1.0, i, 25.0)
    assert np.abs(fine.group_voltages(i) - coarse.group_voltages(i)).max() < 1e-6
    assert fine.temperatures() == pytest.approx(coarse.temperatures(), abs=1e-6)


def test_zero_step_does_nothing_and_negative_is_refused():
    phys = pack()
    before = phys.snapshot()
    phys.step(0.0, np.array([50.0]), 40.0)
    assert np.array_equal(phys.snapshot().state, before.state)
    with pytest.raises(ValueError, match="dt_s"):
        phys.step(-1.0, np.array([0.0]), 25.0)


# ---------------------------------------------------------------- spread, ageing, rollback
def test_same_seed_same_pack_other_seed_other_pack():
    a, b, c = (pack(packs=2, seed=s, initial_soc=0.4) for s in (7, 7, 8))
    assert np.array_equal(a.capacity_ah, b.capacity_ah) and np.array_equal(a.soc, b.soc)
    assert not np.array_equal(a.capacity_ah, c.capacity_ah)
    for p in (a, b):
        p.step(600.0, np.array([20.0, -20.0]), 30.0)
    assert np.array_equal(a.group_voltages(np.zeros(2)), b.group_voltages(np.zeros(2)))


def test_spread_is_centred_and_small_by_default():
    phys = pack(packs=2, seed=11, initial_soc=[0.3, 0.8])
    assert phys.soc.mean(axis=1) == pytest.approx([0.3, 0.8], abs=1e-12)
    assert phys.capacity_ah.mean(axis=1) == pytest.approx([128.0, 128.0])
    assert np.ptp(phys.ocv(), axis=1).max() < 0.02            # well below the 0.30 V alarm
    with pytest.raises(ValueError):
        phys.soc[0, 0] = 0.5                                    # read-only: use set_group_soc


def test_widened_spread_reaches_the_cell_difference_protection():
    """A weak group empties first: near the bottom the difference passes 0.30 V (L1) and
    0.50 V (L2) before the pack reaches 48.0 V (PACK_SPEC 4)."""
    phys = pack(seed=1, initial_soc=0.6, capacity_spread=0.04)
    i = np.array([-64.0])
    worst = 0.0
    while terminal(phys, i)[0] > 48.0:
        phys.step(5.0, i, 25.0)
        worst = max(worst, np.ptp(phys.group_voltages(i)))
    assert worst > 0.5


def test_ageing_self_discharge():
    """FACTS 4: 1 %/month at 25 C, x2 per +10 C; the pack ends at the storage temperature."""
    cool, warm = pack(seed=2, initial_soc=0.5), pack(seed=2, initial_soc=0.5)
    cool.step(600.0, np.array([-60.0]), 25.0)
    soc0 = cool.soc.mean()
    cool.age(7.0, 25.0)
    assert soc0 - cool.soc.mean() == pytest.approx(0.07, abs=1e-12)
    warm.age(7.0, 35.0)
    assert 0.5 - warm.soc.mean() == pytest.approx(0.14, abs=1e-12)
    assert np.ptp(0.5 - warm.soc) > 0.01                   # cells lose at different rates
    assert cool.temperatures() == pytest.approx(25.0 + np.array([[0.2, -0.1, 0.0, -0.2, 0.0]]))
    assert cool.thevenin()[0] == pytest.approx(cool.ocv().sum())   # RC relaxed
    with pytest.raises(ValueError):
        cool.age(-1.0, 25.0)


def test_snapshot_restore_round_trip():
    phys = pack(packs=2, seed=9, initial_soc=[0.2, 0.9])
    phys.step(30.0, np.array([40.0, -40.0]), 30.0)
    snap = phys.snapshot()
    readings = (phys.thevenin(), phys.group_voltages(np.ones(2)), phys.temperatures(),
                phys.energy_wh(), phys.soc.copy())
    phys.step(500.0, np.array([-90.0, 60.0]), 45.0)
    phys.set_group_soc(1, 2, 0.0)
    phys.restore(snap)
    again = (phys.thevenin(), phys.group_voltages(np.ones(2)), phys.temperatures(),
             phys.energy_wh(), phys.soc.copy())
    for a, b in zip(readings, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="another"):
        pack(packs=2).restore(snap)


def test_set_pack_soc_keeps_the_spread():
    phys = pack(packs=2, seed=3, initial_soc=0.5)
    before = phys.soc.copy()
    phys.set_pack_soc(1, 0.8)
    assert phys.soc.mean(axis=1) == pytest.approx([0.5, 0.8], abs=1e-12)
    assert np.array_equal(phys.soc[0], before[0])
    ah = (phys.soc[1] - before[1]) * phys.capacity_ah[1]
    assert ah == pytest.approx(np.full(16, 0.3 * 128.0), rel=1e-3)        # same Ah to every group
    assert phys.thevenin()[0][1] == pytest.approx(phys.ocv()[1].sum())    # derived values follow


def test_sense_offset_faults_readings_not_the_terminals():
    phys = pack()
    vs, ocv, volts = phys.thevenin()[0], phys.ocv(), phys.group_voltages(np.array([-20.0]))
    phys.group_offset_v[0, 5] = 0.4
    assert phys.ocv() - ocv == pytest.approx(np.eye(1, 16, 5) * 0.4)
    assert phys.group_voltages(np.array([-20.0])) - volts == pytest.approx(np.eye(1, 16, 5) * 0.4)
    assert np.array_equal(phys.thevenin()[0], vs)


def test_energy_counter_sign_and_size():
    phys = pack(initial_soc=0.5)
    phys.step(3600.0, np.array([10.0]), 25.0)
    assert phys.energy_wh()[0] == pytest.approx(10.0 * 52.4, rel=0.01)   # 10 Ah at ~52.4 V


# ---------------------------------------------------------------- the parameter file
def test_shipped_parameters_match_the_facts():
    p = PARAMS
    assert p.pack.groups * p.pack.cells_per_group * p.pack.cell_capacity_ah == 32 * 64
    assert p.thermal.heat_capacity_j_per_k / p.thermal.ua_w_per_k / 3600 == pytest.approx(1.84, abs=0.01)
    assert p.ocv.discharge_v[p.ocv.soc_pct.index(50)] == 3.265


@pytest.mark.parametrize("old, new, field, fragment", [
    ("tau_s              = 600.0", "tau_s              = 10.0", "resistance", "fast to slow"),
    ("charge_mohm        = [1.80,", "charge_mohm        = [-1.80,", "resistance.r0.charge_mohm.0",
     "greater than or equal to 0"),
    ("temperature_factor = [4.0,  2.2,  1.4,   1.0,  0.8]", "temperature_factor = [4.0,  2.2]",
     "resistance", "one value per temperature_c"),
    ("overcharge_v       = [3.40,", "overcharge_v       = [3.30,", "ocv", "must not fall"),
    ("doubling_c = 10.0", "doubling = 10.0", "self_discharge.doubling", "unknown key"),
])
def test_bad_parameters_are_named(tmp_path: Path, old, new, field, fragment):
    text = DEFAULT_PHYSICS.read_text()
    assert old in text
    bad = tmp_path / "physics.toml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_physics(bad)
    assert info.value.field == field and fragment in str(info.value)
