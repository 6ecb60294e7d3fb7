"""SCPI instrument drivers: declared properties, hard limits, confirmed writes.

A driver is a subclass of :class:`ScpiInstrument` that declares one line per property, the
way PyMeasure does, with the instrument's own range beside it::

    voltage_setpoint = control("VOLT?", "VOLT {:.3f}", "Output voltage set-point, V.",
                               unit="V", values=(0.0, 80.0), limit="voltage")
    voltage = measurement("MEAS:VOLT?", "Output voltage as measured, V.", unit="V")

Setting a ``control`` goes through four gates before any byte is sent, and nothing is ever
clipped:

1. the type: a number for a numeric control (``True`` is not 1 V; NaN and inf are refused), a
   bool for a switch, a str for a keyword; else :class:`~instruments.errors.SetpointTypeError`
   (a ``LimitRefused`` and a ``TypeError``) naming instrument, quantity and value;
2. the instrument's range (``values``): beyond it, :class:`~rig.errors.LimitRefused`;
3. the bench's **hard limit** for that quantity (``limit`` names a key of the ``limits``
   mapping the bench passes in, e.g. ``{"voltage": (0, 64.5)}``): beyond it, ``LimitRefused``
   naming instrument, quantity, value and limit;
4. the interlock: once the safety supervisor has tripped, every command except the ones that
   make the bench safe is refused; then the role's own gate (:meth:`ScpiInstrument._gate`,
   e.g. "output on only with every set-point and the watchdog within the limits", read back).

Raw SCPI goes through a gate too: :meth:`ScpiInstrument.write` and :meth:`~ScpiInstrument.query`
are public, but send only queries and the few commands that set nothing (:attr:`RAW_WRITES`);
anything that sets a control is refused, so no raw line can pass around the gates above.

Then the write is confirmed: the value is read back (within ``tolerance``) and ``SYST:ERR?``
is read until empty; an instrument error raises :class:`~rig.errors.InstrumentError` naming
the instrument, the command and the error text. Every query has the resource's timeout; a
silent instrument raises ``InstrumentError`` too, and before the next command the exchange is
brought back in step (:meth:`ScpiInstrument._resynchronise`), so a reply that comes after its
query gave up is not taken for the next query's (replies to ``MEAS:VOLT?`` and ``MEAS:CURR?``
look alike). Each command is reported to the listeners
(the recorder) as a step: command, reply, error, duration.

The transport is passed in (a pyvisa message-based resource); the driver never opens one. The
declarations (:func:`control`, :func:`measurement`, :func:`switch`) are in
:mod:`instruments.scpi_properties` and importable from here.
"""
from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from instruments.errors import InstrumentError, LimitRefused, SetpointTypeError
from instruments.scpi_properties import Range, control, measurement, on_off, switch

__all__ = ["Range", "ScpiInstrument", "Step", "control", "measurement", "on_off", "switch"]


@dataclass(frozen=True)
class Step:
    """One command as sent, for the recording listeners."""

    instrument: str
    command: str
    reply: str | None
    error: str | None
    duration_s: float


class ScpiInstrument:
    """Base of a SCPI driver: transport, limits, interlock, confirmed writes, error queue.

    :param resource: an open pyvisa message-based resource (its timeout is the query timeout).
    :param name: the instrument's name on this bench, used in every error ("psu", "eload").
    :param limits: hard limits from the bench file, quantity -> (low, high).
    :param interlock: raises when commands are no longer allowed (the supervisor tripped).
    """

    #: the ``*IDN?`` model substring this driver speaks to; checked by :meth:`identify`
    model = ""
    #: the only non-query commands :meth:`write` sends raw: they set nothing (IEEE 488.2)
    RAW_WRITES = frozenset({"*CLS", "*OPC", "*WAI"})

    def __init__(self, resource, name: str, limits: Mapping[str, Range] | None = None,
                 interlock: Callable[[], None] | None = None):
        self.resource, self.name = resource, name
        self.limits: dict[str, Range] = dict(limits or {})
        self.interlock = interlock or (lambda: None)
        self.listeners: list[Callable[[Step], None]] = []
        self.lock = threading.RLock()  # the supervisor thread and the test share the transport
        self._shut_down = False
        self._reply_lost = False  # a query gave up waiting: its reply may still come

    # --- transport ---------------------------------------------------------------------------
    def _io(self, command: str, query: bool) -> str | None:
        started, reply, error = time.perf_counter(), None, None
        try:
            with self.lock:
                if self._reply_lost:
                    self._resynchronise()
                    self._reply_lost = False
                if query:
                    try:
                        reply = self.resource.query(command).strip()
                    except Exception:
                        self._reply_lost = True
                        raise
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

    #: A query every instrument of the class answers with a known reply (IEEE 488.2 ``*OPC?``), to
    #: find the end of a late reply; None: the instrument has none (only pending input is dropped).
    SYNC_QUERY, SYNC_REPLY = "*OPC?", "1"

    def _resynchronise(self) -> None:
        """A query gave up waiting, and its reply may still come. Drop what is pending, ask
        :attr:`SYNC_QUERY` and read until its reply: replies come in order, so a late one comes
        before it and is dropped; then drop pending input once more, in case the lost reply was
        itself a ``1``. A sync query left unanswered raises, and the next command tries again."""
        self._drop_pending()
        if self.SYNC_QUERY is None:
            return
        self.resource.write(self.SYNC_QUERY)
        for _ in range(3):  # the late reply, maybe an error text with it, then ours
            if self.resource.read().strip() == self.SYNC_REPLY:
                self._drop_pending()
                return
        raise InstrumentError(self.name, self.SYNC_QUERY, "replies out of step after a lost reply")

    def _drop_pending(self, wait_ms: int = 100) -> None:
        """Read and drop lines until none comes for ``wait_ms``. (Not VISA's viClear: pyvisa-py's
        clear() of a socket never returns once the peer has closed it.)"""
        timeout = self.resource.timeout
        self.resource.timeout = wait_ms
        try:
            for _ in range(8):
                self.resource.read()
        except Exception:  # pyvisa's VisaIOError: nothing more came, or the connection is gone
            pass
        finally:
            self.resource.timeout = timeout

    def _write(self, command: str, *, safe: bool = False) -> None:
        """Send a command as the driver composed it. ``safe=True`` marks a command that makes the
        bench safer (output off): it passes the interlock, everything else is refused once the
        supervisor has tripped."""
        if not safe:
            self.interlock()
        self._io(command, query=False)

    def _query(self, command: str) -> str:
        """Send a query as the driver composed it; return its reply (stripped)."""
        return self._io(command, query=True)

    # --- raw SCPI: queries and commands that set nothing ------------------------------------------
    def _headers(self, line: str) -> list[str]:
        """The header of each command of a ``;``-joined SCPI line, upper case, no leading ``:``."""
        return [part.split(None, 1)[0].lstrip(":").upper() if part.split() else ""
                for part in (p.strip() for p in line.split(";"))]

    def _check_raw(self, line, *, query: bool) -> None:
        """Refuse a raw line that sets anything: each of its commands must be a query (a header
        ending in ``?``) or one of :attr:`RAW_WRITES`; a query line must hold a query."""
        if not isinstance(line, str):
            raise SetpointTypeError(self.name, "raw command", line, "a str")
        if not line.isprintable():  # a newline (any control character) would end the line early
            raise LimitRefused(self.name, "raw command", line, "one line of printable text, no control "
                               "characters (a newline would start a second, unchecked command)")
        headers = self._headers(line)
        setting = [h for h in headers if not h.endswith("?") and h not in self.RAW_WRITES]
        if setting or (query and not any(h.endswith("?") for h in headers)):
            raise LimitRefused(self.name, "raw command", line,
                               f"a raw line may hold only queries and {', '.join(sorted(self.RAW_WRITES))}; "
                               "settings go through the driver's methods, which check them")

    def write(self, command: str) -> None:
        """Send a raw line that sets nothing (e.g. ``*CLS``); refused once the supervisor has
        tripped, like every command that does not make the bench safe.

        :raises LimitRefused: the line would set something (nothing sent); use the driver's
            methods and properties, which check the limits.
        """
        self._check_raw(command, query=False)
        self._write(command)

    def query(self, command: str) -> str:
        """Send a raw query and return its reply (stripped).

        :raises LimitRefused: the line also sets something (nothing sent).
        :raises InstrumentError: no answer (timeout) or a transport error.
        """
        self._check_raw(command, query=True)
        return self._query(command)

    def query_numbers(self, command: str, count: int) -> tuple[float, ...]:
        """A raw query answered with ``count`` numbers, ``;``- or ``,``-separated (a compound
        query: several readings of the same instant in one round trip); checked as :meth:`query`."""
        self._check_raw(command, query=True)
        return self._query_numbers(command, count)

    def _query_numbers(self, command: str, count: int) -> tuple[float, ...]:
        """:meth:`query_numbers` for a query the driver composed."""
        reply = self._query(command)
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
            reply = self._query("SYST:ERR?")
            code = reply.split(",", 1)[0].strip().lstrip("+")
            if code in ("0", ""):
                break
            errors.append(reply)
        if errors:
            raise InstrumentError(self.name, "SYST:ERR?", "; ".join(errors))

    def identify(self) -> str:
        """``*IDN?``; raises when the instrument is not the model this driver speaks to."""
        idn = self._query("*IDN?")
        if self.model and self.model.upper() not in idn.upper():
            raise InstrumentError(self.name, "*IDN?", f"{idn!r} is not a {self.model}")
        return idn

    # --- declared properties -----------------------------------------------------------------
    def _read(self, command: str, cast: Callable[[str], Any]):
        reply = self._query(command)
        try:
            return cast(reply)
        except ValueError:
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r}") from None

    def _read_state(self, *names: str) -> dict[str, Any]:
        """Several declared controls read back in one compound query (one round trip)."""
        ctls = [self._ctl(name) for name in names]
        command = ";:".join(ctl.get_cmd for ctl in ctls)
        reply = self._query(command)
        fields = reply.split(";")
        try:
            if len(fields) != len(ctls):
                raise ValueError(reply)
            return {ctl.name: ctl.cast(text.strip()) for ctl, text in zip(ctls, fields)}
        except ValueError:
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r} "
                                  f"({len(ctls)} values expected)") from None

    def _set(self, ctl: control, value) -> None:
        value = self._check_range(ctl, value)
        self.interlock()  # before the gate's read-backs: a tripped bench is sent nothing at all
        self._gate(ctl, value)
        text = ctl.fmt(value) if ctl.fmt else value
        self._write(ctl.set_cmd.format(text))
        if ctl.confirm:
            self.check_errors()
            if ctl.get_cmd is not None:
                self._confirm(ctl, value)

    def _gate(self, ctl: control, value) -> None:
        """The role's own check of a setting that passed its range and limit, before it is sent:
        what the setting would do given the instrument's state (read back). Raises
        ``LimitRefused``; the base has nothing to add."""

    @staticmethod
    def _quantity(ctl: control) -> str:
        return f"{ctl.name} [{ctl.unit}]" if ctl.unit else ctl.name

    def _check_range(self, ctl: control, value):
        """Type, instrument range and bench hard limit of ``value`` for ``ctl``, before anything
        is sent; returns the value as sent (a plain int, float, bool or str).

        :raises SetpointTypeError: the wrong type (a str or None for a number, a bool for a
            number, a number for a switch ...).
        :raises LimitRefused: NaN, inf, beyond the instrument's range or the bench's limit.
        :raises ValueError: a keyword the control does not have.
        """
        quantity = self._quantity(ctl)
        if isinstance(ctl.values, tuple):
            lo, hi = ctl.values
            whole = isinstance(lo, int) and isinstance(hi, int)
            kind = numbers.Integral if whole else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind):
                raise SetpointTypeError(self.name, quantity, value,
                                        "a whole number" if whole else "a real number (int or float)")
            try:
                value = int(value) if whole else float(value)
            except OverflowError:  # an int beyond any float: beyond any range too
                value = math.inf if value > 0 else -math.inf
            if not math.isfinite(value) or not lo <= value <= hi:
                raise LimitRefused(self.name, quantity, value, f"instrument range [{lo:g}, {hi:g}]")
        elif ctl.values is not None:
            allowed = sorted(map(str, ctl.values))
            if ctl.values == {True, False}:
                if not isinstance(value, bool):
                    raise SetpointTypeError(self.name, quantity, value, "True or False")
            elif all(isinstance(v, str) for v in ctl.values):
                if not isinstance(value, str):
                    raise SetpointTypeError(self.name, quantity, value, f"one of {', '.join(allowed)}")
            elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise SetpointTypeError(self.name, quantity, value, f"one of {', '.join(allowed)}")
            if value not in ctl.values:
                raise ValueError(f"{self.name}.{ctl.name}: {value!r} not one of {allowed}")
        if ctl.limit is not None:
            self._check_limit(ctl.limit, quantity, value)
        return value

    def _require_limit(self, key: str, quantity: str, value) -> tuple[float, float]:
        """The bench's hard limit ``key``; refused when the bench gives none."""
        if key not in self.limits:
            raise LimitRefused(self.name, quantity, value, f"'{key}': no hard limit configured "
                               "for it on this bench: refusing rather than guessing")
        return self.limits[key]

    def _check_limit(self, key: str, quantity: str, value: float) -> None:
        """``value`` within the bench's hard limit ``key``; refused when the bench gives none."""
        lo, hi = self._require_limit(key, quantity, value)
        if not lo <= value <= hi:
            raise LimitRefused(self.name, quantity, value, f"bench hard limit [{lo:g}, {hi:g}]")

    def _ctl(self, name: str) -> control:
        """The declared control ``name`` of this driver's class."""
        return getattr(type(self), name)

    def _safe_set(self, ctl: control, value) -> None:
        """Set a control with a command that makes the bench safe: past the interlock, then
        confirmed by read-back (not by the error queue, which may hold a stale error)."""
        value = self._check_range(ctl, value)
        self._write(ctl.set_cmd.format(ctl.fmt(value) if ctl.fmt else value), safe=True)
        self._confirm(ctl, value)

    def _check_watchdog(self, watchdog_s: float) -> None:
        """A watchdog delay within the ``watchdog_delay`` control's range and a whole number of
        the model's ``WATCHDOG_STEP_S`` (it times nothing finer); checked before anything is sent.

        :raises LimitRefused: beyond the instrument's range. :raises ValueError: not a whole step.
        """
        watchdog_s = self._check_range(self._ctl("watchdog_delay"), watchdog_s)
        steps = watchdog_s / self.WATCHDOG_STEP_S
        if steps != round(steps):
            raise ValueError(f"{self.name}: watchdog of {watchdog_s:g} s is not a whole multiple of "
                             f"{self.WATCHDOG_STEP_S:g} s, which is all this model can time")

    def _check_watchdog_armed(self, enabled: bool, delay_s: float, before: str) -> None:
        """On a bench that gives a ``"watchdog"`` limit (the longest silence allowed, s): the
        watchdog as read back must be on and no longer than that, ``before`` an output goes on.

        :raises LimitRefused: off, or longer than the bench's value (nothing was sent).
        """
        if "watchdog" not in self.limits:
            return
        hi = self.limits["watchdog"][1]
        if not enabled:
            raise LimitRefused(self.name, "watchdog_enabled (read back)", enabled,
                               f"the watchdog must be on, at most {hi:g} s, before {before}")
        if not delay_s <= hi:
            raise LimitRefused(self.name, "watchdog_delay [s] (read back)", delay_s,
                               f"bench hard limit [0, {hi:g}] before {before}")

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
