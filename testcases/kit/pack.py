"""The pack as a test author uses it: the manual's actions, a protected quantity driven, its reports.

:class:`Pack` is :class:`rig.pack.Pack` (POWER, WAKE, charge, discharge, rest; the DMM, the
read-backs, the lights) with what a protection procedure adds:

- :meth:`Pack.drive`: a protection row's quantity to a value, by the bench's fault-insertion
  unit or its instruments (:mod:`testcases.kit.stimulus`);
- :attr:`Pack.reports`: its CAN reports (:mod:`testcases.kit.reports`);
- the timing around them: a stimulus placed in the CAN period (:meth:`Pack.step`), the rig
  seeing the current cut (:meth:`Pack.seconds_until_cut`).

The ``pack`` and ``pack2`` fixtures of the suite are this class (``testcases/conftest.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from rig.measure import note_mark
from rig.pack import Pack as RigPack
from testcases.kit import stimulus
from testcases.kit.observe import seconds_until
from testcases.kit.reports import Reports

#: s; how often the rig looks at the bus while placing a stimulus against the reports: the
#: resolution of every CAN timing.
CAN_POLL_S = 0.01
#: s; how often the rig reads its own instruments while waiting for a cut.
RIG_POLL_S = 0.05


@dataclass(frozen=True)
class Window:
    """When a stimulus took effect, on the pack's clock (CAN frame times): between the two."""

    earliest: float
    latest: float


class Pack(RigPack):
    """One pack on the bench, with the bench's fault-insertion unit (``faults``, the
    :class:`~instruments.roles.FaultInsertion` role, or None where the bench has none)."""

    def __init__(self, pack: RigPack, faults=None):
        super().__init__(pack.bench, pack.spec, pack.pcs, pack.lights, number=pack.number)
        self.faults = faults
        self.reports = Reports(self.pcs, self.spec, self.clock)

    # --- stimuli --------------------------------------------------------------------------------
    def drive(self, quantity: str, value: float) -> str:
        """Bring a protection row's ``quantity`` to ``value`` as the BMS sees it; returns the means
        used (see :func:`testcases.kit.stimulus.drive`)."""
        return stimulus.drive(self, quantity, value)

    def force_group(self, group: int, volts: float) -> None:
        """One group's sense line (``group`` 1..16) to ``volts`` through the fault-insertion unit;
        skips on a bench without one."""
        if self.faults is None:
            pytest.skip(f"bench {self.bench.file.bench.name!r} has no fault-insertion unit to put group {group} "
                        f"at {volts:g} V")
        self.faults.force_voltage(self.number - 1, group - 1, volts)
        self._stimulus(f"group {group} driven to {volts:g} V ({stimulus.FAULT_INSERTION})")

    def force_temperature(self, sensor: int, celsius: float | None) -> None:
        """One temperature sensor (``sensor`` 1..5: T1..T5, T5 the power stage) to ``celsius``
        through the fault-insertion unit, None: its real value again; skips on a bench without one."""
        if self.faults is None:
            pytest.skip(f"bench {self.bench.file.bench.name!r} has no fault-insertion unit to drive sensor T{sensor}")
        self.faults.force_temperature(self.number - 1, sensor - 1, celsius)
        to = "back to its real value" if celsius is None else f"driven to {celsius:g} C ({stimulus.FAULT_INSERTION})"
        self._stimulus(f"temperature sensor T{sensor} {to}")

    def need_a_step(self, row) -> None:
        """Skip unless the bench changes the row's quantity at one instant (a trip can be timed)."""
        if not stimulus.can_step(self, row.quantity):
            pytest.skip(f"{row.id}: this bench moves the {row.quantity.replace('_', ' ')} only by a chamber soak; "
                        "a trip cannot be timed from it (needs fault insertion)")

    def step(self, quantity: str, value: float, *, report_after: float) -> Window:
        """Drive ``quantity`` to ``value`` at an instant such that a CAN report falls
        ``report_after`` seconds later (within one poll); returns when, on the pack's clock."""
        fresh, seen = self.reports.fresh(CAN_POLL_S)  # seen: within one poll of the report
        self.clock.sleep((-report_after) % self.spec.can.period_s)
        before = self.clock.now()
        self.drive(quantity, value)
        after = self.clock.now()
        return Window(fresh + (before - seen), fresh + (after - seen) + CAN_POLL_S)

    def flow(self, direction: str) -> float:
        """A current through the pack in a protected direction ("charge", "discharge"; "both":
        discharge), clear of the Run threshold and far below every over-current alarm: a quarter of
        the standard charge current. Returns it, A."""
        amps = self.spec.ratings.standard_charge_current_a / 4
        if direction == "charge":
            self.charge(amps)
        else:
            self.discharge(amps)
        return amps

    def flow_for(self, row) -> str:
        """A current in the row's direction, unless the row's stimulus is the current itself;
        returns the direction the current flows in."""
        if row.quantity in stimulus.CURRENTS:
            return row.quantity.removesuffix("_current")
        self.flow(row.direction)
        return "discharge" if row.direction == "both" else row.direction

    def power_cycle(self) -> None:
        """POWER held: off, and the power-off sequence waited out (a pack whose relays a fault holds
        open is at 0 V already, but it turns off only once its lights have flickered); POWER held: on."""
        po, late = self.spec.power_off, self.spec.tolerance.delay_late_s
        self.power_off()
        self.clock.sleep(po.flicker_count * po.flicker_period_s + late)
        self.power_on()

    # --- what the rig sees ----------------------------------------------------------------------
    def seconds_until_cut(self, since: float, *, flowing: bool, within: float) -> float:
        """Seconds from ``since`` (rig time) until the rig sees the pack cut off: the current gone
        on the PSU/e-load read-back while a current is driven (once the rig has seen it flow), else
        0 V at the terminals on the DMM; infinity if not by ``since + within`` (plus one rig poll)."""
        clock = self.clock
        if flowing:
            read, limit = (lambda: abs(self.current())), self.spec.tolerance.current_a
            seconds_until(clock, read, lambda amps: amps > limit, RIG_POLL_S)
        else:
            read, limit = self.terminal_voltage, self.spec.power_off.terminals_off_max_v
        already = clock.now() - since
        cut = already + seconds_until(clock, read, lambda x: x <= limit, max(within + RIG_POLL_S - already, 0.0))
        if math.isfinite(cut):
            note_mark(self.bench, "cut measured (rig)", at=since + cut)
        return cut

