"""The pack's panel lights as the manual describes them: on, off, or flickering with a period T.

The rig watches each light (RUN, ALM, LED1-LED4; on a parallel bench also ``pack2_run`` ...)
with a light sensor wired to a digital input of the IO box. A single reading says only lit or
dark; the manual speaks of patterns ("LED2 flickers, T = 1 s", "all five lights flicker three
times, then all off"), so :class:`LightReader` samples every light for a window of clock time
and classifies each one (PACK_SPEC.md 3):

- **on**: lit in every sample; **off**: dark in every sample;
- **flickering**: both levels seen. ``flickers`` counts the rising edges (dark -> lit) seen in
  the window and ``period_s`` is the mean time between consecutive rising edges. With fewer
  than two rising edges the light still counts as flickering (it changed level) but its period
  is unknown (None): watch for at least 2 T plus one sample to get a period. A flash already lit
  when the window opens has no rising edge in it, so start watching before the event counted.

All lights are read in one ``io.inputs()`` call per sample, so their samples are simultaneous,
and sampling steps with ``clock.sleep``, so a 10-s window costs nothing on the virtual clock.
Every sample goes to the reader's ``listeners`` as ``(t, {name: lit})``: the bench fixture
records them (rows ``light:<name>`` of the samples CSV), and the test's plot draws each light as
a lane from them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from instruments.roles import IoBox
from rig.clock import Clock
from rig.errors import InstrumentError

#: A window that gives a period for every pattern of the manual: its slowest flicker is T = 4 s
#: (charging, LED1 at 76-99 % SOC) and a period needs two rising edges, so 2 T plus a margin.
FLICKER_WINDOW_S = 8.5

KINDS = ("on", "off", "flickering")


def display_name(name: str) -> str:
    """The light as the manual names it: ``led2`` -> ``LED2``, ``pack2_run`` -> ``pack2 RUN``."""
    prefix, _, light = name.rpartition("_")
    return f"{prefix} {light.upper()}" if prefix else light.upper()


@dataclass(frozen=True, repr=False)
class LightState:
    """What one light did during a window of observation."""

    name: str                              #: the bench file's input name (``"led2"``, ``"pack2_alm"``)
    kind: str                              #: ``"on"``, ``"off"`` or ``"flickering"``
    period_s: float | None                 #: mean period between rising edges, s; None if < 2 edges
    flickers: int                          #: rising edges (dark -> lit) seen in the window
    samples: tuple[tuple[float, bool], ...]  #: (clock time s, lit) of every sample, for the record

    @property
    def flickering(self) -> bool:
        return self.kind == "flickering"

    def __str__(self) -> str:
        light = display_name(self.name)
        if self.kind != "flickering":
            return f"{light} {self.kind}"
        if self.period_s is None:
            plural = "" if self.flickers == 1 else "s"
            return f"{light} flickering ({self.flickers} flicker{plural} seen, period unknown)"
        return f"{light} flickering, T = {self.period_s:.2f} s"

    def __repr__(self) -> str:  # short: it ends up in timeout messages, the samples do not
        return f"<{self}>"


def classify(name: str, samples: list[tuple[float, bool]] | tuple[tuple[float, bool], ...]) -> LightState:
    """Classify one light from its (time s, lit) samples, oldest first (see the module docstring).

    :raises ValueError: if there are no samples.
    """
    if not samples:
        raise ValueError(f"no samples of light {name!r} to classify")
    levels = [lit for _, lit in samples]
    # A rising edge is dated by the first lit sample; the same lag on every edge cancels in periods.
    rises = [t for (_, before), (t, lit) in zip(samples, samples[1:]) if lit and not before]
    kind = "on" if all(levels) else "off" if not any(levels) else "flickering"
    period = (rises[-1] - rises[0]) / (len(rises) - 1) if len(rises) >= 2 else None
    return LightState(name, kind, period, len(rises), tuple(samples))


class LightReader:
    """Reads the panel lights through the IO box's digital inputs and classifies them over time.

    :param io: the IO box (role :class:`~instruments.roles.IoBox`).
    :param inputs: light name -> input channel, from the bench file (``[instruments.io.inputs]``).
    :param clock: the rig clock; every sample is one ``clock.sleep(sample_period)`` step.
    :param sample_period: seconds between two samples, > 0; 0.05 s resolves the manual's
        fastest pattern (T = 1 s, lit 0.5 s) with 10 samples per level.
    :raises ValueError: for no inputs or a sample period <= 0.
    """

    def __init__(self, io: IoBox, inputs: Mapping[str, int], clock: Clock, sample_period: float = 0.05):
        if not inputs:
            raise ValueError("LightReader needs at least one light input (name -> channel)")
        if not sample_period > 0:
            raise ValueError(f"sample_period must be > 0 s, got {sample_period!r}")
        self.io, self.inputs, self.clock = io, dict(inputs), clock
        self.sample_period = sample_period
        #: called with ``(clock time s, {name: lit})`` after every reading (the recorder).
        self.listeners: list[Callable[[float, dict[str, bool]], object]] = []

    def read(self) -> dict[str, bool]:
        """One simultaneous reading of every light: name -> lit.

        :raises InstrumentError: if the IO box's reply lacks a configured channel.
        """
        states = self.io.inputs()
        missing = {name: ch for name, ch in self.inputs.items() if ch not in states}
        if missing:
            raise InstrumentError("IO box", "inputs()",
                                  f"no state for light input(s) {missing}; channels answered: {sorted(states)}")
        lit = {name: bool(states[ch]) for name, ch in self.inputs.items()}
        if self.listeners:
            t = self.clock.now()
            for listener in self.listeners:
                listener(t, lit)
        return lit

    def observe(self, window_s: float) -> dict[str, LightState]:
        """Sample every light from now for ``window_s`` seconds (both ends included) and classify each.

        :param window_s: seconds of clock time to watch, >= one sample period.
        :return: light name -> :class:`LightState`.
        :raises InstrumentError: if the IO box's reply lacks a configured channel.
        """
        if not window_s >= self.sample_period:
            raise ValueError(f"window_s must be >= the sample period {self.sample_period:g} s, got {window_s!r}")
        samples: dict[str, list[tuple[float, bool]]] = {name: [] for name in self.inputs}
        end = self.clock.now() + window_s
        while True:
            t = self.clock.now()
            for name, lit in self.read().items():
                samples[name].append((t, lit))
            remaining = end - t
            if remaining <= 1e-9:
                break
            # The last step is shortened so that the window ends exactly at its end.
            self.clock.sleep(min(self.sample_period, remaining))
        return {name: classify(name, series) for name, series in samples.items()}

    def count_flickers(self, name: str, window_s: float) -> int:
        """Rising edges of light ``name`` in the next ``window_s`` seconds (e.g. the 3 of power-off)."""
        self._check(name)
        return self.observe(window_s)[name].flickers

    def wait_for_state(self, name: str, predicate: Callable[[LightState], bool] | str, within: float, *,
                       window_s: float = FLICKER_WINDOW_S, what: str = "") -> LightState:
        """Observe light ``name`` window after window until ``predicate`` holds for a window.

        :param predicate: a callable on :class:`LightState`, or a kind (``"flickering"``).
        :param within: seconds to wait at most (rig clock); the window in progress at the
            deadline is finished, so the wait may last up to one window longer.
        :param window_s: seconds per observation; the default gives the period of every pattern.
        :return: the state of the window in which the predicate held.
        :raises WaitTimeout: naming the light, the condition and the state of the last window.
        """
        self._check(name)
        if isinstance(predicate, str):
            if predicate not in KINDS:
                raise ValueError(f"a light state is one of {KINDS}, got {predicate!r}")
            kind, predicate = predicate, (lambda state: state.kind == kind)
            what = what or kind
        return self.clock.wait_for(lambda: self.observe(window_s)[name], timeout=within,
                                   poll=self.sample_period, until=predicate,
                                   what=f"{display_name(name)} {what or 'in the state asked for'}")

    def _check(self, name: str) -> None:
        if name not in self.inputs:
            raise ValueError(f"no light {name!r} on this bench; lights: {', '.join(self.inputs)}")
