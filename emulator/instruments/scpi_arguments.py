"""Arguments of SCPI commands for the emulated instruments: numbers, booleans, and the errors.

A numeric argument (SCPI-99 volume 1, 7.2) is a number with an optional suffix of the command's
unit (``50 V``, ``500 mV``, ``2.5KOHM``; multipliers as SCPI-99 7.7.3, so ``M`` is milli and
``MA`` mega, except ``MOHM`` and ``MHZ``, mega), or ``MIN``/``MAX``, or ``DEF`` where the command
has a default. A suffix of another unit is ``-131``, a suffix where the command takes none
``-138``; a refused argument leaves the setting as it was. :class:`ScpiError` carries the code
the server queues.
"""
from __future__ import annotations

import re


class ScpiError(Exception):
    """A SCPI error to queue: ``code`` and message as the standard numbers them."""

    def __init__(self, code: int, message: str):
        super().__init__(f'{code},"{message}"')
        self.code, self.message = code, message


def out_of_range(value: float, lo: float, hi: float) -> ScpiError:
    return ScpiError(-222, f"Data out of range; {value:g} not in [{lo:g}, {hi:g}]")


#: SCPI-99 7.7.3 suffix multipliers (upper case: the suffix is case-insensitive)
MULTIPLIERS = {"EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3, "M": 1e-3,
               "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15, "A": 1e-18}
#: units whose "M" multiplier means mega, not milli (SCPI-99 7.7.3)
MEGA_M = {"OHM", "HZ"}
_NUMBER = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?)\s*([A-Z]*)")


def scale_suffix(suffix: str, unit: str | None) -> float:
    """The factor a suffix applies to a number for a command taking ``unit`` (None: no unit).

    :raises ScpiError: -138 a suffix where none is taken, -131 a suffix of another unit.
    """
    if not suffix:
        return 1.0
    if unit is None:
        raise ScpiError(-138, f"Suffix not allowed; {suffix!r}")
    if suffix == unit:
        return 1.0
    prefix = suffix[:-len(unit)] if suffix.endswith(unit) else None
    if prefix == "M" and unit in MEGA_M:
        return 1e6
    if prefix and prefix in MULTIPLIERS:
        return MULTIPLIERS[prefix]
    raise ScpiError(-131, f"Invalid suffix; {suffix!r} where {unit} is taken")


def parse_number(arg: str, lo: float, hi: float, *, minmax: bool = True, unit: str | None = None,
                 default: float | None = None) -> float:
    """A numeric argument within [lo, hi]: a number with an optional suffix of ``unit``
    (``"V"``: ``50 V``, ``500 mV``), or ``MIN``/``MAX``, or ``DEF`` when ``default`` is given.

    :raises ScpiError: -222 outside the range, -104 not a number, -131/-138 a wrong suffix,
        -224 ``DEF`` where the command has no default.
    """
    text = arg.strip().upper()
    if minmax and text in ("MIN", "MINIMUM"):
        return lo
    if minmax and text in ("MAX", "MAXIMUM"):
        return hi
    if minmax and text in ("DEF", "DEFAULT"):
        if default is None:
            raise ScpiError(-224, f"Illegal parameter value; {arg!r}: this setting has no default")
        return default
    match = _NUMBER.fullmatch(text)
    if not match:
        raise ScpiError(-104, f"Data type error; {arg!r} is not a number")
    value = float(match.group(1)) * scale_suffix(match.group(2), unit)
    if not lo <= value <= hi or value != value:
        raise out_of_range(value, lo, hi)
    return value


def parse_bool(arg: str) -> bool:
    text = arg.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ScpiError(-104, f"Data type error; {arg!r} is not ON/OFF/1/0")
