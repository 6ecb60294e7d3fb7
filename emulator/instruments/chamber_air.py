"""The air in the emulated climate chamber.

Running, the controller moves its working set-point toward the user's set-point at the ramp
rate (or the chamber's own maximum rate when no ramp is set) and the air follows it with a
first-order lag; in standby the air drifts back to the room temperature, slowly. Both are
exact for any step length (a ramp that ends inside a step is an event, so steps split there).
"""
from __future__ import annotations

import math

from emulator.plant import ChamberAir
from rig.clock import NS

#: How fast the chamber can change its air on its own, C/min (a typical bench chamber) [A].
MAX_RATE_C_PER_MIN = 3.0
#: Lag of the air behind the controller's working set-point, s [A].
AIR_TAU_S = 120.0
#: Drift back to the room with the chamber in standby, s [A].
STANDBY_TAU_S = 1800.0


class ChamberModel:
    def __init__(self, room_c: float = 25.0):
        self.room_c = room_c
        self.air_c = room_c
        self.working_c = room_c   # the controller's ramping set-point
        self._rate = 0.0          # C/s toward the set-point, 0 when there
        self._target = room_c

    def _plan(self, plant: ChamberAir) -> None:
        if not plant.running:  # standby: drifting to the room, no ramp
            self._target, self._rate = self.room_c, 0.0
            return
        self._target = plant.setpoint_c
        rate = (plant.ramp_c_per_min or MAX_RATE_C_PER_MIN) / 60.0
        gap = self._target - self.working_c
        self._rate = math.copysign(rate, gap) if gap else 0.0

    def next_event_ns(self, t_ns: int, plant: ChamberAir) -> int | None:
        """When the ramp reaches the set-point (the air changes course there)."""
        self._plan(plant)
        if not self._rate:
            return None
        return t_ns + max(1, round(abs(self._target - self.working_c) / abs(self._rate) * NS))

    def advance(self, dt_s: float, plant: ChamberAir) -> None:
        """Move the air ``dt_s`` forward with the chamber's current settings."""
        self._plan(plant)
        if not plant.running:
            self.working_c = self.room_c
            self.air_c = self.room_c + (self.air_c - self.room_c) * math.exp(-dt_s / STANDBY_TAU_S)
            return
        tau, k = AIR_TAU_S, self._rate
        ramp_s = abs(self._target - self.working_c) / abs(k) if k else 0.0
        t = min(dt_s, ramp_s)
        if t > 0:  # exact response of a first-order lag to a ramp
            r0 = self.working_c
            decay = math.exp(-t / tau)
            self.air_c = (r0 + k * t - k * tau) + (self.air_c - r0 + k * tau) * decay
            self.working_c = r0 + k * t
        if dt_s > t:  # the ramp is done: a step response toward the set-point
            self.working_c = self._target
            self.air_c = self._target + (self.air_c - self._target) * math.exp(-(dt_s - t) / tau)
