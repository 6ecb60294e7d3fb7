"""Emulated Keysight DAQ970A with DAQM901A multiplexers: the cell-tap and thermocouple scanner.

Model and source: Keysight DAQ970A Data Acquisition System with DAQM901A 20-channel armature
multiplexer modules, SCPI as in the "Keysight DAQ970A/DAQ973A Programming Guide"; the command
set is the 34970A's ("Agilent 34970A User's Guide", chapter 5 Remote Interface Reference:
``ROUT:SCAN (@101:103)`` -> ``ROUT:SCAN?`` gives ``#214(@101,102,103)``), and the forms
``MEAS:VOLT:DC? (@...)`` / ``MEAS:TEMP? TC,K,(@...)`` are the ones public drivers send.

Channels are ``scc`` (slot, channel): ``101``..``120`` in slot 1, ``201``..``220`` in slot 2.
A channel list is ``(@101,105:108)``; readings come back comma-separated in ascending channel
order, whatever order the list was written in (the instrument sorts its scan list), so
``(@105,101)`` answers for 101 then 105. The wiring of the emulated bench says which channel
sees what: ``group_channels[pack][group]`` reads ``plant.scanner.group_v[pack][group]`` (V),
``thermocouple_channels[pack][i]`` reads ``plant.scanner.case_c[pack][i]`` (C). Commands::

    MEASure:VOLTage[:DC]? [{<range>|AUTO|MIN|MAX|DEF}[,<resolution>],](@<list>)
    MEASure:TEMPerature? [{TC|DEF}[,{B|E|J|K|N|R|S|T|DEF}[,1[,<resolution>]]],](@<list>)
    CONFigure:VOLTage[:DC] ...(@<list>)   CONFigure:TEMPerature ...(@<list>)   (also set the scan list)
    ROUTe:SCAN (@<list>)    ROUTe:SCAN?    ROUTe:SCAN:SIZE?    READ?
    UNIT:TEMPerature {C|F|K}[,(@<list>)]   and ? [(@<list>)]
    [SENSe:]VOLTage[:DC]:NPLCycles {<n>|MIN|MAX},(@<list>)  and ? (@<list>)   0.02..200 PLC
    INITiate    FETCh?    R? [<max>]    DATA:POINts?    *TRG
    TRIGger:SOURce {IMMediate|BUS}   TRIGger:COUNt {<n>|MIN|MAX|DEF}   (and ?)
    FORMat:READing:{CHANnel|UNIT|TIME|ALARm} {ON|OFF}   (and ?)
    *SAV <1..5>    *RCL <1..5>
    plus the IEEE 488.2 common commands and SYSTem:ERRor/VERSion of the shared server

Scanning as the guide's "Scanning" chapter: ``INITiate`` sweeps the scan list TRIG:COUN times into
reading memory (with BUS, at ``*TRG``); ``FETCh?`` returns the memory, ``R?`` returns the oldest
readings as a definite-length block and erases them, ``DATA:POINts?`` counts them; ``READ?`` =
INIT + FETC? (-214 with BUS). FORMat:READing adds, after each reading: its unit (`` VDC``, `` C``),
the time since the scan started (``000000000.000``, s), the channel, the alarm (always 0: no
limits are modelled). Each channel reading charges its integration time, NPLC / 50 Hz
(:meth:`~emulator.instruments.scpi_server.ScpiDevice.busy`, held on a paced bench); relay switching is not
charged. TRIG:SOUR TIMer and EXTernal are refused (-224, not modelled): the emulated
scan takes every sweep at one instant of the world's clock, which a timed scan would misstate.

Readings: ``+3.30212300E+00``. Overload, an open thermocouple, or a thermocouple reading taken
on a cell tap (volts far beyond any thermocouple table) read ``+9.90000000E+37``. A channel not
on an installed DAQM901A queues ``-222``; so does an NPLC outside 0.02..200 (setting unchanged).
The scanner is read-only: a client going away changes nothing.
"""
from __future__ import annotations

from collections.abc import Sequence

from emulator.instruments import keyword
from emulator.plant import Plant
from emulator.instruments.scpi_server import ScpiDevice, ScpiError, parse_bool, parse_number

#: FORMat:READing fields, in the order they follow a reading
FORMAT_FIELDS = ("UNIT", "TIME", "CHANnel", "ALARm")
TRIGGER_COUNT_RANGE = (1, 50_000)
#: the power line the internal DMM integrates over, Hz
LINE_HZ = 50.0
VOLT_RANGES = (0.1, 1.0, 10.0, 100.0, 300.0)  # DAQ970A internal DMM, V; DAQM901A max 300 V
NPLC_VALUES = (0.02, 0.2, 1.0, 2.0, 10.0, 20.0, 100.0, 200.0)
TC_TYPES = ("B", "E", "J", "K", "N", "R", "S", "T")
CHANNELS_PER_MODULE = 20  # DAQM901A multiplexer channels s01..s20
OVERLOAD = 9.9e37


def reading(value: float) -> str:
    """One reading as the DAQ970A formats it."""
    return f"{value:+.8E}"


def parse_channel_list(text: str, per_slot: int = CHANNELS_PER_MODULE) -> list[int]:
    """``(@101,105:108)`` -> ``[101, 105, 106, 107, 108]``; a range spanning slots keeps only
    channels a module has (``s01``..``s<per_slot>``).

    :raises ScpiError: -103 when it is not a channel list.
    """
    body = text.strip().replace(" ", "")
    if not (body.startswith("(@") and body.endswith(")")):
        raise ScpiError(-103, f"Invalid separator; expected a channel list like (@101:116), got {text!r}")
    channels: list[int] = []
    for item in filter(None, body[2:-1].split(",")):
        first, _, last = item.partition(":")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ScpiError(-103, f"Invalid separator; bad channel {item!r}") from None
        lo, hi = min(lo, hi), max(lo, hi)
        span = range(lo, hi + 1)
        channels.extend(c for c in span if lo == hi or 1 <= c % 100 <= per_slot)
    return channels


def split_channel_arg(arg: str) -> tuple[list[str], str]:
    """``"TC,K,(@117:120)"`` -> ``(["TC", "K"], "(@117:120)")``; parameters before the list."""
    at = arg.find("(@")
    if at < 0:
        raise ScpiError(-109, "Missing parameter; a channel list (@...) is required")
    params = [p.strip() for p in arg[:at].split(",") if p.strip()]
    return params, arg[at:]


def block(channels: Sequence[int]) -> str:
    """A channel list as SCPI definite-length block: ``#214(@101,102,103)``."""
    body = "(@" + ",".join(str(c) for c in channels) + ")"
    return f"#{len(str(len(body)))}{len(body)}{body}"


class EmulatedDaq970A(ScpiDevice):
    """The scanner of the emulated bench, wired by the bench file's channel maps.

    :param plant: the emulated bench's plant (only ``plant.scanner`` is touched).
    :param group_channels: per pack, the channel of each of the 16 group taps.
    :param thermocouple_channels: per pack, the channel of each case thermocouple.
    :raises ValueError: a channel wired twice, or not a DAQM901A channel.
    """

    idn = "Keysight Technologies,DAQ970A,MY58000001,A.02.02-01.00-02.01-00.02-03-03"

    def __init__(self, plant: Plant, group_channels: Sequence[Sequence[int]],
                 thermocouple_channels: Sequence[Sequence[int]]):
        super().__init__()
        self.plant = plant
        self.groups = self._wiring(group_channels, {})
        self.thermocouples = self._wiring(thermocouple_channels, self.groups)
        #: slots holding a DAQM901A: the ones the wiring uses
        self.slots = {ch // 100 for ch in (*self.groups, *self.thermocouples)}
        self.reset()
        self.command("MEASure:VOLTage[:DC]?", lambda arg: self._measure(arg, "VOLT"))
        self.command("MEASure:TEMPerature?", lambda arg: self._measure(arg, "TEMP"))
        self.command("CONFigure:VOLTage[:DC]", lambda arg: self._configure(arg, "VOLT"))
        self.command("CONFigure:TEMPerature", lambda arg: self._configure(arg, "TEMP"))
        self.command("ROUTe:SCAN", self._set_scan)
        self.command("ROUTe:SCAN?", lambda arg: block(self.scan))
        self.command("ROUTe:SCAN:SIZE?", lambda arg: str(len(self.scan)))
        self.command("READ?", lambda arg: self._read_scan())
        self.command("INITiate[:IMMediate]", lambda arg: self._initiate())
        self.command("*TRG", self._bus_trigger)
        self.command("FETCh?", lambda arg: self._fetch())
        self.command("R?", self._read_and_erase)
        self.command("DATA:POINts?", lambda arg: str(len(self.memory)))
        self.command("TRIGger:SOURce", self._set_trigger_source)
        self.command("TRIGger:SOURce?", lambda arg: self.trigger_source)
        self.command("TRIGger:COUNt", self._set_trigger_count)
        self.command("TRIGger:COUNt?", lambda arg: reading(self.trigger_count))
        for field in FORMAT_FIELDS:
            self.command(f"FORMat:READing:{field}", lambda arg, f=field: self._set_format(f, arg))
            self.command(f"FORMat:READing:{field}?", lambda arg, f=field: "1" if self._format_on(f) else "0")
        self.command("UNIT:TEMPerature", self._set_unit)
        self.command("UNIT:TEMPerature?", self._get_unit)
        self.command("[SENSe:]VOLTage[:DC]:NPLCycles", self._set_nplc)
        self.command("[SENSe:]VOLTage[:DC]:NPLCycles?", self._get_nplc)

    @staticmethod
    def _wiring(per_pack: Sequence[Sequence[int]], taken: dict) -> dict[int, tuple[int, int]]:
        wired: dict[int, tuple[int, int]] = {}
        for pack, channels in enumerate(per_pack):
            for index, ch in enumerate(channels):
                if not 1 <= ch % 100 <= CHANNELS_PER_MODULE or not 1 <= ch // 100 <= 3:
                    raise ValueError(f"channel {ch} is not a DAQM901A channel (s01..s20, slot 1-3)")
                if ch in wired or ch in taken:
                    raise ValueError(f"channel {ch} is wired twice")
                wired[ch] = (pack, index)
        return wired

    def reset(self) -> None:
        """*RST: every channel DC volts autorange at 1 PLC, degrees C, empty scan list."""
        #: per channel: ("VOLT", range V or None for auto) or ("TEMP", thermocouple type)
        self.function: dict[int, tuple[str, float | str | None]] = {}
        self.units: dict[int, str] = {}
        self.nplc: dict[int, float] = {}
        self.scan: list[int] = []
        self.trigger_source, self.trigger_count = "IMM", 1
        self.formats: set[str] = set()
        self.memory: list[str] = []
        self.waiting = False

    #: *SAV/*RCL locations (the guide: 1 to 5; 0 is taken too)
    save_locations = 6

    def settings(self) -> dict:
        return {"function": dict(self.function), "units": dict(self.units), "nplc": dict(self.nplc),
                "scan": list(self.scan), "trigger_source": self.trigger_source,
                "trigger_count": self.trigger_count, "formats": set(self.formats)}

    def apply_settings(self, settings: dict) -> None:
        for key, value in settings.items():
            setattr(self, key, type(value)(value))

    # --- channel lists and settings --------------------------------------------------------------
    def _channels(self, text: str) -> list[int]:
        """A checked channel list, ascending and without repeats (the order the DAQ scans in)."""
        channels = sorted(set(parse_channel_list(text)))
        for ch in channels:
            if ch // 100 not in self.slots or not 1 <= ch % 100 <= CHANNELS_PER_MODULE:
                raise ScpiError(-222, f"Data out of range; channel {ch} is not on an installed DAQM901A")
        return channels

    @staticmethod
    def _function(params: list[str], kind: str) -> tuple[str, float | str | None]:
        """Parse MEAS/CONF parameters into a channel function; nothing is changed on error."""
        if kind == "VOLT":
            if len(params) > 2:
                raise ScpiError(-108, "Parameter not allowed")
            word = params[0].upper() if params else "AUTO"
            if word in ("AUTO", "DEF", "DEFAULT"):
                return ("VOLT", None)
            value = parse_number(word, VOLT_RANGES[0], VOLT_RANGES[-1])
            return ("VOLT", next(r for r in VOLT_RANGES if value <= r * (1 + 1e-9)))
        if len(params) > 4:
            raise ScpiError(-108, "Parameter not allowed")
        probe = params[0].upper() if params else "TC"
        tc_type = params[1].upper() if len(params) > 1 else "DEF"
        if probe not in ("TC", "TCOUPLE", "TCOUP", "DEF", "DEFAULT"):
            raise ScpiError(-224, f"Illegal parameter value; the emulated bench wires thermocouples, "
                                  f"not {probe}")
        tc_type = "J" if tc_type in ("DEF", "DEFAULT") else tc_type  # type J is the DAQ's default
        if tc_type not in TC_TYPES:
            raise ScpiError(-224, f"Illegal parameter value; thermocouple type {tc_type}")
        return ("TEMP", tc_type)

    def _configure(self, arg: str, kind: str) -> None:
        params, text = split_channel_arg(arg)
        function, channels = self._function(params, kind), self._channels(text)
        for ch in channels:  # MEAS/CONF restore the channel's defaults along with the function
            self.function[ch], self.nplc[ch] = function, 1.0
        self.scan = channels

    def _measure(self, arg: str, kind: str) -> str:
        self._configure(arg, kind)  # MEASure? = CONFigure + READ?: it redefines the scan list too
        return self._read(self.scan)

    def _set_scan(self, arg: str) -> None:
        self.scan = self._channels(arg)

    def _set_unit(self, arg: str) -> None:
        unit, _, text = arg.partition(",")
        unit = unit.strip().upper()
        if unit not in ("C", "F", "K"):
            raise ScpiError(-224, f"Illegal parameter value; unit {unit!r} (C, F or K)")
        for ch in (self._channels(text) if text.strip() else self.scan):
            self.units[ch] = unit

    def _get_unit(self, arg: str) -> str:
        channels = self._channels(arg) if arg.strip() else self.scan
        return ",".join(self.units.get(ch, "C") for ch in channels)

    def _set_nplc(self, arg: str) -> None:
        value_text, _, text = arg.partition(",")
        value = parse_number(value_text, NPLC_VALUES[0], NPLC_VALUES[-1], unit="PLC")
        channels = self._channels(text) if text.strip() else self.scan
        for ch in channels:  # between two supported values: the next longer integration
            self.nplc[ch] = next(n for n in NPLC_VALUES if value <= n * (1 + 1e-9))

    def _get_nplc(self, arg: str) -> str:
        channels = self._channels(arg) if arg.strip() else self.scan
        return ",".join(reading(self.nplc.get(ch, 1.0)) for ch in channels)

    # --- readings --------------------------------------------------------------------------------
    @staticmethod
    def _at(table: list[list[float]], where: tuple[int, int]) -> float:
        """A value the world wrote; 0 before the world has written that pack/channel."""
        pack, index = where
        try:
            return float(table[pack][index])
        except IndexError:
            return 0.0

    def _volts(self, ch: int, range_v: float | None) -> float:
        with self.plant.lock:
            volts = self._at(self.plant.scanner.group_v, self.groups[ch]) if ch in self.groups else 0.0
        if range_v is None:  # autorange
            range_v = next((r for r in VOLT_RANGES if abs(volts) <= r * 1.2), VOLT_RANGES[-1])
        if abs(volts) > range_v * 1.2:
            return OVERLOAD if volts > 0 else -OVERLOAD
        step = range_v * 1e-6  # 6.5 digits
        return round(volts / step) * step

    def _celsius(self, ch: int) -> float:
        if ch not in self.thermocouples:  # open input or a cell tap: no thermocouple reading
            return OVERLOAD
        with self.plant.lock:
            celsius = self._at(self.plant.scanner.case_c, self.thermocouples[ch])
        unit = self.units.get(ch, "C")
        value = celsius * 9 / 5 + 32 if unit == "F" else celsius + 273.15 if unit == "K" else celsius
        return round(value, 3)

    def _read(self, channels: list[int]) -> str:
        return ",".join(self._sweep(channels))

    def _sweep(self, channels: list[int]) -> list[str]:
        """One reading per channel, formatted as FORMat:READing says."""
        if not channels:
            raise ScpiError(-221, "Settings conflict; the scan list is empty")
        out = []
        for ch in channels:
            kind, option = self.function.get(ch, ("VOLT", None))
            value = self._celsius(ch) if kind == "TEMP" else self._volts(ch, option)  # type: ignore[arg-type]
            self.busy(self.nplc.get(ch, 1.0) / LINE_HZ)
            text = reading(value)
            if self._format_on("UNIT"):
                text += " " + (self.units.get(ch, "C") if kind == "TEMP" else "VDC")
            if self._format_on("TIME"):
                text += ",000000000.000"  # the emulated sweep is instantaneous
            if self._format_on("CHAN"):
                text += f",{ch}"
            if self._format_on("ALAR"):
                text += ",0"
            out.append(text)
        return out

    # --- scanning into reading memory -------------------------------------------------------------
    def _format_on(self, field: str) -> bool:
        return field[:4].upper() in self.formats

    def _set_format(self, field: str, arg: str) -> None:
        key = field[:4].upper()
        self.formats = self.formats | {key} if parse_bool(arg) else self.formats - {key}

    def _set_trigger_source(self, arg: str) -> None:
        source = keyword(arg, ("IMMediate", "BUS", "TIMer", "EXTernal"))
        if source in ("TIM", "EXT"):
            raise ScpiError(-224, f"Illegal parameter value; TRIG:SOUR {source} is not modelled by the emulation")
        self.trigger_source = source

    def _set_trigger_count(self, arg: str) -> None:
        value = parse_number(arg, *TRIGGER_COUNT_RANGE, default=1)
        if value != int(value):
            raise ScpiError(-224, f"Illegal parameter value; {arg!r} is not a whole number")
        self.trigger_count = int(value)

    def _initiate(self) -> None:
        if not self.scan:
            raise ScpiError(-221, "Settings conflict; the scan list is empty")
        self.memory, self.waiting = [], True
        if self.trigger_source == "IMM":
            self._take_sweeps()

    def _take_sweeps(self) -> None:
        self.memory = [r for _ in range(self.trigger_count) for r in self._sweep(self.scan)]
        self.waiting = False

    def _bus_trigger(self, arg: str) -> None:
        if self.trigger_source != "BUS" or not self.waiting:
            raise ScpiError(-211, "Trigger ignored; not INITiated with TRIG:SOUR BUS")
        self._take_sweeps()

    def _fetch(self) -> str:
        if self.waiting:
            raise ScpiError(-230, "Data corrupt or stale; waiting for a BUS trigger")
        if not self.memory:
            raise ScpiError(-230, "Data corrupt or stale; no reading since INITiate")
        return ",".join(self.memory)

    def _read_scan(self) -> str:
        if self.trigger_source == "BUS":
            raise ScpiError(-214, "Trigger deadlock; READ? with TRIG:SOUR BUS")
        self._initiate()
        return self._fetch()

    def _read_and_erase(self, arg: str) -> str:
        """R? [<max>]: the oldest readings as a definite-length block, erased from memory."""
        count = len(self.memory) if not arg.strip() else int(parse_number(arg, 1, 1e6, minmax=False))
        taken, self.memory = self.memory[:count], self.memory[count:]
        body = ",".join(taken)
        return f"#{len(str(len(body)))}{len(body)}{body}" if body else "#10"
