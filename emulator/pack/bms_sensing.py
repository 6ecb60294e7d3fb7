"""The BMS's view of the pack: what is physically there, how its sensors err, what it reports.

The world hands the BMS a :class:`Truth` at each sample; the BMS reads it through
:class:`Sensing` (offsets, noise, resolution, a current dead band, all sized by the firmware
profile) and keeps what it measured and decided in its :class:`Report`, which CAN, RS485 and
the tests read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emulator.firmware.profile import FirmwareProfile
from rig.clock import ns


@dataclass
class Truth:
    """What is physically there at one instant (the world's side of the BMS's sensors)."""

    groups_v: np.ndarray        # group voltages at the cell taps, V
    current_a: float            # pack current, A, + = charge
    temps_c: np.ndarray         # T1-T4 cell sensors, T5 power stage, C
    bus_v: float                # P+/P- on the outside of the relays, V
    relays_closed: tuple[bool, bool, bool]  # feedback contacts: relay 1, relay 2, pre-charge


@dataclass
class Reading:
    """One BMS measurement: the truth as its sensors read it, and what the protections make of it."""

    groups_v: np.ndarray            # V, whole millivolts; nan where the front-end never answered
    pack_v: float                   # V, the sum of the groups
    current_a: float                # A, + = charge; 0 within the dead band
    temps_c: np.ndarray             # C, in steps of the sensor resolution
    quantities: dict[str, float]    # what the protections watch (protections.quantity_values)
    protections: tuple              # their trip and release conditions (ProtectionEngine.conditions)


class Sensing:
    """The BMS's measurement errors (PACK_MODEL_FACTS.md 6, sized by the profile).

    A fixed per-channel offset plus noise drawn from a table indexed by the sample number, so
    a reading at a given instant is the same however the world stepped to it.
    """

    def __init__(self, profile: FirmwareProfile, rng: np.random.Generator, groups: int):
        m = profile.measurement
        self.m = m
        self.group_offset = rng.uniform(-m.group_offset_max_v, m.group_offset_max_v, groups)
        noise = rng.normal(0.0, m.group_noise_rms_v, (4096, groups)) if m.group_noise_rms_v else np.zeros((1, groups))
        self._error = self.group_offset + noise  # the error at each sample number, summed once
        self.temp_offset = rng.uniform(-m.temperature_offset_max_c, m.temperature_offset_max_c, 5)
        self.sample_ns = ns(profile.bms.sample_period_s)

    def groups(self, true_v: np.ndarray, t_ns: int) -> np.ndarray:
        v = true_v + self._error[(t_ns // self.sample_ns) % len(self._error)]
        return v.round(3)  # the AFE reports whole millivolts

    def current(self, true_a: float) -> float:
        """The shunt reading; within the firmware's dead band it counts as no current at all (a
        standing offset would otherwise be counted as charge for hours)."""
        measured = true_a * (1.0 + self.m.current_gain_error) + self.m.current_offset_a
        return 0.0 if abs(measured) < self.m.current_deadband_a else measured

    def temps(self, true_c: np.ndarray) -> np.ndarray:
        r = self.m.temperature_resolution_c
        return ((true_c + self.temp_offset) / r).round() * r


@dataclass
class Report:
    """What the BMS last measured and decided, for CAN, RS485 and the tests."""

    groups_v: np.ndarray        # nan: never read
    pack_v: float = 0.0
    current_a: float = 0.0
    temps_c: np.ndarray = field(default_factory=lambda: np.full(5, 25.0))
    soc_pct: float = 50.0
    soh_pct: float = 100.0
    levels: dict[str, int] = field(default_factory=dict)
    failures: set[str] = field(default_factory=set)   # failure_bit signal names
    pcs_alarm: bool = False
