"""Driver: relay/IO box, Keysight DAQ970A with a DAQM903A actuator and a DAQM907A multifunction module.

Model and sources: Keysight DAQ970A, DAQM903A 20-channel actuator / general-purpose switch
(Form C relays, 300 V / 1 A: POWER-button, WAKE and contactor-coil relays), DAQM907A (two
8-bit digital I/O ports, read by the light sensors), "Keysight DAQ970A/DAQ973A Programming
Guide", which keeps the 34970A's commands ("Agilent 34970A User's Guide", chapter 5:
``ROUTe:CLOSe (@<ch_list>)``, ``ROUTe:OPEN``, ``ROUTe:CLOSe?`` "1,0,...",
``[SENSe:]DIGital:DATA:WORD? (@s01)``: both ports at one instant, ``s01`` the low byte).

Channel numbers are the bench file's: output ``n`` is relay ``n`` (1-20) of the relay slot,
``(@<slot>0n)``; input ``n`` is digital line ``n`` (1-16): lines 1-8 are port ``s01``, 9-16
port ``s02`` of the input slot. The driver knows channels, not what is wired to them.

Closing a relay can energise the pack, so it is refused once the supervisor has tripped;
opening one makes the bench safer and always goes through. Every change is confirmed: the
error queue is read and the relay state read back. ``closed`` must be a bool (``"yes"`` is
refused, not taken as true). A relay given a *permit* (the bench gives the short-circuit
contactor's relay one: its supervisor's short-circuit step) closes only while the permit says
so. On a bench that gives the box a watchdog (``limits={"watchdog": (0, s)}``) a relay closes
only while the watchdog reads armed within that value, and the watchdog is turned off only while
every relay reads open; a bench without one (a stock DAQ970A) sends no watchdog command at all.

**Watchdog: an extension, not a DAQ970A feature.** :meth:`protect` sends
``SYSTem:COMMunicate:WDOG <s>``, which the rig's emulated box implements (every relay opens
when no command arrives for that long). A real DAQ970A answers it with -113 "Undefined header",
so on a real bench :meth:`protect` raises InstrumentError: give the breaker contactor a
hardware watchdog there (e.g. a retriggerable timer relay in series with the coil, fed from a
DAQM907A line the rig toggles) and do not ask this box for one.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from instruments.errors import InstrumentError, LimitRefused, SetpointTypeError
from instruments.keysight_daq970a import channel_list
from instruments.roles import IoBox
from instruments.scpi import ScpiInstrument, control


class KeysightDaq970AIo(ScpiInstrument, IoBox):
    """DAQ970A relay outputs and digital inputs.

    :param resource: an open pyvisa message-based resource (``\\n`` terminations).
    :param name: the instrument's name on this bench ("io").
    :param limits: hard limits from the bench file (the box sets nothing that needs one).
    :param interlock: raises once the safety supervisor has tripped; opening relays still works.
    :param relay_slot: slot of the DAQM903A, 1-3.
    :param input_slot: slot of the DAQM907A, 1-3.
    :param output_channels: the relays :meth:`outputs` reports (default all 20).
    :param input_channels: the lines :meth:`inputs` reports (default all 16).
    :param permits: output channel -> says whether that relay may close now (the bench gives
        the short-circuit contactor's relay its short-circuit step); other relays need none.
    :raises ValueError: a slot or channel the modules do not have.
    """

    model = "DAQ970A"
    RELAYS, LINES = 20, 16

    watchdog_s = control("SYST:COMM:WDOG?", "SYST:COMM:WDOG {:g}",
                         "Relay watchdog, s, 0 (off) to 60, at most the bench's watchdog: every "
                         "relay opens when no command arrives for that long (rig extension, see "
                         "the module docstring).", unit="s", values=(0.0, 60.0), limit="watchdog",
                         tolerance=1e-3)

    def __init__(self, resource, name: str, limits=None, interlock=None, *, relay_slot: int = 1,
                 input_slot: int = 2, output_channels: Sequence[int] = tuple(range(1, 21)),
                 input_channels: Sequence[int] = tuple(range(1, 17)),
                 permits: Mapping[int, Callable[[], bool]] | None = None):
        super().__init__(resource, name, limits, interlock)
        self.permits = dict(permits or {})
        if relay_slot == input_slot or not {relay_slot, input_slot} <= {1, 2, 3}:
            raise ValueError(f"{name}: relay slot {relay_slot}, input slot {input_slot}: two of 1-3")
        self.relay_slot, self.input_slot = relay_slot, input_slot
        self.output_channels = [self._relay(ch) % 100 for ch in output_channels]
        bad = [ch for ch in input_channels if not 1 <= ch <= self.LINES]
        if bad:
            raise ValueError(f"{name}: input channels {bad} not in 1..{self.LINES}")
        self.input_channels = list(input_channels)

    def _relay(self, channel: int) -> int:
        """Output channel -> the DAQ's channel number (``2`` -> ``102``)."""
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise SetpointTypeError(self.name, "output channel", channel, f"a whole number 1..{self.RELAYS}")
        if not 1 <= channel <= self.RELAYS:
            raise ValueError(f"{self.name}: output channel {channel} not in 1..{self.RELAYS}")
        return self.relay_slot * 100 + channel

    def _closed(self, relays: Sequence[int]) -> list[bool]:
        command = f"ROUT:CLOS? {channel_list(relays)}"
        reply = self._query(command)
        states = reply.split(",")
        if len(states) != len(relays) or any(s.strip() not in ("0", "1") for s in states):
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r}")
        return [s.strip() == "1" for s in states]

    def set_output(self, channel: int, closed: bool) -> None:
        """Close (True) or open relay ``channel`` (1-20), then confirm it by reading it back.

        :raises ValueError: no such channel (nothing sent).
        :raises SetpointTypeError: ``closed`` is not a bool, ``channel`` not an int (nothing sent).
        :raises LimitRefused: closing a relay without its permit, or (on a bench that gives the
            box a watchdog) while the watchdog reads off or longer than the bench's value.
        :raises InstrumentError: an instrument error, or the relay reads back otherwise.
        """
        relay = self._relay(channel)
        if not isinstance(closed, bool):
            raise SetpointTypeError(self.name, f"relay {channel} closed", closed, "True or False")
        if closed:
            self.interlock()  # before the read-backs below: a tripped bench is sent nothing
            permit = self.permits.get(channel)
            if permit is not None and not permit():
                raise LimitRefused(self.name, f"relay {channel} closed", True, "this relay closes only "
                                   "while the bench permits it (inside the supervisor's short-circuit step)")
            if "watchdog" in self.limits:
                armed = self.watchdog_s
                self._check_watchdog_armed(armed > 0, armed, f"closing relay {channel}")
        command = f"ROUT:{'CLOS' if closed else 'OPEN'} (@{relay})"
        self._write(command, safe=not closed)  # opening is what the supervisor itself does
        self.check_errors()
        got = self._closed([relay])[0]
        if got != closed:
            raise InstrumentError(self.name, command, f"relay {relay} reads back {'closed' if got else 'open'}")

    def outputs(self) -> dict[int, bool]:
        """State of every output channel, True = closed (one ``ROUT:CLOS?``)."""
        relays = [self._relay(ch) for ch in self.output_channels]
        return dict(zip(self.output_channels, self._closed(relays)))

    def inputs(self) -> dict[int, bool]:
        """State of every input channel at one instant, True = high (light seen).

        :raises InstrumentError: no answer or not a 16-bit value.
        """
        command = f"SENS:DIG:DATA:WORD? (@{self.input_slot}01)"
        reply = self._query(command)
        try:
            word = float(reply)
        except ValueError:
            raise InstrumentError(self.name, command, f"unreadable reply {reply!r}") from None
        if word != int(word) or not 0 <= word <= 0xFFFF:
            raise InstrumentError(self.name, command, f"not a 16-bit value: {reply!r}")
        return {ch: bool(int(word) >> (ch - 1) & 1) for ch in self.input_channels}

    def protect(self, watchdog_s: float | None) -> None:
        """Open every relay when no command arrives for ``watchdog_s`` s (None: off, only while
        every relay reads open). On a bench that gives the box no watchdog, ``None`` sends
        nothing (there is none to turn off) and a delay is refused.

        :raises LimitRefused: beyond 60 s or the bench's ``"watchdog"``, a delay on a bench
            without one, or off while a relay is closed (nothing sent).
        :raises InstrumentError: the box has no watchdog (a real DAQ970A: -113).
        """
        if watchdog_s is None:
            if "watchdog" in self.limits:
                self.watchdog_s = 0.0
            return
        if watchdog_s == 0:
            raise LimitRefused(self.name, "watchdog_s [s]", watchdog_s, "a delay above 0 s (None turns it off)")
        self.watchdog_s = watchdog_s

    def _gate(self, ctl, value) -> None:
        """The watchdog goes off only while every relay reads open."""
        if ctl.name == "watchdog_s" and value == 0:
            stuck = [r for r, closed in zip(self._all_relays(), self._closed(self._all_relays())) if closed]
            if stuck:
                raise LimitRefused(self.name, "watchdog_s [s]", value,
                                   f"not off while relays {stuck} are closed: open them first")

    def _all_relays(self) -> list[int]:
        return list(range(self.relay_slot * 100 + 1, self.relay_slot * 100 + self.RELAYS + 1))

    def make_safe(self) -> None:
        """Open every relay of the DAQM903A, then confirm they read back open.

        :raises InstrumentError: a relay still reads closed, or no answer.
        """
        relays = self._all_relays()
        command = f"ROUT:OPEN {channel_list(relays)}"
        self._write(command, safe=True)
        stuck = [r for r, closed in zip(relays, self._closed(relays)) if closed]
        if stuck:
            raise InstrumentError(self.name, command, f"relays {stuck} still read closed")
