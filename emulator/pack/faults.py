"""Fault insertion on the emulated pack: what a fault-insertion unit does on a real bench.

Voltage faults act on the BMS's sense lines (as a cell simulator in series with a tap would),
not on the cells: the rig's own cell-tap scanner still reads the real cells, as it would on a
real bench. Sensor faults make a sensor read nonsense (an open NTC reads very cold, a shorted
one very hot) and tell the BMS's self-test; relay faults make a relay ignore its coil.
Everything is undone by :meth:`Faults.clear`.
"""
from __future__ import annotations

import numpy as np

from emulator.world import World
from instruments.roles import FaultInsertion
from rig.errors import EmulatorRefused

#: What an open / shorted NTC reads, C (beyond any real cell temperature) [A].
OPEN_SENSOR_C = -55.0
SHORTED_SENSOR_C = 150.0
_RELAYS = {"relay1": 0, "relay2": 1, "precharge": 2}
_SENSORS = ("voltage_frontend", "temperature_sampling", "current_sampling", "current_limitation")
SECONDS_PER_MONTH = 30.44 * 86400


class Faults(FaultInsertion):
    """The fault-insertion unit of the emulated bench. Packs are numbered 0 and 1, groups 0..15.

    It plays the :class:`~instruments.roles.FaultInsertion` role (the device is the pack, a
    voltage channel its group), and has the faults only an emulator can insert besides."""

    def __init__(self, world: World, line=None):
        self.world = world
        self.line = line  # the RS485 line between the packs, when the bench has one

    def _bms(self, pack: int):
        if not 0 <= pack < len(self.world.bms):
            raise ValueError(f"pack {pack} not on this bench (packs: {len(self.world.bms)})")
        return self.world.bms[pack]

    def offset_group(self, pack: int, group: int, volts: float) -> None:
        """Add ``volts`` to what the BMS reads for one group."""
        self._bms(pack)
        self.world.sense_offset_v[pack, group] = volts
        self.world.sensing_changed()

    def force_group(self, pack: int, group: int, volts: float | None) -> None:
        """Make the BMS read ``volts`` for one group (None: the real value again)."""
        self._bms(pack)
        self.world.sense_forced_v[pack, group] = np.nan if volts is None else volts
        self.world.sensing_changed()

    def force_voltage(self, device: int, channel: int, volts: float | None) -> None:
        """The role's name for :meth:`force_group` (a cell simulator on the group's taps)."""
        self.force_group(device, channel, volts)

    def offset_current(self, pack: int, amps: float) -> None:
        """Add ``amps`` (+ = charge) to what the BMS's current sense reads while the relays are
        closed: currents beyond the rig's own limits (charge over-current L3 at 90 A with an
        80 A supply) reach the BMS this way, as through a fault-insertion unit on the shunt."""
        self._bms(pack)
        self.world.sense_offset_a[pack] = amps

    def temperature_sensor(self, pack: int, sensor: int, fault: str | None) -> None:
        """Open or short one temperature sensor (0..4; 4 = power stage); None repairs it."""
        bms = self._bms(pack)
        reading = {"open": OPEN_SENSOR_C, "short": SHORTED_SENSOR_C, None: np.nan}[fault]
        self.world.temp_forced_c[pack, sensor] = reading
        self.world.sensing_changed()
        self._sensor(bms, "temperature_sampling", not np.isnan(self.world.temp_forced_c[pack]).all())

    def force_temperature(self, pack: int, sensor: int, celsius: float | None) -> None:
        """Make one sensor read ``celsius`` (a heated / cooled sensor); None: the real value."""
        self._bms(pack)
        self.world.temp_forced_c[pack, sensor] = np.nan if celsius is None else celsius
        self.world.sensing_changed()

    def sensor_failure(self, pack: int, name: str, failed: bool = True) -> None:
        """A BMS-internal failure: voltage_frontend, temperature_sampling, current_sampling or
        current_limitation."""
        if name not in _SENSORS:
            raise ValueError(f"unknown sensor failure {name!r}; choices: {', '.join(_SENSORS)}")
        self._sensor(self._bms(pack), name, failed)

    @staticmethod
    def _sensor(bms, name: str, failed: bool) -> None:
        (bms.sensor_faults.add if failed else bms.sensor_faults.discard)(name)

    def relay_stuck(self, pack: int, relay: str, closed: bool | None) -> None:
        """Relay ``relay1`` / ``relay2`` / ``precharge`` stuck closed (True) or open (False);
        None: it follows its coil again."""
        self._bms(pack)
        index = _RELAYS[relay]
        if closed is None:
            self.world.relay_stuck[pack].pop(index, None)
        else:
            self.world.relay_stuck[pack][index] = closed

    def precharge_failure(self, pack: int, failed: bool = True) -> None:
        """The pre-charge resistor is open: the bus never charges through it."""
        self._bms(pack)
        self.world.precharge_ok[pack] = not failed

    def rs485_cut(self, cut: bool = True) -> None:
        """Cut (or mend) the RS485 cable between the two packs."""
        if self.line is None:
            raise ValueError("this emulated bench has no RS485 line")
        self.line.cut(cut)

    def can_silence(self, silent: bool = True) -> None:
        """The pack stops sending CAN frames (a dead transceiver)."""
        self.world.can_silenced = silent

    def age(self, months: float) -> None:
        """Storage: ``months`` pass with the pack switched off, in no time (self-discharge and
        the BMS's off-state draw). The BMS's SOC is stale afterwards, as on a stored pack."""
        w = self.world
        if any(b.awake for b in w.bms):
            raise EmulatorRefused("age() stores a pack that is switched off; power it off first")
        seconds = months * SECONDS_PER_MONTH
        w.physics.age(months, w.chamber.air_c)
        draw = np.full(len(w.bms), -w.profile.bms.off_draw_a)
        w.physics.step(seconds, draw, w.chamber.air_c)  # the off-state BMS draw as a small discharge
        for bms in w.bms:
            bms.stored(seconds)
        w.cells_changed()
        w.advance_to(w.t_ns)

    def set_soc(self, pack: int, soc_pct: float) -> float:
        """Condition a pack to ``soc_pct`` at once (what a real bench does by charging or
        discharging it); the BMS is told, as it would have counted the charge (its SOC and the
        charge it counts for SOH). Returns the charge moved, Ah (+ = into the pack), as a bench's
        conditioning step counts it."""
        bms = self._bms(pack)
        physics = self.world.physics
        before = physics.soc[pack].copy()
        physics.set_pack_soc(pack, soc_pct / 100.0)
        # every group gets the same Ah (set_pack_soc): the charge through the pack's terminals
        moved = float(((physics.soc[pack] - before) * physics.capacity_ah[pack]).mean())
        bms.conditioned(soc_pct, moved)
        self.world.cells_changed()
        return moved

    def soc_estimate(self, pack: int, soc_pct: float) -> None:
        """The BMS's SOC estimate reads ``soc_pct`` while the cells stay as they are: an estimate
        that has drifted (coulomb-count error over many partial cycles, a stale reading after
        storage), which the full-charge recalibration must put right."""
        self._bms(pack).report.soc_pct = float(soc_pct)

    def clear(self) -> None:
        """Undo every inserted fault."""
        w = self.world
        w.sense_offset_v[:] = 0.0
        w.sense_offset_a[:] = 0.0
        w.sense_forced_v[:] = np.nan
        w.temp_forced_c[:] = np.nan
        w.sensing_changed()
        for stuck in w.relay_stuck:
            stuck.clear()
        w.precharge_ok[:] = [True] * len(w.precharge_ok)
        w.can_silenced = False
        if self.line is not None:
            self.line.cut(False)
        for bms in w.bms:
            bms.sensor_faults.clear()
