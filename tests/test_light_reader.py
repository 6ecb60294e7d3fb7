"""The light reader against an IO box whose inputs follow the manual's patterns in clock time."""
from __future__ import annotations

import pytest

from instruments.roles import IoBox
from rig.clock import VirtualClock
from rig.errors import InstrumentError, WaitTimeout
from rig.light_reader import LightReader, LightState, classify, display_name

CHANNELS = {"run": 11, "alm": 12, "led1": 13, "led2": 14, "led3": 15, "led4": 16}


def steady(on):
    return lambda t: on


def flicker(period_s, start_s=0.0, count=None, before=False, after=False):
    """Lit for the first half of each period from ``start_s`` (as the emulated panel does);
    ``before`` until then, ``after`` once ``count`` flickers are done."""
    def lit(t):
        if t < start_s:
            return before
        n, phase = divmod(t - start_s, period_s)
        if count is not None and n >= count:
            return after
        return phase < period_s / 2
    return lit


class PatternIoBox(IoBox):
    """An IO box whose light inputs follow functions of the clock's time; counts its readings."""

    def __init__(self, clock, patterns):
        self.clock, self.patterns, self.readings = clock, patterns, 0
        self._outputs: dict[int, bool] = {}

    def inputs(self):
        self.readings += 1
        t = self.clock.now()
        return {CHANNELS[name]: pattern(t) for name, pattern in self.patterns.items()}

    def set_output(self, channel, closed):
        self._outputs[channel] = closed

    def outputs(self):
        return dict(self._outputs)

    def protect(self, watchdog_s):
        pass

    def make_safe(self):
        self._outputs = dict.fromkeys(self._outputs, False)


@pytest.fixture
def clock():
    return VirtualClock()


def make_reader(clock, **patterns):
    io = PatternIoBox(clock, patterns)
    return LightReader(io, {name: CHANNELS[name] for name in patterns}, clock), io


def test_steady_lights_and_flicker_periods_of_1_and_3_s(clock):
    reader, io = make_reader(clock, run=steady(True), alm=steady(False), led1=flicker(3.0, start_s=0.217),
                             led2=flicker(1.0, start_s=0.333))  # edges off the sample grid
    states = reader.observe(10.0)
    assert states["run"].kind == "on" and states["alm"].kind == "off"
    assert states["run"].period_s is None and states["run"].flickers == 0
    assert states["led2"].kind == "flickering" and states["led2"].period_s == pytest.approx(1.0, rel=0.05)
    assert states["led1"].kind == "flickering" and states["led1"].period_s == pytest.approx(3.0, rel=0.05)
    assert states["led2"].flickers == 10 and states["led1"].flickers == 4
    # one io.inputs() call per sample, shared by all lights: 10 s / 0.05 s, both ends included
    assert io.readings == 201 and len(states["run"].samples) == 201
    assert states["run"].samples[0][0] == 0.0 and states["run"].samples[-1][0] == pytest.approx(10.0)
    assert clock.now() == pytest.approx(10.0)


def test_three_flickers_then_off(clock):
    # Power-off (manual): all lights flicker three times, then all off.
    reader, _ = make_reader(clock, led3=flicker(1.0, start_s=0.5, count=3))
    assert reader.count_flickers("led3", 5.0) == 3
    assert reader.observe(2.0)["led3"].kind == "off"


def test_str_reads_like_the_manual(clock):
    reader, _ = make_reader(clock, led2=flicker(1.0), run=steady(True), alm=steady(False))
    states = reader.observe(5.0)
    assert str(states["led2"]) == "LED2 flickering, T = 1.00 s"
    assert str(states["run"]) == "RUN on" and str(states["alm"]) == "ALM off"
    assert repr(states["run"]) == "<RUN on>"
    assert display_name("pack2_led4") == "pack2 LED4"


def test_one_rising_edge_is_flickering_with_unknown_period():
    samples = [(0.0, False), (0.05, True), (0.10, True), (0.15, False)]
    state = classify("led1", samples)
    assert (state.kind, state.flickers, state.period_s) == ("flickering", 1, None)
    assert str(state) == "LED1 flickering (1 flicker seen, period unknown)"
    # lit, then dark: both levels seen but no rising edge at all
    assert classify("alm", [(0.0, True), (0.05, False)]) == LightState("alm", "flickering", None, 0,
                                                                       ((0.0, True), (0.05, False)))


def test_wait_for_state_returns_the_window_that_matched(clock):
    reader, _ = make_reader(clock, led2=flicker(1.0, start_s=30.0))  # LED2 starts flickering at t = 30 s
    state = reader.wait_for_state("led2", "flickering", within=120.0)
    assert state.flickering and state.period_s == pytest.approx(1.0, rel=0.05)
    assert 30.0 < clock.now() < 30.0 + 2 * 8.5 + 0.1
    slow = reader.wait_for_state("led2", lambda s: s.period_s is not None and s.period_s < 1.5,
                                 within=20.0, window_s=3.0)
    assert slow.flickers >= 2


def test_wait_for_state_timeout_names_light_and_last_state(clock):
    reader, _ = make_reader(clock, alm=steady(False))
    with pytest.raises(WaitTimeout) as info:
        reader.wait_for_state("alm", "on", within=10.0, window_s=2.0)
    message = str(info.value)
    assert "waiting for ALM on" in message and "last value seen: <ALM off>" in message
    assert clock.now() < 10.0 + 2.0 + 0.1  # at most one window beyond the deadline


def test_missing_channel_and_unknown_light_are_named(clock):
    io = PatternIoBox(clock, {"run": steady(True)})
    reader = LightReader(io, {"run": CHANNELS["run"], "led4": CHANNELS["led4"]}, clock)
    with pytest.raises(InstrumentError, match=r"no state for light input\(s\) \{'led4': 16\}"):
        reader.observe(1.0)
    with pytest.raises(ValueError, match="no light 'led9'"):
        reader.count_flickers("led9", 1.0)
    with pytest.raises(ValueError, match="sample_period"):
        LightReader(io, {"run": 11}, clock, sample_period=0.0)
