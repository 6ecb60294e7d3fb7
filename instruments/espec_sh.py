"""Driver: ESPEC SH/SU-series climate chamber (P-300 controller command set, LAN or RS-232).

Model and sources: ESPEC SU-242 / SH-242 bench-top chambers (-40 to +150 C). Commands and
replies as ESPEC North America's own library sends and parses them
(``EspecNorthAmerica/ChamberConnectLibrary``: ``p300.py`` ``write_temp`` -> ``TEMP, S%0.1f``,
``write_mode_constant`` -> ``MODE,CONSTANT``, ``write_mode_standby`` -> ``MODE,STANDBY``,
``read_temp`` <- ``TEMP?`` "measured,set-point,upper,lower", ``read_constant_temp`` <-
``CONSTANT SET?,TEMP`` "23.0,ON", ``read_mon`` <- ``MON?``, ``write_run_prgm`` ->
``RUN PRGM, TEMP%0.1f TIME%d:%d GOTEMP%0.1f``; ``especinteract.py``: a reply starting ``NA:``
is an error, e.g. ``NA:DATA OUT OF RANGE``), and ``akaeba/ATWG`` (SH-641: ``OK:TEMP,S25``).

This is not SCPI: every command, settings included, is answered on its own line (``OK:<the
command>`` or ``NA:<reason>``) and there is no ``SYST:ERR?`` queue. So this driver overrides
the base class's transport: a setting reads its acknowledgement and raises
:class:`~instruments.errors.InstrumentError` on ``NA:``, a query raises on ``NA:`` too, and
:meth:`check_errors` has nothing to read. Raw lines (:meth:`write`, :meth:`query`) may only be
queries (a ``?`` before the first comma: ``TEMP?``, ``CONSTANT SET?,TEMP``). The declared
set-point still goes through the base's gates (type, instrument range, bench hard limit
``"temperature"``, interlock) and is confirmed by reading it back. On a real chamber's LAN port the replies end in CR LF: open the resource
with ``read_termination="\\r\\n"`` (``"\\n"`` works as well; the CR is stripped).

A ramp is ESPEC's one-step remote program: from the air temperature now to the set-point in
whole minutes (at least 1, at most 99 h 59 min), so the rate achieved is the one asked for to
within that rounding. The constant set-point is set to the same target first, so the chamber
holds the target when the program ends in CONSTANT.
"""
from __future__ import annotations

import numbers

from instruments.errors import InstrumentError, LimitRefused, SetpointTypeError
from instruments.roles import Chamber
from instruments.scpi import ScpiInstrument, control, measurement


def field(index: int):
    """A cast taking one comma-separated field of a reply as a float."""

    def cast(reply: str) -> float:
        return float(reply.split(",")[index])

    cast.__name__ = f"field{index}"
    return cast


class EspecSh(ScpiInstrument, Chamber):
    """ESPEC SH/SU chamber regulating the air around the pack(s).

    :param resource: an open pyvisa message-based resource to the chamber's LAN port.
    :param name: the instrument's name on this bench ("chamber").
    :param limits: hard limits from the bench file; ``"temperature"`` (C) bounds the set-point,
        e.g. ``{"temperature": (-25, 70)}`` (PACK_SPEC.md 5).
    :param interlock: raises once the safety supervisor has tripped; standby still goes through.
    """

    model = ""  # no *IDN?; identify() answers the ROM? text
    #: ramp rates the driver accepts, C/min (the chamber's own pull-down/heat-up is about 1-3 C/min)
    RAMP_RANGE = (0.1, 10.0)

    temperature_setpoint = control("CONSTANT SET?,TEMP", "TEMP, S{:.1f}",
                                   "Constant-mode air temperature set-point, C, -40 to 150 (0.1 C "
                                   "steps), and within the bench's hard limit.", unit="C",
                                   values=(-40.0, 150.0), limit="temperature", tolerance=0.051,
                                   cast=field(0))
    mode = measurement("MODE?", "Operating mode: OFF, STANDBY, CONSTANT or RUN (program).", cast=str)
    air_c = measurement("TEMP?", "Measured air temperature, C.", unit="C", cast=field(0))

    #: no IEEE 488.2 common commands: a raw line may only be a query, and after a lost reply only
    #: pending input is dropped (no *OPC? to find the end of a late reply)
    RAW_WRITES = frozenset()
    SYNC_QUERY = None

    # --- ESPEC's transport: every line answered, errors in the answer ------------------------------
    def _headers(self, line: str) -> list[str]:
        """One command per line; its header is what comes before the first comma."""
        return [line.split(",", 1)[0].strip().upper()]

    def _query(self, command: str) -> str:
        """Send a command and return its reply.

        :raises InstrumentError: ``NA:<reason>``, no answer, or a transport error.
        """
        reply = super()._query(command)
        if reply.startswith("NA:"):
            raise InstrumentError(self.name, command, reply)
        return reply

    def _write(self, command: str, *, safe: bool = False) -> None:
        """Send a setting and check its acknowledgement (``OK:...``). ``safe=True`` passes the
        interlock (standby); everything else is refused once the supervisor has tripped.

        :raises InstrumentError: ``NA:<reason>``, another reply than ``OK:``, or no answer.
        """
        if not safe:
            self.interlock()
        reply = self._query(command)
        if not reply.startswith("OK:"):
            raise InstrumentError(self.name, command, f"no acknowledgement: {reply!r}")

    def check_errors(self) -> None:
        """Nothing to read: the chamber answers each command with its own error (see :meth:`write`)."""

    def identify(self) -> str:
        """The controller's model code and ROM version (``ROM?``)."""
        return self._query("ROM?")

    # --- the Chamber role ------------------------------------------------------------------------
    def air_temperature(self) -> float:
        """Measured air temperature, C (``TEMP?``, first field)."""
        return self.air_c

    def run(self, setpoint_c: float, ramp_c_per_min: float | None = None) -> None:
        """Regulate the air to ``setpoint_c``: at once in CONSTANT mode, or ramped there from the
        air temperature now by a one-step remote program.

        :param setpoint_c: C, within -40..150 and the bench's ``"temperature"`` limit.
        :param ramp_c_per_min: C/min within :attr:`RAMP_RANGE`, or None for as fast as it can.
        :raises LimitRefused: beyond the chamber's range, the bench limit, or the ramp range, or
            (ramped) the air now is beyond the bench limit; no setting was sent.
        :raises InstrumentError: the chamber refused a command (``NA:...``) or did not answer.
        """
        setpoint = type(self).temperature_setpoint
        setpoint_c = self._check_range(setpoint, setpoint_c)
        if ramp_c_per_min is not None:
            lo, hi = self.RAMP_RANGE
            if isinstance(ramp_c_per_min, bool) or not isinstance(ramp_c_per_min, numbers.Real):
                raise SetpointTypeError(self.name, "ramp [C/min]", ramp_c_per_min, "a real number")
            if not lo <= ramp_c_per_min <= hi:  # NaN fails this too
                raise LimitRefused(self.name, "ramp [C/min]", ramp_c_per_min,
                                   f"driver range [{lo:g}, {hi:g}]")
        self.interlock()  # before the first byte: a tripped bench sends nothing at all
        if ramp_c_per_min is None:
            self.temperature_setpoint = setpoint_c
            self._write("MODE,CONSTANT")
            return
        # the program starts from the air temperature: that is a set-point too, so it must be
        # inside the bench limit before anything is set
        start_c = round(self.air_temperature(), 1)
        self._check_range(setpoint, start_c)
        self.temperature_setpoint = setpoint_c
        minutes = min(99 * 60 + 59, max(1, round(abs(setpoint_c - start_c) / ramp_c_per_min)))
        self._write(f"RUN PRGM, TEMP{start_c:.1f} TIME{minutes // 60}:{minutes % 60} GOTEMP{setpoint_c:.1f}")

    def standby(self) -> None:
        """Stop regulating (``MODE,STANDBY``); allowed after a safety trip."""
        self._write("MODE,STANDBY", safe=True)

    def make_safe(self) -> None:
        """Standby."""
        self.standby()
