"""Driver: Keysight DAQ970A with DAQM901A multiplexers as the rig's cell-tap and thermocouple scanner.

Model and sources: Keysight DAQ970A Data Acquisition System, DAQM901A 20-channel multiplexer
(300 V; channels ``s01``..``s20`` of slot ``s``), "Keysight DAQ970A/DAQ973A Programming
Guide", which keeps the 34970A's command set ("Agilent 34970A User's Guide", chapter 5:
``MEASure:VOLTage:DC? [range,res,](@<scan_list>)``, ``MEASure:TEMPerature? TC,<type>,(@...)``,
``UNIT:TEMPerature {C|F|K},(@...)``; the scan runs in ascending channel order; overload and
open thermocouple read ``+9.9E+37``).

The driver knows channels, not cells: :meth:`voltages` and :meth:`temperatures` take channel
numbers in any order and return one value per channel in that order. Each call is one
``MEASure?`` over the sorted list (one scan, so all channels are read within one sweep) and
the readings are put back in the order asked. An overload or open thermocouple comes back as
``+inf`` so a limit check fails on it (the supervisor trips on "no temperature"), instead of
raising a second time later.

A second model with this command set (34970A/34972A with 34901A, DAQ973A) is a subclass that
changes :attr:`model` and the class constants.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from instruments.errors import InstrumentError
from instruments.roles import Scanner
from instruments.scpi import ScpiInstrument

OVERLOAD = 9.9e37


def channel_list(channels: Sequence[int]) -> str:
    """``[101, 102, 103, 105]`` -> ``"(@101:103,105)"``: runs of consecutive channels as ranges."""
    if not channels:
        raise ValueError("a channel list needs at least one channel")
    parts, run = [], [channels[0]]
    for ch in channels[1:]:
        if ch == run[-1] + 1:
            run.append(ch)
            continue
        parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [ch]
    parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return "(@" + ",".join(parts) + ")"


def readings(reply: str) -> list[float]:
    """Comma-separated readings -> floats; the overload value becomes +-inf.

    :raises ValueError: a field that is not a number.
    """
    values = [float(field) for field in reply.split(",")]
    return [math.copysign(math.inf, v) if abs(v) >= OVERLOAD else v for v in values]


class KeysightDaq970A(ScpiInstrument, Scanner):
    """Keysight DAQ970A + DAQM901A: DC volts and thermocouples on numbered channels.

    :param resource: an open pyvisa message-based resource (``\\n`` terminations); its timeout
        must cover a whole scan (about 20 ms a channel at the defaults).
    :param name: the instrument's name on this bench ("scanner").
    :param limits: hard limits from the bench file (the scanner sets nothing that needs one).
    :param interlock: raises once the safety supervisor has tripped (readings still work).
    :param voltage_range: fixed DC range for :meth:`voltages`, V (one of :attr:`VOLTAGE_RANGES`),
        or None for autorange; 10 V suits 2.0-3.8 V cell taps without range changes.
    :param thermocouple: thermocouple type of :meth:`temperatures` (one of :attr:`TC_TYPES`).
    :raises ValueError: a range or type the instrument does not have.
    """

    model = "DAQ970A"
    #: DC volts ranges of the internal DMM with a DAQM901A, V
    VOLTAGE_RANGES = (0.1, 1.0, 10.0, 100.0, 300.0)
    #: thermocouple types the DAQ linearises
    TC_TYPES = ("B", "E", "J", "K", "N", "R", "S", "T")
    #: channel numbers: slot 1-3, channel 1-20 of a DAQM901A
    SLOTS, CHANNELS_PER_SLOT = (1, 2, 3), 20

    def __init__(self, resource, name: str, limits=None, interlock=None, *,
                 voltage_range: float | None = 10.0, thermocouple: str = "K"):
        super().__init__(resource, name, limits, interlock)
        if voltage_range is not None and voltage_range not in self.VOLTAGE_RANGES:
            raise ValueError(f"{name}: voltage_range {voltage_range!r} not one of {self.VOLTAGE_RANGES}")
        if thermocouple.upper() not in self.TC_TYPES:
            raise ValueError(f"{name}: thermocouple type {thermocouple!r} not one of {self.TC_TYPES}")
        self.voltage_range, self.thermocouple = voltage_range, thermocouple.upper()
        self._celsius_set: set[int] = set()  # channels already told to report degrees C

    def _sorted(self, channels: Sequence[int]) -> list[int]:
        """Ascending, without repeats: the order the DAQ scans in."""
        for ch in channels:
            if ch // 100 not in self.SLOTS or not 1 <= ch % 100 <= self.CHANNELS_PER_SLOT:
                raise ValueError(f"{self.name}: {ch} is not a channel (slot 1-3, channel 01-20)")
        return sorted(set(channels))

    def _scan(self, command: str, order: list[int], channels: Sequence[int]) -> list[float]:
        """Run one MEASure? over ``order`` and return the values in the order of ``channels``."""
        try:
            reply = self._query(command)
        except InstrumentError:
            self.check_errors()  # a refused MEASure? has no reply: name the DAQ's error if any
            raise
        try:
            values = readings(reply)
        except ValueError:
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r}") from None
        if len(values) != len(order):
            raise InstrumentError(self.name, command,
                                  f"{len(values)} readings for {len(order)} channels: {reply!r}")
        by_channel = dict(zip(order, values))
        return [by_channel[ch] for ch in channels]

    def voltages(self, channels: Sequence[int]) -> list[float]:
        """DC voltage of each channel, V, in the order given (+-inf on overload).

        :raises ValueError: not a DAQM901A channel (nothing sent).
        :raises InstrumentError: no answer, an instrument error, or a reading missing.
        """
        order = self._sorted(channels)
        rng = "AUTO" if self.voltage_range is None else f"{self.voltage_range:g}"
        return self._scan(f"MEAS:VOLT:DC? {rng},DEF,{channel_list(order)}", order, channels)

    def temperatures(self, channels: Sequence[int]) -> list[float]:
        """Thermocouple temperature of each channel, C, in the order given (+inf when open).

        The first time a channel is read, it is set to report degrees C (``UNIT:TEMP C``): a
        front panel left in F would otherwise pass 150 "C" for 65 C. That write changes
        nothing outside the DAQ, so it is allowed after a safety trip too.

        :raises ValueError: not a DAQM901A channel (nothing sent).
        :raises InstrumentError: no answer, an instrument error, or a reading missing.
        """
        order = self._sorted(channels)
        listed = channel_list(order)
        if not set(order) <= self._celsius_set:
            self._write(f"UNIT:TEMP C,{listed}", safe=True)
            self.check_errors()
            self._celsius_set.update(order)
        return self._scan(f"MEAS:TEMP? TC,{self.thermocouple},{listed}", order, channels)
