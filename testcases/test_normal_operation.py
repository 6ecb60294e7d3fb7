"""Normal operation within the ratings (manual 2.4; PACK_SPEC.md 1 and 6).

A pack that conforms charges at its standard current and discharges at its continuous current
for as long as its energy lasts without any alarm, and delivers its peak current for the rated
time without a cut; meanwhile it reports on CAN, on schedule, values that agree with what the
rig measures itself (DMM on the terminals, PSU/e-load read-backs, cell taps, case
thermocouples).

The ratings (PACK_SPEC.md 1) carry no requirement id of their own: a rating run checks that the
protection row the current would trip stays quiet, so it names that row's id; the CAN checks
name ``spec.can.id``.
"""
from __future__ import annotations


import pytest

from rig.protocol import can_frames
from testcases.kit.observe import check_periods, half_step

#: How long each rating is held, s of clock time: a few minutes, many times the longest
#: protection delay at those currents (the L1 over-current alarm's 10 s) and long enough for the
#: pack to start warming; cheap on the emulator (virtual time), minutes on a real bench.
RATING_RUN_S = 180.0

#: Current readings the rig takes across the peak pulse.
PULSE_READS = 30

#: 0x359 signals that are alarm or protection bits (ModuleCount and the 'PN' marker are not).
ALARM_BITS = tuple(s.name for s in can_frames.DATABASE.get_message_by_name("ProtectionsAlarms").signals
                   if s.name.startswith(("Protection", "Alarm")))


def _hold(clock, pack, seconds: float, every: float) -> list[float]:
    """Keep the present current for ``seconds``, reading the rig's current every ``every`` s."""
    end, currents = clock.now() + seconds, []
    while clock.now() < end - 1e-9:
        clock.sleep(min(every, end - clock.now()))
        currents.append(pack.current())
    return currents


def _marks(pcs) -> dict[str, int]:
    """How many of each frame :func:`_check_quiet` reads have arrived so far (frame timestamps are
    the interface's, not the rig clock's: "since now" is counted in frames)."""
    return {f: len(pcs.received(f)) for f in ("ProtectionsAlarms", "DetailProtection", "DetailStatus",
                                                 "ChargeLimits")}


def _check_quiet(measure, req: str, spec, pcs, *, marks: dict[str, int], direction: str) -> None:
    """No 0x359 alarm or protection bit, no protection level, the pack in Run with its relays
    closed and its normal current limit in every frame since the ``marks``."""
    def since(frame):
        return pcs.received(frame)[marks[frame]:]

    with measure.together():  # each frame kind on its own
        alarms = since("ProtectionsAlarms")
        measure("0x359 frames during the run", len(alarms), req=req, at_least=2)
        set_bits = sorted({b for r in alarms for b in ALARM_BITS if r.signals[b]})
        measure("0x359 alarm and protection bits set during the run", set_bits, req=req, equals=[])
        levels = sorted({f"{k}={v}" for r in since("DetailProtection")
                         for k, v in r.signals.items() if v != "None"})
        measure("DetailProtection levels raised during the run", levels, req=req, equals=[])
        status = since("DetailStatus")
        measure("DetailStatus.State during the run", sorted({r.signals["State"] for r in status}), req=req,
                equals=["Run"])
        open_frames = sum(1 for r in status if not (r.signals["Relay1Closed"] and r.signals["Relay2Closed"]))
        measure("DetailStatus frames with a main relay open during the run", open_frames, req=req, equals=0)
        limit_signal, limit = (("ChargeCurrentLimit", spec.can.charge_current_limit_a) if direction == "charge"
                               else ("DischargeCurrentLimit", spec.can.discharge_current_limit_a))
        limits = [r.signals[limit_signal] for r in since("ChargeLimits")]
        tol = half_step("ChargeLimits", limit_signal)
        measure(f"lowest 0x351 {limit_signal} during the run", min(limits), req=req, unit="A", nominal=limit,
                tolerance=tol)


@pytest.mark.requirement("protections.charge_over_current", manual="2.4")
def test_standard_charge_current_runs_without_alarm(spec, bench, pack, pcs, measure):
    """Manual 2.4: standard charging current 64 A (25 C): held for a few minutes, no alarm,
    no protection, no cut; the rig's current stays at the set-point throughout."""
    req, tol, clock = spec.protections.charge_over_current.id, spec.tolerance.current_a, bench.clock
    amps = spec.ratings.standard_charge_current_a
    pack.power_on()
    pack.charge(amps)
    clock.sleep(2 * spec.can.period_s)
    marks = _marks(pcs)
    currents = _hold(clock, pack, RATING_RUN_S, spec.can.period_s)
    measure("lowest charge current (PSU read-back) during the run", min(currents), req=req, unit="A",
            nominal=amps, tolerance=tol)
    measure("highest charge current (PSU read-back) during the run", max(currents), req=req, unit="A",
            nominal=amps, tolerance=tol)
    _check_quiet(measure, req, spec, pcs, marks=marks, direction="charge")


@pytest.mark.requirement("protections.discharge_over_current", manual="2.4")
def test_continuous_discharge_current_runs_without_alarm(spec, bench, pack, pcs, measure):
    """Manual 2.4: continual max discharging current 85 A (25 C): held for a few minutes, no
    alarm, no protection, no cut; the rig's current stays at the set-point throughout."""
    req, tol, clock = spec.protections.discharge_over_current.id, spec.tolerance.current_a, bench.clock
    amps = spec.ratings.continuous_discharge_current_a
    pack.power_on()
    pack.discharge(amps)
    clock.sleep(2 * spec.can.period_s)
    marks = _marks(pcs)
    currents = _hold(clock, pack, RATING_RUN_S, spec.can.period_s)
    measure("lowest discharge current (e-load read-back) during the run", -max(currents), req=req, unit="A",
            nominal=amps, tolerance=tol)
    measure("highest discharge current (e-load read-back) during the run", -min(currents), req=req,
            unit="A", nominal=amps, tolerance=tol)
    _check_quiet(measure, req, spec, pcs, marks=marks, direction="discharge")


@pytest.mark.requirement("protections.discharge_over_current", manual="2.4")
def test_peak_discharge_current_for_its_rated_time(spec, bench, pack, pcs, measure):
    """Manual 2.4: max discharging current 96 A for 3 s (25 C): the pack delivers the whole pulse
    without a cut (its over-current protection may act no earlier than its delay, PACK_SPEC.md 4),
    and is still on and closed afterwards."""
    r, req, clock = spec.ratings, spec.protections.discharge_over_current.id, bench.clock
    tol = spec.tolerance.current_a
    pack.power_on()
    clock.sleep(2 * spec.can.period_s)
    first = {f: len(pcs.received(f)) for f in ("DetailProtection", "ProtectionsAlarms")}
    pack.pulse(r.peak_discharge_current_a, r.peak_discharge_duration_s)
    started = clock.now()
    step = r.peak_discharge_duration_s / PULSE_READS
    currents = []
    # read through the pulse, stopping one read short of its end (a read there may see either side)
    while clock.now() + step < started + r.peak_discharge_duration_s - 1e-9:
        clock.sleep(step)
        currents.append(-pack.current())
    clock.sleep(started + r.peak_discharge_duration_s - clock.now())
    pack.stop()   # the pulse is over (a load that holds its last list step is stopped here)
    last = {f: len(pcs.received(f)) for f in first}   # the frames sent while it lasted
    measure("pulse current readings", len(currents), req=req, at_least=2)
    measure("lowest current during the peak pulse (e-load read-back)", min(currents), req=req, unit="A",
            nominal=r.peak_discharge_current_a, tolerance=tol)
    clock.sleep(2 * spec.can.period_s)
    # nothing may trip while the pulse lasts: no L2/L3 level, no 0x359 protection bit in a frame
    # sent during it (one sent after its end may show a trip due at the very end)
    during = {f: pcs.received(f)[first[f]:last[f]] for f in first}
    with measure.together():
        measure("DetailProtection frames during the pulse", len(during["DetailProtection"]), req=req, at_least=1)
        tripped = sorted({f"{k}={v}" for rc in during["DetailProtection"] for k, v in rc.signals.items()
                          if v in ("L2", "L3")})
        measure("protection levels L2/L3 during the pulse", tripped, req=req, equals=[])
        bits = sorted({b for rc in during["ProtectionsAlarms"]
                       for b in ALARM_BITS if b.startswith("Protection") and rc.signals[b]})
        measure("0x359 protection bits during the pulse", bits, req=req, equals=[])
        status = pcs.latest("DetailStatus")
        measure("DetailStatus.State after the pulse", status["State"], req=req, equals="Standby")
        measure("DetailStatus.Relay1Closed after the pulse", status["Relay1Closed"], req=req, equals=1)
        measure("DetailStatus.Relay2Closed after the pulse", status["Relay2Closed"], req=req, equals=1)


@pytest.mark.requirement("can", manual="2.2")
def test_can_schedule_ids_and_dlc(spec, bench, pack, pcs, measure):
    """PACK_SPEC.md 6: every Pylon frame of the spec (0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E)
    and the pack's own detail frames arrive every 1 s, each with its ID, ID width and DLC as in
    pack.dbc; no frame breaks the protocol."""
    can, req, clock = spec.can, spec.can.id, bench.clock
    seen: dict[tuple[int, bool], set[int]] = {}
    pcs.listeners.append(lambda msg: seen.setdefault((msg.arbitration_id, msg.is_extended_id), set())
                         .add(msg.dlc))
    pack.power_on()
    clock.sleep(10 * can.period_s + can.period_tolerance_s)
    mine = [f for f in can_frames.FRAMES if f.sender == "BMS" and f.pack_address in (None, 2)]
    expected = [f for f in mine if f.pack_address is not None or f.name in can.frames]
    measure("Pylon frames the spec lists that pack.dbc defines", sorted(f.name for f in expected
                                                                          if f.pack_address is None),
            req=req, equals=sorted(can.frames))
    with measure.together():  # every frame on its own
        for f in expected:
            where = f"{f.name} (0x{f.frame_id:X})"
            measure(f"{where} DLCs seen", sorted(seen.get((f.frame_id, f.is_extended_id), ())), req=req,
                    equals=[f.dlc])
            check_periods(measure, req, spec, pcs, frame=f.name, pack_address=f.pack_address, label=where)
        measure("frames that broke the protocol (unknown ID or wrong DLC)", pcs.bad_frames, req=req, equals=0)


@pytest.mark.requirement("can", manual="2.2")
def test_manufacturer_name(spec, bench, pack, pcs, measure):
    """PACK_SPEC.md 6: 0x35E carries the manufacturer name inverters recognise ("PYLON   ")."""
    pack.power_on()
    bench.clock.sleep(2 * spec.can.period_s)
    measure("0x35E ManufacturerName", pcs.signal("ManufacturerName"), req=spec.can.id,
            equals=spec.can.manufacturer)


@pytest.mark.requirement("can", manual="2.2")
def test_normal_charge_and_discharge_limits(spec, bench, pack, pcs, measure):
    """PACK_SPEC.md 6: with nothing wrong, 0x351 asks for the normal limits (56.0 V, 64 A, 85 A,
    46.4 V) and 0x35C enables charge and discharge."""
    can, req = spec.can, spec.can.id
    pack.power_on()
    bench.clock.sleep(2 * can.period_s)
    with measure.together():
        limits = pcs.latest("ChargeLimits")
        for signal, value, unit in (("ChargeVoltageLimit", can.charge_voltage_limit_v, "V"),
                                    ("ChargeCurrentLimit", can.charge_current_limit_a, "A"),
                                    ("DischargeCurrentLimit", can.discharge_current_limit_a, "A"),
                                    ("DischargeVoltageLimit", can.discharge_voltage_limit_v, "V")):
            measure(f"0x351 {signal}", limits[signal], req=req, unit=unit, nominal=value,
                    tolerance=half_step("ChargeLimits", signal))
        request = pcs.latest("ChargeRequest")
        measure("0x35C ChargeEnable", request["ChargeEnable"], req=req, equals=1)
        measure("0x35C DischargeEnable", request["DischargeEnable"], req=req, equals=1)


@pytest.mark.requirement("can", manual="2.2")
def test_reported_values_agree_with_the_rig(spec, bench, pack, pcs, measure):
    """PACK_SPEC.md 6 and 5: what the BMS reports (0x356 voltage, current, mean temperature; the
    detail group voltages, minimum and maximum) agrees with the rig's own instruments (DMM,
    PSU read-back, cell taps, case thermocouples) within the spec's tolerances."""
    tol, req, clock = spec.tolerance, spec.can.id, bench.clock
    pack.power_on()
    clock.sleep(3 * spec.can.period_s)

    with measure.together():  # every reported value against the rig, each on its own
        reported = pcs.latest("PackMeasurements")
        measure("0x356 Voltage against the DMM", reported["Voltage"], req=req, unit="V",
                nominal=pack.terminal_voltage(), tolerance=tol.pack_voltage_v)
        cases = pack.case_temperatures()
        measure("0x356 Temperature against the case thermocouples' mean", reported["Temperature"], req=req,
                unit="C", nominal=sum(cases) / len(cases), tolerance=tol.temperature_c)
        sensors = pcs.latest("DetailTemperatures")
        for i in range(1, 5):
            # a soaked pack at rest is at one temperature: each cell sensor reads the case's
            measure(f"Temperature{i} against the case thermocouples' mean", sensors[f"Temperature{i}"],
                    req=req, unit="C", nominal=sum(cases) / len(cases), tolerance=tol.temperature_c)
        taps = pack.group_voltages()
        groups = {}
        for first in range(1, len(taps) + 1, 4):
            groups |= pcs.latest(f"DetailGroupVoltages{first}to{first + 3}")
        for i, tap in enumerate(taps, start=1):
            measure(f"Group{i}Voltage against its cell tap", groups[f"Group{i}Voltage"], req=req, unit="V",
                    nominal=tap, tolerance=tol.group_voltage_v)
        summary = pcs.latest("DetailSummary")
        measure("DetailSummary.MinGroupVoltage against the lowest cell tap", summary["MinGroupVoltage"],
                req=req, unit="V", nominal=min(taps), tolerance=tol.group_voltage_v)
        measure("DetailSummary.MaxGroupVoltage against the highest cell tap", summary["MaxGroupVoltage"],
                req=req, unit="V", nominal=max(taps), tolerance=tol.group_voltage_v)

    pack.charge(spec.ratings.standard_charge_current_a)
    clock.sleep(3 * spec.can.period_s)
    measure("0x356 Current against the PSU read-back while charging", pcs.signal("Current"), req=req,
            unit="A", nominal=pack.current(), tolerance=tol.current_a)
    measure("0x356 Voltage against the DMM while charging", pcs.signal("Voltage"), req=req, unit="V",
            nominal=pack.terminal_voltage(), tolerance=tol.pack_voltage_v)
    pack.discharge(spec.ratings.continuous_discharge_current_a)
    clock.sleep(3 * spec.can.period_s)
    measure("0x356 Current against the e-load read-back while discharging", pcs.signal("Current"),
            req=req, unit="A", nominal=pack.current(), tolerance=tol.current_a)
