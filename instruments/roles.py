"""The roles a bench's instruments play, as small abstract classes.

The rig and the test cases ask for a role (a ``PowerSupply``), never a model. Each driver
module implements one role for one vendor's dialect; a second vendor is a small subclass.
Roles know nothing about batteries: volts, amps, degrees, channels.

Every role has ``make_safe()`` (outputs off; must work even after a safety trip) and
``shutdown()`` (safe state, then close; safe to call twice), from :class:`ScpiInstrument`;
a :class:`FaultInsertion` unit's safe state is :meth:`FaultInsertion.clear`.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence


class PowerSupply(abc.ABC):
    """A DC source: constant voltage with a current limit."""

    @abc.abstractmethod
    def apply(self, voltage_v: float, current_a: float) -> None:
        """Program the CV set-point and CC limit (output state unchanged); each checked
        against the instrument range and the bench's hard limits before anything is sent."""

    @abc.abstractmethod
    def output_on(self) -> None:
        """Turn the output on."""

    @abc.abstractmethod
    def output_off(self) -> None:
        """Turn the output off (allowed after a safety trip)."""

    @abc.abstractmethod
    def measure(self) -> tuple[float, float]:
        """Measured (voltage V, current A) at the output; current positive out of the supply."""

    @abc.abstractmethod
    def protect(self, ovp_v: float, ocp: bool, watchdog_s: float | None) -> None:
        """Program the hardware protections: OVP level, OCP on/off, output watchdog (None: off)."""

    @abc.abstractmethod
    def make_safe(self) -> None:
        """Output off."""


class ElectronicLoad(abc.ABC):
    """A DC electronic load: sinks current in CC, CV, CR or CP mode."""

    @abc.abstractmethod
    def set_mode(self, mode: str, value: float) -> None:
        """Select ``mode`` ("CC" A, "CV" V, "CR" ohm, "CP" W) and its set-point (input state unchanged)."""

    @abc.abstractmethod
    def input_on(self) -> None:
        """Start sinking."""

    @abc.abstractmethod
    def input_off(self) -> None:
        """Stop sinking (allowed after a safety trip)."""

    @abc.abstractmethod
    def pulse(self, steps: Sequence[tuple[float, float]]) -> None:
        """Run a CC list once: ``(current A, dwell s)`` steps, e.g. [(96, 3.0), (0, 1.0)]."""

    @abc.abstractmethod
    def short(self, on: bool) -> None:
        """Short-circuit mode on or off."""

    @abc.abstractmethod
    def measure(self) -> tuple[float, float]:
        """Measured (voltage V, current A) at the input; current positive into the load."""

    @abc.abstractmethod
    def protect(self, watchdog_s: float | None) -> None:
        """Program the input watchdog (input off when no command for that long; None: off)."""

    @abc.abstractmethod
    def make_safe(self) -> None:
        """Input off, short off, list stopped."""


class Voltmeter(abc.ABC):
    """A DMM measuring DC volts."""

    @abc.abstractmethod
    def voltage(self) -> float:
        """One DC voltage reading, V."""


class Scanner(abc.ABC):
    """A multiplexed data-acquisition unit: DC volts and thermocouples on numbered channels."""

    @abc.abstractmethod
    def voltages(self, channels: Sequence[int]) -> list[float]:
        """DC voltage of each channel, V, in the order given."""

    @abc.abstractmethod
    def temperatures(self, channels: Sequence[int]) -> list[float]:
        """Thermocouple temperature of each channel, C, in the order given."""


class Chamber(abc.ABC):
    """A climate chamber."""

    @abc.abstractmethod
    def run(self, setpoint_c: float, ramp_c_per_min: float | None = None) -> None:
        """Regulate the air to ``setpoint_c`` (checked against the bench limits), optionally ramped."""

    @abc.abstractmethod
    def standby(self) -> None:
        """Stop regulating (allowed after a safety trip)."""

    @abc.abstractmethod
    def air_temperature(self) -> float:
        """Measured air temperature, C."""

    @abc.abstractmethod
    def make_safe(self) -> None:
        """Standby."""


class IoBox(abc.ABC):
    """Relay outputs and digital inputs on numbered channels."""

    @abc.abstractmethod
    def set_output(self, channel: int, closed: bool) -> None:
        """Close (True) or open a relay output."""

    @abc.abstractmethod
    def outputs(self) -> dict[int, bool]:
        """State of every relay output."""

    @abc.abstractmethod
    def inputs(self) -> dict[int, bool]:
        """State of every digital input (True = high / light seen)."""

    @abc.abstractmethod
    def protect(self, watchdog_s: float | None) -> None:
        """Open every output when no command arrives for that long (None: off)."""

    @abc.abstractmethod
    def make_safe(self) -> None:
        """Open every output."""


class FaultInsertion(abc.ABC):
    """A fault-insertion unit: puts a chosen value where a device *senses* it, in place of the
    real one. A cell simulator in series with the voltage taps, a sensor simulator on the
    temperature inputs, a current injector on the shunt's sense lines. The real quantities do
    not change: an instrument of the rig measuring them still reads the real values.

    ``device`` numbers the devices the unit is wired to (0 is the first); channels count from 0.
    A value of None gives the channel its real value back. The value holds from the device's
    next sample on, so a response time can be measured from the moment the call returns.
    """

    @abc.abstractmethod
    def force_voltage(self, device: int, channel: int, volts: float | None) -> None:
        """Make one voltage sense channel read ``volts``, V."""

    @abc.abstractmethod
    def force_temperature(self, device: int, channel: int, celsius: float | None) -> None:
        """Make one temperature sensor read ``celsius``, C."""

    @abc.abstractmethod
    def offset_current(self, device: int, amps: float) -> None:
        """Add ``amps`` to what the current sense reads (0: the real current again), A."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Every channel back to its real value."""
