"""The PCS stand-in on two python-can virtual buses: heartbeat timing, decoding, waits, bad frames.

One bus is the "pack" (it sends frames encoded through pack.dbc, stamped with virtual time), the
other is the stand-in's. Both keep the sender's timestamps (``preserve_timestamps=True``, a
property of the *sending* VirtualBus), so frame times are exact virtual times.
"""
from __future__ import annotations

import uuid

import can
import pytest

from rig.clock import VirtualClock, WallClock
from rig.errors import RigError, WaitTimeout
from rig.pcs import CanCheckFailed, PcsStandIn
from rig.protocol.can_frames import encode


@pytest.fixture
def buses():
    channel = f"pcs-test-{uuid.uuid4().hex}"  # unique: virtual buses of other tests never hear us
    pack = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True, receive_own_messages=False)
    pcs = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True, receive_own_messages=False)
    yield pack, pcs
    pack.shutdown()
    pcs.shutdown()


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def standin(buses, clock):
    pcs = PcsStandIn(buses[1], clock)
    yield pcs
    pcs.stop()


class FakePack:
    """Sends the system frames every second on the clock; ``voltage(t)`` and ``soc(t)`` shape them."""

    def __init__(self, bus, clock, voltage=lambda t: 52.8, soc=lambda t: 50):
        self.bus, self.clock, self.voltage, self.soc = bus, clock, voltage, soc
        self.task = clock.every(1.0, self.send, "fake pack")

    def send(self):
        t = self.clock.now()
        for msg in (encode("PackMeasurements", {"Voltage": self.voltage(t), "Current": -10.0, "Temperature": 25.0}),
                    encode("StateOfCharge", {"SOC": self.soc(t), "SOH": 94}),
                    encode("DetailStatus", _status(soc=self.soc(t)), pack_address=2)):
            msg.timestamp = t
            self.bus.send(msg)


def _status(soc, state="Run"):
    signals = {s: 0 for s in ("Relay1Closed", "Relay2Closed", "PrechargeClosed", "FailureRelay1",
                              "FailureRelay2", "FailurePrecharge", "FailureVoltageFrontEnd",
                              "FailureTemperatureSampling", "FailureCurrentSampling",
                              "FailureCurrentLimitation", "FailureParallelConnection",
                              "FailurePcsCommunication", "FailureZeroVoltCell",
                              "FailureCellVoltageDifference", "FailureShortCircuit")}
    return signals | {"State": state, "SOC": soc, "ParallelRole": 0}


def _heartbeats(bus):
    frames = []
    while (msg := bus.recv(timeout=0)) is not None:
        frames.append(msg)
    return frames


def test_heartbeat_every_second_exactly_in_virtual_time(buses, clock, standin):
    pack_bus, _ = buses
    standin.start()
    clock.sleep(5.0)
    frames = _heartbeats(pack_bus)
    assert [m.timestamp for m in frames] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for msg in frames:
        assert msg.arbitration_id == 0x305 and not msg.is_extended_id
        assert bytes(msg.data) == bytes(8) and msg.dlc == 8
    assert standin.heartbeats_sent == 6 and standin.last_heartbeat_at == 5.0


def test_silence_stops_the_heartbeat_and_resume_restarts_it(buses, clock, standin):
    pack_bus, _ = buses
    standin.start()
    clock.sleep(2.5)
    standin.silence(True)
    clock.sleep(5.0)  # t = 7.5
    assert [m.timestamp for m in _heartbeats(pack_bus)] == [0.0, 1.0, 2.0]
    standin.silence(False)
    clock.sleep(2.0)  # t = 9.5: at once, then every second
    assert [m.timestamp for m in _heartbeats(pack_bus)] == [7.5, 8.5, 9.5]
    assert standin.heartbeats_sent == 6 and standin.last_heartbeat_at == 9.5


def test_stop_is_safe_twice_and_ends_the_heartbeat(buses, clock, standin):
    pack_bus, _ = buses
    standin.start()
    clock.sleep(1.0)
    standin.stop()
    standin.stop()
    clock.sleep(3.0)
    assert [m.timestamp for m in _heartbeats(pack_bus)] == [0.0, 1.0]


def test_frames_are_decoded_with_their_timestamps_and_passed_to_listeners(buses, clock, standin):
    FakePack(buses[0], clock, soc=lambda t: 40 + int(t))
    raw = []
    standin.listeners.append(raw.append)
    standin.start()
    clock.sleep(4.5)
    assert standin.latest("PackMeasurements") == pytest.approx({"Voltage": 52.8, "Current": -10.0, "Temperature": 25.0})
    assert standin.signal("SOC") == 44  # the system's SOC (0x355), received at t = 4
    assert standin.signal("SOC", pack_address=2) == 44  # the master's own, DetailStatus
    assert standin.signal("State") == "Run"
    assert [r.t for r in standin.received("StateOfCharge")] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert standin.periods("PackMeasurements") == [1.0, 1.0, 1.0, 1.0]
    received = [m for m in raw if m.is_rx]
    assert standin.frames_received == 15 and len(received) == 15 and standin.errors == []
    assert all(isinstance(m, can.Message) for m in raw)
    # the stand-in's own heartbeats go to the listeners too, marked Tx, in time order among the frames
    sent = [m for m in raw if not m.is_rx]
    assert [(m.arbitration_id, m.timestamp) for m in sent] == [(0x305, float(t)) for t in range(5)]
    assert [m.timestamp for m in raw] == sorted(m.timestamp for m in raw)


def test_a_frame_never_received_is_named(standin):
    with pytest.raises(CanCheckFailed, match="no ChargeLimits frame received yet"):
        standin.latest("ChargeLimits")
    with pytest.raises(CanCheckFailed, match="no DetailStatus frame from pack address 3"):
        standin.signal("State", pack_address=3)
    with pytest.raises(ValueError, match="no signal 'Voltag'"):
        standin.signal("Voltag")
    with pytest.raises(ValueError, match="system frame"):
        standin.latest("ChargeLimits", pack_address=2)


def test_wait_until_returns_value_and_frame_time(buses, clock, standin):
    FakePack(buses[0], clock, soc=lambda t: 40 + int(t))
    standin.start()
    value, t = standin.wait_until("SOC", lambda soc: soc >= 47, within=30.0, what=">= 47 %")
    assert (value, t) == (47, 7.0)
    assert standin.wait_until("State", "Run", within=1.0) == ("Run", 7.0)  # already true: at once


def test_wait_until_sees_a_value_that_held_between_two_polls(buses, clock, standin):
    FakePack(buses[0], clock, voltage=lambda t: 58.0 if t == 3.0 else 52.8)
    standin.start()
    value, t = standin.wait_until("Voltage", lambda v: v > 57.0, within=10.0, poll=5.0, what="> 57 V")
    assert (value, t) == (58.0, 3.0)


def test_wait_until_timeout_names_signal_condition_and_last_value(buses, clock, standin):
    FakePack(buses[0], clock)
    standin.start()
    with pytest.raises(WaitTimeout) as info:
        standin.wait_until("Voltage", lambda v: v >= 54.0, within=5.0, what=">= 54.0 V")
    message = str(info.value)
    assert "CAN PackMeasurements.Voltage >= 54.0 V" in message
    assert "after 5 s" in message
    assert "last value seen: 52.8 (frame at t=5.000 s)" in message
    with pytest.raises(WaitTimeout, match="nothing received"):
        standin.wait_until("State", "Run", within=2.0, pack_address=3)


def test_stayed_within_returns_min_max_and_names_the_first_excursion(buses, clock, standin):
    FakePack(buses[0], clock, voltage=lambda t: 58.9 if t >= 12.0 else 52.0 + t / 10)
    standin.start()
    assert standin.stayed_within("Voltage", 44.8, 58.4, during=5.0) == (52.0, 52.5)
    with pytest.raises(CanCheckFailed) as info:
        standin.stayed_within("Voltage", 44.8, 58.4, during=60.0)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, RigError)
    assert "PackMeasurements.Voltage = 58.9 in the frame at t=12.000 s, outside [44.8, 58.4]" in str(info.value)
    assert clock.now() == pytest.approx(12.0, abs=0.11)  # raised at once, not after 60 s


def test_stayed_within_fails_when_the_pack_is_silent(clock, standin):
    standin.start()
    with pytest.raises(CanCheckFailed, match="no PackMeasurements frame carrying Voltage received in the 3 s"):
        standin.stayed_within("Voltage", 40.0, 60.0, during=3.0)


def test_bad_frame_is_recorded_with_the_raw_frame_and_reception_goes_on(buses, clock, standin):
    pack_bus, _ = buses
    raw = []
    standin.listeners.append(raw.append)
    bad = can.Message(timestamp=0.5, arbitration_id=0x351, is_extended_id=False, data=b"\x30\x02\xe8")  # DLC 3
    unknown = can.Message(timestamp=0.6, arbitration_id=0x123, is_extended_id=False, data=bytes(8))
    good = encode("StateOfCharge", {"SOC": 88, "SOH": 94})
    good.timestamp = 0.7
    for msg in (bad, unknown, good):
        pack_bus.send(msg)
    assert standin.signal("SOH") == 94
    assert standin.frames_received == 3 and standin.bad_frames == 2 and len(raw) == 3
    first, second = standin.errors
    assert first.t == 0.5 and "0x351" in first.problem and "DLC" in first.problem
    assert bytes(first.frame.data) == b"\x30\x02\xe8"
    assert "unknown frame" in second.problem and second.frame.arbitration_id == 0x123


def test_wall_clock_heartbeat_runs_in_its_own_thread(buses):
    pack_bus, pcs_bus = buses
    clock = WallClock()
    standin = PcsStandIn(pcs_bus, clock)
    standin.start()
    try:
        first = pack_bus.recv(timeout=2.0)  # the wall-clock task sends at once, then every second
        assert first is not None and first.arbitration_id == 0x305
        good = encode("StateOfCharge", {"SOC": 61, "SOH": 99})
        pack_bus.send(good)
        assert standin.wait_until("SOC", 61, within=2.0, poll=0.01)[0] == 61
    finally:
        standin.stop()
