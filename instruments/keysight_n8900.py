"""Keysight N8900 series autoranging DC power supply, as declared command lines (N8920A ranges).

Model: N8920A, 80 V / 170 A / 10 kW (the N8900 series' 80 V unit). Dialect: *Keysight (Agilent)
N8900 Series Operating and Service Guide*, SCPI programming reference and status tutorial; the
output watchdog as the Keysight APS guides word it (*N6900/N7900 Series Operating and Service
Guide*: ``OUTPut:PROTection:WDOG[:STATe]``, ``...:WDOG:DELay`` 1 to 3600 s in 1 s steps).
``*IDN?`` answers ``Keysight Technologies,N8920A,<serial>,<firmware>``.

Another N89xx unit (200 V, 500 V ...) is a subclass that redeclares the lines whose range
differs; another vendor's supply is a sibling subclass of :class:`ScpiPowerSupply`.
"""
from __future__ import annotations

from instruments.power_supply import ScpiPowerSupply
from instruments.scpi import control, measurement, switch


def _register(reply: str) -> int:
    return int(float(reply))


class KeysightN8900(ScpiPowerSupply):
    """Keysight N8920A (80 V / 170 A) on a SCPI resource (LAN socket 5025, VXI-11, USB).

    ``KeysightN8900(resource, name, limits={"voltage": (lo, hi), "current": (lo, hi)}, interlock=None)``
    """

    model = "N89"

    voltage_setpoint = control("VOLT?", "VOLT {:g}", "CV set-point, V (0 to 80).",
                               unit="V", values=(0.0, 80.0), limit="voltage", tolerance=1e-3)
    current_setpoint = control("CURR?", "CURR {:g}", "CC limit, A (0 to 170).",
                               unit="A", values=(0.0, 170.0), limit="current", tolerance=1e-3)
    ovp_level = control("VOLT:PROT?", "VOLT:PROT {:g}", "Over-voltage protection level, V (0 to 88).",
                        unit="V", values=(0.0, 88.0), limit="voltage", tolerance=1e-3)
    ocp_enabled = switch("CURR:PROT:STAT?", "CURR:PROT:STAT {}", "Over-current protection: trip when in CC.")
    output_enabled = switch("OUTP?", "OUTP {}", "Output on/off (the programmed state; a trip keeps it).")
    watchdog_enabled = switch("OUTP:PROT:WDOG?", "OUTP:PROT:WDOG {}", "I/O watchdog on/off.")
    watchdog_delay = control("OUTP:PROT:WDOG:DEL?", "OUTP:PROT:WDOG:DEL {:g}",
                             "I/O watchdog delay, s (1 to 3600, whole seconds), at most the "
                             "bench's watchdog.", unit="s", values=(1.0, 3600.0), limit="watchdog",
                             tolerance=1e-3)
    voltage = measurement("MEAS:VOLT?", "Output voltage as measured, V.", unit="V")
    current = measurement("MEAS:CURR?", "Output current as measured, A.", unit="A")
    questionable = measurement("STAT:QUES:COND?", "STATus:QUEStionable condition register.",
                               cast=_register)

    #: guide, status tutorial: OV 1, OC 2, PF 4, OT 16, INH 512; watchdog PROT 2048 (APS bit 11)
    PROTECTION_BITS = {1: "OV", 2: "OC", 4: "PF", 16: "OT", 512: "INH", 2048: "WDOG"}
    CLEAR_PROTECTION = "OUTP:PROT:CLE"
    WATCHDOG_STEP_S = 1.0
