"""ITECH IT8900 series DC electronic load, as declared command lines (150 V / 240 A unit).

Model: ITECH IT8900 series load rated 150 V / 240 A / 12 kW (the bench's); CC, CV, CR, CP,
list mode and short mode. Dialect: *ITECH IT8800 Series Programming Guide* (IT8800-402159,
rev. 2, 2018), the electronic-load SCPI the IT8900 series shares: ``FUNC``, ``CURR``/``VOLT``/
``RES``/``POW``, ``INP``, ``INP:SHOR``, ``FUNC:MODE FIX|LIST``, ``LIST:RANG/COUN/STEP``,
``LIST:LEV <step>,<A>``, ``LIST:WID <step>,<s>``, ``TRIG:SOUR BUS`` + ``*TRG``, ``PROT:CLE``,
``MEAS:VOLT?``/``MEAS:CURR?``.

**Over-current protection.** ITECH's loads have a software OCP: with it on, a current above the
level turns the input off and latches OC until ``PROT:CLE`` (*IT8800 User Manual* 3.17.2;
the SCPI ``[SOURce:]CURRent:PROTection[:LEVel]`` / ``:STATe`` as the IT8500+ and IT8600
programming guides of the same family word it). The guide gives CV mode no current limit of its
own, so this OCP, at the bench's current limit, is what bounds CV (see
:mod:`instruments.electronic_load`). Its delay is left at the ``*RST`` value, MINimum.

**The watchdog is not ITECH's.** The guide documents no communication watchdog; the rig's
emulation offers a vendor-style one worded after Keysight's (``INP:PROT:WDOG``,
``INP:PROT:WDOG:DEL`` 1 to 3600 s; see :mod:`emulator.instruments.it8900_load`). A real
IT8900 answers those headers with -113, so :meth:`protect` raises ``InstrumentError`` there:
on a real bench the e-load's kill safety is the rig's supervisor and the breaker contactor.
"""
from __future__ import annotations

from instruments.electronic_load import ScpiElectronicLoad, indexed_control
from instruments.scpi import control, measurement, switch


def _keyword(*choices: str):
    """Reply cast for a keyword answered in short or long form (``CURR`` or ``CURRENT``)."""

    def cast(reply: str) -> str:
        text = reply.strip().upper()
        for choice in choices:
            if text.startswith(choice):
                return choice
        raise ValueError(f"not one of {choices}: {reply!r}")

    return cast


def _whole(reply: str) -> int:
    return int(float(reply))


FUNCTIONS = ("CURR", "VOLT", "RES", "POW")
TRIGGER_SOURCES = ("MAN", "IMM", "EXT", "BUS", "HOLD")


class ItechIT8900(ScpiElectronicLoad):
    """ITECH IT8900 series load (150 V / 240 A / 12 kW) on a SCPI resource.

    ``ItechIT8900(resource, name, limits={"current": .., "voltage": .., "watchdog": ..},
    interlock=None, short_permit=None)``
    """

    model = "IT89"

    function = control("FUNC?", "FUNC {}", "Operating function: CURR, VOLT, RES or POW.",
                       values=set(FUNCTIONS), cast=_keyword(*FUNCTIONS), tolerance=None)
    current_setpoint = control("CURR?", "CURR {:g}", "CC set-point, A (0 to 240).",
                               unit="A", values=(0.0, 240.0), limit="current", tolerance=1e-3)
    voltage_setpoint = control("VOLT?", "VOLT {:g}", "CV set-point, V (0 to 150).",
                               unit="V", values=(0.0, 150.0), tolerance=1e-3)
    resistance_setpoint = control("RES?", "RES {:g}", "CR set-point, ohm (0.01 to 7500).",
                                  unit="ohm", values=(0.01, 7500.0), tolerance=1e-3)
    power_setpoint = control("POW?", "POW {:g}", "CP set-point, W (0 to 12000).",
                             unit="W", values=(0.0, 12000.0), tolerance=1e-3)
    input_enabled = switch("INP?", "INP {}", "Input on/off (sinking).")
    short_enabled = switch("INP:SHOR?", "INP:SHOR {}", "Short-circuit mode on/off.")
    function_mode = control("FUNC:MODE?", "FUNC:MODE {}", "FIX (fixed set-point) or LIST.",
                            values={"FIX", "LIST"}, cast=_keyword("FIX", "LIST"), tolerance=None)
    list_range = control("LIST:RANG?", "LIST:RANG {:g}", "Current range of the list, A (0 to 240), "
                         "within the bench's current limit.", unit="A", values=(0.0, 240.0),
                         limit="current", tolerance=1e-3)
    list_count = control("LIST:COUN?", "LIST:COUN {:d}", "Runs of the list (1 to 65535).",
                         values=(1, 65535), cast=_whole, tolerance=0)
    list_steps = control("LIST:STEP?", "LIST:STEP {:d}", "Steps in the list (1 to 84).",
                         values=(1, 84), cast=_whole, tolerance=0)
    list_level = indexed_control("LIST:LEV? {}", "LIST:LEV {},{:g}", "Current of a list step, A (0 to 240).",
                                 unit="A", values=(0.0, 240.0), limit="current", tolerance=1e-3)
    list_width = indexed_control("LIST:WID? {}", "LIST:WID {},{:g}",
                                 "Width of a list step, s (20 us to 3600 s).",
                                 unit="s", values=(0.00002, 3600.0), tolerance=1e-3)
    trigger_source = control("TRIG:SOUR?", "TRIG:SOUR {}", "Trigger source: MAN, IMM, EXT, BUS or HOLD.",
                             values=set(TRIGGER_SOURCES), cast=_keyword(*TRIGGER_SOURCES), tolerance=None)
    ocp_enabled = switch("CURR:PROT:STAT?", "CURR:PROT:STAT {}",
                         "Over-current protection on/off: input off (latched) above ocp_level.")
    ocp_level = control("CURR:PROT?", "CURR:PROT {:g}", "Over-current protection level, A (0 to 240), "
                        "within the bench's current limit.", unit="A", values=(0.0, 240.0),
                        limit="current", tolerance=1e-3)
    watchdog_enabled = switch("INP:PROT:WDOG?", "INP:PROT:WDOG {}",
                              "I/O watchdog on/off (vendor-style, see the module docstring).")
    watchdog_delay = control("INP:PROT:WDOG:DEL?", "INP:PROT:WDOG:DEL {:g}",
                             "I/O watchdog delay, s (1 to 3600, whole seconds), at most the "
                             "bench's watchdog.", unit="s", values=(1.0, 3600.0), limit="watchdog",
                             tolerance=1e-3)
    voltage = measurement("MEAS:VOLT?", "Input voltage as measured, V.", unit="V")
    current = measurement("MEAS:CURR?", "Input current as measured, A (positive into the load).", unit="A")

    MODE_CODES = {"CC": "CURR", "CV": "VOLT", "CR": "RES", "CP": "POW"}
    TRIGGER = "*TRG"
    CLEAR_PROTECTION = "PROT:CLE"
    WATCHDOG_STEP_S = 1.0
