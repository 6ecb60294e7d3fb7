"""Emulated relay/IO box: Keysight DAQ970A with a DAQM903A actuator and a DAQM907A multifunction module.

Model and sources: Keysight DAQ970A mainframe, DAQM903A 20-channel actuator/general-purpose
switch (Form C relays, 300 V / 1 A: the POWER-button, WAKE and contactor-coil relays) in the
relay slot, DAQM907A multifunction module (two 8-bit digital I/O ports ``s01`` = bits 1-8,
LSB port, and ``s02`` = bits 9-16) in the input slot, reading the light sensors. Commands as
in the "Keysight DAQ970A/DAQ973A Programming Guide", which keeps the 34970A's
("Agilent 34970A User's Guide", chapter 5: ``ROUTe:CLOSe (@<ch_list>)``, ``ROUTe:CLOSe?``,
``[SENSe:]DIGital:DATA:{BYTE|WORD}? (@s01)``, ``MEASure:DIGital:BYTE? (@<scan_list>)``)::

    ROUTe:CLOSe (@<list>)    ROUTe:OPEN (@<list>)      relays of the relay slot, s01..s20
    ROUTe:CLOSe? (@<list>)   ROUTe:OPEN? (@<list>)     "1,0,..." in list order
    [SENSe:]DIGital:DATA:BYTE? (@<s01|s02>)             one port, "+5.00000000E+00"
    [SENSe:]DIGital:DATA:WORD? (@<s01>)                 both ports at one instant, s02 high byte
    MEASure:DIGital:BYTE? (@<list>)                      ports in ascending order, comma-separated
    SYSTem:COMMunicate:WDOG <s>  and ?                   EXTENSION, see below; 0 = off, 0..60 s
    *IDN? *RST *CLS *OPC? SYSTem:ERRor?

Wiring (the bench file's ``[instruments.io]``): output channel ``n`` is relay ``s0n`` of the
relay slot (``2`` -> ``(@102)``), input channel ``n`` is digital line ``n`` (1-8 on port
``s01``, 9-16 on port ``s02`` of the input slot). Closing the relay wired to ``"breaker"``
sets ``plant.io.outputs["breaker"] = True``; reading a port asks
``plant.io.light_at(function, plant.now_ns())`` for each line wired to a light sensor, at the
moment of the query (unwired lines read 0).

**The watchdog is not a DAQ970A feature.** ``SYSTem:COMMunicate:WDOG <seconds>`` is this rig's
extension (a real DAQ970A answers it with -113 "Undefined header"): when no command has arrived
for that long (measured on ``plant.now_ns()``) every relay opens, so a crashed or killed test
cannot leave the breaker contactor closed. The world drives it through :meth:`on_time` and
:meth:`next_deadline_ns`. A client disconnecting also opens every relay, and so does ``*RST``
(which also turns the watchdog off, its power-on state). Out-of-range values queue -222 and
change nothing.
"""
from __future__ import annotations

from collections.abc import Mapping

from emulator.instruments.daq970a_scanner import parse_channel_list, reading
from emulator.plant import Plant
from emulator.instruments.scpi_server import ScpiDevice, ScpiError, parse_number
from rig.clock import NS

RELAYS = 20        # DAQM903A channels s01..s20
LINES = 16         # DAQM907A: two 8-bit ports
WATCHDOG_MAX_S = 60.0


class EmulatedDaq970AIo(ScpiDevice):
    """The relay/IO box of the emulated bench.

    :param plant: the emulated bench's plant (only ``plant.io`` is touched).
    :param outputs: function -> output channel (1..20), as in the bench file.
    :param inputs: function -> input channel (1..16), as in the bench file.
    :param relay_slot: slot of the DAQM903A (1..3).
    :param input_slot: slot of the DAQM907A (1..3).
    :raises ValueError: a channel out of its module's range or wired twice.
    """

    idn = "Keysight Technologies,DAQ970A,MY58000002,A.02.02-01.00-02.01-00.02-03-03"

    def __init__(self, plant: Plant, outputs: Mapping[str, int], inputs: Mapping[str, int],
                 relay_slot: int = 1, input_slot: int = 2):
        super().__init__()
        if relay_slot == input_slot or not {relay_slot, input_slot} <= {1, 2, 3}:
            raise ValueError(f"relay slot {relay_slot} and input slot {input_slot}: "
                             "two different slots of 1-3")
        self.plant, self.relay_slot, self.input_slot = plant, relay_slot, input_slot
        self.relay_function = self._invert(outputs, RELAYS, "output")
        self.line_function = self._invert(inputs, LINES, "input")
        #: relay state by relay number 1..20; guarded by plant.lock, shared with on_time
        self.closed = {n: False for n in range(1, RELAYS + 1)}
        self.watchdog_ns = 0
        self.deadline_ns: int | None = None
        self.reset()
        self.command("ROUTe:CLOSe", lambda arg: self._switch(arg, True))
        self.command("ROUTe:OPEN", lambda arg: self._switch(arg, False))
        self.command("ROUTe:CLOSe?", lambda arg: self._state(arg, True))
        self.command("ROUTe:OPEN?", lambda arg: self._state(arg, False))
        self.command("[SENSe:]DIGital:DATA:BYTE?", lambda arg: self._digital(arg, word=False))
        self.command("[SENSe:]DIGital:DATA:WORD?", lambda arg: self._digital(arg, word=True))
        self.command("MEASure:DIGital:BYTE?", self._measure_bytes)
        self.command("SYSTem:COMMunicate:WDOG", self._set_watchdog)
        self.command("SYSTem:COMMunicate:WDOG?", lambda arg: reading(self.watchdog_ns / NS))

    @staticmethod
    def _invert(by_function: Mapping[str, int], count: int, kind: str) -> dict[int, str]:
        wired: dict[int, str] = {}
        for function, channel in by_function.items():
            if not 1 <= channel <= count:
                raise ValueError(f"{kind} channel {channel} ({function}) is not in 1..{count}")
            if channel in wired:
                raise ValueError(f"{kind} channel {channel} is wired to {wired[channel]} and {function}")
            wired[channel] = function
        return wired

    # --- safety hooks ------------------------------------------------------------------------------
    def open_all(self) -> None:
        """Every relay open, and the plant told so."""
        with self.plant.lock:
            for n in self.closed:
                self.closed[n] = False
            self._to_plant()

    def reset(self) -> None:
        """*RST: every relay open, watchdog off."""
        with self.plant.lock:
            self.watchdog_ns, self.deadline_ns = 0, None
        self.open_all()

    def on_disconnect(self) -> None:
        """A client went away: open every relay (the breaker contactor must not stay closed)."""
        self.open_all()

    def touched(self) -> None:
        """A command arrived: an expired watchdog acts first, then it starts counting again."""
        with self.plant.lock:
            now = self.plant.now_ns()
            self.on_time(now)
            self.deadline_ns = now + self.watchdog_ns if self.watchdog_ns else None

    def on_time(self, t_ns: int) -> None:
        """The world's time moved on: open every relay when the watchdog has run out."""
        with self.plant.lock:
            if self.deadline_ns is not None and t_ns >= self.deadline_ns:
                self.deadline_ns = None  # counts again from the next command
                self.open_all()

    def next_deadline_ns(self) -> int | None:
        """When the watchdog runs out (ns) if no command comes first, or None when it is off."""
        with self.plant.lock:
            return self.deadline_ns

    def _to_plant(self) -> None:
        for relay, function in self.relay_function.items():
            self.plant.io.outputs[function] = self.closed[relay]

    # --- commands --------------------------------------------------------------------------------
    def _relays(self, text: str) -> list[int]:
        """Relay numbers of a channel list, in list order; all on the DAQM903A or none."""
        relays = []
        for ch in parse_channel_list(text, per_slot=RELAYS):
            if ch // 100 != self.relay_slot or not 1 <= ch % 100 <= RELAYS:
                raise ScpiError(-222, f"Data out of range; channel {ch} is not a relay of the "
                                      f"DAQM903A in slot {self.relay_slot}")
            relays.append(ch % 100)
        if not relays:
            raise ScpiError(-109, "Missing parameter; empty channel list")
        return relays

    def _switch(self, arg: str, close: bool) -> None:
        relays = self._relays(arg)
        with self.plant.lock:
            for relay in relays:
                self.closed[relay] = close
            self._to_plant()

    def _state(self, arg: str, closed: bool) -> str:
        relays = self._relays(arg)
        with self.plant.lock:
            return ",".join("1" if self.closed[r] == closed else "0" for r in relays)

    def _ports(self, text: str) -> list[int]:
        ports = sorted(set(parse_channel_list(text, per_slot=2)))
        for ch in ports:
            if ch // 100 != self.input_slot or ch % 100 not in (1, 2):
                raise ScpiError(-222, f"Data out of range; channel {ch} is not a digital port of the "
                                      f"DAQM907A in slot {self.input_slot}")
        if not ports:
            raise ScpiError(-109, "Missing parameter; empty channel list")
        return ports

    def _lines_now(self) -> int:
        """All 16 lines at this instant, line 1 in bit 0."""
        with self.plant.lock:
            now, light_at = self.plant.now_ns(), self.plant.io.light_at
            return sum(1 << (line - 1) for line, function in self.line_function.items()
                       if light_at(function, now))

    def _digital(self, arg: str, word: bool) -> str:
        ports = self._ports(arg)
        if len(ports) != 1 or (word and ports[0] % 100 != 1):
            raise ScpiError(-221, "Settings conflict; one port, and WORD reads from port s01")
        lines = self._lines_now()
        value = lines if word else (lines >> (8 * (ports[0] % 100 - 1))) & 0xFF
        return reading(value)

    def _measure_bytes(self, arg: str) -> str:
        ports, lines = self._ports(arg), self._lines_now()
        return ",".join(reading((lines >> (8 * (p % 100 - 1))) & 0xFF) for p in ports)

    def _set_watchdog(self, arg: str) -> None:
        seconds = parse_number(arg, 0.0, WATCHDOG_MAX_S)
        with self.plant.lock:
            self.watchdog_ns = round(seconds * NS)
            self.deadline_ns = self.plant.now_ns() + self.watchdog_ns if self.watchdog_ns else None
