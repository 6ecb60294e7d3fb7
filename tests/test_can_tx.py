"""The emulated pack's frame encoder (emulator.pack.can_reports.FrameCodec) against cantools' own encoding."""
from __future__ import annotations

import random

import cantools
import pytest

from emulator.pack.can_reports import DETAIL_FRAMES, SIGNALS, SYSTEM_FRAMES, FrameCodec
from rig.protocol.can_frames import dbc_message, encode

FRAMES = [(name, None) for name in SYSTEM_FRAMES] + [(name, a) for name in DETAIL_FRAMES for a in (2, 3)]


def random_values(name: str, address: int | None, rng: random.Random) -> tuple:
    """Values in range for every signal of the frame, on the signal's resolution or off it."""
    values = []
    for signal_name in SIGNALS[name]:
        s = dbc_message(name, address).get_signal_by_name(signal_name)
        if s.conversion.choices:
            values.append(rng.choice([str(c) for c in s.conversion.choices.values()]))
        elif signal_name == "ManufacturerName":
            values.append(rng.choice(["PYLON", "ACME    "]))
        else:
            raw = rng.uniform(s.minimum, s.maximum)
            values.append(round(raw, 3) if rng.random() < 0.7 else raw)
    return tuple(values)


@pytest.mark.parametrize("name, address", FRAMES)
def test_payloads_are_cantools_payloads(name, address):
    """Frames put together from separately encoded signals equal cantools' whole-frame encoding,
    cached or not, with repeated and new values."""
    rng = random.Random(f"{name}{address}")
    codec = FrameCodec(name, address, size=50)  # small: the cache is also cleared on the way
    seen = [random_values(name, address, rng) for _ in range(40)]
    for _ in range(300):
        values = rng.choice(seen) if rng.random() < 0.5 else random_values(name, address, rng)
        msg = encode(name, dict(zip(SIGNALS[name], values)), pack_address=address)
        assert codec.payload(values) == (msg.arbitration_id, msg.is_extended_id, bytes(msg.data))


@pytest.mark.parametrize("name, address, index, value", [
    ("DetailGroupVoltages1to4", 2, 2, 65.6), ("DetailSummary", 3, 0, -3277.0),
    ("StateOfCharge", None, 0, 101), ("PackMeasurements", None, 0, 327.68),
])
def test_out_of_range_raises_as_cantools_does(name, address, index, value):
    rng = random.Random(1)
    codec = FrameCodec(name, address)
    values = random_values(name, address, rng)
    codec.payload(values)
    values = values[:index] + (value,) + values[index + 1:]
    with pytest.raises(cantools.database.EncodeError, match=SIGNALS[name][index]):
        codec.payload(values)
