"""Emulated ITECH IT8900 series DC electronic load (default: a 150 V / 240 A / 12 kW unit).

The dialect is ITECH's electronic-load SCPI as the *ITECH IT8800 Series Programming Guide*
(IT8800-402159, rev. 2, 2018) documents it, which the IT8900 series speaks too: ``FUNCtion``
selects CC/CV/CR/CP, a list is built with ``LIST:RANGe/COUNt/STEP/LEVel/WIDth``, armed with
``FUNCtion:MODE LIST`` and started by a bus trigger. Commands (upper case is the short form)::

    [SOURce:]FUNCtion CURRent|VOLTage|RESistance|POWer          ...?   -> CURR|VOLT|RES|POW
    [SOURce:]CURRent[:LEVel][:IMMediate] <A>|MIN|MAX            ...? [MIN|MAX]  0..240 A
    [SOURce:]VOLTage[:LEVel][:IMMediate] <V>|MIN|MAX            ...? [MIN|MAX]  0..150 V
    [SOURce:]RESistance[:LEVel][:IMMediate] <ohm>|MIN|MAX       ...? [MIN|MAX]  0.01..7500 ohm
    [SOURce:]POWer[:LEVel][:IMMediate] <W>|MIN|MAX              ...? [MIN|MAX]  0..12000 W
    [SOURce:]INPut[:STATe] 0|1|OFF|ON                           ...?
    [SOURce:]INPut:SHORt[:STATe] 0|1|OFF|ON                     ...?
    [SOURce:]FUNCtion:MODE FIXed|LIST                           ...?   -> FIX|LIST
    [SOURce:]LIST:RANGe <A>      LIST:COUNt <n>      LIST:STEP <n>      (each with ...?)
    [SOURce:]LIST:LEVel <step>,<A>     LIST:LEVel? <step>
    [SOURce:]LIST:WIDth <step>,<s>     LIST:WIDth? <step>
    [SOURce:]CURRent:PROTection[:LEVel] <A>|MIN|MAX             ...? [MIN|MAX]  0..240 A
    [SOURce:]CURRent:PROTection:STATe 0|1|OFF|ON                ...?
    TRIGger:SOURce MANual|IMMediate|EXTernal|BUS|HOLD           ...?
    *TRG (with TRIG:SOUR BUS)    TRIGger[:IMMediate] (any source)
    PROTection:CLEar
    MEASure|FETCh[:SCALar]:VOLTage|CURRent|POWer[:DC]?
    SYSTem:REMote    SYSTem:LOCal    SYSTem:RWLock      (the guide's remote/local; no panel here)
    *SAV <1..100>    *RCL <1..100>   function and levels

A level takes its unit (``CURR 5 A``, ``VOLT 50 V``, ``RES 2 KOHM``, ``POW 1 KW``) and ``MIN``,
``MAX`` or ``DEF`` (the ``*RST`` value), as the guide's ``<NRf+>``.

**Over-current protection** (ITECH's software OCP, *IT8800 User Manual* 3.17.2; the SCPI as
the IT8500+ and IT8600 guides of the family word it; ``*RST``: off, level MAX): while on, an
input current above the level turns the input off and latches OC, like the watchdog below (the
emulation checks it at each step of the world, i.e. with the minimum delay).

**Watchdog: not an ITECH feature.** The IT8800 guide documents no communication watchdog, so
this emulation adds a vendor-style one, worded after Keysight's ``OUTPut:PROTection:WDOG`` with
the load's ``INPut`` root: ``INPut:PROTection:WDOG[:STATe] 0|1|OFF|ON`` and
``INPut:PROTection:WDOG:DELay <s>`` (1..3600 s, whole seconds; ``*RST`` off, 60 s). When no
command line arrives for the delay the input turns off (``INP?`` answers 0) and latches:
``INP ON`` or ``INP:SHOR ON`` is refused with -221 until ``PROTection:CLEar``. A real IT8900
answers these two headers with -113; the rig's driver then reports that its watchdog is missing.

A list program lands in ``plant.eload.program`` (steps x ``LIST:COUNt``) when triggered, with
``program_started_ns``; during and after it the load is in CC at the last step's level until
``FUNCtion:MODE FIX``. Short mode sets ``plant.eload.short`` (it draws only with the input on).
"""
from __future__ import annotations

from emulator.instruments import IoWatchdog, keyword, min_max
from emulator.plant import LoadStep, Plant
from emulator.instruments.scpi_server import ScpiDevice, ScpiError, parse_bool, parse_number

FUNCTIONS = ("CURRent", "VOLTage", "RESistance", "POWer")
#: FUNCtion short form -> the plant's mode name
PLANT_MODE = {"CURR": "CC", "VOLT": "CV", "RES": "CR", "POW": "CP"}
TRIGGER_SOURCES = ("MANual", "IMMediate", "EXTernal", "BUS", "HOLD")
MAX_LIST_STEPS = 84
LIST_COUNT_RANGE = (1, 65535)
LIST_WIDTH_RANGE_S = (0.00002, 3600.0)


def number(value: float) -> str:
    """A number the way the emulated load answers it (plain NR2/NR3, 7 significant digits)."""
    return f"{value:.7g}"


def _integer(arg: str, lo: int, hi: int) -> int:
    value = parse_number(arg, lo, hi)
    if value != int(value):
        raise ScpiError(-224, f"Illegal parameter value; {arg!r} is not a whole number")
    return int(value)


class EmulatedIT8900(ScpiDevice):
    """An IT8900 input wired to ``plant.eload``; ranges are the bench's 150 V / 240 A unit.

    :param plant: the plant whose ``eload`` this instrument drives and reads.
    :param max_voltage_v: CV range top, V.     :param max_current_a: CC range top, A.
    :param max_power_w: CP range top, W.       :param max_resistance_ohm: CR range top, ohm.
    """

    def __init__(self, plant: Plant, *, model: str = "IT8912E", max_voltage_v: float = 150.0,
                 max_current_a: float = 240.0, max_power_w: float = 12000.0,
                 min_resistance_ohm: float = 0.01, max_resistance_ohm: float = 7500.0,
                 serial: str = "800000000000000001", firmware: str = "1.00-1.00"):
        super().__init__()
        self.plant = plant
        self.idn = f"ITECH Ltd.,{model},{serial},{firmware}"
        self.ranges = {"CURR": (0.0, max_current_a), "VOLT": (0.0, max_voltage_v),
                       "RES": (min_resistance_ohm, max_resistance_ohm), "POW": (0.0, max_power_w)}
        self.watchdog = IoWatchdog(lambda: self.plant.now_ns())
        self.tripped = ""  # "WDOG" or "OCP" once one latched the input off; guarded by plant.lock
        for function in self.ranges:
            long = next(f for f in FUNCTIONS if f.upper().startswith(function))
            self._level(f"[SOURce:]{long}[:LEVel][:IMMediate]", function)
        self.command("[SOURce:]FUNCtion", self._set_function)
        self.command("[SOURce:]FUNCtion?", lambda arg: self.function)
        self.command("[SOURce:]INPut[:STATe]", self._set_input)
        self.command("[SOURce:]INPut[:STATe]?", lambda arg: self._load_bool("on"))
        self.command("[SOURce:]INPut:SHORt[:STATe]", self._set_short)
        self.command("[SOURce:]INPut:SHORt[:STATe]?", lambda arg: self._load_bool("short"))
        self.command("[SOURce:]FUNCtion:MODE", self._set_function_mode)
        self.command("[SOURce:]FUNCtion:MODE?", lambda arg: "LIST" if self.list_mode else "FIX")
        self.command("[SOURce:]LIST:RANGe", self._set_list_range)
        self.command("[SOURce:]LIST:RANGe?", lambda arg: number(self.list_range))
        self.command("[SOURce:]LIST:COUNt", self._set_list_count)
        self.command("[SOURce:]LIST:COUNt?", lambda arg: str(self.list_count))
        self.command("[SOURce:]LIST:STEP", self._set_list_steps)
        self.command("[SOURce:]LIST:STEP?", lambda arg: str(self.list_steps))
        self.command("[SOURce:]LIST:LEVel",
                     lambda arg: self._set_step(arg, self.list_levels, (0.0, self.list_range)))
        self.command("[SOURce:]LIST:LEVel?", lambda arg: number(self.list_levels[self._step_index(arg)]))
        self.command("[SOURce:]LIST:WIDth",
                     lambda arg: self._set_step(arg, self.list_widths, LIST_WIDTH_RANGE_S))
        self.command("[SOURce:]LIST:WIDth?", lambda arg: number(self.list_widths[self._step_index(arg)]))
        self.command("[SOURce:]CURRent:PROTection[:LEVel]", self._set_ocp_level)
        self.command("[SOURce:]CURRent:PROTection[:LEVel]?",
                     lambda arg: number(self.ocp_level_a if (b := min_max(arg, *self.ranges["CURR"])) is None else b))
        self.command("[SOURce:]CURRent:PROTection:STATe", lambda arg: setattr(self, "ocp_enabled", parse_bool(arg)))
        self.command("[SOURce:]CURRent:PROTection:STATe?", lambda arg: "1" if self.ocp_enabled else "0")
        self.command("TRIGger:SOURce", self._set_trigger_source)
        self.command("TRIGger:SOURce?", lambda arg: self.trigger_source)
        self.command("*TRG", self._bus_trigger)
        self.command("TRIGger[:IMMediate]", lambda arg: self._start_list())
        self.command("PROTection:CLEar", self._clear_protection)
        self.remote = "LOC"  # SYST:REM / LOC / RWL: kept and answered, nothing to lock here
        for word in ("REMote", "LOCal", "RWLock"):
            self.command(f"SYSTem:{word}", lambda arg, w=word: setattr(self, "remote", w[:3].upper()))
        self.watchdog.declare(self, "INPut", number)
        for root in ("MEASure", "FETCh"):
            for quantity, field in (("VOLTage", "measured_v"), ("CURRent", "measured_a"), ("POWer", None)):
                self.command(f"{root}[:SCALar]:{quantity}[:DC]?", lambda arg, f=field: self._measured(f))
        self.reset()

    # --- fixed-mode settings ---------------------------------------------------------------------
    def _level(self, pattern: str, function: str) -> None:
        unit = {"CURR": "A", "VOLT": "V", "RES": "OHM", "POW": "W"}[function]

        def set_(arg: str) -> None:  # -222: unchanged; DEF is the *RST level
            self.levels[function] = parse_number(arg, *self.ranges[function], unit=unit,
                                                 default=self.reset_levels()[function])
            self._sync()

        def get(arg: str) -> str:
            bound = min_max(arg, *self.ranges[function])
            return number(self.levels[function] if bound is None else bound)

        self.command(pattern, set_)
        self.command(pattern + "?", get)

    def _set_function(self, arg: str) -> None:
        self.function = keyword(arg, FUNCTIONS)
        self._sync()

    def _set_input(self, arg: str) -> None:
        on = parse_bool(arg)
        with self.plant.lock:
            self._refuse_if_latched(on)
            self.plant.eload.on = on

    def _set_short(self, arg: str) -> None:
        on = parse_bool(arg)
        with self.plant.lock:
            self._refuse_if_latched(on)
            self.plant.eload.short = on

    def _refuse_if_latched(self, turning_on: bool) -> None:
        if turning_on and self.tripped:
            cause = "the watchdog" if self.tripped == "WDOG" else "over-current protection"
            raise ScpiError(-221, f"Settings conflict; input latched off by {cause}, send PROT:CLE")

    def _load_bool(self, field: str) -> str:
        with self.plant.lock:
            return "1" if getattr(self.plant.eload, field) else "0"

    # --- list mode ------------------------------------------------------------------------------------
    def _set_function_mode(self, arg: str) -> None:
        self.list_mode = keyword(arg, ("FIXed", "LIST")) == "LIST"
        if not self.list_mode:  # back to fixed: a running list stops
            with self.plant.lock:
                self.plant.eload.program, self.plant.eload.program_started_ns = [], None
        self._sync()

    def _set_list_range(self, arg: str) -> None:
        self.list_range = parse_number(arg, *self.ranges["CURR"])

    def _set_list_count(self, arg: str) -> None:
        self.list_count = _integer(arg, *LIST_COUNT_RANGE)

    def _set_list_steps(self, arg: str) -> None:
        self.list_steps = _integer(arg, 1, MAX_LIST_STEPS)

    def _step_index(self, arg: str) -> int:
        return _integer(arg, 1, self.list_steps) - 1

    def _set_step(self, arg: str, values: list[float], bounds: tuple[float, float]) -> None:
        step, sep, value = arg.partition(",")
        if not sep:
            raise ScpiError(-109, "Missing parameter; expected <step>,<value>")
        index = self._step_index(step)
        values[index] = parse_number(value, *bounds)

    def _set_trigger_source(self, arg: str) -> None:
        self.trigger_source = keyword(arg, TRIGGER_SOURCES)

    def _bus_trigger(self, arg: str) -> None:
        if self.trigger_source != "BUS":
            raise ScpiError(-211, f"Trigger ignored; TRIG:SOUR is {self.trigger_source}, not BUS")
        self._start_list()

    def _start_list(self) -> None:
        if not self.list_mode:
            raise ScpiError(-211, "Trigger ignored; FUNC:MODE is FIX, not LIST")
        steps = [LoadStep(self.list_levels[i], self.list_widths[i]) for i in range(self.list_steps)]
        with self.plant.lock:
            self.plant.eload.program = steps * self.list_count  # the plant runs its program once
            self.plant.eload.program_started_ns = self.plant.now_ns()
        self._sync()

    def _sync(self) -> None:
        """Write the mode and set-point the world acts on."""
        with self.plant.lock:
            load = self.plant.eload
            if load.program_started_ns is not None:  # a list runs in CC and holds its last level
                load.mode, load.setpoint = "CC", load.program[-1].value
            else:
                load.mode, load.setpoint = PLANT_MODE[self.function], self.levels[self.function]

    # --- protection and watchdog ----------------------------------------------------------------------
    def _set_ocp_level(self, arg: str) -> None:
        self.ocp_level_a = parse_number(arg, *self.ranges["CURR"])

    def _clear_protection(self, arg: str) -> None:
        with self.plant.lock:
            self.tripped = ""  # the input stays off: the controller turns it on again

    def _measured(self, field: str | None) -> str:
        with self.plant.lock:
            load = self.plant.eload
            value = getattr(load, field) if field else load.measured_v * load.measured_a
        return number(value)

    # --- time, reset (a client going away changes nothing: the watchdog acts) ----------------
    def touched(self) -> None:
        self.watchdog.feed()

    def on_time(self, t_ns: int) -> None:
        """The world's time is now ``t_ns``: the watchdog turns the input off and latches when due,
        and so does the over-current protection when the input draws above its level.

        Takes only ``plant.lock``, so the world may call it while holding that lock.
        """
        with self.plant.lock:
            load = self.plant.eload
            if self.tripped:
                return
            if self.watchdog.expired(t_ns):
                self.tripped, load.on = "WDOG", False
            elif self.ocp_enabled and load.on and load.measured_a > self.ocp_level_a:
                self.tripped, load.on = "OCP", False

    def next_deadline_ns(self) -> int | None:
        """When the watchdog fires if no command arrives first, ns; ``None`` when disarmed or latched."""
        with self.plant.lock:
            return None if self.tripped else self.watchdog.deadline_ns()

    def reset_levels(self) -> dict[str, float]:
        """The ``*RST`` level of each function (also what ``DEF`` sets)."""
        return {"CURR": 0.0, "VOLT": self.ranges["VOLT"][1], "RES": self.ranges["RES"][1], "POW": 0.0}

    #: *SAV/*RCL locations; the IT8800 guide numbers them 1..100 (0 is taken too)
    save_locations = 101

    def settings(self) -> dict:
        return {"function": self.function, "levels": dict(self.levels)}

    def apply_settings(self, settings: dict) -> None:
        self.function, self.levels = settings["function"], dict(settings["levels"])
        self._sync()

    def reset(self) -> None:
        """Power-on / ``*RST``: input and short off, fixed CC at 0 A, list cleared, watchdog off."""
        self.function, self.list_mode, self.trigger_source = "CURR", False, "MAN"
        self.levels = self.reset_levels()
        self.list_range, self.list_count, self.list_steps = self.ranges["CURR"][1], 1, 1
        self.list_levels = [0.0] * MAX_LIST_STEPS
        self.list_widths = [1.0] * MAX_LIST_STEPS
        self.watchdog.enabled, self.watchdog.delay_s = False, 60.0
        self.ocp_enabled, self.ocp_level_a = False, self.ranges["CURR"][1]
        with self.plant.lock:
            self.tripped = ""
            load = self.plant.eload
            load.on, load.short, load.program, load.program_started_ns = False, False, [], None
        self._sync()

