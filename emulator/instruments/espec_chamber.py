"""Emulated ESPEC SH/SU-series climate chamber (P-300 controller command set, over LAN).

Model and sources: ESPEC SU-242 bench-top temperature chamber (-40 to +150 C; the SH series
adds humidity and speaks the same set). Command set as ESPEC North America's own library
implements it (``EspecNorthAmerica/ChamberConnectLibrary``, ``chamberconnectlibrary/p300.py``
and ``especinteract.py``: ``TEMP?``, ``TEMP, S<sp>``, ``MODE,CONSTANT``, ``MODE,STANDBY``,
``MON?``, ``CONSTANT SET?,TEMP``, ``RUN PRGM, TEMP<t> TIME<h>:<m> GOTEMP<t>``,
``PRGM,END,<mode>``, errors ``NA:<text>``), the replies as in ESPEC's command manuals
(``MON?`` -> ``"24.1,,CONSTANT,0"``) and ``akaeba/ATWG`` (SH-641: ``TEMP,S25`` ->
``OK:TEMP,S25``; ``TEMP?`` -> ``"26.4,0.0,140.0,-50.0"``).

Not SCPI: one command per line, every command is answered, there is no error queue. A setting
is echoed as ``OK:<command>``; a refused one is answered ``NA:<reason>`` and changes nothing::

    TEMP?                    measured,set-point,upper alarm,lower alarm (C, 0.1 C)
    TEMP, S<c> [H<c>] [L<c>] constant set-point -40..150 C, alarm limits -50..160 C
    CONSTANT SET?,TEMP       constant set-point,ON
    MODE,{CONSTANT|STANDBY|OFF}     MODE?     MON? -> air,,mode,alarm count    ROM?
    TYPE?                    sensor,controller,maximum temperature: "T,S2,150.0" (no humidity)
    ALARM?                   the alarm count then the codes: "0" (the emulation raises none)
    RUN PRGM, TEMP<c> TIME<h>:<m> GOTEMP<c>    remote program: ramp TEMP -> GOTEMP in h:m
    PRGM,END,{STANDBY|CONST|HOLD|OFF}          end the remote program
    NA:CMD ERR | NA:PARA ERR | NA:DATA OUT OF RANGE | NA:CONT NOT READY-2 (no program running)

Replies end in CR LF like the real controller (the server adds the LF). The plant gets
``running`` (CONSTANT or RUN), ``setpoint_c`` (the constant set-point, or the program's end
temperature) and ``ramp_c_per_min`` (the program's rate; 0 in CONSTANT: as fast as it can);
``TEMP?`` reports ``plant.chamber.air_c``. When the remote program's time is up (the world
calls :meth:`on_time`), the emulated controller continues in CONSTANT at the constant
set-point, which the driver sets to the program's end temperature before starting it.
A client going away changes nothing: a chamber is slow and harmless, it keeps regulating, and
the safety supervisor puts it in standby when it trips.
"""
from __future__ import annotations

import re

from emulator.plant import Plant
from emulator.instruments.scpi_server import ScpiDevice

SETPOINT_RANGE = (-40.0, 150.0)  # SU-242 temperature range, C
ALARM_RANGE = (-50.0, 160.0)     # absolute upper/lower alarm limits, C
NS_PER_MIN = 60_000_000_000


class Refused(Exception):
    """A command the controller answers with ``NA:<reason>``."""


def _number(text: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Refused("PARA ERR") from None
    if not lo <= value <= hi:
        raise Refused("DATA OUT OF RANGE")
    return value


class EmulatedEspecSh(ScpiDevice):
    """The climate chamber of the emulated bench.

    :param plant: the emulated bench's plant (only ``plant.chamber`` is touched).
    """

    #: answer to ROM?: model code and controller ROM version
    rom = "SU-242 Ver.1.00"
    #: TYPE?'s controller field, as an SH-641 answers it (akaeba/ATWG: "T,T,S2,160.0")
    controller = "S2"

    def __init__(self, plant: Plant):
        super().__init__()
        self.plant = plant
        with plant.lock:
            self.mode = "CONSTANT" if plant.chamber.running else "STANDBY"
            self.setpoint_c = float(plant.chamber.setpoint_c)
        self.upper_c, self.lower_c = 155.0, -45.0
        #: running remote program: (start C, end C, start ns, end ns)
        self.program: tuple[float, float, int, int] | None = None
        self._table_espec = [
            (r"TEMP\?", self._temp),
            (r"MON\?", lambda m: f"{self._air():.1f},,{self.mode},0"),
            (r"MODE\?", lambda m: self.mode),
            (r"ROM\?", lambda m: self.rom),
            (r"TYPE\?", lambda m: f"T,{self.controller},{SETPOINT_RANGE[1]:.1f}"),
            (r"ALARM\?", lambda m: "0"),
            (r"CONSTANT SET\?,TEMP", lambda m: f"{self.setpoint_c:.1f},ON"),
            (r"TEMP,(.+)", self._set_temp),
            (r"MODE,(CONSTANT|STANDBY|OFF)", self._set_mode),
            (r"RUN PRGM,(.+)", self._run_program),
            (r"PRGM,END(?:,(STANDBY|CONST|HOLD|OFF))?", self._end_program),
        ]

    # --- the line dialect ------------------------------------------------------------------------
    def _execute(self, cmd: str) -> str | None:
        """One ESPEC command -> its reply (``OK:...``, ``NA:...`` or the data), CR-terminated."""
        text = re.sub(r"\s*,\s*", ",", " ".join(cmd.split())).upper()
        with self.plant.lock:  # the state below is shared with on_time, called by the world
            self.on_time(self.plant.now_ns())
            for pattern, handler in self._table_espec:
                match = re.fullmatch(pattern, text)
                if match:
                    try:
                        reply = handler(match)
                    except Refused as exc:
                        return f"NA:{exc}\r"
                    self._to_plant()
                    return (reply if reply is not None else f"OK:{cmd.strip()}") + "\r"
        return "NA:CMD ERR\r"

    def _air(self) -> float:
        return float(self.plant.chamber.air_c)

    def _target_now(self, t_ns: int) -> float:
        """The set-point in force: the constant one, or where the program's ramp has got to."""
        if self.mode != "RUN" or self.program is None:
            return self.setpoint_c
        start_c, end_c, start_ns, end_ns = self.program
        done = min(1.0, max(0.0, (t_ns - start_ns) / max(1, end_ns - start_ns)))
        return start_c + (end_c - start_c) * done

    def _temp(self, match) -> str:
        target = self._target_now(self.plant.now_ns())
        return f"{self._air():.1f},{target:.1f},{self.upper_c:.1f},{self.lower_c:.1f}"

    def _set_temp(self, match) -> None:
        """``S25.0 H155 L-45`` in any order; all checked before any is applied."""
        new = {}
        for token in match.group(1).replace(",", " ").split():
            key, value = token[:1], token[1:]
            if key not in "SHL" or key in new or not value:
                raise Refused("PARA ERR")
            new[key] = _number(value, *(SETPOINT_RANGE if key == "S" else ALARM_RANGE))
        self.setpoint_c = new.get("S", self.setpoint_c)
        self.upper_c, self.lower_c = new.get("H", self.upper_c), new.get("L", self.lower_c)

    def _set_mode(self, match) -> None:
        self.mode, self.program = match.group(1), None

    def _run_program(self, match) -> None:
        fields = dict(re.findall(r"(GOTEMP|TEMP|TIME)([-0-9.:]+)", match.group(1)))
        leftover = re.sub(r"(GOTEMP|TEMP|TIME)[-0-9.:]+", "", match.group(1)).strip()
        if leftover or set(fields) != {"TEMP", "TIME", "GOTEMP"}:
            raise Refused("PARA ERR")  # the emulated chamber has no humidity or relay steps
        start_c = _number(fields["TEMP"], *SETPOINT_RANGE)
        end_c = _number(fields["GOTEMP"], *SETPOINT_RANGE)
        hours, _, minutes = fields["TIME"].partition(":")
        if not (hours.isdigit() and minutes.isdigit()):
            raise Refused("PARA ERR")
        total_min = int(hours) * 60 + int(minutes)
        if not (int(hours) <= 99 and int(minutes) <= 59 and total_min >= 1):
            raise Refused("DATA OUT OF RANGE")
        now = self.plant.now_ns()
        self.program = (start_c, end_c, now, now + total_min * NS_PER_MIN)
        self.mode = "RUN"

    def _end_program(self, match) -> None:
        if self.mode != "RUN":
            raise Refused("CONT NOT READY-2")
        after = match.group(1) or "STANDBY"
        if after == "HOLD":  # hold where the ramp has got to, as a constant set-point
            self.setpoint_c = round(self._target_now(self.plant.now_ns()), 1)
        self.mode = {"CONST": "CONSTANT", "HOLD": "CONSTANT"}.get(after, after)
        self.program = None

    def _to_plant(self) -> None:
        chamber = self.plant.chamber
        chamber.running = self.mode in ("CONSTANT", "RUN")
        if self.mode == "RUN" and self.program is not None:
            start_c, end_c, start_ns, end_ns = self.program
            chamber.setpoint_c = end_c
            chamber.ramp_c_per_min = abs(end_c - start_c) / ((end_ns - start_ns) / NS_PER_MIN)
        else:
            chamber.setpoint_c, chamber.ramp_c_per_min = self.setpoint_c, 0.0

    # --- time, from the world --------------------------------------------------------------------
    def on_time(self, t_ns: int) -> None:
        """The world's time moved on: end the remote program when its time is up."""
        with self.plant.lock:
            if self.program is not None and t_ns >= self.program[3]:
                self.mode, self.program = "CONSTANT", None
                self._to_plant()

    def next_deadline_ns(self) -> int | None:
        """When the running remote program ends (ns), or None."""
        with self.plant.lock:
            return self.program[3] if self.program is not None else None
