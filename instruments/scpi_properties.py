"""The declared properties of a SCPI driver, one line each as PyMeasure declares them (see
:mod:`instruments.scpi` for the gates a write goes through and the driver base they talk to).

- :class:`control`: a read/write property with its commands, unit, range and hard-limit key;
- :func:`switch`: an ON/OFF control;
- :func:`measurement`: a read-only query with its unit.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instruments.scpi import ScpiInstrument

Range = tuple[float, float]


class control:  # noqa: N801 - lower-case like property, which it is
    """A read/write instrument property with its range, hard-limit key and unit.

    :param get_cmd: query returning the value (``None``: write-only).
    :param set_cmd: command template, ``{}`` takes the value.
    :param doc: one sentence with unit and range.
    :param values: the instrument's own range (inclusive), or a dict/set of allowed values.
    :param limit: key of the bench's hard limits that also bounds it, or ``None``.
    :param tolerance: read-back agreement required, absolute (``None``: exact for non-floats).
    :param cast: converts the reply text to the value (default float).
    :param fmt: converts the value to the text sent (default: the template formats it).
    """

    def __init__(self, get_cmd: str | None, set_cmd: str, doc: str, *, unit: str = "",
                 values: Range | Mapping | set | None = None, limit: str | None = None,
                 tolerance: float | None = 1e-6, cast: Callable[[str], Any] = float,
                 fmt: Callable[[Any], str] | None = None, confirm: bool = True):
        self.get_cmd, self.set_cmd, self.__doc__ = get_cmd, set_cmd, doc
        self.unit, self.values, self.limit, self.tolerance = unit, values, limit, tolerance
        self.cast, self.fmt, self.confirm = cast, fmt, confirm
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, inst: "ScpiInstrument | None", owner=None):
        if inst is None:
            return self
        if self.get_cmd is None:
            raise AttributeError(f"{inst.name}.{self.name} is write-only")
        return inst._read(self.get_cmd, self.cast)

    def __set__(self, inst: "ScpiInstrument", value) -> None:
        inst._set(self, value)


def measurement(get_cmd: str, doc: str, *, unit: str = "", cast: Callable[[str], Any] = float) -> property:
    """A read-only property: a query and its unit."""

    def getter(inst: "ScpiInstrument"):
        return inst._read(get_cmd, cast)

    getter.__doc__ = doc
    prop = property(getter)
    return prop


def on_off(reply: str) -> bool:
    """SCPI boolean reply ("1"/"0"/"ON"/"OFF") to bool."""
    text = reply.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ValueError(f"not a SCPI boolean: {reply!r}")


def _fmt_bool(value: bool) -> str:
    return "ON" if value else "OFF"


def switch(get_cmd: str, set_cmd: str, doc: str) -> control:
    """An ON/OFF control (output, input, protection state)."""
    return control(get_cmd, set_cmd, doc, values={True, False}, cast=on_off, fmt=_fmt_bool,
                   tolerance=None)
