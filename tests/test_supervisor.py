"""The safety supervisor trips on every limit of PACK_SPEC.md 5 and the bench reaches its safe state.

Each test builds the emulated bench, puts a real excursion into the emulated *physics* (a cell
overcharged, a pack run flat, an e-load shorted, an instrument gone: what the rig's own
instruments would see, whatever the BMS says), and checks: the trip names the quantity, the
reading and the limit; the emulator's far ends show the safe state (PSU and e-load off, every
relay open, chamber in standby); every further command is refused, safe ones still pass.
"""
from __future__ import annotations

import pytest

from rig.bench import Bench
from rig.errors import LimitRefused, SafetyTrip
from rig.files.bench_file import EMULATED_BENCH, load_bench
from emulator.firmware.profile import load_firmware_profile
from rig.supervisor import Supervisor

from model_harness import modified


@pytest.fixture
def rig(request):
    """An emulated bench with its supervisor running, the pack powered on and on charge."""
    kwargs = dict(getattr(request, "param", {}))
    if kwargs.get("firmware") == "no-cut":
        profile = load_firmware_profile()
        for field, value in NO_CUT.items():
            profile = modified(profile, field, value)
        kwargs["firmware"] = profile
    bench = Bench(load_bench(EMULATED_BENCH), **kwargs)
    supervisor = Supervisor(bench)
    supervisor.start()
    bench.output("breaker", True)
    bench.output("power_button", True)
    bench.clock.sleep(2.0)
    bench.output("power_button", False)
    bench.clock.sleep(2.0)
    bench.chamber.run(30.0)
    bench.psu.apply(55.0, 5.0)
    bench.psu.output_on()
    yield bench, supervisor
    bench.close()


def assert_safe(bench: Bench) -> None:
    """What the emulated instruments show: every output off, every relay open, chamber standby."""
    plant = bench.emulator.world.plant
    assert not plant.psu.on, "PSU output still on"
    assert not plant.eload.on and not plant.eload.short, "e-load still sinking"
    assert not any(plant.io.outputs.values()), f"relays still closed: {plant.io.outputs}"
    assert not plant.chamber.running, "chamber still regulating"


def trip_of(bench: Bench, seconds: float = 10.0) -> SafetyTrip:
    with pytest.raises(SafetyTrip) as info:
        bench.clock.sleep(seconds)
    return info.value


def physics(bench: Bench):
    return bench.emulator.world.physics


def test_group_above_its_absolute_maximum(rig):
    bench, _ = rig
    physics(bench).set_group_soc(0, 6, 1.03)  # an overcharged group, ~3.9 V at its taps
    trip = trip_of(bench)
    assert "group 7 voltage (cell tap)" in trip.condition and trip.reading > bench.limits.group_max_v
    assert f"{bench.limits.group_max_v:g} V" in str(trip)
    assert_safe(bench)


def test_group_above_the_charge_limit_for_too_long(rig):
    bench, supervisor = rig
    physics(bench).set_group_soc(0, 3, 1.0165)  # between 3.65 and 3.76 V
    bench.clock.sleep(bench.limits.group_sustained_for_s - 5.0)
    assert bench.trip is None, "tripped before the sustained time"
    trip = trip_of(bench, 10.0)
    assert "group 4 voltage above" in trip.condition
    assert_safe(bench)


def test_group_below_its_minimum(rig):
    bench, _ = rig
    physics(bench).set_group_soc(0, 0, -0.025)  # run flat: below 2.0 V
    trip = trip_of(bench)
    assert "group 1 voltage (cell tap)" in trip.condition and trip.reading < bench.limits.group_min_v
    assert_safe(bench)


def test_pack_below_its_minimum_while_connected(rig):
    bench, _ = rig
    bench.psu.output_off()
    for group in range(16):  # every group ~2.3 V: none below 2.0 V, the pack below 38 V
        physics(bench).set_group_soc(0, group, -0.014)
    trip = trip_of(bench)
    assert "pack voltage (cell-tap sum) while connected" in trip.condition
    assert trip.reading < bench.limits.pack_min_v
    assert_safe(bench)


NO_CUT = {"short_circuit.enabled": False, **{f"protections.discharge_over_current.l{k}.enabled": False
                                             for k in (1, 2, 3)}}


@pytest.mark.parametrize("rig", [{"firmware": "no-cut"}], indirect=True)
def test_current_above_its_maximum(rig):
    """A BMS that never cuts a short and an e-load whose own over-current protection has failed:
    past the short-circuit window, the rig's own read-back sees the current and trips."""
    bench, supervisor = rig
    bench.psu.output_off()
    with supervisor.short_circuit_step():
        bench.eload.short(True)
        bench.eload.input_on()
        bench.eload.resource.write("CURR:PROT:STAT OFF")  # the load's OCP fails (behind the driver)
        assert bench.eload.resource.query("CURR:PROT:STAT?") == "0"  # done before time moves on
        trip = trip_of(bench)
    assert "current" in trip.condition and trip.reading > bench.limits.current_max_a
    assert_safe(bench)


def test_short_circuit_is_refused_outside_its_step(rig):
    """The e-load's short mode and the short-circuit contactor: refused outside the supervisor's
    short-circuit step (nothing sent), allowed inside it, refused again after it."""
    bench, supervisor = rig
    plant = bench.emulator.world.plant
    for close in (lambda: bench.eload.short(True), lambda: bench.output("short_circuit", True)):
        with pytest.raises(LimitRefused, match="short-circuit step"):
            close()
    assert not plant.eload.short and not plant.io.outputs["short_circuit"]
    with supervisor.short_circuit_step():
        bench.output("short_circuit", True)
        assert plant.io.outputs["short_circuit"]
        bench.output("short_circuit", False)
        bench.eload.short(True)
        bench.eload.short(False)
        with pytest.raises(RuntimeError, match="does not nest"):
            with supervisor.short_circuit_step():
                pass
    with pytest.raises(LimitRefused, match="short-circuit step"):
        bench.output("short_circuit", True)
    assert not plant.io.outputs["short_circuit"] and bench.trip is None


def test_case_temperature_above_its_maximum():
    with Bench(load_bench(EMULATED_BENCH), temperature_c=66.0) as bench:  # a pack soaked too hot
        Supervisor(bench).start()
        trip = trip_of(bench)
        assert "case temperature" in trip.condition and trip.reading > bench.limits.case_max_c
        assert_safe(bench)


def test_instrument_silent(rig):
    bench, _ = rig
    bench.emulator.servers["dmm"].stop()  # the DMM stops answering
    trip = trip_of(bench)
    assert "dmm silent" in trip.condition
    assert_safe(bench)


def test_every_command_refused_after_a_trip_but_safe_ones_pass(rig):
    bench, _ = rig
    physics(bench).set_group_soc(0, 6, 1.03)
    trip_of(bench)
    with pytest.raises(SafetyTrip, match="command refused"):
        bench.psu.apply(55.0, 5.0)
    with pytest.raises(SafetyTrip, match="command refused"):
        bench.output("breaker", True)
    assert bench.make_safe() == []  # the safe state is always allowed, and can run twice
    assert_safe(bench)


def test_no_trip_in_normal_charging(rig):
    bench, supervisor = rig
    bench.psu.apply(55.0, 40.0)
    bench.clock.sleep(120.0)
    assert bench.trip is None and supervisor.samples >= 60
    assert supervisor.last["psu_a"] == pytest.approx(40.0, abs=1.0)
