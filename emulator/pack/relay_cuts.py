"""Which tripped protection levels opened the pack's relays, and the holds that time them (PACK_SPEC.md 4).

A tripped L2 opens the relays once current has kept flowing in the direction its row protects
for ``levels.l2.open_relays_if_current_for_s`` (None: an L2 never opens them). L3 opens them at
once when its ``open_relays_if_current_for_s`` is 0, after that hold when it is above 0 (a build
that waits for current, timed like L2), never when it is None. A cut stands until its level
releases, or the BMS powers on again. Each running hold is a timer in the world's event queue, so
the world lands exactly on the instant the relays open.
"""
from __future__ import annotations

from emulator.event_queue import EventQueue
from emulator.firmware.profile import FirmwareProfile
from rig.clock import ns


class RelayCuts:
    """The relay cuts of one BMS."""

    def __init__(self, profile: FirmwareProfile, timers: EventQueue):
        self.p = profile
        self._timers = timers
        l2 = profile.levels.l2.open_relays_if_current_for_s
        l3 = profile.levels.l3.open_relays_if_current_for_s
        self._l3_at_once = l3 == 0.0
        #: level -> how long current must flow against it before it opens the relays, ns (an L2
        #: hold of 0 opens them as soon as current flows; an L3 hold of 0 at once, current or not)
        self._hold_ns: dict[int, int] = {}
        if l2 is not None:
            self._hold_ns[2] = ns(l2)
        if l3:
            self._hold_ns[3] = ns(l3)
        self._since: dict[tuple[str, int], int] = {}   # (row, level) -> current flowing against it since
        self._cut: set[tuple[str, int]] = set()        # (row, level) whose hold ran out: relays open

    def update(self, levels: dict[str, int], q: dict[str, float], t_ns: int) -> None:
        """One BMS sample: start, stop or finish the holds of the tripped levels."""
        for level, hold in self._hold_ns.items():
            for name, tripped in levels.items():
                key = (name, level)
                if tripped == level and self._against(name, q):
                    since = self._since.setdefault(key, t_ns)
                    if since == t_ns:
                        self._timers.schedule((self, key), t_ns + hold)
                    if t_ns - since >= hold:
                        self._cut.add(key)
                elif key in self._since:
                    del self._since[key]
                    self._timers.cancel((self, key))

    def released(self, name: str, level: int) -> None:
        """Row ``name``'s ``level`` released: its cut no longer holds the relays open. (Any
        release other than L2's clears the row's L3 cut, as the firmware model always did.)"""
        self._cut.discard((name, 2 if level == 2 else 3))

    def holding_open(self, levels: dict[str, int]) -> bool:
        """A cut holds the relays open (an L3 that opens them at once counts while it stands)."""
        return bool(self._cut) or (self._l3_at_once and 3 in levels.values())

    def clear(self) -> None:
        """A power-on: every cut and hold gone."""
        for key in self._since:
            self._timers.cancel((self, key))
        self._since.clear()
        self._cut.clear()

    def _against(self, name: str, q: dict[str, float]) -> bool:
        """Current flows in the direction row ``name`` protects."""
        run, direction = self.p.bms.run_current_a, getattr(self.p.protections, name).direction
        if direction == "charge":
            return q["charge_current"] >= run
        if direction == "discharge":
            return q["discharge_current"] >= run
        return max(q["charge_current"], q["discharge_current"]) >= run
