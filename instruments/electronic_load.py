"""The :class:`~instruments.roles.ElectronicLoad` role over SCPI: the logic every load shares.

A model's module subclasses :class:`ScpiElectronicLoad` and declares only its command lines, one
per property, with the model's range beside it (see :mod:`instruments.itech_it8900`)::

    current_setpoint, voltage_setpoint,       controls   the CC (A, limit="current"), CV (V),
    resistance_setpoint, power_setpoint                  CR (ohm) and CP (W) set-points
    function, function_mode                   controls   CC/CV/CR/CP; fixed or list
    input_enabled, short_enabled              switches
    list_range, list_count, list_steps        controls   the list: current range (limit="current"), runs, length
    list_level[step], list_width[step]        indexed_control   A (limit="current") and s
    trigger_source                            control
    ocp_enabled, ocp_level                    switch, control (A, limit="current"): input off above it
    watchdog_enabled, watchdog_delay          switch, control (s, limit="watchdog")
    voltage, current                          measurements, V and A

plus :attr:`MODE_CODES` (role mode -> the model's function keyword), :attr:`TRIGGER` and
:attr:`CLEAR_PROTECTION` (commands).

The bench passes ``limits={"current": (0, 160), "voltage": (vmin, vmax), "watchdog": (0, 5)}``
(PACK_SPEC 5) and every way to make the load sink is gated, before a byte is sent, by the
current it implies over that voltage range:

- CC and every list level and the list range: at most the current limit;
- CR: ``vmax / R`` at most the limit (the highest voltage the load can see: the PSU cap);
- CP: ``P / vmin`` at most the limit, with ``vmin`` the lowest voltage the load is operated at:
  the supervisor's pack minimum, below which it trips the bench (a CP load draws more as the
  voltage falls; under ``vmin`` the load's own OCP, below, cuts it);
- CV sinks whatever current pulls the voltage down, so nothing in the set-point bounds it: the
  load's software over-current protection (``CURR:PROT``, input off above the level) must read
  back on at or below the current limit before CV is selected or the input goes on (it is
  programmed by :meth:`~ScpiElectronicLoad.protect`, and never turned off by this driver);
- input on (``input_on``, ``pulse``, the ``input_enabled`` property): the active set-point,
  the OCP and the watchdog are read back in one round trip and checked first, so a set-point
  left by the front panel is caught too;
- short on: only while the bench's ``short_permit`` says so (the supervisor's short-circuit
  step); without a permit it is always refused;
- the watchdog: never longer than ``"watchdog"``; never off while the input or short reads on.
"""
from __future__ import annotations

from collections.abc import Sequence

from collections.abc import Callable

from instruments.errors import InstrumentError, LimitRefused
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
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"{inst.name}.{ctl.name}: step {index!r} is not a whole number")
        value = inst._check_range(ctl, value)
        command = ctl.set_cmd.format(index, value)
        inst._write(command)
        inst.check_errors()
        got = self[index]
        if abs(got - value) > ctl.tolerance:
            raise InstrumentError(inst.name, command, f"set {value!r} but it reads back {got!r}")


class ScpiElectronicLoad(ScpiInstrument, ElectronicLoad):
    """A DC electronic load programmed in SCPI; subclasses declare the model's command lines.

    :param resource: an open pyvisa message-based resource.
    :param name: the instrument's name on the bench (``"eload"``), used in every error.
    :param limits: hard limits from the bench file: ``"current"`` (A), ``"voltage"`` (the
        bench's voltage range at the load, V), ``"watchdog"`` (longest watchdog, s).
    :param interlock: raises once the safety supervisor has tripped; only the commands that
        make the bench safe (input off, short off, list stopped) pass it.
    :param short_permit: says whether short mode may go on now (the bench's short-circuit
        step); ``None``: never.
    """

    #: role mode ("CC", "CV", "CR", "CP") -> the model's FUNCtion keyword
    MODE_CODES: dict[str, str] = {}
    #: starts an armed list (with ``trigger_source`` "BUS")
    TRIGGER = ""
    #: clears latched protections
    CLEAR_PROTECTION = ""
    #: the watchdog delay's resolution, s
    WATCHDOG_STEP_S = 1.0

    def __init__(self, resource, name: str, limits=None, interlock=None, *,
                 short_permit: Callable[[], bool] | None = None):
        super().__init__(resource, name, limits, interlock)
        self.short_permit = short_permit or (lambda: False)

    def set_mode(self, mode: str, value: float) -> None:
        """Select ``mode`` ("CC" A, "CV" V, "CR" ohm, "CP" W) at ``value``, in fixed mode; the
        input state is unchanged. The set-point is written before the mode switches, so the
        load never runs a stale set-point of the new mode.

        :raises ValueError: an unknown mode.
        :raises LimitRefused: ``value`` beyond the instrument's range or the bench's limit, a CR
            or CP value implying more than the current limit over the bench's voltage range, or
            CV with the load's OCP not on at the current limit (nothing set).
        :raises SetpointTypeError: ``value`` is not a number.
        :raises InstrumentError: the instrument reported an error or reads back another value.
        """
        if not isinstance(mode, str) or mode not in SETPOINT_OF:
            raise ValueError(f"{self.name}: mode {mode!r} is not one of {', '.join(SETPOINT_OF)}")
        self._check_range(self._ctl(SETPOINT_OF[mode]), value)
        if mode == "CV":  # bounded only by the load's OCP: checked before anything is set
            self.interlock()
            self._check_ocp(self._read_state("ocp_enabled", "ocp_level"), "CV is selected")
        setattr(self, SETPOINT_OF[mode], value)
        self.function_mode = "FIX"
        self.function = self.MODE_CODES[mode]

    def input_on(self) -> None:
        """Start sinking, once the active set-point, the OCP and the watchdog read back within
        the limits.

        :raises LimitRefused: one of them is not (nothing was set).
        :raises InstrumentError: refused (e.g. latched by the watchdog).
        """
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
        checked = []
        for step in steps:
            if not isinstance(step, (tuple, list)) or len(step) != 2:
                raise TypeError(f"{self.name}: pulse step {step!r} is not a (current A, dwell s) pair")
            checked.append((self._check_range(level, step[0]), self._check_range(width, step[1])))
        # the list's range is the bench's current limit: it holds every level, and nothing above
        self.list_range = self._require_limit("current", "list_range [A]", None)[1]
        self.list_count = 1
        self.list_steps = len(checked)
        for i, (current_a, dwell_s) in enumerate(checked, start=1):
            self.list_level[i] = current_a
            self.list_width[i] = dwell_s
        self.function_mode = "LIST"
        self.trigger_source = "BUS"
        self.input_enabled = True
        self._write(self.TRIGGER)
        self.check_errors()

    def short(self, on: bool) -> None:
        """Short-circuit mode on or off (it draws only while the input is on). Off passes the
        interlock; on does not, and needs the bench's permit (its short-circuit step).

        :raises LimitRefused: on without the permit (nothing sent).
        :raises SetpointTypeError: ``on`` is not a bool.
        """
        self._check_range(self._ctl("short_enabled"), on)
        if on:
            self.short_enabled = True
        else:
            self._safe_set(self._ctl("short_enabled"), False)

    def measure(self) -> tuple[float, float]:
        """Measured (voltage V, current A) at the input; current positive into the load."""
        volts, amps = self._query_numbers("MEAS:VOLT?;:MEAS:CURR?", 2)
        return volts, amps

    def protect(self, watchdog_s: float | None) -> None:
        """Program the over-current protection at the bench's current limit (input off above it)
        and the input watchdog: input off when no command arrives for ``watchdog_s`` seconds
        (``None``: off, only while the input and short read off; on a bench that gives the load
        no ``"watchdog"``, ``None`` sends no watchdog command at all).

        :raises LimitRefused: beyond the instrument's range or the bench's ``"watchdog"``, no
            current limit on this bench, or ``None`` with the input on (nothing sent).
        :raises ValueError: not a whole multiple of :attr:`WATCHDOG_STEP_S`.
        :raises InstrumentError: the instrument reported an error (a model without a watchdog).
        """
        i_max = self._require_limit("current", "ocp_level [A]", None)[1]
        ocp_a = self._check_range(self._ctl("ocp_level"), i_max)
        no_watchdog = watchdog_s is None and "watchdog" not in self.limits
        if watchdog_s is not None:
            self._check_watchdog(watchdog_s)
        elif not no_watchdog:
            self.interlock()
            self._refuse_while_sinking("watchdog_enabled", False)
        self.ocp_level = ocp_a
        self.ocp_enabled = True
        if no_watchdog:  # the bench gives this load none (a real IT8900 has none): ask for nothing
            return
        if watchdog_s is None:
            self.watchdog_enabled = False
            return
        self.watchdog_delay = watchdog_s
        self.watchdog_enabled = True

    def clear_protection(self) -> None:
        """Clear latched protections (the input stays off). :raises InstrumentError: refused."""
        self._write(self.CLEAR_PROTECTION)
        self.check_errors()

    def make_safe(self) -> None:
        """Input off, short off, list stopped (fixed mode); works after a safety trip."""
        self._safe_set(self._ctl("input_enabled"), False)
        self._safe_set(self._ctl("short_enabled"), False)
        self._safe_set(self._ctl("function_mode"), "FIX")

    # --- gates ---------------------------------------------------------------------------------
    def _check_range(self, ctl, value):
        """Type, range and limit as every control, then the current a CR or CP set-point implies
        over the bench's voltage range (``"voltage"``), against ``"current"``."""
        value = super()._check_range(ctl, value)
        if ctl.name in ("resistance_setpoint", "power_setpoint"):
            quantity = self._quantity(ctl)
            v_min, v_max = self._require_limit("voltage", quantity, value)
            i_max = self._require_limit("current", quantity, value)[1]
            if ctl.name == "resistance_setpoint":
                at_v, amps = v_max, v_max / value
            else:
                at_v, amps = v_min, (value / v_min if v_min > 0 else (0.0 if value == 0 else float("inf")))
            if amps > i_max:
                raise LimitRefused(self.name, quantity, value,
                                   f"draws {amps:.4g} A at {at_v:g} V, the bench's "
                                   f"{'highest' if at_v == v_max else 'lowest'} voltage at the load: "
                                   f"beyond the bench current limit {i_max:g} A")
        return value

    def _gate(self, ctl, value) -> None:
        """What a setting would do given the load's state, read back: see the module docstring."""
        name = ctl.name
        if name == "input_enabled" and value:
            self._check_input_state("input on")
        elif name == "short_enabled" and value and not self.short_permit():
            raise LimitRefused(self.name, "short_enabled", value, "short mode is allowed only while "
                               "the bench permits it (inside the supervisor's short-circuit step)")
        elif name == "function" and value == self.MODE_CODES["CV"]:
            state = self._read_state("ocp_enabled", "ocp_level")
            self._check_ocp(state, "CV is selected")
        elif name == "function_mode" and value == "LIST":
            self._check_read_back("list_range", self.list_range, "list mode")
        elif name == "ocp_enabled" and not value:
            raise LimitRefused(self.name, name, value, "the over-current protection stays on: it is "
                               "the bench's current bound in CV and below its lowest voltage")
        elif name == "watchdog_enabled" and not value:
            self._refuse_while_sinking(name, value)

    def _check_input_state(self, before: str) -> None:
        """Function, mode, short, every set-point, OCP and watchdog in one round trip; the ones
        that act when the input goes on must be within the limits."""
        watched = "watchdog" in self.limits
        state = self._read_state("function", "function_mode", "short_enabled", "current_setpoint",
                                 "resistance_setpoint", "power_setpoint", "list_range", "ocp_enabled",
                                 "ocp_level", *(["watchdog_enabled", "watchdog_delay"] if watched else []))
        if state["function_mode"] == "LIST":
            self._check_read_back("list_range", state["list_range"], before)
        else:
            for mode, code in self.MODE_CODES.items():
                if state["function"] == code and mode != "CV":
                    self._check_read_back(SETPOINT_OF[mode], state[SETPOINT_OF[mode]], before)
        if state["short_enabled"] and not self.short_permit():
            raise LimitRefused(self.name, "short_enabled (read back)", True,
                               f"short mode must be off before {before} outside the short-circuit step")
        self._check_ocp(state, before)
        if watched:
            self._check_watchdog_armed(state["watchdog_enabled"], state["watchdog_delay"], before)

    def _check_read_back(self, name: str, value, before: str) -> None:
        try:
            self._check_range(self._ctl(name), value)
        except LimitRefused as exc:
            raise LimitRefused(self.name, f"{exc.quantity} (read back)", exc.value,
                               f"{exc.limit}, before {before}") from None

    def _check_ocp(self, state: dict, before: str) -> None:
        """The over-current protection, read back: on, at or below the bench's current limit."""
        i_max = self._require_limit("current", "ocp_level [A]", None)[1]
        if not state["ocp_enabled"]:
            raise LimitRefused(self.name, "ocp_enabled (read back)", False,
                               f"the over-current protection must be on (at most {i_max:g} A) before "
                               f"{before}: protect() programs it")
        if not state["ocp_level"] <= i_max:
            raise LimitRefused(self.name, "ocp_level [A] (read back)", state["ocp_level"],
                               f"bench current limit {i_max:g} A before {before}")

    def _refuse_while_sinking(self, quantity: str, value) -> None:
        """Refuse a setting that leaves the load unguarded while its input or short reads on."""
        state = self._read_state("input_enabled", "short_enabled")
        if state["input_enabled"] or state["short_enabled"]:
            raise LimitRefused(self.name, quantity, value, "not while the input or short mode is on: "
                               "turn them off first")
