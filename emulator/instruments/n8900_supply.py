"""Emulated Keysight N8900 series autoranging DC power supply (default: N8920A, 80 V / 170 A).

The dialect follows the *Keysight (Agilent) N8900 Series Operating and Service Guide* (SCPI
programming reference and status tutorial). The output watchdog is the ``OUTPut:PROTection:WDOG``
pair as the Keysight APS guides word it (*N6900/N7900 Series Operating and Service Guide*, 6 SCPI
Programming Reference): 1 to 3600 s in 1 s steps, ``*RST`` off and 60 s. Commands (upper case is
the short form, ``[...]`` optional)::

    [SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude] <V>|MIN|MAX      ...? [MIN|MAX]  0..80 V
    [SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude] <A>|MIN|MAX      ...? [MIN|MAX]  0..170 A
    [SOURce:]VOLTage:PROTection[:LEVel] <V>|MIN|MAX                   ...? [MIN|MAX]  OVP, 0..88 V
    [SOURce:]CURRent:PROTection:STATe 0|1|OFF|ON                      ...?            OCP
    OUTPut[:STATe] 0|1|OFF|ON                                         ...?
    OUTPut:PROTection:CLEar
    OUTPut:PROTection:WDOG[:STATe] 0|1|OFF|ON                         ...?
    OUTPut:PROTection:WDOG:DELay <s>|MIN|MAX                          ...? [MIN|MAX]  1..3600 s
    MEASure[:SCALar]:VOLTage[:DC]?    MEASure[:SCALar]:CURRent[:DC]?    MEASure[:SCALar]:POWer[:DC]?
    STATus:QUEStionable:CONDition?    STATus:OPERation:CONDition?
    *SAV <0..9>    *RCL <0..9>        voltage, current, OVP and OCP settings (not the output state)

plus the IEEE 488.2 common commands and ``SYSTem:ERRor[:NEXT|:COUNt|:ALL]? SYSTem:VERSion?`` from
:class:`ScpiDevice`. ``*IDN?`` answers ``Keysight Technologies,N8920A,<serial>,<firmware>``.
Numbers come back as NR3 (``+5.50000E+01``); a level takes a unit (``VOLT 50 V``, ``CURR 500 mA``).
``DEF`` is refused (-224): the guide gives these settings MIN and MAX only.

Protection, as the guide describes it: OVP trips when the output voltage exceeds the OVP level
(always armed), OCP when the output regulates current (CC) with OCP on, the watchdog when no
command line arrives for its delay. A trip disables the output but leaves the *programmed*
state alone (``OUTP?`` still answers 1), sets its STATus:QUEStionable bit (OV 1, OC 2; the
watchdog's PROT 2048 is the APS guides' bit 11), and latches until ``OUTP:PROT:CLE``, which
restores the programmed state. Trips are checked in :meth:`on_time`, which the world calls
after it has written the measured values; ``plant.psu.tripped`` is "OV", "OC" or "WDOG".
The OCP delay (``OUTP:PROT:DEL``) is not emulated: OCP trips at the first CC sample.
"""
from __future__ import annotations

from emulator.instruments import IoWatchdog, min_max
from emulator.plant import Plant
from emulator.instruments.scpi_server import ScpiDevice, parse_bool, parse_number

#: STATus:QUEStionable condition bit of each latched protection
QUES_BITS = {"OV": 1, "OC": 2, "WDOG": 2048}
#: STATus:OPERation condition bits (guide, status tutorial)
OPER_CV, OPER_CC, OPER_OFF = 1, 2, 4


def nr3(value: float) -> str:
    """A number the way the N8900 answers it: ``+5.50000E+01``."""
    return f"{value:+.5E}"


class EmulatedN8900(ScpiDevice):
    """An N8900 output wired to ``plant.psu``; the ranges default to the N8920A's.

    :param plant: the plant whose ``psu`` this instrument drives and reads.
    :param max_voltage_v: voltage programming range top, V (N8920A: 80).
    :param max_current_a: current programming range top, A (N8920A: 170).
    :param max_ovp_v: OVP programming range top, V (here 110 % of the voltage rating).
    """

    def __init__(self, plant: Plant, *, model: str = "N8920A", max_voltage_v: float = 80.0,
                 max_current_a: float = 170.0, max_ovp_v: float = 88.0,
                 serial: str = "MY00000001", firmware: str = "B.01.00"):
        super().__init__()
        self.plant = plant
        self.idn = f"Keysight Technologies,{model},{serial},{firmware}"
        self.max_voltage_v, self.max_current_a, self.max_ovp_v = max_voltage_v, max_current_a, max_ovp_v
        self.watchdog = IoWatchdog(lambda: self.plant.now_ns())
        #: OUTP? answer: the programmed state, which a protection trip does not change
        self.output_programmed = False
        self._number("[SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude]", "voltage_set_v",
                     lambda: self.max_voltage_v, "V")
        self._number("[SOURce:]CURRent[:LEVel][:IMMediate][:AMPLitude]", "current_set_a",
                     lambda: self.max_current_a, "A")
        self._number("[SOURce:]VOLTage:PROTection[:LEVel]", "ovp_v", lambda: self.max_ovp_v, "V")
        self.command("[SOURce:]CURRent:PROTection:STATe", self._set_ocp)
        self.command("[SOURce:]CURRent:PROTection:STATe?", lambda arg: self._psu_bool("ocp_enabled"))
        self.command("OUTPut[:STATe]", self._set_output)
        self.command("OUTPut[:STATe]?", lambda arg: "1" if self.output_programmed else "0")
        self.command("OUTPut:PROTection:CLEar", self._clear_protection)
        self.watchdog.declare(self, "OUTPut", nr3)
        self.command("MEASure[:SCALar]:VOLTage[:DC]?", lambda arg: self._measured("measured_v"))
        self.command("MEASure[:SCALar]:CURRent[:DC]?", lambda arg: self._measured("measured_a"))
        self.command("MEASure[:SCALar]:POWer[:DC]?", lambda arg: self._power())
        self.command("STATus:QUEStionable:CONDition?", self._questionable)
        self.command("STATus:OPERation:CONDition?", self._operation)
        self.reset()

    # --- settings --------------------------------------------------------------------------------
    def _number(self, pattern: str, field: str, top, unit: str) -> None:
        """A numeric setting in [0, top()] kept in ``plant.psu.<field>``: the command and its query."""

        def set_(arg: str) -> None:
            value = parse_number(arg, 0.0, top(), unit=unit)  # out of range: -222, the setting unchanged
            with self.plant.lock:
                setattr(self.plant.psu, field, value)

        def get(arg: str) -> str:
            bound = min_max(arg, 0.0, top())
            if bound is not None:
                return nr3(bound)
            with self.plant.lock:
                return nr3(getattr(self.plant.psu, field))

        self.command(pattern, set_)
        self.command(pattern + "?", get)

    def _set_ocp(self, arg: str) -> None:
        enabled = parse_bool(arg)
        with self.plant.lock:
            self.plant.psu.ocp_enabled = enabled

    def _psu_bool(self, field: str) -> str:
        with self.plant.lock:
            return "1" if getattr(self.plant.psu, field) else "0"

    def _set_output(self, arg: str) -> None:
        self.output_programmed = parse_bool(arg)
        with self.plant.lock:
            # a latched protection keeps the output off whatever is programmed
            self.plant.psu.on = self.output_programmed and not self.plant.psu.tripped

    def _clear_protection(self, arg: str) -> None:
        # guide: "the output is restored to the state it was in before the fault"; a condition
        # still present (voltage above OVP) trips again at the next on_time()
        with self.plant.lock:
            self.plant.psu.tripped = ""
            self.plant.psu.on = self.output_programmed

    #: *SAV/*RCL locations (the guide: 0 to 9)
    save_locations = 10
    SAVED = ("voltage_set_v", "current_set_a", "ovp_v", "ocp_enabled")

    def settings(self) -> dict:
        with self.plant.lock:
            return {name: getattr(self.plant.psu, name) for name in self.SAVED}

    def apply_settings(self, settings: dict) -> None:
        with self.plant.lock:
            for name, value in settings.items():
                setattr(self.plant.psu, name, value)

    # --- readings ----------------------------------------------------------------------------------
    def _measured(self, field: str) -> str:
        with self.plant.lock:
            return nr3(getattr(self.plant.psu, field))

    def _power(self) -> str:
        with self.plant.lock:
            return nr3(self.plant.psu.measured_v * self.plant.psu.measured_a)

    def _questionable(self, arg: str) -> str:
        with self.plant.lock:
            return str(QUES_BITS.get(self.plant.psu.tripped, 0))

    def _operation(self, arg: str) -> str:
        with self.plant.lock:
            psu = self.plant.psu
            return str(OPER_OFF if not psu.on else OPER_CC if psu.in_cc else OPER_CV)

    # --- time, reset (a client going away changes nothing: the watchdog acts) ----------------
    def touched(self) -> None:
        self.watchdog.feed()

    def on_time(self, t_ns: int) -> None:
        """The world's time is now ``t_ns``: trip OVP, OCP or the watchdog if their condition holds.

        Takes only ``plant.lock`` (never the device lock), so the world may call it while holding
        the plant lock without deadlocking against a command being executed.
        """
        with self.plant.lock:
            psu = self.plant.psu
            if psu.tripped:
                return
            if psu.measured_v > psu.ovp_v:
                psu.tripped = "OV"
            elif psu.ocp_enabled and psu.on and psu.in_cc:
                psu.tripped = "OC"
            elif self.watchdog.expired(t_ns):
                psu.tripped = "WDOG"
            else:
                return
            psu.on = False

    def next_deadline_ns(self) -> int | None:
        """When the watchdog fires if no command arrives first, ns; ``None`` when disarmed or latched."""
        with self.plant.lock:
            return None if self.plant.psu.tripped else self.watchdog.deadline_ns()

    def reset(self) -> None:
        """Power-on / ``*RST`` state: output off, 0 V, 0 A, OVP at its maximum, OCP and watchdog off."""
        self.output_programmed = False
        self.watchdog.enabled, self.watchdog.delay_s = False, 60.0
        with self.plant.lock:
            psu = self.plant.psu
            psu.on, psu.tripped = False, ""
            psu.voltage_set_v, psu.current_set_a = 0.0, 0.0
            psu.ovp_v, psu.ocp_enabled = self.max_ovp_v, False

