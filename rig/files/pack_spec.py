"""The pack spec: what a correct pack must do, with tolerances. Tests assert against it.

On a real bench it is the only description of the pack. It never says how a firmware behaves
(that is the firmware profile, :mod:`emulator.firmware.profile`). Every section that a test
case checks carries a requirement ``id``, which the failure message names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from rig.errors import ConfigError
from rig.files.can_names import check_can_names
from rig.files.envelope import SafetyEnvelope
from rig.files.loader import FileModel, load_toml
from rig.files.rows import (FAILURES, PROTECTIONS, AlmLight, LightBand, Levels, Percent,
                            ProtectionRow, Seconds, check_bands_cover, named_rows)

Volts = Annotated[float, Field(ge=0.0, le=100.0)]
Amps = Annotated[float, Field(ge=0.0, le=2500.0)]
Celsius = Annotated[float, Field(ge=-60.0, le=150.0)]
ReqId = Annotated[str, Field(pattern=r"^REQ-[A-Z0-9.-]+$")]
#: The pack's temperature sensors: T1-T4 on the cells, T5 on the power stage (PACK_SPEC.md 6).
Sensor = Literal["T1", "T2", "T3", "T4", "T5"]
Sensors = Annotated[tuple[Sensor, ...], Field(strict=False, min_length=1)]

#: Where the project's pack spec lives: beside the test cases that assert against it.
DEFAULT_PACK_SPEC = Path(__file__).resolve().parents[2] / "testcases" / "pack_spec.toml"


class Meta(FileModel):
    name: str
    manual: str


class Clauses(FileModel):
    """Where a requirement comes from and which certification tests check the same thing: the
    traceability matrix's columns (``[traceability]`` of the pack spec)."""

    manual: str | None = None  # section(s) of the pack's manual
    iec: str | None = None     # IEC 62619 clause(s)
    ul: str | None = None      # UL 1973 test(s)


class Ratings(FileModel):
    groups: Annotated[int, Field(ge=1, le=32)]
    cells_per_group: Annotated[int, Field(ge=1, le=8)]
    cell_capacity_ah: Annotated[float, Field(gt=0, le=1000)]
    nominal_capacity_ah: Annotated[float, Field(gt=0, le=2000)]
    usable_capacity_ah: Annotated[float, Field(gt=0, le=2000)]
    nominal_energy_kwh: Annotated[float, Field(gt=0, le=100)]
    usable_energy_kwh: Annotated[float, Field(gt=0, le=100)]
    nominal_voltage_v: Volts
    operating_min_v: Volts
    operating_max_v: Volts
    standard_charge_current_a: Amps
    continuous_discharge_current_a: Amps
    peak_discharge_current_a: Amps
    peak_discharge_duration_s: Seconds
    operating_min_c: Celsius
    operating_max_c: Celsius
    max_parallel_packs: Annotated[int, Field(ge=1, le=2)]


class Tolerance(FileModel):
    delay_late_s: Annotated[float, Field(ge=0.0, le=10.0)]
    group_voltage_v: Annotated[float, Field(ge=0.0, le=0.5)]
    pack_voltage_v: Annotated[float, Field(ge=0.0, le=5.0)]
    current_a: Annotated[float, Field(ge=0.0, le=20.0)]
    temperature_c: Annotated[float, Field(ge=0.0, le=10.0)]
    soc_pct: Percent
    flicker_period_rel: Annotated[float, Field(ge=0.0, le=0.5)]


class States(FileModel):
    run_current_a: Amps


class Activation(FileModel):
    id: ReqId
    min_v: Volts
    max_v: Volts
    edge_tolerance_v: Annotated[float, Field(ge=0.0, le=5.0)]


class PowerOn(FileModel):
    id: ReqId
    button_hold_s: Seconds
    ignore_shorter_than_s: Seconds
    relays_closed_within_s: Seconds
    precharge_min_ratio: Annotated[float, Field(gt=0.0, le=1.0)]
    precharge_timeout_s: Seconds


class PowerOff(FileModel):
    id: ReqId
    button_hold_s: Seconds
    flicker_count: Annotated[int, Field(ge=1, le=20)]
    flicker_period_s: Annotated[float, Field(gt=0.0, le=10.0)]
    forced_off_max_charge_current_a: Amps
    terminals_off_max_v: Volts


class PcsLoss(FileModel):
    id: ReqId
    alarm_after_s: Seconds
    power_off_after_s: Seconds
    can_alarm: str
    failure_bit: str


class FaultPowerOff(FileModel):
    id: ReqId
    zero_volt_group_v: Volts


class Parallel(FileModel):
    id: ReqId
    max_voltage_difference_v: Volts
    power_on_window_s: Seconds
    success_flicker_count: Annotated[int, Field(ge=1, le=20)]
    success_flicker_period_s: Annotated[float, Field(gt=0.0, le=10.0)]
    rs485_poll_period_s: Annotated[float, Field(gt=0.0, le=60.0)]
    rs485_missed_polls: Annotated[int, Field(ge=1, le=100)]


class Rs485KnownAnswers(FileModel):
    """PACK_SPEC.md 7 frames, byte for byte (``~`` to ``\\r``)."""

    analog_values_request: Annotated[str, Field(pattern=r"^~[0-9A-F]+\r$")]
    empty_reply: Annotated[str, Field(pattern=r"^~[0-9A-F]+\r$")]
    charge_management_reply: Annotated[str, Field(pattern=r"^~[0-9A-F]+\r$")]
    #: the 0x92 reply's charge and discharge voltage limits (V) and current limits (A, discharge < 0)
    charge_management_values: Annotated[tuple[float, float, float, float], Field(strict=False)]


class Rs485(FileModel):
    """The RS485 console of PACK_SPEC.md 7 (Pylontech RS485 v3.3)."""

    id: ReqId
    baudrate: Literal[9600, 19200, 38400, 57600, 115200]
    protocol_version: Annotated[int, Field(ge=0, le=255)]
    master_address: Annotated[int, Field(ge=1, le=254)]
    slave_address: Annotated[int, Field(ge=1, le=254)]
    commands: Annotated[tuple[Annotated[int, Field(ge=0, le=255)], ...], Field(strict=False, min_length=1)]
    adr0_commands: Annotated[tuple[Annotated[int, Field(ge=0, le=255)], ...], Field(strict=False)]
    polled_commands: Annotated[tuple[Annotated[int, Field(ge=0, le=255)], ...], Field(strict=False)]
    temperatures: Annotated[int, Field(ge=1, le=16)]
    reply_within_s: Annotated[float, Field(gt=0.0, le=10.0)]
    known_answers: Rs485KnownAnswers


class StorageRecharge(FileModel):
    id: ReqId
    after_months: Annotated[float, Field(ge=0.0, le=120.0)]
    charge_voltage_v: Volts
    charge_current_a: Amps
    until_led: Annotated[int, Field(ge=1, le=4)]
    rest_s: Seconds
    min_rest_voltage_v: Volts
    max_duration_s: Seconds


class Soc(FileModel):
    id: ReqId
    full_tail_current_a: Amps
    full_soc_pct: Percent


class Soh(FileModel):
    """SOH learned over a full discharge (the project's reading of PACK_SPEC.md 6, see the file)."""

    id: ReqId
    tolerance_pct: Percent


class Can(FileModel):
    id: ReqId
    period_s: Annotated[float, Field(gt=0.0, le=60.0)]
    period_tolerance_s: Annotated[float, Field(ge=0.0, le=10.0)]
    charge_voltage_limit_v: Volts
    discharge_voltage_limit_v: Volts
    charge_current_limit_a: Amps
    discharge_current_limit_a: Amps
    manufacturer: Annotated[str, Field(min_length=1, max_length=8)]
    frames: Annotated[tuple[str, ...], Field(strict=False)]
    #: the sensors 0x356's mean cell temperature is the mean of (both packs' with two)
    temperature_sensors: Sensors


class Lights(FileModel):
    id: ReqId
    alm_flicker_period_s: Annotated[float, Field(gt=0.0, le=10.0)]
    low_soc_alm_max_pct: Percent
    low_soc_light: AlmLight
    charging: Annotated[tuple[LightBand, ...], Field(strict=False)]
    discharging: Annotated[tuple[LightBand, ...], Field(strict=False)]

    @field_validator("charging", "discharging")
    @classmethod
    def _cover(cls, bands, info):
        return check_bands_cover(bands, info.field_name)


class SpecProtection(ProtectionRow):
    """A protection requirement: the shared row plus its requirement id, title and unit."""

    id: ReqId
    title: str
    unit: Literal["V", "A", "C"]
    #: the sensors whose readings a temperature row compares (None: not a temperature row)
    sensors: Sensors | None = None


class ShortCircuit(FileModel):
    id: ReqId
    threshold_a: Amps
    delay_s: Annotated[float, Field(ge=0.0, le=1.0)]
    release: Literal["power_cycle"]
    can_protection: str
    failure_bit: str
    light: AlmLight


class ZeroVoltCell(FileModel):
    id: ReqId
    threshold_v: Volts
    failure_bit: str


class FailureResponse(FileModel):
    """What every failure does (PACK_SPEC.md 4): ALM on, relays open, latched until power cycle."""

    can_protection: str
    light: AlmLight
    latch: Literal["power_cycle"]


class SpecFailure(FileModel):
    id: ReqId
    failure_bit: str
    can_alarm: str | None = None  # a failure that also raises a 0x359 alarm bit


class Iec62619(FileModel):
    """IEC 62619 clause 8 procedure parameters."""

    id: ReqId
    overcharge_voltage_factor: Annotated[float, Field(ge=1.0, le=2.0)]
    overcharge_current_factor: Annotated[float, Field(ge=1.0, le=2.0)]
    overheat_margin_c: Annotated[float, Field(ge=0.0, le=50.0)]
    log_after_s: Seconds


Protections = named_rows("Protections", SpecProtection, PROTECTIONS)
Failures = named_rows("Failures", SpecFailure, FAILURES)


class PackSpec(FileModel):
    """The whole pack spec (PACK_SPEC.md as data)."""

    meta: Meta
    #: requirement id -> its manual section and IEC 62619 / UL 1973 clauses
    traceability: dict[ReqId, Clauses] = Field(default_factory=dict)
    ratings: Ratings
    tolerance: Tolerance
    states: States
    activation: Activation
    power_on: PowerOn
    power_off: PowerOff
    pcs_loss: PcsLoss
    fault_power_off: FaultPowerOff
    parallel: Parallel
    rs485: Rs485
    storage_recharge: StorageRecharge
    soc: Soc
    soh: Soh
    can: Can
    lights: Lights
    levels: Levels
    protections: Protections
    short_circuit: ShortCircuit
    zero_volt_cell: ZeroVoltCell
    failure_response: FailureResponse
    failures: Failures
    iec62619: Iec62619
    #: PACK_SPEC.md 5: the rig's absolute limits; a bench file may only tighten them
    safety_envelope: SafetyEnvelope


def load_pack_spec(path: str | Path = DEFAULT_PACK_SPEC) -> PackSpec:
    """Load and validate a pack spec file.

    :raises ConfigError: naming the file, the field and what is allowed.
    """
    loaded = load_toml(path, PackSpec)
    check_can_names(loaded, path)
    ids = requirement_ids(loaded)
    for req in loaded.traceability:
        if req not in ids:
            raise ConfigError(path, f"traceability.{req}", "not the id of a requirement in this pack spec "
                                                           f"(ids: {', '.join(ids)})")
    return loaded


def requirement_ids(section: BaseModel, path: str = "") -> dict[str, str]:
    """Every requirement ``id`` in a pack spec (or one of its sections) with the dotted path of
    the section that holds it, in file order: ``{"REQ-PROT-COV": "protections.cell_over_voltage"}``."""
    found: dict[str, str] = {}
    for name in type(section).model_fields:
        if name == "traceability":
            continue
        value, where = getattr(section, name), f"{path}.{name}" if path else name
        if name == "id" and isinstance(value, str):
            found.setdefault(value, path)
        for item in (value if isinstance(value, (tuple, list)) else (value,)):
            if isinstance(item, BaseModel):
                found.update({k: v for k, v in requirement_ids(item, where).items() if k not in found})
    return found
