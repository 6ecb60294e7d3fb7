"""The far ends of the emulated instruments: what each one sets and what it reads.

An emulated instrument (a SCPI device in :mod:`emulator.instruments`) only speaks its
dialect; the physics lives in the world (:mod:`emulator.world`). They meet here: the
instrument writes its settings into its plant object (under :attr:`Plant.lock`), the world
reads them when it advances time and writes back what the instrument would measure. Nothing
here knows SCPI, and nothing here computes physics.

All times are virtual-or-wall nanoseconds from the world's clock (:meth:`Plant.now_ns`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SourceOutput:
    """A DC power supply output on the pack's DC bus (charging, activation)."""

    on: bool = False
    voltage_set_v: float = 0.0     # CV set-point
    current_set_a: float = 0.0     # CC limit
    ovp_v: float = 1e9             # over-voltage protection: output trips off above it
    ocp_enabled: bool = False      # over-current protection: output trips off when in CC
    tripped: str = ""              # "", "OV" or "OC": a protection latched the output off
    # written by the world:
    measured_v: float = 0.0
    measured_a: float = 0.0
    in_cc: bool = False            # regulating current (CC) rather than voltage (CV)


@dataclass
class LoadStep:
    """One step of an e-load list/pulse program: hold ``value`` (in the mode's unit) for ``dwell_s``."""

    value: float
    dwell_s: float


@dataclass
class LoadInput:
    """A DC electronic load input on the DC bus (discharging)."""

    on: bool = False
    mode: str = "CC"               # "CC" (A), "CV" (V), "CR" (ohm), "CP" (W)
    setpoint: float = 0.0          # in the mode's unit
    short: bool = False            # short-circuit mode: the load draws as much as it can
    program: list[LoadStep] = field(default_factory=list)  # list mode, run once when started
    program_started_ns: int | None = None
    # written by the world:
    measured_v: float = 0.0
    measured_a: float = 0.0        # current drawn, A (positive)


@dataclass
class VoltMeter:
    """The DMM on the pack terminals: reads the DC bus voltage at the pack, V."""

    # written by the world:
    measured_v: float = 0.0


@dataclass
class CellScanner:
    """The cell-tap scanner: 16 group voltages and case thermocouples per pack."""

    # written by the world, [pack][channel]:
    group_v: list[list[float]] = field(default_factory=list)
    case_c: list[list[float]] = field(default_factory=list)


@dataclass
class ChamberAir:
    """The climate chamber around the pack(s)."""

    running: bool = False          # False: standby, the air drifts to the room temperature
    setpoint_c: float = 25.0
    ramp_c_per_min: float = 0.0    # 0: as fast as the chamber can
    # written by the world:
    air_c: float = 25.0


@dataclass
class IoLines:
    """The relay/IO box: outputs the rig drives, light-sensor inputs it reads."""

    #: relay outputs by function: power_button, breaker, wake, short_circuit (True = closed/active);
    #: with two packs, power_button2 / wake2 for the second pack.
    outputs: dict[str, bool] = field(default_factory=dict)
    #: the world answers "is this light lit at time t?" for inputs run, alm, led1..led4 (and
    #: run2 ... for the second pack); set by the world when it starts.
    light_at: Callable[[str, int], bool] = lambda name, t_ns: False


@dataclass
class Plant:
    """Everything the emulated instruments touch, and the lock that orders them with the world."""

    psu: SourceOutput = field(default_factory=SourceOutput)
    eload: LoadInput = field(default_factory=LoadInput)
    dmm: VoltMeter = field(default_factory=VoltMeter)
    scanner: CellScanner = field(default_factory=CellScanner)
    chamber: ChamberAir = field(default_factory=ChamberAir)
    io: IoLines = field(default_factory=IoLines)
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: the world's time, ns; set by the world when it starts
    now_ns: Callable[[], int] = lambda: 0
