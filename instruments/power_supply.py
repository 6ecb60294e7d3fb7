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
The bench passes ``limits={"voltage": (0, 64.5), "current": (0, 80)}`` (PACK_SPEC 5): every
set-point is checked against the instrument's range and those limits before a byte is sent;
a call that sets several values checks them all first, so a refusal leaves nothing half-set.
"""
from __future__ import annotations

from instruments.errors import InstrumentError
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
        volts, amps = self.query_numbers("MEAS:VOLT?;:MEAS:CURR?", 2)
        return volts, amps

    def protect(self, ovp_v: float, ocp: bool, watchdog_s: float | None) -> None:
        """Program OVP (V), OCP on/off and the output watchdog (s; ``None`` turns it off).

        :raises LimitRefused: OVP or the watchdog delay beyond the instrument's range, or OVP
            beyond the bench's voltage limit; all checked before anything is sent.
        :raises ValueError: ``ocp`` is not a bool, or ``watchdog_s`` is not a whole multiple of
            :attr:`WATCHDOG_STEP_S`.
        :raises InstrumentError: the instrument reported an error or reads back another value.
        """
        self._check_range(self._ctl("ovp_level"), ovp_v)
        self._check_range(self._ctl("ocp_enabled"), ocp)
        if watchdog_s is not None:
            self._check_watchdog(watchdog_s)
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
        refused after a safety trip like any command that may turn the output on.

        :raises InstrumentError: the instrument reported an error.
        """
        self.write(self.CLEAR_PROTECTION)
        self.check_errors()

    def make_safe(self) -> None:
        """Output off (works after a safety trip)."""
        self.output_off()
