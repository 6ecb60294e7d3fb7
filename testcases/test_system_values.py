"""System values of two joined packs on CAN (PACK_SPEC.md 6; manual 5, 6.2).

With two packs the pack on the CAN bus reports the *system*: the rules are the pack spec's
``[can]`` (mean voltage, summed current, mean of every cell sensor of both packs, summed current
limits, mean SOC and SOH, two modules). Two packs that are alike cannot tell a sum from a mean or
the system from the master alone, so the packs are made deliberately unequal first:

- different SOC (fault insertion conditions pack 2 to another SOC, within the 1 V the manual
  allows for joining): they share a load unequally and report different SOC;
- different temperatures: pack 2's cell sensors read warmer values the rig commands;
- different pack voltages as the BMSs measure them: pack 2's sense lines read a commanded offset
  above its cells (the rig's cell taps still read the cells).

Each value is then checked against the rig's instruments where the rig can measure it (DMM on the
common bus, PSU/e-load read-backs, each pack's cell taps and thermocouples) plus what it commanded,
and against the two packs' own detail frames.
"""
from __future__ import annotations

import pytest

from rig.pytest_plugin import spec_for  # the pack spec of this session, also at collection time
from testcases.pair import ADDRESS, failures_of, half_step, join, last_report_at, levels_of, own_limits, report_at

pytestmark = pytest.mark.needs(parallel_packs=2)

#: C above pack 2's own temperature that its cell sensors are made to read, one per sensor: below
#: every over-temperature alarm from room temperature.
WARMER_C = (6.0, 8.0, 10.0, 12.0)
#: V added to every group reading of pack 2 (sense lines): its measured voltage 16 x this higher,
#: far from every voltage alarm and equal on every group (no cell difference).
SENSE_OFFSET_V = 0.03


def unequal_socs(spec) -> tuple[float, float]:
    """% SOC of pack 1 and pack 2 (stimulus): the middles of the discharge-light band that holds
    half charge and of the band above it, so each pack's SOC is away from every band edge and
    their mean is neither's; the test measures that they are inside the spec's voltage difference
    for joining."""
    bands = spec.lights.discharging
    half = next(i for i, b in enumerate(bands) if b.soc[0] <= 50 <= b.soc[1])
    return tuple((b.soc[0] + b.soc[1]) / 2 for b in bands[half:half + 2])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Pack 1 starts at the first SOC of :func:`unequal_socs`, read from the pack spec."""
    if "socs" in metafunc.fixturenames:
        socs = unequal_socs(spec_for(metafunc.config))
        metafunc.parametrize("socs", [pytest.param(socs, marks=pytest.mark.pack_state(soc=socs[0]),
                                                   id=f"soc-{socs[0]:g}-{socs[1]:g}pct")])


def _sensor_index(name: str) -> int:
    return int(name.removeprefix("T")) - 1


def _check_system(measure, spec, report, taps, *, case_c, forced, offset_v, rig_current, socs, how) -> None:
    """One report against the rig's view: ``taps`` and ``case_c`` per pack number; ``forced``:
    pack 2's commanded sensor readings; ``rig_current`` the PSU/e-load read-back (+ = charge);
    ``socs`` the two packs' conditioned SOC."""
    can, tol, req = spec.can, spec.tolerance, spec.can.id
    groups = spec.ratings.groups
    values = report["PackMeasurements"]
    # voltage: each pack measures the sum of its groups; pack 2's read the commanded offset high
    measured = {1: sum(taps[1]), 2: sum(taps[2]) + groups * offset_v}
    measure(f"0x356 Voltage {how} against the mean of the packs' cell-tap sums (pack 2 + its sense offset)",
            values["Voltage"], req=req, unit="V", nominal=sum(measured.values()) / 2, tolerance=tol.pack_voltage_v)
    detail_v = [sum(report[f"DetailGroupVoltages{k}", a][f"Group{g}Voltage"]
                    for k, first in (("1to4", 1), ("5to8", 5), ("9to12", 9), ("13to16", 13))
                    for g in range(first, first + 4)) for a in ADDRESS.values()]
    resolution = half_step("PackMeasurements", "Voltage") + groups * half_step("DetailGroupVoltages1to4",
                                                                               "Group1Voltage")
    measure(f"0x356 Voltage {how} against the mean of the packs' detail group sums", values["Voltage"], req=req,
            unit="V", nominal=sum(detail_v) / 2, tolerance=resolution)
    # current: one rig read-back on the common bus, each pack's reading within the tolerance
    measure(f"0x356 Current {how} against the rig's read-back (both packs)", values["Current"], req=req,
            unit="A", nominal=rig_current, tolerance=2 * tol.current_a)
    # temperature: pack 1's cell sensors read its own temperature (thermocouples), pack 2's what was forced
    sensors = [_sensor_index(s) for s in can.temperature_sensors]
    expected = [sum(case_c[1]) / len(case_c[1])] * len(sensors) + [forced[i] for i in sensors]
    measure(f"0x356 Temperature {how} against the mean of both packs' cell sensors (thermocouples, forced)",
            values["Temperature"], req=req, unit="C", nominal=sum(expected) / len(expected),
            tolerance=tol.temperature_c)
    detail_t = [report["DetailTemperatures", a][f"Temperature{i + 1}"] for a in ADDRESS.values() for i in sensors]
    measure(f"0x356 Temperature {how} against the mean of both packs' detail cell temperatures",
            values["Temperature"], req=req, unit="C", nominal=sum(detail_t) / len(detail_t),
            tolerance=2 * half_step("PackMeasurements", "Temperature"))
    # SOC and SOH: the mean of the packs'
    own_socs = [report["DetailStatus", a]["SOC"] for a in ADDRESS.values()]
    measure(f"0x355 SOC {how} against the mean of the packs' own SOC", report["StateOfCharge"]["SOC"],
            req=req, unit="%", nominal=sum(own_socs) / 2, tolerance=1.0)
    measure(f"0x355 SOC {how} against the SOCs the rig conditioned", report["StateOfCharge"]["SOC"], req=req,
            unit="%", nominal=sum(socs) / 2, tolerance=tol.soc_pct)
    # limits: the sum of each pack's own; enable bits set when both packs' are
    own = [own_limits(spec, levels_of(report["DetailProtection", a]), failures_of(report["DetailStatus", a]),
                      bool(report["DetailStatus", a]["Relay1Closed"] and report["DetailStatus", a]["Relay2Closed"]))
           for a in ADDRESS.values()]
    limits = report["ChargeLimits"]
    for direction, name in (("charge", "ChargeCurrentLimit"), ("discharge", "DischargeCurrentLimit")):
        measure(f"0x351 {name} {how} (sum of each pack's own)", limits[name], req=req, unit="A",
                nominal=sum(o[direction] for o in own), tolerance=half_step("ChargeLimits", name))
    for name, value in (("ChargeVoltageLimit", can.charge_voltage_limit_v),
                        ("DischargeVoltageLimit", can.discharge_voltage_limit_v)):
        measure(f"0x351 {name} {how}", limits[name], req=req, unit="V", nominal=value,
                tolerance=half_step("ChargeLimits", name))
    measure(f"0x359 ModuleCount {how}", report["ProtectionsAlarms"]["ModuleCount"], req=req, equals=2)


@pytest.mark.requirement("can", manual="5, 6.2")
def test_system_values_of_two_unequal_packs(socs, spec, bench, pack, pack2, pcs, faults, measure):
    """Two packs at different SOC, temperatures and measured voltages, joined, then discharged and
    charged: 0x356 reports the mean voltage, the total current and the mean of every cell sensor,
    0x355 the mean SOC, 0x351 the summed limits, 0x359 two modules; each against the rig."""
    clock, period = bench.clock, spec.can.period_s
    faults.set_soc(1, socs[1])                         # conditioned, as a bench charges it
    apart_v = abs(sum(pack.group_voltages()) - sum(pack2.group_voltages()))
    measure("the two packs' voltage difference before joining (cell taps)", apart_v, req=spec.parallel.id,
            unit="V", at_most=spec.parallel.max_voltage_difference_v)
    join(bench, pack, pack2, pcs, spec=spec)
    own_c = sum(pack2.case_temperatures()) / len(pack2.case_temperatures())
    forced = {i: own_c + warmer for i, warmer in enumerate(WARMER_C)}
    for sensor, celsius in forced.items():
        faults.force_temperature(1, sensor, celsius)
    for group in range(spec.ratings.groups):
        faults.offset_group(1, group, SENSE_OFFSET_V)
    for how, start in (("discharging", pack.discharge), ("charging", pack.charge)):
        start(spec.ratings.standard_charge_current_a / 2)
        clock.sleep(3 * period)
        rig_current = pack.current()
        taps = {1: pack.group_voltages(), 2: pack2.group_voltages()}
        case_c = {1: pack.case_temperatures(), 2: pack2.case_temperatures()}
        clock.sleep(period)  # the report after the rig's readings: the same instant within a period
        report = report_at(pcs, spec, last_report_at(pcs))
        _check_system(measure, spec, report, taps, case_c=case_c, forced=forced, offset_v=SENSE_OFFSET_V,
                      rig_current=rig_current, socs=socs, how=how)
