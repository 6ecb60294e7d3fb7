"""Driver: Keysight 34465A 6.5-digit DMM as the rig's voltmeter on the pack terminals.

Model and sources: Keysight Truevolt 34465A, "Keysight Truevolt Series DMM Operating and
Service Guide" (SCPI reference: ``CONFigure:VOLTage:DC``, ``READ?``,
``[SENSe:]VOLTage:DC:RANGe``, ``...:RANGe:AUTO``, ``...:NPLC``; readings
``+5.12345678E+01``; overload ``+9.9E+37``), cross-checked with the QCoDeS 344xxA driver
(``Keysight_344xxA_submodules.py``: ranges 100 mV..1 kV, 34465A NPLC 0.02, 0.06, 0.2, 1, 10, 100).

The DMM is configured once (:meth:`configure`: a fixed range and integration time, so a
reading never waits for autoranging) and then read with ``READ?``. An overload reading comes
back as ``+inf``/``-inf``: a limit check on it fails (a pack above 60.2 V trips the
supervisor), where raising would only say "something is wrong" later.

A second model of the family is a subclass that redeclares what differs, e.g. a 34461A::

    class Keysight34461A(Keysight34465A):
        model = "34461A"
        nplc = control("VOLT:DC:NPLC?", "VOLT:DC:NPLC {:g}", "...", values={0.02, 0.2, 1.0, 10.0, 100.0})
"""
from __future__ import annotations

import math

from instruments.errors import InstrumentError
from instruments.roles import Voltmeter
from instruments.scpi import ScpiInstrument, control, switch

#: the DMM's overload reading (|value| at or above it means "beyond the range")
OVERLOAD = 9.9e37


def dmm_reading(reply: str) -> float:
    """A reading as a float in V; the overload value becomes +-inf.

    :raises ValueError: not a number.
    """
    value = float(reply)
    return math.copysign(math.inf, value) if abs(value) >= OVERLOAD else value


class Keysight34465A(ScpiInstrument, Voltmeter):
    """Keysight 34465A measuring DC volts.

    :param resource: an open pyvisa message-based resource (``\\n`` terminations).
    :param name: the instrument's name on this bench ("dmm").
    :param limits: hard limits from the bench file (the DMM sets nothing that needs one).
    :param interlock: raises once the safety supervisor has tripped (readings still work).
    """

    model = "34465A"

    range_v = control("VOLT:DC:RANG?", "VOLT:DC:RANG {:g}",
                      "DC voltage range, V: 0.1, 1, 10, 100 or 1000 (reads up to 120 % of it); "
                      "setting one turns autorange off.", unit="V",
                      values={0.1, 1.0, 10.0, 100.0, 1000.0})
    autorange_enabled = switch("VOLT:DC:RANG:AUTO?", "VOLT:DC:RANG:AUTO {}",
                               "Autoranging on or off (off: the range stays where it was set).")
    nplc = control("VOLT:DC:NPLC?", "VOLT:DC:NPLC {:g}",
                   "Integration time, power-line cycles: 0.02, 0.06, 0.2, 1, 10 or 100 "
                   "(1 and more reject line-frequency noise).", unit="PLC",
                   values={0.02, 0.06, 0.2, 1.0, 10.0, 100.0})

    def configure(self, range_v: float = 100.0, nplc: float = 1.0) -> None:
        """DC volts on a fixed range at an integration time; then every :meth:`voltage` is one
        ``READ?``. 100 V / 1 PLC suit a 51.2 V pack (10 uV resolution, 20 ms a reading).

        :param range_v: one of 0.1, 1, 10, 100, 1000 V.
        :param nplc: one of 0.02, 0.06, 0.2, 1, 10, 100.
        :raises ValueError: a range or NPLC the DMM does not have (nothing sent).
        :raises InstrumentError: the DMM reported an error or reads back otherwise.
        """
        for ctl, value in ((type(self).range_v, range_v), (type(self).nplc, nplc)):
            self._check_range(ctl, value)
        self._write(f"CONF:VOLT:DC {range_v:g}")
        self.check_errors()
        self.nplc = nplc
        got = self.range_v
        if got != range_v:
            raise InstrumentError(self.name, f"CONF:VOLT:DC {range_v:g}", f"range reads back {got:g} V")

    def voltage(self) -> float:
        """One DC voltage reading, V (``READ?``); +-inf on overload.

        :raises InstrumentError: no answer, or not a number.
        """
        return self._read("READ?", dmm_reading)

    def measure(self, range_v: float | str = "AUTO") -> float:
        """One reading with the DMM's default settings for a range (``MEAS:VOLT:DC? <range>``),
        for a one-off check; it leaves the DMM configured that way.

        :param range_v: a range in V or ``"AUTO"``.
        :raises InstrumentError: no answer (an error in the command leaves none): the error text.
        """
        arg = range_v if isinstance(range_v, str) else f"{range_v:g}"
        try:
            return self._read(f"MEAS:VOLT:DC? {arg}", dmm_reading)
        except InstrumentError:
            self.check_errors()  # name the DMM's own error when it has one
            raise
