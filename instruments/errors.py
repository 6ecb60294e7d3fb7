"""Errors raised by the instrument drivers: the root of the rig's one exception tree.

The tree is drawn in :mod:`rig.errors`; it is rooted here, in the lowest layer, so that drivers
raise the same classes the rig catches without importing anything from above them.
"""
from __future__ import annotations

import math
import numbers


class RigError(Exception):
    """Root of every error the rig raises on purpose."""


class InstrumentError(RigError):
    """An instrument reported an error, answered nonsense or stopped answering."""

    def __init__(self, instrument: str, command: str, reply: str):
        self.instrument, self.command, self.reply = instrument, command, reply
        super().__init__(f"{instrument}: {command!r} -> {reply}")


def shown(value) -> str:
    """A value as an error message shows it: a real number in ``g`` format, anything else as its
    ``repr`` (the message must never fail on the very value it refuses)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return f"{float(value):g}" if math.isfinite(value) else repr(float(value))
        except (TypeError, ValueError, OverflowError):
            pass
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class LimitRefused(RigError):
    """A set-point beyond the rig's hard limit (or not allowed now); the command was not sent."""

    def __init__(self, instrument: str, quantity: str, value, limit: str):
        self.instrument, self.quantity, self.value, self.limit = instrument, quantity, value, limit
        super().__init__(
            f"{instrument}: refused {quantity} = {shown(value)} ({limit}); nothing was sent")


class SetpointTypeError(LimitRefused, TypeError):
    """A set-point of the wrong type (a str, None, a bool for a number, a list ...): refused
    before anything is sent. Both a :class:`LimitRefused` and a ``TypeError``."""

    def __init__(self, instrument: str, quantity: str, value, expected: str):
        self.expected = expected
        RigError.__init__(self, f"{instrument}: refused {quantity} = {shown(value)} "
                                f"({type(value).__name__}): {expected} expected; nothing was sent")
        self.instrument, self.quantity, self.value, self.limit = instrument, quantity, value, expected
