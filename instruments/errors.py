"""Errors raised by the instrument drivers: the root of the rig's one exception tree.

The tree is drawn in :mod:`rig.errors`; it is rooted here, in the lowest layer, so that drivers
raise the same classes the rig catches without importing anything from above them.
"""
from __future__ import annotations


class RigError(Exception):
    """Root of every error the rig raises on purpose."""


class InstrumentError(RigError):
    """An instrument reported an error, answered nonsense or stopped answering."""

    def __init__(self, instrument: str, command: str, reply: str):
        self.instrument, self.command, self.reply = instrument, command, reply
        super().__init__(f"{instrument}: {command!r} -> {reply}")


class LimitRefused(RigError):
    """A set-point beyond the rig's hard limit; the command was not sent."""

    def __init__(self, instrument: str, quantity: str, value: float, limit: str):
        self.instrument, self.quantity, self.value, self.limit = instrument, quantity, value, limit
        super().__init__(
            f"{instrument}: refused {quantity} = {value:g}, beyond the hard limit {limit}; nothing was sent")
