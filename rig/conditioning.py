"""Conditioning: a real pack brought to the state a test starts in (labgrid's Strategy).

A test says where it starts with ``@pytest.mark.pack_state(soc=30, temperature_c=45)``. An
emulator builds its pack in that state; a real pack is taken there through named states, only
as far as the test asks::

    AS_FOUND --soak in the chamber--> SOAKED --charge or discharge--> AT_SOC --rest, power off--> RESTED

- **soak**: the chamber runs at ``temperature_c`` until every case sensor reads it within the
  pack spec's temperature tolerance (a bench without a chamber skips the test, saying so);
- **to SOC**: the pack is powered on and charged (or discharged) at the standard charge current
  until the SOC it reports on CAN crosses ``soc``, within the spec's storage-recharge time;
- **rest**: 10 minutes at rest so the cells settle, then the pack is powered off, as a test
  expects to find it.
"""
from __future__ import annotations

import enum

import pytest

from rig.bench import Bench
from rig.pack import Pack

#: s at rest after a charge or discharge, before the test starts
REST_S = 600.0
#: s a soak may take at most
SOAK_TIMEOUT_S = 8 * 3600.0


class State(enum.Enum):
    AS_FOUND = "as found"
    SOAKED = "soaked"
    AT_SOC = "at SOC"
    RESTED = "rested, off"


class Conditioning:
    """Takes a real pack from :attr:`State.AS_FOUND` to the state a test asks for.

    :param bench: the bench (its chamber and clock).
    :param pack: the pack, in the manual's terms.
    """

    def __init__(self, bench: Bench, pack: Pack):
        self.bench, self.pack = bench, pack
        self.state = State.AS_FOUND

    def transition(self, *, soc: float | None = None, temperature_c: float | None = None) -> State:
        """Soak at ``temperature_c`` (if given), then bring the SOC to ``soc`` and rest (if given);
        returns the state reached."""
        if temperature_c is not None:
            self._soak(temperature_c)
            self.state = State.SOAKED
        if soc is not None:
            self._to_soc(soc)
            self.state = State.AT_SOC
            self.pack.rest(REST_S)
            self.pack.power_off()
            self.state = State.RESTED
        return self.state

    def _soak(self, celsius: float) -> None:
        bench, pack = self.bench, self.pack
        if bench.chamber is None:
            pytest.skip(f"bench {bench.file.bench.name!r} has no chamber to soak the pack at {celsius} C")
        bench.chamber.run(celsius)
        tol = pack.spec.tolerance.temperature_c
        bench.clock.wait_for(lambda: max(abs(t - celsius) for t in pack.case_temperatures()),
                             timeout=SOAK_TIMEOUT_S, poll=60.0, until=lambda d: d <= tol,
                             what=f"the pack soaked at {celsius} C")

    def _to_soc(self, target: float) -> None:
        pack, spec = self.pack, self.pack.spec
        pack.power_on()
        charging = pack.soc() < target
        if charging:
            pack.charge(spec.ratings.standard_charge_current_a)
        else:
            pack.discharge(spec.ratings.standard_charge_current_a)
        pack.pcs.wait_until("SOC", (lambda s: s >= target) if charging else (lambda s: s <= target),
                            within=spec.storage_recharge.max_duration_s, frame="StateOfCharge",
                            what=f"conditioning to {target} % SOC")
