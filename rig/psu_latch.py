"""What the rig does with a protection latch it finds on the bench's PSU before anyone drives it:
one policy for a run's start (:meth:`rig.bench.Bench._protect`) and for the lab's hand-over of a
released place (:mod:`rig.lab.safe_state`).

The PSU's I/O watchdog trips, and latches the output off, once a rig stops talking to it: after
every run that ends, and behind one that dies. That latch alone (``WDOG``) is routine: it is
cleared with the output off (the output stays off: off is what it was last told), and both the
output and the latch are read back. Any other latched protection (OV, OC, OT, PF, INH, with the
watchdog's or without) means the bench saw something a person must look into: it stays latched,
the hand-over says so, and the next run stops at its start with one line naming it.
"""
from __future__ import annotations

from dataclasses import dataclass

from rig.errors import RigError

#: the latches that are routine: cleared with the output off
ROUTINE = frozenset({"WDOG"})


@dataclass(frozen=True)
class PsuLatch:
    """What :func:`settle_psu_latch` found latched, by protection name (``"WDOG"``, ``"OV"`` ...)."""

    cleared: tuple[str, ...] = ()   #: routine latches it cleared, with the output off
    kept: tuple[str, ...] = ()      #: latches it left for a person (nothing of them was cleared)

    @property
    def said(self) -> str:
        """One phrase: ``"nothing latched"``, ``"WDOG latch cleared"``, or ``"latched off by OV
        (left latched: find out why ...)"``."""
        if self.kept:
            return (f"latched off by {'/'.join(self.kept)} (left latched: find out why and clear it "
                    "at the instrument before a run)")
        return f"{'/'.join(self.cleared)} latch cleared" if self.cleared else "nothing latched"


def settle_psu_latch(psu) -> PsuLatch:
    """Apply the policy (module docstring) to ``psu``, a supply's driver
    (:class:`~instruments.power_supply.ScpiPowerSupply`: ``latched_protections``, ``clear_protection``).

    :returns: what was latched, and whether it was cleared or left latched.
    :raises RigError: the output read on, or the latch still held, after clearing the watchdog's.
    :raises InstrumentError: the PSU refused or did not answer.
    """
    latched = tuple(psu.latched_protections())
    if not latched:
        return PsuLatch()
    if not set(latched) <= ROUTINE:
        return PsuLatch(kept=latched)
    psu.output_off()
    psu.clear_protection()
    if psu.output_enabled:
        raise RigError(f"{psu.name}: the output went on when its {'/'.join(latched)} latch was cleared")
    still = psu.latched_protections()
    if still:
        raise RigError(f"{psu.name}: {'/'.join(still)} still latched after clearing {'/'.join(latched)}")
    return PsuLatch(cleared=latched)
