"""The pieces a pack spec and a firmware profile share: a protection row and a light band.

The two files mean different things (what a pack must do / what an emulated firmware does)
but describe the same quantities, so the row shapes are written once, here. The firmware
profile's rows add what only a firmware has (a level that can be switched off).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, create_model, model_validator

from rig.files.loader import FileModel

Seconds = Annotated[float, Field(ge=0.0, le=86400.0)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
FlickerPeriod = Annotated[float, Field(gt=0.0, le=10.0)]

#: A light: steadily "on", "off", or flickering with this period in seconds.
LedState = Literal["on", "off"] | FlickerPeriod

#: What a protection compares, as the BMS measures it.
Quantity = Literal["max_group_voltage", "min_group_voltage", "pack_voltage", "charge_current",
                   "discharge_current", "max_temperature", "min_temperature",
                   "group_voltage_difference"]

#: The ALM light shown at L2 and L3 (manual 7.4): on, or flickering.
AlmLight = Literal["alm_on", "alm_flicker"]


class Level(FileModel):
    """One protection level: trips when the quantity passes ``threshold`` for ``delay_s``."""

    threshold: Annotated[float, Field(ge=-60.0, le=2500.0)]
    delay_s: Annotated[float, Field(ge=0.0, le=600.0)]


class TopLevel(Level):
    """Level 3 also says what it does beyond opening the relays."""

    #: open_latch: relays open, latched until release; power_off: the pack turns off;
    #: failure: a latched failure (ALM on until power cycle).
    action: Literal["open_latch", "power_off", "failure"] = "open_latch"


class Release(FileModel):
    """How a tripped protection releases; exactly one of the four ways is given."""

    value: Annotated[float, Field(ge=-60.0, le=2500.0)] | None = None  # quantity back past it
    margin: Annotated[float, Field(gt=0.0, le=50.0)] | None = None  # this far back from the trip
    after_cut_s: Annotated[float, Field(gt=0.0, le=3600.0)] | None = None  # this long after the cut
    power_cycle: bool | None = None  # only a power cycle releases it

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("value", "margin", "after_cut_s", "power_cycle")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of value, margin, after_cut_s, power_cycle "
                             f"(got {', '.join(given) or 'none'})")
        return self


class LevelAction(FileModel):
    """What a level does to the current limits, CAN bits and relays (PACK_SPEC.md 4)."""

    current_limit_factor: Annotated[float, Field(ge=0.0, le=1.0)]
    can: Literal["alarm", "protection"]
    #: relays open when current keeps flowing in the protected direction this long (L2: 2 s;
    #: L3: 0, at once). Absent: the level never opens the relays (L1).
    open_relays_if_current_for_s: Annotated[float, Field(ge=0.0, le=600.0)] | None = None


class Levels(FileModel):
    l1: LevelAction
    l2: LevelAction
    l3: LevelAction


class ProtectionRow(FileModel):
    """One row of PACK_SPEC.md 4: three levels, a release, the CAN bits and the light."""

    quantity: Quantity
    trips: Literal["above", "below"]
    #: the current direction this protection limits
    direction: Literal["charge", "discharge", "both"]
    l1: Level
    l2: Level
    l3: TopLevel
    release: Release
    can_alarm: str  # a 0x359 signal of the DBC
    can_protection: str
    light: AlmLight

    @model_validator(mode="after")
    def _levels_in_order(self):
        a, b, c = self.l1.threshold, self.l2.threshold, self.l3.threshold
        ordered = a < b < c if self.trips == "above" else a > b > c
        if not ordered:
            raise ValueError(f"thresholds must get stricter from l1 to l3 for a protection "
                             f"that trips {self.trips} (got {a}, {b}, {c})")
        return self

    def levels(self) -> tuple[Level, Level, TopLevel]:
        return self.l1, self.l2, self.l3


class LightBand(FileModel):
    """SOC lights for one SOC band: LED1..LED4 each on, off or flickering (manual 6.1)."""

    soc: Annotated[tuple[Annotated[int, Field(ge=0, le=100)], Annotated[int, Field(ge=0, le=100)]],
                   Field(strict=False)]
    leds: Annotated[tuple[LedState, LedState, LedState, LedState], Field(strict=False)]

    @model_validator(mode="after")
    def _band_order(self):
        if self.soc[0] > self.soc[1]:
            raise ValueError(f"soc band must be [low, high], got {list(self.soc)}")
        return self


def check_bands_cover(bands: tuple[LightBand, ...], name: str) -> tuple[LightBand, ...]:
    """Bands must cover 0..100 % SOC without gap or overlap, in order."""
    expected = 0
    for band in bands:
        if band.soc[0] != expected:
            raise ValueError(f"{name}: band {list(band.soc)} should start at {expected} % "
                             "(bands must cover 0-100 % in order, without gap or overlap)")
        expected = band.soc[1] + 1
    if expected != 101:
        raise ValueError(f"{name}: bands end at {expected - 1} %, must end at 100 %")
    return bands


#: The protection rows in the order of PACK_SPEC.md 4, which is also their order in the detail
#: frame 0x18A002aa (2 bits each).
PROTECTIONS = ("cell_over_voltage", "pack_over_voltage", "cell_under_voltage",
               "pack_under_voltage", "charge_over_current", "discharge_over_current",
               "charge_over_temperature", "discharge_over_temperature",
               "charge_under_temperature", "discharge_under_temperature",
               "cell_voltage_difference")

#: The failures of PACK_SPEC.md 4 that the BMS detects itself (ALM on, relays open, latched).
FAILURES = ("relay1", "relay2", "precharge", "voltage_frontend", "temperature_sampling",
            "current_sampling", "current_limitation", "parallel_connection",
            "cell_voltage_difference")


def named_rows(model_name: str, row_type: type[FileModel], names: tuple[str, ...]) -> type[FileModel]:
    """A model with one required field of ``row_type`` per name: unknown or missing rows are errors."""
    return create_model(model_name, __base__=FileModel, **{n: (row_type, ...) for n in names})
