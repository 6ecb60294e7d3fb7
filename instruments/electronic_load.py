"""The :class:`~instruments.roles.ElectronicLoad` role over SCPI: the logic every load shares.

A model's module subclasses :class:`ScpiElectronicLoad` and declares only its command lines, one
per property, with the model's range beside it (see :mod:`instruments.itech_it8900`)::

    current_setpoint, voltage_setpoint,       controls   the CC (A, limit="current"), CV (V),
    resistance_setpoint, power_setpoint                  CR (ohm) and CP (W) set-points
    function, function_mode                   controls   CC/CV/CR/CP; fixed or list
    input_enabled, short_enabled              switches
    list_range, list_count, list_steps        controls   the list: current range, runs, length
    list_level[step], list_width[step]        indexed_control   A (limit="current") and s
    trigger_source                            control
    watchdog_enabled, watchdog_delay          switch, control (s)
    voltage, current                          measurements, V and A

plus :attr:`MODE_CODES` (role mode -> the model's function keyword), :attr:`TRIGGER` and
:attr:`CLEAR_PROTECTION` (commands). The bench passes ``limits={"current": (0, 160)}``
(PACK_SPEC 5): the CC set-point and every list level are checked against the instrument's
range and that limit before a byte is sent. CV, CR and CP set-points have no current limit of
their own; what they draw is watched by the safety supervisor (160 A for 10 ms trips).
"""
from __future__ import annotations

from collections.abc import Sequence

from instruments.errors import InstrumentError
from instruments.roles import ElectronicLoad
from instruments.scpi import ScpiInstrument, control

#: role mode -> the property holding its set-point
SETPOINT_OF = {"CC": "current_setpoint", "CV": "voltage_setpoint", "CR": "resistance_setpoint",
               "CP": "power_setpoint"}


class indexed_control(control):  # noqa: N801 - lower-case like control
    """A control with one value per index (a list step): ``load.list_level[2] = 96.0``.

    ``get_cmd`` takes the index (``"LIST:LEV? {}"``), ``set_cmd`` the index then the value
    (``"LIST:LEV {},{:g}"``). Each set is range- and limit-checked, then confirmed like a control.
    """

    def __get__(self, inst, owner=None):
        return self if inst is None else _Indexed(inst, self)

    def __set__(self, inst, value) -> None:
        raise AttributeError(f"{inst.name}.{self.name}: set one index, {self.name}[i] = value")


class _Indexed:
    def __init__(self, inst: ScpiInstrument, ctl: indexed_control):
        self.inst, self.ctl = inst, ctl

    def __getitem__(self, index: int):
        return self.inst._read(self.ctl.get_cmd.format(index), self.ctl.cast)

    def __setitem__(self, index: int, value) -> None:
        inst, ctl = self.inst, self.ctl
        inst._check_range(ctl, value)
        command = ctl.set_cmd.format(index, value)
        inst.write(command)
        inst.check_errors()
        got = self[index]
        if abs(got - value) > ctl.tolerance:
            raise InstrumentError(inst.name, command, f"set {value!r} but it reads back {got!r}")


class ScpiElectronicLoad(ScpiInstrument, ElectronicLoad):
    """A DC electronic load programmed in SCPI; subclasses declare the model's command lines.

    :param resource: an open pyvisa message-based resource.
    :param name: the instrument's name on the bench (``"eload"``), used in every error.
    :param limits: hard limits from the bench file: ``"current"``, (low, high) in A.
    :param interlock: raises once the safety supervisor has tripped; only the commands that
        make the bench safe (input off, short off, list stopped) pass it.
    """

    #: role mode ("CC", "CV", "CR", "CP") -> the model's FUNCtion keyword
    MODE_CODES: dict[str, str] = {}
    #: starts an armed list (with ``trigger_source`` "BUS")
    TRIGGER = ""
    #: clears latched protections
    CLEAR_PROTECTION = ""
    #: the watchdog delay's resolution, s
    WATCHDOG_STEP_S = 1.0

    def set_mode(self, mode: str, value: float) -> None:
        """Select ``mode`` ("CC" A, "CV" V, "CR" ohm, "CP" W) at ``value``, in fixed mode; the
        input state is unchanged. The set-point is written before the mode switches, so the
        load never runs a stale set-point of the new mode.

        :raises ValueError: an unknown mode.
        :raises LimitRefused: ``value`` beyond the instrument's range or the bench's limit.
        :raises InstrumentError: the instrument reported an error or reads back another value.
        """
        if mode not in SETPOINT_OF:
            raise ValueError(f"{self.name}: mode {mode!r} is not one of {', '.join(SETPOINT_OF)}")
        self._check_range(self._ctl(SETPOINT_OF[mode]), value)
        setattr(self, SETPOINT_OF[mode], value)
        self.function_mode = "FIX"
        self.function = self.MODE_CODES[mode]

    def input_on(self) -> None:
        """Start sinking. :raises InstrumentError: refused (e.g. latched by the watchdog)."""
        self.input_enabled = True

    def input_off(self) -> None:
        """Stop sinking; passes the interlock and is confirmed by read-back."""
        self._safe_set(self._ctl("input_enabled"), False)

    def pulse(self, steps: Sequence[tuple[float, float]]) -> None:
        """Run a CC list once: ``(current A, dwell s)`` steps, e.g. ``[(96, 3.0), (0, 1.0)]``.

        Programs the list, arms it, turns the input on and triggers it; the load holds the last
        step's level afterwards (end a pulse with a 0 A step).

        :raises ValueError: no steps.
        :raises LimitRefused: too many steps, a current beyond the instrument's range or the
            bench's limit, a dwell beyond the range; all checked before anything is sent.
        :raises InstrumentError: the instrument reported an error or reads back another value.
        """
        if not steps:
            raise ValueError(f"{self.name}: a pulse needs at least one step")
        level, width = self._ctl("list_level"), self._ctl("list_width")
        self._check_range(self._ctl("list_steps"), len(steps))
        for current_a, dwell_s in steps:
            self._check_range(level, current_a)
            self._check_range(width, dwell_s)
        self.list_range = self._ctl("list_range").values[1]  # the full range holds every level
        self.list_count = 1
        self.list_steps = len(steps)
        for i, (current_a, dwell_s) in enumerate(steps, start=1):
            self.list_level[i] = current_a
            self.list_width[i] = dwell_s
        self.function_mode = "LIST"
        self.trigger_source = "BUS"
        self.input_enabled = True
        self.write(self.TRIGGER)
        self.check_errors()

    def short(self, on: bool) -> None:
        """Short-circuit mode on or off (it draws only while the input is on). Off passes the
        interlock; on does not."""
        if on:
            self.short_enabled = True
        else:
            self._safe_set(self._ctl("short_enabled"), False)

    def measure(self) -> tuple[float, float]:
        """Measured (voltage V, current A) at the input; current positive into the load."""
        volts, amps = self.query_numbers("MEAS:VOLT?;:MEAS:CURR?", 2)
        return volts, amps

    def protect(self, watchdog_s: float | None) -> None:
        """Program the input watchdog: input off when no command arrives for ``watchdog_s``
        seconds (``None``: off).

        :raises LimitRefused: beyond the instrument's range (nothing sent).
        :raises ValueError: not a whole multiple of :attr:`WATCHDOG_STEP_S`.
        :raises InstrumentError: the instrument reported an error (a model without a watchdog).
        """
        if watchdog_s is None:
            self.watchdog_enabled = False
            return
        self._check_watchdog(watchdog_s)
        self.watchdog_delay = watchdog_s
        self.watchdog_enabled = True

    def clear_protection(self) -> None:
        """Clear latched protections (the input stays off). :raises InstrumentError: refused."""
        self.write(self.CLEAR_PROTECTION)
        self.check_errors()

    def make_safe(self) -> None:
        """Input off, short off, list stopped (fixed mode); works after a safety trip."""
        self._safe_set(self._ctl("input_enabled"), False)
        self._safe_set(self._ctl("short_enabled"), False)
        self._safe_set(self._ctl("function_mode"), "FIX")
