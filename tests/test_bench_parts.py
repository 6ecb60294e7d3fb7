"""The bench a test runs on is built by one constructor (EquippedBench) and a real pack is
conditioned by a strategy with named states (Conditioning); both driven here on the emulated
bench in virtual time, as a real bench would be."""
from __future__ import annotations

import pytest

from rig.conditioning import Conditioning, State
from rig.equipped_bench import EquippedBench
from rig.files.bench_file import EMULATED_BENCH, load_bench
from rig.light_reader import LightReader
from rig.pack import Pack
from rig.recorder import read_can, read_samples


@pytest.fixture
def equipped(tmp_path):
    loaded = load_bench(EMULATED_BENCH)
    bench = EquippedBench(loaded, tmp_path, "tests/test_bench_parts.py::case", seed=2, initial_soc_pct=50.0)
    yield bench
    bench.close()


def test_the_bench_owns_its_recorder_measurements_supervisor_and_pcs_running(equipped):
    assert equipped.pcs.heartbeats_sent == 1  # the heartbeat started with the bench
    equipped.clock.sleep(3.0)
    assert equipped.pcs.heartbeats_sent == 4
    assert equipped.measurements.recorder is equipped.recorder
    equipped.close()
    equipped.close()  # twice is safe
    rows = read_samples(equipped.recorder.samples_path)
    assert any(row["kind"] == "step" for row in rows), "every SCPI step recorded"
    assert any(row["kind"] == "sample" for row in rows), "the supervisor's samples recorded"
    frames = read_can(equipped.recorder.can_path)
    assert sum(not m.is_rx for m in frames) == 4, "the PCS heartbeats (the pack is off: it says nothing)"
    assert not equipped.emulator.world.plant.psu.on  # left in its safe state


def test_conditioning_takes_a_pack_through_its_named_states_to_the_asked_soc(equipped):
    spec = load_bench(EMULATED_BENCH).spec
    lights = LightReader(equipped.io, equipped.file.instruments.io.inputs, equipped.clock)
    pack = Pack(equipped, spec, equipped.pcs, lights)
    conditioning = Conditioning(equipped, pack)
    assert conditioning.state is State.AS_FOUND
    assert conditioning.transition(soc=52.0) is State.RESTED
    # charged (from 50 %) until the SOC on CAN read 52 %: a whole percent, so within 1 % of it
    assert equipped.emulator.world.bms[0].report.soc_pct == pytest.approx(52.0, abs=1.0)
    assert equipped.dmm.voltage() < 1.0  # powered off again (0 V at the terminals), as a test finds it
    assert not equipped.psu.output_enabled
    assert conditioning.transition() is State.RESTED  # nothing asked: nothing done
