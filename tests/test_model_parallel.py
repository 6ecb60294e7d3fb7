"""Two emulated packs in parallel (manual 5, 6.2; PACK_SPEC.md 2 and 7), at the model level.

The packs sit on one DC bus and talk over the emulated RS485 line; these tests press their
POWER buttons through the plant and read the BMSs and the CAN report directly.
"""
from __future__ import annotations

import can
import pytest

from model_harness import modified
from rig.clock import VirtualClock
from emulator.emulated_bench import EmulatedBench
from rig.files.bench_file import load_bench
from emulator.firmware.profile import load_firmware_profile
from rig.protocol.can_frames import decode

PROFILE = load_firmware_profile()


@pytest.fixture
def pair(request):
    profile = getattr(request, "param", PROFILE)
    bench = EmulatedBench(load_bench().file, profile, packs=2)
    bench.listener = can.Bus(**bench.endpoints()["can"])  # the rig's end of the virtual CAN channel
    clock = VirtualClock()
    clock.attach(bench)
    clock.every(1.0, lambda: bench.world.bms[0].on_pcs_frame(bench.world.t_ns), "pcs")
    yield bench, clock
    bench.listener.shutdown()
    bench.close()


def press(bench, clock, *buttons, seconds=2.0):
    with bench.world.plant.lock:
        bench.world.plant.io.outputs.update({b: True for b in buttons} | {"breaker": True})
    clock.sleep(seconds)
    with bench.world.plant.lock:
        bench.world.plant.io.outputs.update({b: False for b in buttons})


def frames(bench, name, address=None):
    received = []
    while (msg := bench.listener.recv(0)) is not None:
        received.append(decode(msg))
    found = [d for d in received if d.name == name and d.pack_address == address]
    assert found, f"no {name} frame"
    return found[-1].signals


def test_both_on_within_the_window_join_and_report_two_modules(pair):
    bench, clock = pair
    press(bench, clock, "power_button", "pack2_power_button")
    # the RUN lights of both packs flicker five times (the first may already be lit), then stay on
    rising = {"run": 0, "pack2_run": 0}
    prev = {k: bench.world.light_at(k, bench.world.t_ns) for k in rising}
    for _ in range(160):
        clock.sleep(0.05)
        for name in rising:
            lit = bench.world.light_at(name, bench.world.t_ns)
            rising[name] += lit and not prev[name]
            prev[name] = lit
    count = PROFILE.parallel.success_flicker_count
    assert all(count - 1 <= n <= count for n in rising.values()), rising
    assert all(bench.world.light_at(name, bench.world.t_ns) for name in rising), "RUN stays on after"
    master, slave = bench.world.bms
    assert master.relays[:2] == (True, True) and slave.relays[:2] == (True, True)
    assert (master.parallel_role, slave.parallel_role) == ("Master", "Slave")
    assert frames(bench, "ProtectionsAlarms")["ModuleCount"] == 2


def test_second_pack_too_late_is_a_parallel_failure(pair):
    bench, clock = pair
    press(bench, clock, "power_button")
    clock.sleep(PROFILE.parallel.power_on_window_s + 2.0)
    master = bench.world.bms[0]
    assert PROFILE.failures.parallel_connection.failure_bit in master.report.failures
    clock.sleep(5.0)
    assert master.state == "Off"


def test_voltage_difference_beyond_the_limit_is_a_parallel_failure(pair):
    bench, clock = pair
    bench.faults.set_soc(1, 100.0)  # pack 2 full (54.3 V), pack 1 at 50 % (52.2 V): 2 V apart
    press(bench, clock, "power_button", "pack2_power_button")
    clock.sleep(2.0)
    for bms in bench.world.bms:
        assert PROFILE.failures.parallel_connection.failure_bit in bms.report.failures
        assert bms.relays[:2] == (False, False), "packs that far apart must never connect"


@pytest.mark.parametrize("pair", [modified(PROFILE, "parallel.max_voltage_difference_v", 10.0)], indirect=True)
def test_a_build_that_ignores_the_voltage_rule_connects_them(pair):
    """...and the 2 V between them drives a circulating current far above the charge limit."""
    bench, clock = pair
    bench.faults.set_soc(1, 100.0)
    press(bench, clock, "power_button", "pack2_power_button")
    peak = 0.0
    for _ in range(20):
        clock.sleep(0.1)
        if all(b.relays[:2] == (True, True) for b in bench.world.bms):
            peak = max(peak, abs(bench.world._solution.pack_a[0]))
    assert peak > PROFILE.protections.charge_over_current.l3.threshold


def test_rs485_cut_is_a_link_failure_and_powers_off(pair):
    bench, clock = pair
    press(bench, clock, "power_button", "pack2_power_button")
    clock.sleep(3.0)
    bench.faults.rs485_cut(True)
    clock.sleep(PROFILE.parallel.rs485_missed_polls * PROFILE.parallel.rs485_poll_period_s + 1.0)
    master = bench.world.bms[0]
    assert PROFILE.failures.parallel_connection.failure_bit in master.report.failures
    clock.sleep(5.0)
    assert master.state == "Off"


@pytest.mark.parametrize("turned", [0, 1], ids=["master-off", "slave-off"])
def test_a_partner_turned_off_is_noticed_after_three_poll_periods(pair, turned):
    """The partner of a pack turned off by its button fails by the silence on the line (three
    missed polls, or three poll periods unpolled), never at once; the pack turned off stays off
    although its partner keeps the common bus live until then."""
    bench, clock = pair
    press(bench, clock, "power_button", "pack2_power_button")
    clock.sleep(3.0)
    button = ("power_button", "pack2_power_button")[turned]
    press(bench, clock, button, seconds=PROFILE.power_off.button_hold_s)
    off, partner = bench.world.bms[turned], bench.world.bms[1 - turned]
    clock.wait_for(lambda: off.state, timeout=5.0, poll=0.05, until=lambda s: s == "Off")
    bit = PROFILE.failures.parallel_connection.failure_bit
    polls = PROFILE.parallel.rs485_missed_polls * PROFILE.parallel.rs485_poll_period_s
    clock.sleep(polls - PROFILE.parallel.rs485_poll_period_s - 0.05)
    assert bit not in partner.report.failures and partner.state == "Standby"
    clock.sleep(PROFILE.parallel.rs485_poll_period_s + 0.2)
    assert bit in partner.report.failures
    clock.sleep(5.0)
    assert partner.state == "Off" and off.state == "Off"
