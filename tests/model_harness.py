"""A test harness around the emulated world, below the transports (model-level tests).

It plays the bench in the simplest way: writes the plant's settings directly, reads the
frames the pack produced, and keeps a PCS heartbeat going on the virtual clock, so the tests
can check the pack model's behaviour row by row against a firmware profile.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rig.clock import VirtualClock
from emulator.pack.faults import Faults
from emulator.world import World
from emulator.firmware.profile import CONFORMING_PROFILE, FirmwareProfile, load_firmware_profile
from rig.protocol.can_frames import decode


def profile_with(tmp_path: Path, old: str, new: str) -> FirmwareProfile:
    """The conforming profile with one textual edit: a buggy build."""
    text = CONFORMING_PROFILE.read_text()
    assert old in text, f"test setup: {old!r} not in the conforming profile"
    path = tmp_path / "buggy.toml"
    path.write_text(text.replace(old, new, 1))
    return load_firmware_profile(path)


class PackModel:
    """One or two emulated packs on a virtual clock, with a PCS heartbeat."""

    def __init__(self, profile: FirmwareProfile | None = None, *, packs: int = 1, seed: int = 1,
                 soc_pct: float = 50.0, heartbeat: bool = True, **world_kwargs):
        self.profile = profile or load_firmware_profile()
        self.world = World(self.profile, packs=packs, seed=seed, initial_soc_pct=soc_pct, **world_kwargs)
        self.faults = Faults(self.world)
        self.clock = VirtualClock()
        self.clock.attach(self.world)
        self.plant = self.world.plant
        self.frames: list = []
        self.heartbeat = heartbeat
        self.clock.every(1.0, self._pcs, "pcs heartbeat")

    def _pcs(self) -> None:
        if self.heartbeat:
            self.world.bms[0].on_pcs_frame(self.world.t_ns)
        self.frames.extend(decode(m) for m in self.world.take_can_frames())

    @property
    def bms(self):
        return self.world.bms[0]

    @property
    def now(self) -> float:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    def output(self, name: str, on: bool) -> None:
        with self.plant.lock:
            self.plant.io.outputs[name] = on

    def press(self, seconds: float, button: str = "power_button") -> None:
        self.output(button, True)
        self.sleep(seconds)
        self.output(button, False)

    def power_on(self) -> None:
        self.output("breaker", True)
        self.press(2.0)
        self.sleep(2.0)
        assert self.bms.state == "Standby", f"pack did not power on: {self.bms.state}"

    def charge(self, amps: float, volts: float = 58.0) -> None:
        with self.plant.lock:
            self.plant.psu.voltage_set_v, self.plant.psu.current_set_a = volts, amps
            self.plant.psu.on = amps > 0

    def discharge(self, amps: float) -> None:
        with self.plant.lock:
            self.plant.eload.mode, self.plant.eload.setpoint = "CC", amps
            self.plant.eload.on = amps > 0

    def last(self, frame: str, address: int | None = None) -> dict:
        self._pcs()
        for d in reversed(self.frames):
            if d.name == frame and d.pack_address == address:
                return d.signals
        raise AssertionError(f"no {frame} frame (address {address}) received")

    def lit(self, light: str) -> bool:
        return self.world.light_at(light, self.world.t_ns)

    def light_periods(self, light: str, window_s: float = 8.0, step_s: float = 0.05) -> list[float]:
        """Sample a light for ``window_s`` and return the intervals between rising edges, s."""
        edges, prev = [], self.lit(light)
        for _ in range(round(window_s / step_s)):
            self.sleep(step_s)
            now = self.lit(light)
            if now and not prev:
                edges.append(self.now)
            prev = now
        return list(np.diff(edges))

    def wait_level(self, row: str, level: int, timeout: float, step: float = 0.05) -> float:
        """Seconds until ``row`` reports ``level`` (raises after ``timeout``)."""
        t0 = self.now
        while self.bms.report.levels.get(row, 0) != level:
            if self.now - t0 > timeout:
                raise AssertionError(f"{row} did not reach level {level} within {timeout} s "
                                     f"(level {self.bms.report.levels.get(row)})")
            self.sleep(step)
        return self.now - t0


def modified(profile: FirmwareProfile, dotted: str, value) -> FirmwareProfile:
    """``profile`` with the field at ``dotted`` (``protections.cell_over_voltage.l1.threshold``)
    set to ``value``, re-validated as a whole: one edit, one buggy build."""
    data = profile.model_dump(mode="json")  # lists, not tuples: editable in place
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return FirmwareProfile.model_validate(data)
