"""The BMS's state of charge and health (PACK_SPEC.md 3): what it counts, not what the cells hold.

- Coulomb counting on the measured current, clamped to 0-100 %;
- recalibration to 100 % at full charge (pack voltage at the full voltage, charge current below
  the tail current);
- SOH learned on a full discharge: the charge counted out from a full recalibration down to the
  cell under-voltage alarm, net of any charge in between, against the rating;
- after a long rest, the SOC read again from the mean group voltage on the firmware's OCV table.

The estimate lives in the BMS's :class:`~emulator.pack.bms_sensing.Report` (``soc_pct``,
``soh_pct``), where CAN, RS485 and the lights read it.
"""
from __future__ import annotations

import numpy as np

from emulator.firmware.profile import FirmwareProfile
from emulator.pack.bms_sensing import Report


class SocEstimate:
    """One BMS's SOC and SOH, kept in ``report``; ``capacity_ah`` is the pack's rating."""

    def __init__(self, profile: FirmwareProfile, report: Report, capacity_ah: float):
        self.p = profile
        self.report = report
        self.capacity_ah = capacity_ah
        self.reestimate = False                       # re-read SOC from rest voltage at next sample
        self._out_since_full: float | None = None     # Ah discharged since the last full recalibration

    def full(self, q: dict[str, float]) -> bool:
        """The pack is full: at the full voltage with the charge current down to the tail."""
        s = self.p.soc
        return self.report.pack_v >= s.full_voltage_v and 0.0 < q["charge_current"] < s.full_tail_current_a

    def from_rest_voltage(self) -> None:
        """After a long rest the SOC is read from the mean group voltage on the firmware's table."""
        table = self.p.soc.ocv_table_v
        self.report.soc_pct = float(np.interp(float(self.report.groups_v.mean()), table,
                                              np.linspace(0.0, 100.0, len(table))))
        self.reestimate = False

    def conditioned(self, soc_pct: float, moved_ah: float) -> None:
        """The bench moved ``moved_ah`` through the pack at once, to ``soc_pct`` (fault insertion's
        conditioning): the counts follow as if the BMS had counted that charge."""
        self.report.soc_pct = soc_pct
        if soc_pct >= 100.0:
            self._out_since_full = 0.0
        elif self._out_since_full is not None:
            self._out_since_full -= moved_ah

    def count_charge(self, dt: float, q: dict[str, float]) -> None:
        """Coulomb counting on the measured current over ``dt`` seconds; recalibrate to 100 % at
        full charge; learn SOH at the end of a full discharge."""
        r = self.report
        ah = r.current_a * dt / 3600.0
        r.soc_pct = min(max(r.soc_pct + ah / self.capacity_ah * 100.0, 0.0), 100.0)
        if self.full(q):
            r.soc_pct = 100.0
        if r.soc_pct >= 100.0:
            self._out_since_full = 0.0
        elif self._out_since_full is not None:
            self._out_since_full -= ah
            if q["min_group_voltage"] <= self.p.protections.cell_under_voltage.l1.threshold:
                r.soh_pct = min(100.0, self._out_since_full / self.capacity_ah * 100.0)
                self._out_since_full = None
