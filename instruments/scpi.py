"""SCPI instrument drivers: declared properties, hard limits, confirmed writes.

A driver is a subclass of :class:`ScpiInstrument` that declares one line per property, the
way PyMeasure does, with the instrument's own range beside it::

    voltage_setpoint = control("VOLT?", "VOLT {:.3f}", "Output voltage set-point, V.",
                               unit="V", values=(0.0, 80.0), limit="voltage")
    voltage = measurement("MEAS:VOLT?", "Output voltage as measured, V.", unit="V")

Setting a ``control`` goes through three gates before any byte is sent, and nothing is ever
clipped:

1. the instrument's range (``values``): beyond it, :class:`~rig.errors.LimitRefused`;
2. the bench's **hard limit** for that quantity (``limit`` names a key of the ``limits``
   mapping the bench passes in, e.g. ``{"voltage": (0, 64.5)}``): beyond it, ``LimitRefused``
   naming instrument, quantity, value and limit;
3. the interlock: once the safety supervisor has tripped, every command except the ones that
   make the bench safe is refused.

Then the write is confirmed: the value is read back (within ``tolerance``) and ``SYST:ERR?``
is read until empty; an instrument error raises :class:`~rig.errors.InstrumentError` naming
the instrument, the command and the error text. Every query has the resource's timeout; a
silent instrument raises ``InstrumentError`` too. Each command is reported to the listeners
(the recorder) as a step: command, reply, error, duration.

The transport is passed in (a pyvisa message-based resource); the driver never opens one.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from instruments.errors import InstrumentError, LimitRefused

Range = tuple[float, float]


@dataclass(frozen=True)
class Step:
    """One command as sent, for the recording listeners."""

    instrument: str
    command: str
    reply: str | None
    error: str | None
    duration_s: float


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


class ScpiInstrument:
    """Base of a SCPI driver: transport, limits, interlock, confirmed writes, error queue.

    :param resource: an open pyvisa message-based resource (its timeout is the query timeout).
    :param name: the instrument's name on this bench, used in every error ("psu", "eload").
    :param limits: hard limits from the bench file, quantity -> (low, high).
    :param interlock: raises when commands are no longer allowed (the supervisor tripped).
    """

    #: the ``*IDN?`` model substring this driver speaks to; checked by :meth:`identify`
    model = ""

    def __init__(self, resource, name: str, limits: Mapping[str, Range] | None = None,
                 interlock: Callable[[], None] | None = None):
        self.resource, self.name = resource, name
        self.limits: dict[str, Range] = dict(limits or {})
        self.interlock = interlock or (lambda: None)
        self.listeners: list[Callable[[Step], None]] = []
        self.lock = threading.RLock()  # the supervisor thread and the test share the transport
        self._shut_down = False

    # --- transport ---------------------------------------------------------------------------
    def _io(self, command: str, query: bool) -> str | None:
        started, reply, error = time.perf_counter(), None, None
        try:
            with self.lock:
                if query:
                    reply = self.resource.query(command).strip()
                else:
                    self.resource.write(command)
            return reply
        except Exception as exc:  # pyvisa's VisaIOError, socket errors: name the instrument
            error = f"{type(exc).__name__}: {exc}"
            what = "no answer" if "TMO" in error or "imeout" in error else "transport error"
            raise InstrumentError(self.name, command, f"{what} ({error})") from exc
        finally:
            step = Step(self.name, command, reply, error, time.perf_counter() - started)
            for listener in self.listeners:
                listener(step)

    def write(self, command: str, *, safe: bool = False) -> None:
        """Send a command. ``safe=True`` marks a command that makes the bench safer (output off):
        it passes the interlock, everything else is refused once the supervisor has tripped."""
        if not safe:
            self.interlock()
        self._io(command, query=False)

    def query(self, command: str) -> str:
        """Send a query and return its reply (stripped); raises ``InstrumentError`` on timeout."""
        return self._io(command, query=True)

    def query_numbers(self, command: str, count: int) -> tuple[float, ...]:
        """A query answered with ``count`` numbers, ``;``- or ``,``-separated (a compound query:
        several readings of the same instant in one round trip)."""
        reply = self.query(command)
        try:
            numbers = tuple(float(x) for x in reply.replace(";", ",").split(","))
        except ValueError:
            numbers = ()
        if len(numbers) != count:
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r} ({count} numbers expected)")
        return numbers

    def check_errors(self) -> None:
        """Read ``SYST:ERR?`` until it is empty; raise if the instrument reported any error."""
        errors = []
        for _ in range(32):  # an error queue is at most a few dozen deep
            reply = self.query("SYST:ERR?")
            code = reply.split(",", 1)[0].strip().lstrip("+")
            if code in ("0", ""):
                break
            errors.append(reply)
        if errors:
            raise InstrumentError(self.name, "SYST:ERR?", "; ".join(errors))

    def identify(self) -> str:
        """``*IDN?``; raises when the instrument is not the model this driver speaks to."""
        idn = self.query("*IDN?")
        if self.model and self.model.upper() not in idn.upper():
            raise InstrumentError(self.name, "*IDN?", f"{idn!r} is not a {self.model}")
        return idn

    # --- declared properties -----------------------------------------------------------------
    def _read(self, command: str, cast: Callable[[str], Any]):
        reply = self.query(command)
        try:
            return cast(reply)
        except ValueError:
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r}") from None

    def _set(self, ctl: control, value) -> None:
        self._check_range(ctl, value)
        text = ctl.fmt(value) if ctl.fmt else value
        self.write(ctl.set_cmd.format(text))
        if ctl.confirm:
            self.check_errors()
            if ctl.get_cmd is not None:
                self._confirm(ctl, value)

    def _check_range(self, ctl: control, value) -> None:
        quantity = f"{ctl.name} [{ctl.unit}]" if ctl.unit else ctl.name
        if isinstance(ctl.values, tuple):
            lo, hi = ctl.values
            if not isinstance(value, (int, float)) or math.isnan(value) or not lo <= value <= hi:
                raise LimitRefused(self.name, quantity, value, f"instrument range [{lo:g}, {hi:g}]")
        elif ctl.values is not None and value not in ctl.values:
            raise ValueError(f"{self.name}.{ctl.name}: {value!r} not one of {sorted(map(str, ctl.values))}")
        if ctl.limit is not None:
            if ctl.limit not in self.limits:
                raise LimitRefused(self.name, quantity, value, f"'{ctl.limit}' (no hard limit "
                                   "configured for it on this bench: refusing rather than guessing)")
            lo, hi = self.limits[ctl.limit]
            if not lo <= value <= hi:
                raise LimitRefused(self.name, quantity, value, f"bench hard limit [{lo:g}, {hi:g}]")

    def _ctl(self, name: str) -> control:
        """The declared control ``name`` of this driver's class."""
        return getattr(type(self), name)

    def _safe_set(self, ctl: control, value) -> None:
        """Set a control with a command that makes the bench safe: past the interlock, then
        confirmed by read-back (not by the error queue, which may hold a stale error)."""
        self._check_range(ctl, value)
        self.write(ctl.set_cmd.format(ctl.fmt(value) if ctl.fmt else value), safe=True)
        self._confirm(ctl, value)

    def _check_watchdog(self, watchdog_s: float) -> None:
        """A watchdog delay within the ``watchdog_delay`` control's range and a whole number of
        the model's ``WATCHDOG_STEP_S`` (it times nothing finer); checked before anything is sent.

        :raises LimitRefused: beyond the instrument's range. :raises ValueError: not a whole step.
        """
        self._check_range(self._ctl("watchdog_delay"), watchdog_s)
        steps = watchdog_s / self.WATCHDOG_STEP_S
        if steps != round(steps):
            raise ValueError(f"{self.name}: watchdog of {watchdog_s:g} s is not a whole multiple of "
                             f"{self.WATCHDOG_STEP_S:g} s, which is all this model can time")

    def _confirm(self, ctl: control, value) -> None:
        got = self._read(ctl.get_cmd, ctl.cast)
        same = (abs(got - value) <= ctl.tolerance) if ctl.tolerance is not None else got == value
        if not same:
            raise InstrumentError(self.name, ctl.set_cmd.format(value),
                                  f"set {value!r} but it reads back {got!r}")

    # --- safety ----------------------------------------------------------------------------------
    def make_safe(self) -> None:
        """Bring the instrument to its safe state (output off); subclasses say how."""

    def shutdown(self) -> None:
        """Safe state, then release the transport; safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            self.make_safe()
        finally:
            try:
                self.resource.close()
            except Exception:  # noqa: BLE001 - the transport may already be gone
                pass
