"""The firmware profile: what the *emulated* BMS does.

The conforming profile (``emulator/firmware/conforming.toml``) behaves as the pack spec
requires. A copy with one value changed emulates a buggy build: a wrong threshold, a level
switched off (``enabled = false``), a swapped CAN bit, a slower cut, a wrong light. Every
behaviour of the BMS model is a field here; the model hard-codes none of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from rig.files.can_names import check_can_names
from rig.files.loader import FileModel, load_toml
from rig.files.rows import (FAILURES, PROTECTIONS, AlmLight, Level, LightBand, Levels, Percent,
                            ProtectionRow, Seconds, TopLevel, check_bands_cover, named_rows)

Volts = Annotated[float, Field(ge=0.0, le=100.0)]
Amps = Annotated[float, Field(ge=0.0, le=2500.0)]
Hold = Annotated[float, Field(gt=0.0, le=30.0)]

#: The conforming profile shipped beside the emulator.
CONFORMING_PROFILE = Path(__file__).resolve().parent / "conforming.toml"


class Meta(FileModel):
    name: str
    description: str


class BmsSettings(FileModel):
    sample_period_s: Annotated[float, Field(gt=0.0, le=5.0)]
    run_current_a: Amps
    standby_draw_a: Annotated[float, Field(ge=0.0, le=5.0)]
    off_draw_a: Annotated[float, Field(ge=0.0, le=1.0)]


class Measurement(FileModel):
    group_offset_max_v: Annotated[float, Field(ge=0.0, le=0.5)]
    group_noise_rms_v: Annotated[float, Field(ge=0.0, le=0.1)]
    current_gain_error: Annotated[float, Field(ge=-0.5, le=0.5)]
    current_offset_a: Annotated[float, Field(ge=-20.0, le=20.0)]
    current_deadband_a: Annotated[float, Field(ge=0.0, le=5.0)]
    temperature_offset_max_c: Annotated[float, Field(ge=0.0, le=20.0)]
    temperature_resolution_c: Annotated[float, Field(gt=0.0, le=5.0)]


class Activation(FileModel):
    min_v: Volts
    max_v: Volts
    dwell_s: Seconds


class PowerOn(FileModel):
    button_hold_s: Hold
    wake_enabled: bool
    precharge_s: Seconds
    precharge_min_ratio: Annotated[float, Field(gt=0.0, le=1.0)]
    precharge_timeout_s: Seconds


class PowerOff(FileModel):
    button_hold_s: Hold
    flicker_count: Annotated[int, Field(ge=0, le=20)]
    flicker_period_s: Annotated[float, Field(gt=0.0, le=10.0)]
    forced_off_max_charge_current_a: Amps


class PcsLoss(FileModel):
    enabled: bool
    alarm_after_s: Seconds
    power_off_after_s: Seconds
    can_alarm: str
    failure_bit: str
    light: AlmLight


class FaultPowerOff(FileModel):
    zero_volt_group_v: Volts


class Parallel(FileModel):
    max_voltage_difference_v: Volts
    power_on_window_s: Seconds
    success_flicker_count: Annotated[int, Field(ge=0, le=20)]
    success_flicker_period_s: Annotated[float, Field(gt=0.0, le=10.0)]
    rs485_baudrate: Literal[9600, 19200, 38400, 57600, 115200]
    rs485_poll_period_s: Annotated[float, Field(gt=0.0, le=60.0)]
    rs485_missed_polls: Annotated[int, Field(ge=1, le=100)]
    master_address: Annotated[int, Field(ge=0, le=255)]
    slave_address: Annotated[int, Field(ge=0, le=255)]


class Soc(FileModel):
    full_voltage_v: Volts
    full_tail_current_a: Amps
    initial_soh_pct: Percent
    #: after this long switched off, the BMS re-reads SOC from the rested cell voltage
    rest_reestimate_after_s: Seconds
    #: the firmware's own rest-voltage table per cell, V, at 0, 5, ... 100 % SOC
    ocv_table_v: Annotated[tuple[Annotated[float, Field(ge=2.0, le=4.0)], ...], Field(strict=False)]

    @field_validator("ocv_table_v")
    @classmethod
    def _table(cls, v):
        if len(v) != 21 or any(b < a for a, b in zip(v, v[1:])):
            raise ValueError(f"needs 21 rising values (0 to 100 % in 5 % steps), got {len(v)}")
        return v


class Can(FileModel):
    period_s: Annotated[float, Field(gt=0.0, le=60.0)]
    charge_voltage_limit_v: Volts
    discharge_voltage_limit_v: Volts
    charge_current_limit_a: Amps
    discharge_current_limit_a: Amps
    manufacturer: Annotated[str, Field(min_length=1, max_length=8)]
    frames: Annotated[tuple[str, ...], Field(strict=False)]
    detail_frames: bool
    #: the SOC sent in 0x355 is the BMS's estimate times this, within 0-100 % (1: right; a build
    #: that scales it against the wrong capacity sends another value)
    soc_scale: Annotated[float, Field(gt=0.0, le=2.0)] = 1.0


class Lights(FileModel):
    alm_flicker_period_s: Annotated[float, Field(gt=0.0, le=10.0)]
    low_soc_alm_max_pct: Percent
    low_soc_light: AlmLight
    charging: Annotated[tuple[LightBand, ...], Field(strict=False)]
    discharging: Annotated[tuple[LightBand, ...], Field(strict=False)]

    @field_validator("charging", "discharging")
    @classmethod
    def _cover(cls, bands, info):
        return check_bands_cover(bands, info.field_name)


Factor = Annotated[float, Field(ge=0.0, le=1.0)]


class FirmwareLevel(Level):
    enabled: bool = True
    #: this row's derating at this level, where the build does not use the level's own
    #: (``[levels.lN] current_limit_factor``): a per-row derating bug
    current_limit_factor: Factor | None = None


class FirmwareTopLevel(TopLevel):
    enabled: bool = True
    current_limit_factor: Factor | None = None


class FirmwareProtection(ProtectionRow):
    """A protection as the firmware implements it; each level can be switched off, derate on
    its own, and the row may show no light at all (``light = "none"``)."""

    l1: FirmwareLevel
    l2: FirmwareLevel
    l3: FirmwareTopLevel
    light: AlmLight | Literal["none"]


class ShortCircuit(FileModel):
    enabled: bool
    threshold_a: Amps
    delay_s: Annotated[float, Field(ge=0.0, le=1.0)]
    can_protection: str
    failure_bit: str
    light: AlmLight


class ZeroVoltCell(FileModel):
    enabled: bool
    threshold_v: Volts
    failure_bit: str


class FailureResponse(FileModel):
    can_protection: str
    light: AlmLight
    latch: Literal["power_cycle"]


class FirmwareFailure(FileModel):
    failure_bit: str
    can_alarm: str | None = None
    detect: bool = True  # false: this build never notices the failure


Protections = named_rows("FirmwareProtections", FirmwareProtection, PROTECTIONS)
Failures = named_rows("FirmwareFailures", FirmwareFailure, FAILURES)


class FirmwareProfile(FileModel):
    """The whole firmware profile of the emulated BMS."""

    meta: Meta
    bms: BmsSettings
    measurement: Measurement
    activation: Activation
    power_on: PowerOn
    power_off: PowerOff
    pcs_loss: PcsLoss
    fault_power_off: FaultPowerOff
    parallel: Parallel
    soc: Soc
    can: Can
    lights: Lights
    levels: Levels
    protections: Protections
    short_circuit: ShortCircuit
    zero_volt_cell: ZeroVoltCell
    failure_response: FailureResponse
    failures: Failures


def load_firmware_profile(path: str | Path = CONFORMING_PROFILE) -> FirmwareProfile:
    """Load and validate a firmware profile.

    :raises ConfigError: naming the file, the field and what is allowed.
    """
    loaded = load_toml(path, FirmwareProfile)
    check_can_names(loaded, path)
    return loaded
