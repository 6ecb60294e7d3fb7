"""The DC circuit of the emulated bench, solved at one instant.

::

    pack 1 (Vs1, R1) --relays--+                        +-- PSU (CV set-point, CC limit; sources only)
                               |-- pack bus --breaker--|
    pack 2 (Vs2, R2) --relays--+   |      |             +-- e-load (CC / CV / CR / CP, short)
                                  DMM   short-circuit
                                        contactor

Each pack is a Thevenin source (from the physics: open-circuit plus RC voltages, and its
instantaneous resistance) joined to the pack bus through relay 1 + relay 2 (no extra
resistance: the relays are in the pack's path resistance) or through relay 2 + the
pre-charge relay and its resistor. The breaker contactor joins the pack bus to the rig's
sources. Everything is linear except the PSU's CV/CC/no-sink corner and the e-load's CP and
CV modes, which are handled by cases. Currents are + into the pack (charge).
"""
from __future__ import annotations

from dataclasses import dataclass

#: The short-circuit contactor and its cabling, ohm: sized so that a 51 V pack gives about the
#: manual's 2000 A short-circuit peak (51.2 V / 2000 A = 25.6 mOhm in all, minus the pack's 6.1).
SHORT_CIRCUIT_OHM = 0.0195
#: A pre-charge resistor typical of 48 V packs, ohm [A].
PRECHARGE_OHM = 20.0
#: Below this the e-load cannot regulate and draws nothing (its minimum operating voltage), V.
LOAD_MIN_V = 0.5


@dataclass
class PackBranch:
    source_v: float          # Thevenin source, V
    resistance: float        # instantaneous resistance incl. path, ohm
    main: bool               # relay 1 and relay 2 closed
    precharge: bool          # relay 2 and the pre-charge relay closed (with PRECHARGE_OHM)
    precharge_ok: bool = True  # False: the pre-charge resistor is open (inserted fault)

    def conductance(self) -> float:
        if self.main:
            return 1.0 / self.resistance
        if self.precharge and self.precharge_ok:
            return 1.0 / (self.resistance + PRECHARGE_OHM)
        return 0.0


@dataclass
class Sources:
    """The rig side, behind the breaker."""

    breaker: bool
    psu_on: bool
    psu_v: float
    psu_a: float
    load_on: bool
    load_mode: str           # CC, CV, CR, CP
    load_value: float
    load_short: bool
    short_circuit: bool      # the short-circuit contactor on the pack bus


@dataclass
class Solution:
    pack_bus_v: float
    rig_bus_v: float
    pack_a: list[float]      # + = charge
    psu_a: float
    psu_cc: bool
    load_a: float            # drawn by the e-load, >= 0


def solve(packs: list[PackBranch], s: Sources) -> Solution:
    """Bus voltages and branch currents at one instant."""
    g = [b.conductance() for b in packs]
    g_sum = sum(g)
    i_src = sum([gi * b.source_v for gi, b in zip(g, packs)])  # Norton current of the packs
    g_fixed = 1.0 / SHORT_CIRCUIT_OHM if s.short_circuit else 0.0
    rig = s.breaker
    load_on = rig and s.load_on
    if load_on and s.load_short:
        g_fixed += 1.0 / SHORT_CIRCUIT_OHM
    elif load_on and s.load_mode == "CR" and s.load_value > 0:
        g_fixed += 1.0 / s.load_value
    g_all = g_sum + g_fixed

    def bus_v(extra_a: float) -> float:
        """Bus voltage with ``extra_a`` drawn from the bus by current-mode loads."""
        return (i_src - extra_a) / g_all if g_all > 0 else 0.0

    load_a = 0.0
    v = bus_v(0.0)
    if load_on and not s.load_short and s.load_mode in ("CC", "CP"):
        load_a = _constant_current_or_power(s, bus_v)
        v = bus_v(load_a)
    psu_a, cc = 0.0, False
    if rig and s.psu_on:
        if g_all == 0.0:
            # nothing to charge: the supply just shows its set-point (less what a CC load takes)
            v, psu_a = (s.psu_v, min(load_a, s.psu_a)) if load_a <= s.psu_a else (0.0, s.psu_a)
        elif v < s.psu_v:
            need = (s.psu_v * g_all - i_src) + load_a  # current to hold the set-point
            if need <= s.psu_a:
                v, psu_a = s.psu_v, need
            else:
                v, psu_a, cc = bus_v(load_a - s.psu_a), s.psu_a, True
    if load_on and not s.load_short and s.load_mode == "CV" and v > s.load_value:
        # the load sinks what it takes to pull the bus down to its set-point
        load_a = max((v - s.load_value) * g_all, 0.0) + load_a
        v = s.load_value
    if load_on and s.load_short:
        load_a = v / SHORT_CIRCUIT_OHM
    elif load_on and s.load_mode == "CR" and s.load_value > 0:
        load_a = v / s.load_value
    pack_a = [gi * (v - b.source_v) for gi, b in zip(g, packs)]
    rig_v = v if rig else (s.psu_v if s.psu_on else 0.0)
    pack_bus = v if (g_all > 0 or rig) else 0.0
    return Solution(pack_bus, rig_v, pack_a, psu_a, cc, load_a)


def _constant_current_or_power(s: Sources, bus_v) -> float:
    """Current drawn by a CC or CP load, given how the bus sags with it."""
    if s.load_mode == "CC":
        return s.load_value if bus_v(s.load_value) > LOAD_MIN_V else 0.0
    current = 0.0
    for _ in range(8):  # CP: P = V * I, fixed point converges in a few steps at pack voltages
        v = bus_v(current)
        if v <= LOAD_MIN_V:
            return 0.0
        current = s.load_value / v
    return current
