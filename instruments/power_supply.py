"""The :class:`~instruments.roles.PowerSupply` role over SCPI: the logic every supply shares.

A model's module subclasses :class:`ScpiPowerSupply` and declares only its command lines, one per
property, with the model's range beside it (see :mod:`instruments.keysight_n8900`)::

    voltage_setpoint   control   CV set-point, V              limit="voltage"
    current_setpoint   control   CC limit, A                  limit="current"
    ovp_level          control   over-voltage protection, V   limit="voltage"
    ocp_enabled        switch    over-current protection
    output_enabled     switch    output on/off
    watchdog_enabled   switch    output off when the I/O goes quiet
    watchdog_delay     control   that quiet time, s
    voltage, current   measurement   at the output, V and A
    questionable       measurement   the latched-protection register (int)

plus :attr:`PROTECTION_BITS` (register bit -> name) and :attr:`CLEAR_PROTECTION` (command).
The bench passes ``limits={"voltage": (0, 64.5), "current": (0, 80), "watchdog": (0, 5)}``
(PACK_SPEC 5): every set-point is checked against the instrument's range and those limits
before a byte is sent; a call that sets several values checks them all first, so a refusal
leaves nothing half-set. The output goes on (``output_on``, ``clear_protection``, or the
``output_enabled`` property) only when the set-points, the OVP level and the watchdog *as read
back* are within the limits: a value left by the front panel or another program is caught too.
The watchdog is never longer than the bench's ``"watchdog"`` value and never turned off while
the output reads on.

OCP: on the N8900 it trips the output whenever the supply enters CC, which is how this bench
charges (CC, then CV), so the bench programs it off; the current is bounded by the CC limit
itself, which is gated against ``"current"`` like every set-point.
"""
from __future__ import annotations

from instruments.errors import InstrumentError, LimitRefused
from instruments.roles import PowerSupply
from instruments.scpi import ScpiInstrument


class ScpiPowerSupply(ScpiInstrument, PowerSupply):
    """A DC source programmed in SCPI; subclasses declare the model's command lines.

    :param resource: an open pyvisa message-based resource.
    :param name: the instrument's name on the bench (``"psu"``), used in every error.
    :param limits: hard limits from the bench file: ``"voltage"`` and ``"current"``, (low, high).
    :param interlock: raises once the safety supervisor has tripped; only ``output_off`` passes it.
    """

    #: STATus:QUEStionable bit -> name of the protection that latched the output off
    PROTECTION_BITS: dict[int, str] = {}
    #: the command that clears latched protections
    CLEAR_PROTECTION = ""
    #: the watchdog delay's resolution, s (values must be whole multiples of it)
    WATCHDOG_STEP_S = 1.0

    def apply(self, voltage_v: float, current_a: float) -> None:
        """Program the CV set-point (V) and the CC limit (A); the output state is unchanged.

        :raises LimitRefused: either value beyond the instrument's range or the bench's hard
            limit; checked for both before anything is sent.
        :raises InstrumentError: the instrument reported an error or reads back another value.
        """
        self._check_range(self._ctl("voltage_setpoint"), voltage_v)
        self._check_range(self._ctl("current_setpoint"), current_a)
        self.voltage_setpoint = voltage_v
        self.current_setpoint = current_a

    def output_on(self) -> None:
        """Turn the output on, then make sure no latched protection keeps it off.

        :raises InstrumentError: the instrument refused, or a protection is latched (clear it
            with :meth:`clear_protection` once its cause is gone).
        """
        self.output_enabled = True
        latched = self.latched_protections()
        if latched:
            raise InstrumentError(self.name, self._ctl("output_enabled").set_cmd.format("ON"),
                                  f"output stays off: latched by {', '.join(latched)} protection; "
                                  "remove the cause, then clear_protection()")

    def output_off(self) -> None:
        """Turn the output off; passes the interlock (it makes the bench safe).

        Confirmed by reading the state back, not by the error queue: a stale error from an
        earlier command must not make the safe path fail.

        :raises InstrumentError: the output still reads on, or the instrument does not answer.
        """
        self._safe_set(self._ctl("output_enabled"), False)

    def measure(self) -> tuple[float, float]:
        """Measured (voltage V, current A) at the output; current positive out of the supply."""
        volts, amps = self._query_numbers("MEAS:VOLT?;:MEAS:CURR?", 2)
        return volts, amps

    def protect(self, ovp_v: float, ocp: bool, watchdog_s: float | None) -> None:
        """Program OVP (V), OCP on/off and the output watchdog (s; ``None`` turns it off, only
        while the output reads off).

        :raises LimitRefused: OVP or the watchdog delay beyond the instrument's range, OVP beyond
            the bench's voltage limit, the watchdog longer than the bench's ``"watchdog"``, or
            ``None`` while the output is on; all checked before anything is set.
        :raises SetpointTypeError: ``ocp`` is not a bool, or a value is not a number.
        :raises ValueError: ``watchdog_s`` is not a whole multiple of :attr:`WATCHDOG_STEP_S`.
        :raises InstrumentError: the instrument reported an error or reads back another value.
        """
        self._check_range(self._ctl("ovp_level"), ovp_v)
        self._check_range(self._ctl("ocp_enabled"), ocp)
        if watchdog_s is not None:
            self._check_watchdog(watchdog_s)
        else:
            self.interlock()
            self._refuse_while_on("watchdog_enabled", False)
        self.ovp_level = ovp_v
        self.ocp_enabled = ocp
        if watchdog_s is None:
            self.watchdog_enabled = False
        else:
            self.watchdog_delay = watchdog_s
            self.watchdog_enabled = True

    def latched_protections(self) -> list[str]:
        """Names of the protections holding the output off now (empty: none)."""
        register = self.questionable
        return [name for bit, name in sorted(self.PROTECTION_BITS.items()) if register & bit]

    def clear_protection(self) -> None:
        """Clear latched protections; the output returns to its programmed state, so this is
        refused after a safety trip, and checked like :meth:`output_on`, as any command that may
        turn the output on.

        :raises LimitRefused: a set-point or the watchdog as read back is beyond the limits.
        :raises InstrumentError: the instrument reported an error.
        """
        self.interlock()
        self._check_output_state("clearing the protections")
        self._write(self.CLEAR_PROTECTION)
        self.check_errors()

    # --- gates ---------------------------------------------------------------------------------
    def _gate(self, ctl, value) -> None:
        """Output on: every set-point and the watchdog, read back, within the limits. Watchdog
        off: only while the output is off."""
        if ctl.name == "output_enabled" and value:
            self._check_output_state("output on")
        elif ctl.name == "watchdog_enabled" and not value:
            self._refuse_while_on(ctl.name, value)

    def _check_output_state(self, before: str) -> None:
        """The programmed CV set-point, CC limit and OVP level (read back in one round trip) within
        the instrument's range and the bench's limits, and the watchdog on within its limit.

        :raises LimitRefused: naming the first value out of bounds (nothing was set).
        """
        names = ["voltage_setpoint", "current_setpoint", "ovp_level"]
        watched = "watchdog" in self.limits
        state = self._read_state(*names, *(["watchdog_enabled", "watchdog_delay"] if watched else []))
        for name in names:
            try:
                self._check_range(self._ctl(name), state[name])
            except LimitRefused as exc:
                raise LimitRefused(self.name, f"{exc.quantity} (read back)", exc.value,
                                   f"{exc.limit}, before {before}") from None
        if watched:
            self._check_watchdog_armed(state["watchdog_enabled"], state["watchdog_delay"], before)

    def _refuse_while_on(self, quantity: str, value) -> None:
        """Refuse a setting that leaves the output unguarded while the output reads on."""
        if self.output_enabled:
            raise LimitRefused(self.name, quantity, value, "not while the output is on: turn it off first")

    def make_safe(self) -> None:
        """Output off (works after a safety trip)."""
        self.output_off()
