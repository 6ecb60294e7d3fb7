"""Emulated Keysight 34465A 6.5-digit DMM on the pack terminals (its DC-volts dialect).

Model and source: Keysight Truevolt 34465A, SCPI as in the "Keysight Truevolt Series DMM
Operating and Service Guide" (DC volts subset), cross-checked with the QCoDeS driver
``qcodes/instrument_drivers/Keysight/private/Keysight_344xxA_submodules.py`` (NPLC list and
resolution factors of the 34465A without the DIG option).

What it measures is ``plant.dmm.measured_v`` (V, written by the world), at the moment of the
query. Commands (short or long form, any case, ``;``-joined)::

    MEASure:VOLTage[:DC]? [{<range>|AUTO|MIN|MAX|DEF}[,{<resolution>|MIN|MAX|DEF}]]
    CONFigure:VOLTage[:DC] [{<range>|AUTO|MIN|MAX|DEF}[,{<resolution>|MIN|MAX|DEF}]]
    MEASure:CURRent[:DC]? [...]    CONFigure:CURRent[:DC] [...]     100 uA .. 10 A ranges
    MEASure:RESistance? [...]      CONFigure:RESistance [...]       100 ohm .. 1 Gohm ranges
    CONFigure?                                  "VOLT +1.00000000E+02,+3.00000000E-05"
    READ?    INITiate    FETCh?    *TRG    DATA:POINts?    R? [<max>]
    TRIGger:SOURce {IMMediate|BUS|EXTernal|INTernal}     and ?
    TRIGger:COUNt {<n>|MIN|MAX|DEF}   SAMPle:COUNt {<n>|MIN|MAX|DEF}   (and ?) 1..1000000
    TRIGger:DELay {<s>|MIN|MAX|DEF}   TRIGger:DELay:AUTO {ON|OFF}       (and ?)
    [SENSe:]VOLTage[:DC]:RANGe {<range>|MIN|MAX|DEF}    and ?   0.1, 1, 10, 100, 1000 V
    [SENSe:]VOLTage[:DC]:RANGe:AUTO {ON|OFF|ONCE}        and ?
    [SENSe:]VOLTage[:DC]:NPLCycles {<n>|MIN|MAX|DEF}     and ?   0.02, 0.06, 0.2, 1, 10, 100
    [SENSe:]FUNCtion[:ON] "VOLT[:DC]"|"CURR[:DC]"|"RES"  and ?  -> "VOLT" (the function, its settings kept)
    [SENSe:]VOLTage[:DC]:IMPedance:AUTO {ON|OFF}  [SENSe:]VOLTage[:DC]:ZERO:AUTO {ON|OFF|ONCE}
                                                  and ?  (kept and answered; no effect on readings)
    *SAV <0..4>    *RCL <0..4>
    plus the IEEE 488.2 common commands and SYSTem:ERRor/VERSion of the shared server

The wiring is the bench's: the HI/LO voltage inputs on the pack terminals, nothing on the current
jack. So DC current reads 0 A (an open current input), and resistance reads the overload value
(the ohms source cannot measure across a charged pack). Only DC volts is quantised by range and
NPLC; current and resistance keep their range tables but not their resolution tables.

Triggering as the guide's chapter "Triggering": ``INITiate`` takes TRIG:COUN x SAMP:COUN readings
into reading memory when the source is IMMediate, waits for ``*TRG`` when it is BUS (then takes
them), and waits for ever with EXTernal or INTernal (no trigger is wired: a ``FETCh?`` then gets
no reply and -230 is queued). ``READ?`` = INIT + FETC?, refused with ``-214 Trigger deadlock``
when the source is BUS. ``FETCh?`` returns the memory's readings, ``R?`` returns them as a
definite-length block and erases them. MEASure/CONFigure set the trigger count, sample count and
source back to 1, 1, IMMediate, as the guide says. Every reading of a burst is taken at the same
instant of the world's clock; the time the real DMM spends, NPLC / line frequency per reading
(twice that with autozero on) plus a set trigger delay per trigger, is charged with
:meth:`~emulator.instruments.scpi_server.ScpiDevice.busy` and held on a paced (wall-clock) bench.

Readings look like the real one's: ``+5.12345678E+01``, quantised to the resolution of the
range and integration time (6.5 digits at 1 NPLC); beyond 120 % of a fixed range the reading
is the overload value ``+9.90000000E+37`` (signed). A range above 1000 V or an NPLC outside
0.02..100 queues ``-222,"Data out of range"`` and leaves the setting as it was. The DMM is
read-only: a client going away changes nothing.
"""
from __future__ import annotations

from emulator.plant import Plant
from emulator.instruments import keyword
from emulator.instruments.scpi_server import ScpiDevice, ScpiError, out_of_range, parse_bool, parse_number

#: DC volts ranges, V; each reads up to 120 % of itself
RANGES = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: integration times, power-line cycles, and the resolution each gives, as a fraction of the range
NPLC_RESOLUTION = {0.02: 3e-6, 0.06: 1.5e-6, 0.2: 0.7e-6, 1.0: 0.3e-6, 10.0: 0.1e-6, 100.0: 0.03e-6}
OVERRANGE = 1.2
OVERLOAD = 9.9e37  # what the 34465A sends for an overload
DEFAULT_NPLC = 10.0  # *RST and "DEF" resolution
#: ranges of the other functions the emulation keeps: DC current (A) and 2-wire resistance (ohm)
CURRENT_RANGES = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0, 10.0)
RESISTANCE_RANGES = (1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
TRIGGER_SOURCES = ("IMMediate", "BUS", "EXTernal", "INTernal")
COUNT_RANGE = (1, 1_000_000)
TRIGGER_DELAY_RANGE_S = (0.0, 3600.0)
#: the power line the DMM integrates over, Hz (an NPLC is one cycle of it)
LINE_HZ = 50.0


def reading(value: float) -> str:
    """The 34465A's ASCII reading format: sign, 9 significant digits, 2-digit exponent."""
    return f"{value:+.8E}"


class Emulated34465A(ScpiDevice):
    """The DMM of the emulated bench; reads ``plant.dmm.measured_v``.

    :param plant: the emulated bench's plant (only ``plant.dmm`` is touched).
    """

    idn = "Keysight Technologies,34465A,MY59000001,A.03.01-03.15-03.01-00.52-03-02"

    #: *SAV/*RCL locations (the guide: 0 to 4)
    save_locations = 5

    def __init__(self, plant: Plant):
        super().__init__()
        self.plant = plant
        self.reset()
        self.command("MEASure:VOLTage[:DC]?", self._measure)
        self.command("CONFigure:VOLTage[:DC]", self._configure)
        for pattern, function in (("CURRent[:DC]", "CURR"), ("RESistance", "RES")):
            self.command(f"MEASure:{pattern}?", lambda arg, f=function: self._measure_other(arg, f))
            self.command(f"CONFigure:{pattern}", lambda arg, f=function: self._configure_other(arg, f))
        self.command("CONFigure?", self._configuration)
        self.command("READ?", lambda arg: self._read_burst())
        self.command("INITiate[:IMMediate]", self._initiate)
        self.command("FETCh?", self._fetch)
        self.command("*TRG", self._bus_trigger)
        self.command("DATA:POINts?", lambda arg: str(len(self.memory)))
        self.command("R?", self._read_and_erase)
        self.command("TRIGger:SOURce", lambda arg: setattr(self, "trigger_source", keyword(arg, TRIGGER_SOURCES)))
        self.command("TRIGger:SOURce?", lambda arg: self.trigger_source)
        self._count("TRIGger:COUNt", "trigger_count")
        self._count("SAMPle:COUNt", "sample_count")
        self.command("TRIGger:DELay", self._set_trigger_delay)
        self.command("TRIGger:DELay?", lambda arg: reading(self.trigger_delay_s))
        self.command("TRIGger:DELay:AUTO", lambda arg: setattr(self, "trigger_delay_auto", parse_bool(arg)))
        self.command("TRIGger:DELay:AUTO?", lambda arg: "1" if self.trigger_delay_auto else "0")
        self.command("[SENSe:]FUNCtion[:ON]", self._set_function)
        self.command("[SENSe:]FUNCtion[:ON]?", lambda arg: f'"{self.function}"')
        for name in ("IMPedance", "ZERO"):
            self.command(f"[SENSe:]VOLTage[:DC]:{name}:AUTO", lambda arg, n=name: self._set_flag(n, arg))
            self.command(f"[SENSe:]VOLTage[:DC]:{name}:AUTO?", lambda arg, n=name: "1" if self.flags[n] else "0")
        self.command("[SENSe:]VOLTage[:DC]:RANGe:AUTO", self._set_autorange)
        self.command("[SENSe:]VOLTage[:DC]:RANGe:AUTO?", lambda arg: "1" if self.auto else "0")
        self.command("[SENSe:]VOLTage[:DC]:RANGe", self._set_range)
        self.command("[SENSe:]VOLTage[:DC]:RANGe?", lambda arg: reading(self._range_now()))
        self.command("[SENSe:]VOLTage[:DC]:NPLCycles", self._set_nplc)
        self.command("[SENSe:]VOLTage[:DC]:NPLCycles?", lambda arg: reading(self.nplc))

    def reset(self) -> None:
        """*RST: DC volts, autorange, 10 NPLC, triggers preset, reading memory empty."""
        self.auto, self.range_v, self.nplc = True, 1000.0, DEFAULT_NPLC
        self.function = "VOLT"
        self.other_range: float | None = None  # CURR/RES range, None = auto
        self.flags = {"IMPedance": False, "ZERO": True}  # *RST: 10 Mohm input, autozero on
        self._preset_triggers()
        self.memory: list[str] = []
        self.waiting = False  # INITiated, waiting for a trigger

    def _preset_triggers(self) -> None:
        """What *RST, MEASure and CONFigure do to the trigger system (the guide)."""
        self.trigger_source, self.trigger_count, self.sample_count = "IMM", 1, 1
        self.trigger_delay_s, self.trigger_delay_auto = 0.0, True

    def settings(self) -> dict:
        keys = ("auto", "range_v", "nplc", "function", "other_range", "trigger_source",
                "trigger_count", "sample_count", "trigger_delay_s", "trigger_delay_auto")
        return {k: getattr(self, k) for k in keys}

    def apply_settings(self, settings: dict) -> None:
        for key, value in settings.items():
            setattr(self, key, value)

    def _count(self, pattern: str, field: str) -> None:
        def set_(arg: str) -> None:
            value = parse_number(arg, *COUNT_RANGE, default=1)
            if value != int(value):
                raise ScpiError(-224, f"Illegal parameter value; {arg!r} is not a whole number")
            setattr(self, field, int(value))

        self.command(pattern, set_)
        self.command(pattern + "?", lambda arg: reading(getattr(self, field)))

    def _set_function(self, arg: str) -> None:
        """FUNC "VOLT:DC": choose the function; its range and resolution stay as they were."""
        word = arg.strip().strip("'\"").upper().removesuffix(":DC")
        names = {"VOLT": "VOLT", "VOLTAGE": "VOLT", "CURR": "CURR", "CURRENT": "CURR",
                 "RES": "RES", "RESISTANCE": "RES"}
        if word not in names:
            raise ScpiError(-224, f"Illegal parameter value; function {arg!r} is not modelled")
        self.function = names[word]

    def _set_flag(self, name: str, arg: str) -> None:
        text = arg.strip().upper()
        # autozero ONCE zeroes once and leaves autozero OFF (the guide)
        self.flags[name] = False if name == "ZERO" and text == "ONCE" else parse_bool(text)

    def _set_trigger_delay(self, arg: str) -> None:
        self.trigger_delay_s = parse_number(arg, *TRIGGER_DELAY_RANGE_S, unit="S", default=0.0)
        self.trigger_delay_auto = False  # a set delay turns the automatic one off (the guide)

    # --- configuration ---------------------------------------------------------------------------
    @staticmethod
    def _range_for(text: str) -> float:
        """Smallest range that holds the value asked for (as the DMM picks it).

        :raises ScpiError: -222 above 1000 V.
        """
        value = parse_number(text, RANGES[0], RANGES[-1], unit="V")
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
        wanted = parse_number(word, 0.0, range_v, minmax=False, unit="V")
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
        self.auto, self.nplc, self.function = auto, nplc, "VOLT"
        if not auto:
            self.range_v = range_v
        self._preset_triggers()
        self.memory, self.waiting = [], False

    def _measure(self, arg: str) -> str:
        self._configure(arg)
        return self._read()

    def _configure_other(self, arg: str, function: str) -> None:
        """CONF:CURR:DC / CONF:RES [range[,resolution]]: the range checked against the function's
        table (the resolution accepted as given: not modelled)."""
        ranges, unit = (CURRENT_RANGES, "A") if function == "CURR" else (RESISTANCE_RANGES, "OHM")
        parts = [p.strip() for p in arg.split(",")] if arg.strip() else []
        if len(parts) > 2:
            raise ScpiError(-108, "Parameter not allowed")
        word = parts[0].upper() if parts else "AUTO"
        if word in ("AUTO", "DEF", "DEFAULT"):
            chosen = None
        else:
            value = parse_number(word, ranges[0], ranges[-1], unit=unit)
            chosen = next(r for r in ranges if value <= r * (1 + 1e-9))
        if len(parts) == 2 and parts[1].upper() not in ("MIN", "MAX", "DEF", "MINIMUM", "MAXIMUM", "DEFAULT"):
            parse_number(parts[1], 0.0, ranges[-1], minmax=False, unit=unit)
        self.function, self.other_range = function, chosen
        self._preset_triggers()
        self.memory, self.waiting = [], False

    def _measure_other(self, arg: str, function: str) -> str:
        self._configure_other(arg, function)
        return self._read()

    def _configuration(self, arg: str) -> str:
        if self.function != "VOLT":
            ranges = CURRENT_RANGES if self.function == "CURR" else RESISTANCE_RANGES
            range_now = self.other_range or (ranges[0] if self.function == "CURR" else ranges[-1])
            return f'"{self.function} {reading(range_now)},{reading(range_now * 3e-7)}"'
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
        value = parse_number(word, min(NPLC_RESOLUTION), max(NPLC_RESOLUTION), unit="PLC")
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

    def reading_time_s(self) -> float:
        """What one reading takes on the real DMM: NPLC cycles, doubled by autozero."""
        return self.nplc / LINE_HZ * (2 if self.flags["ZERO"] else 1)

    def _read(self) -> str:
        self.busy(self.reading_time_s())
        if self.function == "CURR":
            return reading(0.0)  # nothing is wired to the current jack
        if self.function == "RES":
            return reading(OVERLOAD)  # the leads are across a charged pack
        volts, range_v = self._input_v(), self._range_now()
        if abs(volts) > range_v * OVERRANGE:
            return reading(OVERLOAD if volts > 0 else -OVERLOAD)
        step = NPLC_RESOLUTION[self.nplc] * range_v
        return reading(round(volts / step) * step)

    def _take_burst(self) -> None:
        """TRIG:COUN x SAMP:COUN readings into memory, at this instant (module docstring)."""
        self.memory = [self._read() for _ in range(self.trigger_count * self.sample_count)]
        self.busy(0.0 if self.trigger_delay_auto else self.trigger_delay_s * self.trigger_count)
        self.waiting = False

    def _read_burst(self) -> str:
        if self.trigger_source == "BUS":
            raise ScpiError(-214, "Trigger deadlock; READ? with TRIG:SOUR BUS")
        self._initiate("")
        return self._fetch("")

    def _initiate(self, arg: str) -> None:
        self.memory, self.waiting = [], True
        if self.trigger_source == "IMM":
            self._take_burst()

    def _bus_trigger(self, arg: str) -> None:
        if self.trigger_source != "BUS" or not self.waiting:
            raise ScpiError(-211, "Trigger ignored; not INITiated with TRIG:SOUR BUS")
        self._take_burst()

    def _fetch(self, arg: str) -> str | None:
        if self.waiting:
            raise ScpiError(-230, f"Data corrupt or stale; waiting for a {self.trigger_source} trigger")
        if not self.memory:
            raise ScpiError(-230, "Data corrupt or stale; no reading since INITiate")
        return ",".join(self.memory)

    def _read_and_erase(self, arg: str) -> str:
        """R? [<max>]: the oldest readings (all, or at most max) as a definite-length block, erased."""
        count = len(self.memory) if not arg.strip() else int(parse_number(arg, 1, COUNT_RANGE[1], minmax=False))
        taken, self.memory = self.memory[:count], self.memory[count:]
        body = ",".join(taken)
        return f"#{len(str(len(body)))}{len(body)}{body}" if body else "#10"
