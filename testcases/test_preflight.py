"""Pre-flight: before a pack is touched, the pack spec and the bench file must fit together.

A bench whose hard limits sit inside a protection's trip value can never see that protection
act (the rig would cut first), and a spec whose normal operating values sit inside its own
alarms would fail every run. These checks run on any bench, real or emulated, and need no
instrument.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.preflight


def test_rig_voltage_limits_leave_room_for_over_voltage_protection(spec, bench_file):
    """The supervisor's group and pack maxima lie beyond L3 over voltage plus tolerance (PACK_SPEC 5)."""
    limits, tol = bench_file.file.limits, spec.tolerance
    cell_l3 = spec.protections.cell_over_voltage.l3.threshold + tol.group_voltage_v
    pack_l3 = spec.protections.pack_over_voltage.l3.threshold + tol.pack_voltage_v
    assert limits.group_max_v > cell_l3, (
        f"REQ-PROT-COV: bench limit group_max_v {limits.group_max_v} V would trip before "
        f"cell over voltage L3 ({cell_l3:.3f} V with tolerance) could be seen")
    assert limits.pack_max_v > pack_l3, (
        f"REQ-PROT-POV: bench limit pack_max_v {limits.pack_max_v} V would trip before "
        f"pack over voltage L3 ({pack_l3:.2f} V with tolerance) could be seen")


def test_rig_voltage_limits_leave_room_for_under_voltage_protection(spec, bench_file):
    """The supervisor's minima lie below L3 under voltage minus tolerance (PACK_SPEC 5)."""
    limits, tol = bench_file.file.limits, spec.tolerance
    cell_l3 = spec.protections.cell_under_voltage.l3.threshold - tol.group_voltage_v
    pack_l3 = spec.protections.pack_under_voltage.l3.threshold - tol.pack_voltage_v
    assert limits.group_min_v < cell_l3, (
        f"REQ-PROT-CUV: bench limit group_min_v {limits.group_min_v} V is not below "
        f"cell under voltage L3 ({cell_l3:.3f} V with tolerance)")
    assert limits.pack_min_v < pack_l3, (
        f"REQ-PROT-PUV: bench limit pack_min_v {limits.pack_min_v} V is not below "
        f"pack under voltage L3 ({pack_l3:.2f} V with tolerance)")


def test_rig_can_drive_the_iec_62619_overcharge_procedures(spec, bench_file):
    """IEC 62619 8.2.2 / 8.2.3: the PSU limits admit 110 % of the upper voltage, 120 % of the current."""
    limits, iec = bench_file.file.limits, spec.iec62619
    upper_v = spec.ratings.groups * spec.protections.cell_over_voltage.l3.threshold
    needed_v = iec.overcharge_voltage_factor * upper_v
    needed_a = iec.overcharge_current_factor * spec.ratings.standard_charge_current_a
    assert limits.psu_max_voltage_v >= needed_v, (
        f"{iec.id}: PSU limit {limits.psu_max_voltage_v} V < {needed_v:.2f} V needed by 8.2.2")
    assert limits.psu_max_current_a >= needed_a, (
        f"{iec.id}: PSU limit {limits.psu_max_current_a} A < {needed_a:.1f} A needed by 8.2.3")


def test_rig_can_activate_the_pack(spec, bench_file):
    """Manual 2.2: the PSU may reach past the top of the activation window (the pack is off then,
    its relays open: the supervisor judges the pack's voltage on its cell taps, not the PSU's)."""
    top = spec.activation.max_v + spec.activation.edge_tolerance_v
    limits = bench_file.file.limits
    assert top <= limits.psu_max_voltage_v, (
        f"{spec.activation.id}: probing the activation edge at {top} V needs "
        f"psu_max_voltage_v >= {top} V (have {limits.psu_max_voltage_v})")


def test_can_limits_stay_clear_of_the_packs_own_alarms(spec):
    """PACK_SPEC 6: the limits a pack asks the PCS for never trip its own L1 alarms."""
    can, prot = spec.can, spec.protections
    assert can.charge_voltage_limit_v < prot.pack_over_voltage.l1.threshold, spec.can.id
    assert can.discharge_voltage_limit_v > prot.pack_under_voltage.l2.threshold, spec.can.id
    assert can.charge_current_limit_a < prot.charge_over_current.l1.threshold, spec.can.id
    assert can.discharge_current_limit_a < prot.discharge_over_current.l1.threshold, spec.can.id


@pytest.mark.parametrize("name", [
    "cell_over_voltage", "pack_over_voltage", "cell_under_voltage", "pack_under_voltage",
    "cell_voltage_difference"])
def test_release_lies_on_the_safe_side_of_the_alarm(spec, name):
    """PACK_SPEC 4: a voltage protection releases only clear of its L1 alarm (hysteresis)."""
    row = getattr(spec.protections, name)
    release, alarm = row.release.value, row.l1.threshold
    safe = release < alarm if row.trips == "above" else release > alarm
    assert safe, f"{row.id}: release {release} {row.unit} is not on the safe side of L1 {alarm} {row.unit}"


def test_storage_recharge_voltage_is_below_the_over_voltage_alarm(spec):
    """Manual 1.4: CV 55 V recharges without touching the pack over-voltage alarm."""
    assert spec.storage_recharge.charge_voltage_v < spec.protections.pack_over_voltage.l1.threshold, (
        spec.storage_recharge.id)


@pytest.mark.requirement("safety_envelope")
def test_bench_limits_lie_within_the_packs_safety_envelope(spec, bench_file):
    """PACK_SPEC 5: every limit the bench works to (set-point caps, supervisor trips, silence,
    watchdogs, supervisor period) is the envelope's or tighter, so the lab report states the
    limits the run was made under. (Loading the bench already refuses a looser one; this says so
    in the run, per field.)"""
    from rig.files.envelope import compare

    rows = compare(bench_file.file, spec.safety_envelope)
    looser = [f"{r.field} = {r.bench:g} beyond {r.envelope_field} = {r.envelope:g}" for r in rows if r.looser]
    assert not looser, f"{spec.safety_envelope.id}: " + "; ".join(looser)
    assert bench_file.file.supervisor.period_s < bench_file.file.limits.instrument_silent_s, (
        f"{spec.safety_envelope.id}: supervisor.period_s must be below limits.instrument_silent_s")
