"""The pack's own detail frames 0x18A0nnaa against the rig (PACK_SPEC.md 6).

Every field of the detail frames at least once against what the rig measures with its own
instruments (cell taps, thermocouples, DMM, PSU/e-load read-backs) or what it commands (group
voltages and temperatures forced on the BMS's sense lines by fault insertion, currents it draws,
buttons it presses, failures it inserts):

- 03-06 group voltages 1-16 and 08 min/max group: in the frame and the order the spec gives;
- 07 T1-T4 and 08 T5 (power stage);
- 08 remaining capacity against SOC x capacity and the rig's own charge count;
- 01 state, relays, failure bits, SOC and parallel role through a pack's life: Standby, Run,
  Fault, powering off.
"""
from __future__ import annotations

import pytest

from testcases.kit.observe import frame_count, frames_since
from testcases.pair import failures_of, half_step, last_report_at, report_at

GROUP_FRAMES = ("DetailGroupVoltages1to4", "DetailGroupVoltages5to8", "DetailGroupVoltages9to12",
                "DetailGroupVoltages13to16")
#: V between two neighbouring groups forced for the order check: 16 of them stay far inside the
#: cell-difference alarm.
GROUP_STEP_V = 0.004
#: C between two neighbouring sensors forced for the order check (T1 lowest, T5 highest).
SENSOR_STEP_C = 2.0
#: s of a discharge at the continuous current the rig counts against the remaining capacity.
COUNT_FOR_S = 120.0


def _groups(report) -> list[float]:
    """Group 1..16 from the four group frames of a report, in the spec's order."""
    return [report[frame, 2][f"Group{4 * k + i + 1}Voltage"] for k, frame in enumerate(GROUP_FRAMES)
            for i in range(4)]


def _report(pcs, spec) -> dict:
    return report_at(pcs, spec, last_report_at(pcs), addresses=(2,))


@pytest.mark.requirement("can", manual="2.2")
def test_group_voltages_and_min_max_against_the_cell_taps(spec, bench, pack, pcs, faults, measure):
    """Frames 03-06 carry the 16 group voltages in order, 08 the lowest and highest: first against
    the rig's cell taps, then against distinct voltages forced on each group's sense line (so a
    swapped group or frame shows)."""
    req, tol, clock = spec.can.id, spec.tolerance.group_voltage_v, bench.clock
    pack.power_on()
    clock.sleep(spec.can.period_s)
    taps = pack.group_voltages()
    clock.sleep(spec.can.period_s)
    report = _report(pcs, spec)
    for g, (seen, tap) in enumerate(zip(_groups(report), taps), start=1):
        measure(f"Group{g}Voltage against cell tap {g}", seen, req=req, unit="V", nominal=tap, tolerance=tol)
    summary = report["DetailSummary", 2]
    measure("MinGroupVoltage against the lowest cell tap", summary["MinGroupVoltage"], req=req, unit="V",
            nominal=min(taps), tolerance=tol)
    measure("MaxGroupVoltage against the highest cell tap", summary["MaxGroupVoltage"], req=req, unit="V",
            nominal=max(taps), tolerance=tol)

    uv, ov = spec.protections.cell_under_voltage.l1.threshold, spec.protections.cell_over_voltage.l1.threshold
    base = (uv + ov) / 2 - spec.ratings.groups * GROUP_STEP_V / 2
    forced = [base + g * GROUP_STEP_V for g in range(spec.ratings.groups)]
    for g, volts in enumerate(forced):
        faults.force_group(0, g, volts)
    clock.sleep(2 * spec.can.period_s)
    report = _report(pcs, spec)
    for g, (seen, volts) in enumerate(zip(_groups(report), forced), start=1):
        measure(f"Group{g}Voltage against the {volts:.3f} V forced on its sense line", seen, req=req, unit="V",
                nominal=volts, tolerance=tol)
    summary = report["DetailSummary", 2]
    measure("MinGroupVoltage against the lowest forced", summary["MinGroupVoltage"], req=req, unit="V",
            nominal=min(forced), tolerance=tol)
    measure("MaxGroupVoltage against the highest forced", summary["MaxGroupVoltage"], req=req, unit="V",
            nominal=max(forced), tolerance=tol)


@pytest.mark.requirement("can", manual="2.2")
def test_temperatures_t1_to_t5_against_the_thermocouples_and_forced_values(spec, bench, pack, pcs, faults,
                                                                         measure):
    """Frame 07 carries T1-T4, 08 T5 (the power stage): at rest each reads the pack's temperature
    (the rig's case thermocouples); then each sensor forced to its own value (T1 lowest ... T5
    highest, below every alarm) reads it, in its own field."""
    req, tol, clock = spec.can.id, spec.tolerance.temperature_c, bench.clock
    pack.power_on()
    clock.sleep(spec.can.period_s)
    case = pack.case_temperatures()
    case_c = sum(case) / len(case)
    clock.sleep(spec.can.period_s)

    def readings(report) -> list[float]:
        return [report["DetailTemperatures", 2][f"Temperature{i}"] for i in range(1, 5)] + [
            report["DetailSummary", 2]["Temperature5PowerStage"]]

    for i, seen in enumerate(readings(_report(pcs, spec)), start=1):
        measure(f"T{i} at rest against the case thermocouples", seen, req=req, unit="C", nominal=case_c,
                tolerance=tol)
    forced = [case_c + (i + 1) * SENSOR_STEP_C for i in range(5)]
    for sensor, celsius in enumerate(forced):
        faults.force_temperature(0, sensor, celsius)
    clock.sleep(2 * spec.can.period_s)
    for i, (seen, celsius) in enumerate(zip(readings(_report(pcs, spec)), forced), start=1):
        measure(f"T{i} against the {celsius:.1f} C forced on it", seen, req=req, unit="C", nominal=celsius,
                tolerance=tol)


@pytest.mark.pack_state(soc=60)
@pytest.mark.requirement("can", manual="2.2")
def test_remaining_capacity_follows_soc_and_the_rigs_charge_count(spec, bench, pack, pcs, measure):
    """Frame 08's remaining capacity is SOC x the nominal capacity, and it falls by the charge the
    rig counts out of the pack (e-load read-back x time) during a discharge at the continuous
    current; frame 01's SOC falls with it."""
    req, clock, capacity = spec.can.id, bench.clock, spec.ratings.nominal_capacity_ah
    step = half_step("DetailSummary", "RemainingCapacity")
    pack.power_on()
    clock.sleep(2 * spec.can.period_s)
    before = _report(pcs, spec)
    remaining, soc = before["DetailSummary", 2]["RemainingCapacity"], before["DetailStatus", 2]["SOC"]
    measure("RemainingCapacity against the SOC the pack was conditioned to x capacity", remaining, req=req,
            unit="Ah", nominal=60 / 100 * capacity, tolerance=spec.tolerance.soc_pct / 100 * capacity)
    measure("RemainingCapacity against its own SOC x capacity", remaining, req=req, unit="Ah",
            nominal=soc / 100 * capacity, tolerance=capacity / 200 + step)
    pack.discharge(spec.ratings.continuous_discharge_current_a)
    counted, look, started = 0.0, spec.can.period_s, clock.now()
    while clock.now() < started + COUNT_FOR_S - 1e-9:
        amps = pack.current()
        clock.sleep(look)
        counted += -amps * look / 3600.0                       # Ah out, e-load read-back
    measure("DetailStatus.State while discharging", pcs.latest("DetailStatus")["State"], req=req, equals="Run")
    pack.stop()
    clock.sleep(2 * spec.can.period_s)
    after = _report(pcs, spec)
    fell = remaining - after["DetailSummary", 2]["RemainingCapacity"]
    measure(f"RemainingCapacity fall against the rig's count of {counted:.2f} Ah", fell, req=req, unit="Ah",
            nominal=counted, tolerance=spec.tolerance.current_a * COUNT_FOR_S / 3600.0 + 2 * step)
    measure("DetailStatus.SOC fall against the rig's count", soc - after["DetailStatus", 2]["SOC"], req=req,
            unit="%", nominal=counted / capacity * 100, tolerance=1.0)


@pytest.mark.requirement("power_on", manual="6.2, 6.3, 7.4")
def test_state_relays_and_failure_bits_through_a_packs_life(spec, bench, pack, pcs, faults, measure):
    """Frame 01 through one life, against the rig: Standby at rest with both main relays closed
    (the DMM sees the pack) and role Single; Run while the e-load draws current; Fault with the
    relays open (0 V on the DMM) and exactly the failure the rig inserted; PoweringOff while the
    POWER-button sequence runs; then silence."""
    req, clock, period = spec.power_on.id, bench.clock, spec.can.period_s
    off_v = spec.power_off.terminals_off_max_v
    pack.power_on()
    clock.sleep(period)
    status = pcs.latest("DetailStatus")
    measure("State at rest", status["State"], req=req, equals="Standby")
    measure("relays at rest (relay 1, relay 2, pre-charge)",
            (status["Relay1Closed"], status["Relay2Closed"], status["PrechargeClosed"]), req=req, equals=(1, 1, 0))
    measure("DMM with the relays reported closed", pack.terminal_voltage(), req=req, unit="V", at_least=off_v)
    measure("ParallelRole of a single pack", status["ParallelRole"], req=spec.parallel.id, equals="Single")
    measure("failure bits at rest", failures_of(status), req=req, equals=[])

    pack.discharge(spec.ratings.standard_charge_current_a / 4)
    clock.sleep(2 * period)
    measure("State while the e-load draws current", pcs.latest("DetailStatus")["State"], req=req, equals="Run")
    pack.stop()
    clock.sleep(2 * period)
    measure("State with the e-load off again", pcs.latest("DetailStatus")["State"], req=req, equals="Standby")

    failure = spec.failures.current_limitation
    faults.sensor_failure(0, "current_limitation")
    clock.sleep(2 * period)
    status = pcs.latest("DetailStatus")
    measure("State with a failure", status["State"], req=failure.id, equals="Fault")
    measure("failure bits set", failures_of(status), req=failure.id, equals=[failure.failure_bit])
    measure("main relays with a failure", (status["Relay1Closed"], status["Relay2Closed"]), req=failure.id,
            equals=(0, 0))
    measure("DMM with the relays reported open", pack.terminal_voltage(), req=failure.id, unit="V", at_most=off_v)

    po = spec.power_off
    mark = frame_count(pcs, "DetailStatus")
    pack.press_power(po.button_hold_s)
    clock.sleep(po.flicker_count * po.flicker_period_s + spec.tolerance.delay_late_s + 2 * period)
    states = [r.signals["State"] for r in frames_since(pcs, "DetailStatus", mark)]
    measure("State reported while the power-off sequence ran", "PoweringOff" in states, req=po.id, equals=True)
    measure("last State reported before the silence", states[-1] if states else None, req=po.id,
            equals="PoweringOff")
    quiet = frame_count(pcs, "DetailStatus")
    clock.sleep(2 * period)
    measure("DetailStatus frames once off", frame_count(pcs, "DetailStatus") - quiet, req=po.id, equals=0)
