"""Emulated instruments: one module per real model, each a :class:`~emulator.instruments.scpi_server.ScpiDevice`
that speaks that model's SCPI dialect and writes its settings into its plant object.

The bench file's ``model`` picks the emulated instrument as it picks the driver: one entry of
:data:`EMULATED` per model, keyed like :data:`instruments.DRIVERS`, imported only when a bench
uses it (:func:`emulated_class`). A model with no entry cannot stand behind an ``"emulator"``
address: the bench file is refused at load (:func:`rig.backends.check_emulated_models`).

What every emulated source or load shares lives here too: the I/O watchdog (output off when no
command line arrives for a set time, measured on the world's clock) and the small helpers for
replies and keyword arguments.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from emulator.instruments.scpi_server import ScpiError, parse_bool, parse_number
from rig.clock import NS

#: model name in a bench file (as in instruments.DRIVERS) -> (module, class) of its emulation.
#: Each class takes the plant, then what the bench file wires to it: a scanner its
#: ``group_channels`` and ``thermocouple_channels``, an IO box its ``outputs`` and ``inputs``.
EMULATED: dict[str, tuple[str, str]] = {
    "keysight_n8900": ("emulator.instruments.n8900_supply", "EmulatedN8900"),
    "itech_it8900": ("emulator.instruments.it8900_load", "EmulatedIT8900"),
    "keysight_34465a": ("emulator.instruments.dmm_34465a", "Emulated34465A"),
    "keysight_daq970a": ("emulator.instruments.daq970a_scanner", "EmulatedDaq970A"),
    "keysight_daq970a_io": ("emulator.instruments.daq970a_io", "EmulatedDaq970AIo"),
    "espec_sh": ("emulator.instruments.espec_chamber", "EmulatedEspecSh"),
}


def emulated_class(model: str) -> type:
    """The emulated instrument class of ``model``; raises ``ValueError`` listing the emulated models."""
    try:
        module, name = EMULATED[model]
    except KeyError:
        raise ValueError(f"no emulated instrument for model {model!r}; emulated: "
                         f"{', '.join(sorted(EMULATED))}") from None
    return getattr(importlib.import_module(module), name)


class IoWatchdog:
    """Fires when no command line has arrived for :attr:`delay_s`, on the world's clock.

    :param now_ns: the world's time, ns (called each time: the world may rebind ``plant.now_ns``
        after the instrument was built).
    """

    def __init__(self, now_ns: Callable[[], int]):
        self.now_ns = now_ns
        #: armed or not
        self.enabled = False
        #: silence allowed before it fires, s
        self.delay_s = 60.0
        #: when the last command line arrived, ns
        self.last_io_ns = 0

    def feed(self) -> None:
        """A command line arrived: restart the countdown."""
        self.last_io_ns = self.now_ns()

    def deadline_ns(self) -> int | None:
        """When it fires if nothing arrives before, ns; ``None`` when disarmed."""
        if not self.enabled:
            return None
        return self.last_io_ns + round(self.delay_s * NS)

    #: the watchdog's range in both dialects: whole seconds, 1 s to an hour
    RANGE_S = (1.0, 3600.0)

    def declare(self, device, root: str, fmt: Callable[[float], str]) -> None:
        """Declare the ``<root>:PROTection:WDOG`` commands on ``device`` (state and delay, each
        with its query; the delay in whole seconds, as the Keysight guide words it)."""
        device.command(f"{root}:PROTection:WDOG[:STATe]", lambda arg: setattr(self, "enabled", parse_bool(arg)))
        device.command(f"{root}:PROTection:WDOG[:STATe]?", lambda arg: "1" if self.enabled else "0")
        device.command(f"{root}:PROTection:WDOG:DELay", self._set_delay)
        device.command(f"{root}:PROTection:WDOG:DELay?",
                       lambda arg: fmt(self.delay_s if (b := min_max(arg, *self.RANGE_S)) is None else b))

    def _set_delay(self, arg: str) -> None:
        self.delay_s = float(round(parse_number(arg, *self.RANGE_S)))

    def expired(self, t_ns: int) -> bool:
        """True when armed and ``t_ns`` is at or past the deadline (landing exactly on it fires)."""
        deadline = self.deadline_ns()
        return deadline is not None and t_ns >= deadline


def min_max(arg: str, lo: float, hi: float) -> float | None:
    """The bound a ``<query>? MIN|MAX`` asks for, or ``None`` for a plain query."""
    text = arg.strip().upper()
    if text in ("MIN", "MINIMUM"):
        return lo
    if text in ("MAX", "MAXIMUM"):
        return hi
    if text:
        raise ScpiError(-109, f"Missing parameter; a query takes MIN, MAX or nothing, not {arg!r}")
    return None


def keyword(arg: str, choices: Sequence[str]) -> str:
    """Match a character argument written manual-style (``CURRent``) in its short or long form;
    return the short form, upper case.

    :raises ScpiError: -224 when it is none of them.
    """
    text = arg.strip().upper()
    for choice in choices:
        short = "".join(c for c in choice if c.isupper())
        if text == short or text == choice.upper():
            return short
    raise ScpiError(-224, f"Illegal parameter value; {arg!r} is not one of {', '.join(choices)}")
