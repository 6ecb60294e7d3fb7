"""The emulated BMS reproduces PACK_SPEC.md 2 (states, procedures), 3 (lights) and the failures of 4.

Each test is one row of the spec at the model level; a second test of the row, where it makes
sense, changes the firmware profile and checks the model follows it.
"""
from __future__ import annotations

import pytest

from model_harness import PackModel, modified
from emulator.firmware.profile import load_firmware_profile

PROFILE = load_firmware_profile()


def apply_volts(m: PackModel, volts: float) -> None:
    m.output("breaker", True)
    with m.plant.lock:
        m.plant.psu.voltage_set_v, m.plant.psu.current_set_a, m.plant.psu.on = volts, 1.0, True


# --- activation (manual 2.2) -------------------------------------------------------------------

@pytest.mark.parametrize("volts,wakes", [(44.4, False), (45.6, True), (52.0, True), (59.4, True),
                                          (60.6, False)])
def test_activation_window(volts, wakes):
    m = PackModel()
    apply_volts(m, volts)
    m.sleep(3.0)
    assert (m.bms.state != "Off") is wakes


def test_activation_window_follows_the_profile():
    m = PackModel(modified(PROFILE, "activation.min_v", 47.0))
    apply_volts(m, 46.0)
    m.sleep(3.0)
    assert m.bms.state == "Off"


def test_a_pack_turned_off_with_live_terminals_waits_for_them_to_go_dead():
    """Activation is a voltage *applied*: turned off by its button with the supply still on its
    terminals, the pack stays off; the supply off and on again wakes it."""
    m = PackModel()
    apply_volts(m, 52.0)
    m.sleep(3.0)
    assert m.bms.state != "Off"
    m.output("power_button", True)
    m.sleep(PROFILE.power_off.button_hold_s + 0.1)
    m.output("power_button", False)
    m.sleep(PROFILE.power_off.flicker_count * PROFILE.power_off.flicker_period_s + 3.0)
    assert m.bms.state == "Off"
    with m.plant.lock:
        m.plant.psu.on = False
    m.sleep(1.0)
    apply_volts(m, 52.0)
    m.sleep(3.0)
    assert m.bms.state != "Off"


# --- power on / off (manual 6.2, 6.3) --------------------------------------------------------

def test_button_held_two_seconds_powers_on_through_precharge():
    m = PackModel()
    m.output("breaker", True)
    m.output("power_button", True)
    m.sleep(PROFILE.power_on.button_hold_s + 0.2)
    assert m.bms.state == "Standby" and m.bms.relays == (False, True, True), "pre-charge first"
    m.output("power_button", False)
    m.sleep(PROFILE.power_on.precharge_s + 0.2)
    assert m.bms.relays == (True, True, False)
    assert m.lit("run") and not m.lit("alm")
    assert m.plant.dmm.measured_v > 50.0
    assert m.last("StateOfCharge"), "CAN reports started"


def test_short_press_is_ignored():
    m = PackModel()
    m.press(1.4)
    m.sleep(3.0)
    assert m.bms.state == "Off" and not m.lit("run")


def test_wake_line_powers_on():
    m = PackModel()
    m.output("wake", True)
    m.sleep(2.0)
    assert m.bms.state == "Standby"


def test_wake_ignored_by_a_build_without_it():
    m = PackModel(modified(PROFILE, "power_on.wake_enabled", False))
    m.output("wake", True)
    m.sleep(2.0)
    assert m.bms.state == "Off"


def test_power_on_with_a_failure_shows_alm_and_keeps_relays_open():
    m = PackModel()
    m.faults.sensor_failure(0, "voltage_frontend")
    m.press(2.0)
    m.sleep(2.0)
    assert m.bms.relays[:2] == (False, False)
    assert m.lit("alm") and not m.lit("run")


def test_power_off_flickers_five_lights_three_times_then_zero_volts():
    m = PackModel()
    m.power_on()
    m.press(2.0)
    edges = {name: 0 for name in ("run", "led1", "led2", "led3", "led4")}
    prev = {name: m.lit(name) for name in edges}
    for _ in range(100):
        m.sleep(0.05)
        for name in edges:
            now = m.lit(name)
            edges[name] += now and not prev[name]
            prev[name] = now
    assert all(n == PROFILE.power_off.flicker_count - 1 or n == PROFILE.power_off.flicker_count
               for n in edges.values()), edges
    m.sleep(2.0)
    assert m.bms.state == "Off"
    assert m.plant.dmm.measured_v < 1.0
    assert not any(m.lit(n) for n in ("run", "alm", "led1", "led2", "led3", "led4"))


def test_forced_power_off_refused_while_charging():
    m = PackModel()
    m.power_on()
    m.charge(20.0)
    m.sleep(2.0)
    m.press(2.5)
    m.sleep(5.0)
    assert m.bms.state == "Run"


# --- PCS communication (manual 6.3) ------------------------------------------------------------

def test_pcs_loss_alarms_at_30_s_and_powers_off_at_60_min_not_before():
    m = PackModel()
    m.power_on()
    m.heartbeat = False
    m.sleep(PROFILE.pcs_loss.alarm_after_s - 1.0)
    assert not m.lit("alm")
    m.sleep(2.0)
    assert m.lit("alm")
    assert m.last("ProtectionsAlarms")[PROFILE.pcs_loss.can_alarm] == 1
    m.sleep(PROFILE.pcs_loss.power_off_after_s - PROFILE.pcs_loss.alarm_after_s - 5.0)
    assert m.bms.state == "Standby"
    m.sleep(10.0)
    assert m.bms.state == "Off"


def test_heartbeat_back_before_the_hour_keeps_the_pack_on():
    m = PackModel()
    m.power_on()
    m.heartbeat = False
    m.sleep(1800.0)
    m.heartbeat = True
    m.sleep(3600.0)
    assert m.bms.state == "Standby" and not m.lit("alm")


# --- failures (PACK_SPEC.md 4) -----------------------------------------------------------------

FAILURE_CASES = {
    "relay1": lambda m: m.faults.relay_stuck(0, "relay1", False),
    "relay2": lambda m: m.faults.relay_stuck(0, "relay2", False),
    "voltage_frontend": lambda m: m.faults.sensor_failure(0, "voltage_frontend"),
    "temperature_sampling": lambda m: m.faults.temperature_sensor(0, 2, "open"),
    "current_sampling": lambda m: m.faults.sensor_failure(0, "current_sampling"),
    "current_limitation": lambda m: m.faults.sensor_failure(0, "current_limitation"),
}


@pytest.mark.parametrize("name", sorted(FAILURE_CASES))
def test_failure_opens_relays_alm_on_and_latches_until_power_cycle(name):
    m = PackModel()
    m.power_on()
    FAILURE_CASES[name](m)
    m.sleep(2.0)
    bit = getattr(PROFILE.failures, name).failure_bit
    assert m.last("DetailStatus", 2)[bit] == 1
    assert m.last("ProtectionsAlarms")[PROFILE.failure_response.can_protection] == 1
    assert m.bms.relays[:2] == (False, False) and m.lit("alm")
    m.faults.clear()
    m.sleep(5.0)
    assert m.bms.state == "Fault", "a failure is latched until the power cycle"
    m.press(2.0)       # power off ...
    m.sleep(5.0)
    m.press(2.0)       # ... and on again
    m.sleep(2.0)
    assert m.bms.state == "Standby" and not m.lit("alm")


@pytest.mark.parametrize("name", sorted(FAILURE_CASES))
def test_failure_missed_by_a_build_that_does_not_detect_it(name):
    m = PackModel(modified(PROFILE, f"failures.{name}.detect", False))
    m.power_on()
    FAILURE_CASES[name](m)
    m.sleep(2.0)
    assert m.last("DetailStatus", 2)[getattr(PROFILE.failures, name).failure_bit] == 0


def test_precharge_failure():
    m = PackModel()
    m.faults.precharge_failure(0)
    m.press(2.0)
    m.sleep(PROFILE.power_on.precharge_timeout_s + 1.0)
    assert m.last("DetailStatus", 2)[PROFILE.failures.precharge.failure_bit] == 1
    assert m.bms.relays[:2] == (False, False) and m.lit("alm")


def test_zero_volt_cell_powers_the_pack_off():
    m = PackModel()
    m.power_on()
    m.faults.force_group(0, 9, PROFILE.zero_volt_cell.threshold_v - 0.1)
    m.sleep(1.0)
    assert m.last("DetailStatus", 2)[PROFILE.zero_volt_cell.failure_bit] == 1
    m.sleep(5.0)
    assert m.bms.state == "Off"


def test_short_circuit_cuts_within_its_delay_and_latches():
    m = PackModel()
    m.power_on()
    m.output("short_circuit", True)
    m.sleep(0.01)
    assert m.bms.relays[:2] == (False, False)
    m.output("short_circuit", False)
    m.sleep(2.0)
    assert m.last("DetailStatus", 2)[PROFILE.short_circuit.failure_bit] == 1
    assert m.last("ProtectionsAlarms")[PROFILE.short_circuit.can_protection] == 1
    m.sleep(60.0)
    assert m.bms.state == "Fault", "latched until power cycle"


def test_short_circuit_protection_missing_keeps_the_current_flowing():
    m = PackModel(modified(PROFILE, "short_circuit.enabled", False))
    m.power_on()
    m.output("short_circuit", True)
    m.sleep(0.01)
    assert m.bms.relays[:2] == (True, True)


# --- lights and SOC (manual 6.1) -----------------------------------------------------------

@pytest.mark.parametrize("soc,expected", [(10, [1.0, "off", "off", "off"]), (30, ["on", "off", "off", "off"]),
                                          (50, ["on", "on", "off", "off"]), (70, ["on", "on", "on", "off"]),
                                          (90, ["on", "on", "on", "on"])])
def test_idle_soc_lights(soc, expected):
    m = PackModel(soc_pct=soc)
    m.power_on()
    for led, want in zip(("led1", "led2", "led3", "led4"), expected):
        periods = m.light_periods(led, window_s=4.5)
        if want == "on":
            assert m.lit(led) and not periods, led
        elif want == "off":
            assert not m.lit(led) and not periods, led
        else:
            assert periods and all(abs(p - want) < 0.06 for p in periods), (led, periods)


@pytest.mark.parametrize("soc,expected", [(20, [1.0, "off", "off", "off"]), (40, [2.0, 1.0, "off", "off"]),
                                          (60, [3.0, 2.0, 1.0, "off"]), (85, [4.0, 3.0, 2.0, 1.0])])
def test_charging_soc_lights(soc, expected):
    m = PackModel(soc_pct=soc)
    m.power_on()
    m.charge(10.0)
    m.sleep(1.0)
    for led, want in zip(("led1", "led2", "led3", "led4"), expected):
        periods = m.light_periods(led, window_s=9.0)
        if want == "off":
            assert not m.lit(led) and not periods, led
        else:
            assert periods and all(abs(p - want) < 0.06 for p in periods), (led, periods)


def test_low_soc_flickers_alm():
    m = PackModel(soc_pct=10)
    m.power_on()
    periods = m.light_periods("alm", window_s=4.0)
    assert periods and all(abs(p - PROFILE.lights.alm_flicker_period_s) < 0.06 for p in periods)


def test_light_band_follows_the_profile():
    m = PackModel(modified(PROFILE, "lights.discharging.2.leds", ("on", "off", "off", "off")), soc_pct=50)
    m.power_on()
    assert m.lit("led1") and not m.lit("led2")


def test_soc_recalibrates_at_full_and_soh_is_learned_on_the_discharge_that_follows():
    """Coulomb counting, 100 % at the end of a full charge (tail current below the limit), and the
    capacity counted out from full to the cell under-voltage alarm as SOH."""
    m = PackModel(soc_pct=97.0)
    m.power_on()
    m.bms.report.soc_pct = 90.0  # a counting error the full charge must correct
    m.charge(64.0, volts=PROFILE.can.charge_voltage_limit_v)
    for _ in range(120):
        m.sleep(60.0)
        if m.bms.report.soc_pct == 100.0:
            break
    assert m.bms.report.soc_pct == 100.0 and m.plant.psu.measured_a < PROFILE.soc.full_tail_current_a
    m.charge(0.0)
    m.discharge(85.0)
    for _ in range(200):
        m.sleep(60.0)
        if m.bms.report.levels["cell_under_voltage"]:
            break
    m.discharge(0.0)
    capacity = float(m.world.physics.capacity_ah[0].min())
    assert m.bms.report.soh_pct == pytest.approx(capacity / m.bms.capacity_ah * 100.0, abs=8.0)
    assert m.bms.report.soh_pct < 100.0
