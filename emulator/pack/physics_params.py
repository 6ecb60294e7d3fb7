"""Physical parameters of the emulated pack, loaded from ``emulator/pack/physics.toml``.

The numbers live in the TOML file, each with a comment naming its source in
``PACK_MODEL_FACTS.md`` ([S1]..., [D] derived, [A] assumption); this module only declares their
shape, units and allowed ranges, so a mistyped value fails on load with a
:class:`~rig.errors.ConfigError` naming the field instead of producing a strange pack.

Units are in the field names: ``_v`` volt, ``_mohm`` milliohm, ``_s`` second, ``_c`` degree
Celsius, ``_pct`` percent, ``_j_per_k`` joule per kelvin, ``_w_per_k`` watt per kelvin,
``_k_per_w`` kelvin per watt. Resistances and the OCV are given per *cell* as the sources give
them; :mod:`emulator.pack.physics` derives the 2P group values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from rig.files.loader import FileModel, load_toml

#: The parameters shipped beside the emulator.
DEFAULT_PHYSICS = Path(__file__).resolve().parent / "physics.toml"

CellVolts = Annotated[float, Field(ge=0.0, le=6.0)]
MilliOhm = Annotated[float, Field(ge=0.0, le=100.0)]
TimeConstant = Annotated[float, Field(gt=0.0, le=86400.0)]
Factor = Annotated[float, Field(gt=0.0, le=100.0)]
Celsius = Annotated[float, Field(ge=-60.0, le=150.0)]
Weight = Annotated[float, Field(ge=0.0, le=1.0)]
KPerW = Annotated[float, Field(ge=0.0, le=10.0)]
OffsetC = Annotated[float, Field(ge=-10.0, le=10.0)]


def _increasing(values: list[float], name: str) -> list[float]:
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name} must be strictly increasing")
    return values


def _same_length(model, axis: str, *columns: str) -> None:
    n = len(getattr(model, axis))
    for column in columns:
        if len(getattr(model, column)) != n:
            raise ValueError(f"{column} needs one value per {axis} entry ({n}), has "
                             f"{len(getattr(model, column))}")


class PackLayout(FileModel):
    """How the cells are wired: ``groups`` in series, each ``cells_per_group`` in parallel."""

    groups: Annotated[int, Field(ge=1, le=32)]
    cells_per_group: Annotated[int, Field(ge=1, le=8)]
    cell_capacity_ah: Annotated[float, Field(gt=0.0, le=1000.0)]


class Ocv(FileModel):
    """Open-circuit voltage of one cell vs SOC: two hysteresis branches plus abuse extensions.

    ``soc_pct`` covers 0-100 %; the ``over*``/``under*`` tables continue the curve beyond it
    (the same for both branches, where the hysteresis has closed).
    """

    soc_pct: list[Annotated[float, Field(ge=0.0, le=100.0)]] = Field(min_length=3)
    discharge_v: list[CellVolts]
    charge_v: list[CellVolts]
    overcharge_soc_pct: list[Annotated[float, Field(gt=100.0, le=200.0)]] = Field(min_length=1)
    overcharge_v: list[CellVolts]
    overdischarge_soc_pct: list[Annotated[float, Field(ge=-100.0, lt=0.0)]] = Field(min_length=1)
    overdischarge_v: list[CellVolts]

    @field_validator("soc_pct", "overcharge_soc_pct", "overdischarge_soc_pct")
    @classmethod
    def _monotonic(cls, values, info):
        return _increasing(values, info.field_name)

    @model_validator(mode="after")
    def _consistent(self):
        _same_length(self, "soc_pct", "discharge_v", "charge_v")
        _same_length(self, "overcharge_soc_pct", "overcharge_v")
        _same_length(self, "overdischarge_soc_pct", "overdischarge_v")
        if self.soc_pct[0] != 0.0 or self.soc_pct[-1] != 100.0:
            raise ValueError("soc_pct must run from 0 to 100")
        if any(c < d for c, d in zip(self.charge_v, self.discharge_v)):
            raise ValueError("charge_v must not be below discharge_v (hysteresis >= 0)")
        if self.charge_v[0] != self.discharge_v[0] or self.charge_v[-1] != self.discharge_v[-1]:
            # The abuse extensions are shared by both branches, so the hysteresis must close there.
            raise ValueError("charge_v and discharge_v must meet at 0 and 100 % SOC")
        for branch in (self.discharge_v, self.charge_v):
            curve = self.overdischarge_v + branch + self.overcharge_v
            if any(b < a for a, b in zip(curve, curve[1:])):
                raise ValueError("the OCV must not fall as SOC rises (extensions included)")
        return self


class Hysteresis(FileModel):
    """First-order hysteresis state h in [-1, 1] (-1 discharge branch, +1 charge branch).

    ``dh/dz = (sign(I) - h) / transition_soc`` with z the charge throughput as a fraction of the
    group's capacity: after ``transition_soc`` of throughput in one direction, 63 % of the way.
    """

    transition_soc: Annotated[float, Field(gt=0.0, le=1.0)]
    initial: Annotated[float, Field(ge=-1.0, le=1.0)]


class _ResistanceTable(FileModel):
    """One resistance of the equivalent circuit per cell, as tables: over ``soc_pct`` (the
    ``[resistance]`` grid) for each current direction, times a factor over ``temperature_c``."""

    charge_mohm: list[MilliOhm]
    discharge_mohm: list[MilliOhm]
    temperature_factor: list[Factor]


class RcPair(_ResistanceTable):
    """An RC pair: its resistance tables and its time constant (held at every SOC and temperature)."""

    tau_s: TimeConstant


class Resistance(FileModel):
    """Equivalent circuit per cell: R0 in series with RC pairs (fast to slow), plus the pack's path.

    Each resistance is a table over SOC (one column per current direction: the charge column while
    charging, the discharge column while discharging) times a factor over temperature; linear
    between the table's points, clamped outside them.
    """

    path_mohm: MilliOhm
    soc_pct: list[Annotated[float, Field(ge=-100.0, le=200.0)]] = Field(min_length=2)
    temperature_c: list[Celsius] = Field(min_length=2)
    r0: _ResistanceTable
    rc: list[RcPair] = Field(min_length=1, max_length=4)

    @field_validator("temperature_c", "soc_pct")
    @classmethod
    def _monotonic(cls, values, info):
        return _increasing(values, info.field_name)

    @model_validator(mode="after")
    def _consistent(self):
        for name, table in [("r0", self.r0), *((f"rc[{k}]", p) for k, p in enumerate(self.rc))]:
            for column in ("charge_mohm", "discharge_mohm"):
                if len(getattr(table, column)) != len(self.soc_pct):
                    raise ValueError(f"{name}.{column} needs one value per soc_pct entry "
                                     f"({len(self.soc_pct)}), has {len(getattr(table, column))}")
            if len(table.temperature_factor) != len(self.temperature_c):
                raise ValueError(f"{name}.temperature_factor needs one value per temperature_c entry "
                                 f"({len(self.temperature_c)}), has {len(table.temperature_factor)}")
        taus = [p.tau_s for p in self.rc]
        if any(b <= a for a, b in zip(taus, taus[1:])):
            raise ValueError("rc pairs must run from fast to slow: each tau_s longer than the one before")
        return self


class Sensor(FileModel):
    """Where a temperature sensor sits, as what it reads in steady state plus a first-order lag.

    Steady reading = T_pack + ``ambient_weight`` * (T_air - T_pack) + ``cell_heat_k_per_w`` *
    P_cells + ``path_heat_k_per_w`` * P_path + ``offset_c``; it follows with time constant ``lag_s``.
    """

    ambient_weight: Weight
    cell_heat_k_per_w: KPerW
    path_heat_k_per_w: KPerW
    offset_c: OffsetC
    lag_s: TimeConstant


class Thermal(FileModel):
    """One thermal node for the pack, exchanging heat with the chamber air, and its sensors."""

    heat_capacity_j_per_k: Annotated[float, Field(gt=0.0, le=1e7)]
    ua_w_per_k: Annotated[float, Field(gt=0.0, le=1000.0)]
    cell_sensors: list[Sensor] = Field(min_length=4, max_length=4)
    power_stage: Sensor
    case: Sensor

    @model_validator(mode="after")
    def _lags_differ(self):
        # The exact discretisation divides by (tau_pack - lag); equal values would be singular.
        tau = self.heat_capacity_j_per_k / self.ua_w_per_k
        for sensor in [*self.cell_sensors, self.power_stage, self.case]:
            if not sensor.lag_s < 0.5 * tau:
                raise ValueError(f"sensor lag_s {sensor.lag_s:g} s must be below half the pack time "
                                 f"constant ({tau:g} s)")
        return self


class SelfDischarge(FileModel):
    """Intrinsic cell self-discharge, as a fraction of capacity per month (BMS draw excluded)."""

    pct_per_month_25c: Annotated[float, Field(ge=0.0, le=50.0)]
    doubling_c: Annotated[float, Field(gt=0.0, le=100.0)]
    spread_rel: Annotated[float, Field(ge=0.0, le=1.0)]


class Spread(FileModel):
    """Defaults of the cell-to-cell spread drawn from the seed (the constructor may override)."""

    capacity_rel: Annotated[float, Field(ge=0.0, le=0.2)]
    soc_abs: Annotated[float, Field(ge=0.0, le=0.2)]
    #: a measured pack's own groups (``packrig fit``): each group's capacity relative to the
    #: mean, minus 1, one per group; replaces the seeded capacity draw
    group_capacity_rel: list[Annotated[float, Field(ge=-0.5, le=0.5)]] | None = None


class PhysicsParams(FileModel):
    """All physical parameters of the emulated pack."""

    pack: PackLayout
    ocv: Ocv
    hysteresis: Hysteresis
    resistance: Resistance
    thermal: Thermal
    self_discharge: SelfDischarge
    spread: Spread


def load_physics(path: str | Path = DEFAULT_PHYSICS) -> PhysicsParams:
    """Load and validate the physical parameters.

    :raises ConfigError: naming the file, the field and what is allowed.
    """
    return load_toml(path, PhysicsParams)
