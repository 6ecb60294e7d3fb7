"""Emulated Keysight 34465A 6.5-digit DMM on the pack terminals (its DC-volts dialect).

Model and source: Keysight Truevolt 34465A, SCPI as in the "Keysight Truevolt Series DMM
Operating and Service Guide" (DC volts subset), cross-checked with the QCoDeS driver
``qcodes/instrument_drivers/Keysight/private/Keysight_344xxA_submodules.py`` (NPLC list and
resolution factors of the 34465A without the DIG option).

What it measures is ``plant.dmm.measured_v`` (V, written by the world), at the moment of the
query. Commands (short or long form, any case, ``;``-joined)::

    MEASure:VOLTage[:DC]? [{<range>|AUTO|MIN|MAX|DEF}[,{<resolution>|MIN|MAX|DEF}]]
    CONFigure:VOLTage[:DC] [{<range>|AUTO|MIN|MAX|DEF}[,{<resolution>|MIN|MAX|DEF}]]
    CONFigure?                                  "VOLT +1.00000000E+02,+3.00000000E-05"
    READ?    INITiate    FETCh?
    [SENSe:]VOLTage[:DC]:RANGe {<range>|MIN|MAX|DEF}    and ?   0.1, 1, 10, 100, 1000 V
    [SENSe:]VOLTage[:DC]:RANGe:AUTO {ON|OFF|ONCE}        and ?
    [SENSe:]VOLTage[:DC]:NPLCycles {<n>|MIN|MAX|DEF}     and ?   0.02, 0.06, 0.2, 1, 10, 100
    *IDN? *RST *CLS *OPC? SYSTem:ERRor?

Readings look like the real one's: ``+5.12345678E+01``, quantised to the resolution of the
range and integration time (6.5 digits at 1 NPLC); beyond 120 % of a fixed range the reading
is the overload value ``+9.90000000E+37`` (signed). A range above 1000 V or an NPLC outside
0.02..100 queues ``-222,"Data out of range"`` and leaves the setting as it was. The DMM is
read-only: a client going away changes nothing.
"""
from __future__ import annotations

from rig.emulator.plant import Plant
from rig.emulator.scpi import ScpiDevice, ScpiError, out_of_range, parse_bool, parse_number

#: DC volts ranges, V; each reads up to 120 % of itself
RANGES = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: integration times, power-line cycles, and the resolution each gives, as a fraction of the range
NPLC_RESOLUTION = {0.02: 3e-6, 0.06: 1.5e-6, 0.2: 0.7e-6, 1.0: 0.3e-6, 10.0: 0.1e-6, 100.0: 0.03e-6}
OVERRANGE = 1.2
OVERLOAD = 9.9e37  # what the 34465A sends for an overload
DEFAULT_NPLC = 10.0  # *RST and "DEF" resolution


def reading(value: float) -> str:
    """The 34465A's ASCII reading format: sign, 9 significant digits, 2-digit exponent."""
    return f"{value:+.8E}"


class Emulated34465A(ScpiDevice):
    """The DMM of the emulated bench; reads ``plant.dmm.measured_v``.

    :param plant: the emulated bench's plant (only ``plant.dmm`` is touched).
    """

    idn = "Keysight Technologies,34465A,MY59000001,A.03.01-03.15-03.01-00.52-03-02"

    def __init__(self, plant: Plant):
        super().__init__()
        self.plant = plant
        self.reset()
        self.command("MEASure:VOLTage[:DC]?", self._measure)
        self.command("CONFigure:VOLTage[:DC]", self._configure)
        self.command("CONFigure?", self._configuration)
        self.command("READ?", lambda arg: self._read())
        self.command("INITiate[:IMMediate]", self._initiate)
        self.command("FETCh?", self._fetch)
        self.command("[SENSe:]VOLTage[:DC]:RANGe:AUTO", self._set_autorange)
        self.command("[SENSe:]VOLTage[:DC]:RANGe:AUTO?", lambda arg: "1" if self.auto else "0")
        self.command("[SENSe:]VOLTage[:DC]:RANGe", self._set_range)
        self.command("[SENSe:]VOLTage[:DC]:RANGe?", lambda arg: reading(self._range_now()))
        self.command("[SENSe:]VOLTage[:DC]:NPLCycles", self._set_nplc)
        self.command("[SENSe:]VOLTage[:DC]:NPLCycles?", lambda arg: reading(self.nplc))

    def reset(self) -> None:
        """*RST: DC volts, autorange, 10 NPLC, no stored reading."""
        self.auto, self.range_v, self.nplc = True, 1000.0, DEFAULT_NPLC
        self.stored: str | None = None

    # --- configuration ---------------------------------------------------------------------------
    @staticmethod
    def _range_for(text: str) -> float:
        """Smallest range that holds the value asked for (as the DMM picks it).

        :raises ScpiError: -222 above 1000 V.
        """
        value = parse_number(text, RANGES[0], RANGES[-1])
        return next(r for r in RANGES if value <= r * (1 + 1e-9))

    def _nplc_for(self, text: str, range_v: float) -> float:
        """NPLC giving a resolution (V) of at least ``text`` on ``range_v``; the fastest that does."""
        word = text.strip().upper()
        if word in ("", "DEF", "DEFAULT"):
            return DEFAULT_NPLC
        if word in ("MIN", "MINIMUM"):  # MIN resolution = the finest
            return max(NPLC_RESOLUTION)
        if word in ("MAX", "MAXIMUM"):
            return min(NPLC_RESOLUTION)
        wanted = parse_number(word, 0.0, range_v, minmax=False)
        for nplc, factor in sorted(NPLC_RESOLUTION.items()):
            if factor * range_v <= wanted * (1 + 1e-9):
                return nplc
        raise out_of_range(wanted, min(NPLC_RESOLUTION.values()) * range_v, range_v)

    def _configure(self, arg: str) -> None:
        """CONF:VOLT:DC [range[,resolution]]: validate both, then apply both (or neither)."""
        parts = [p.strip() for p in arg.split(",")] if arg.strip() else []
        if len(parts) > 2:
            raise ScpiError(-108, "Parameter not allowed")
        range_text = parts[0].upper() if parts else "DEF"
        auto = range_text in ("AUTO", "DEF", "DEFAULT")
        range_v = self._range_now() if auto else self._range_for(range_text)
        nplc = self._nplc_for(parts[1] if len(parts) == 2 else "DEF", range_v)
        self.auto, self.nplc = auto, nplc
        if not auto:
            self.range_v = range_v
        self.stored = None

    def _measure(self, arg: str) -> str:
        self._configure(arg)
        return self._read()

    def _configuration(self, arg: str) -> str:
        resolution = NPLC_RESOLUTION[self.nplc] * self._range_now()
        return f'"VOLT {reading(self._range_now())},{reading(resolution)}"'

    def _set_range(self, arg: str) -> None:
        word = arg.strip().upper()
        self.range_v = 10.0 if word in ("DEF", "DEFAULT") else self._range_for(word)
        self.auto = False  # selecting a range turns autoranging off, as on the real DMM

    def _set_autorange(self, arg: str) -> None:
        if arg.strip().upper() == "ONCE":  # pick the range for the present input, then hold it
            self.range_v, self.auto = self._range_now(), False
        else:
            self.auto = parse_bool(arg)

    def _set_nplc(self, arg: str) -> None:
        word = arg.strip().upper()
        if word in ("DEF", "DEFAULT"):
            self.nplc = DEFAULT_NPLC
            return
        value = parse_number(word, min(NPLC_RESOLUTION), max(NPLC_RESOLUTION))
        # between two supported values the DMM takes the next longer integration time
        self.nplc = next(n for n in sorted(NPLC_RESOLUTION) if value <= n * (1 + 1e-9))

    # --- readings --------------------------------------------------------------------------------
    def _input_v(self) -> float:
        with self.plant.lock:
            return float(self.plant.dmm.measured_v)

    def _range_now(self) -> float:
        """The range in use: the fixed one, or the one autoranging picks for the input now."""
        if not self.auto:
            return self.range_v
        volts = abs(self._input_v())
        return next((r for r in RANGES if volts <= r * OVERRANGE), RANGES[-1])

    def _read(self) -> str:
        volts, range_v = self._input_v(), self._range_now()
        if abs(volts) > range_v * OVERRANGE:
            return reading(OVERLOAD if volts > 0 else -OVERLOAD)
        step = NPLC_RESOLUTION[self.nplc] * range_v
        return reading(round(volts / step) * step)

    def _initiate(self, arg: str) -> None:
        self.stored = self._read()

    def _fetch(self, arg: str) -> str | None:
        if self.stored is None:
            raise ScpiError(-230, "Data corrupt or stale; no reading since INITiate")
        return self.stored
