"""What stands behind a bench file's addresses: a backend, chosen by name from :data:`BACKENDS`.

As python-can finds a CAN interface by name in its ``BACKENDS`` table, the bench finds here what
serves its instruments, its CAN port and its RS485 line:

- ``hardware``: the real instruments at the addresses the bench file names (a bench file with
  no ``[emulator]`` section);
- ``in_process``: the emulated bench in this process (``[emulator] process = "in_process"``);
- ``subprocess``: ``packrig emulate`` in a child process, as another machine would serve the
  bench (``[emulator] process = "subprocess"``);
- ``launcher``: ``packrig emulate`` started by a lab place's emulator launcher
  (``[emulator] process = "launcher"``, ``launcher = "HOST:PORT"``; :mod:`rig.lab.launched_emulator`).

Each entry is a ``"module:Class"`` string imported only when a bench uses it: this module is
the one place the rig names the emulator. Every backend does what :class:`BenchBackend` says, so
:class:`rig.bench.Bench` never asks which one it has. A new backend (an emulator on another
host, a hardware-in-the-loop simulator) is one class and one line of the table.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import can

from rig.clock import Clock
from rig.errors import ConfigError, EmulatorDied

if TYPE_CHECKING:
    from rig.files.bench_file import LoadedBench

#: backend name -> "module:Class"; the bench file's [emulator] process names one, no [emulator] is "hardware"
BACKENDS: dict[str, str] = {
    "hardware": "rig.backends:Hardware",
    "in_process": "emulator.emulated_bench:EmulatedBench",
    "subprocess": "rig.emulator_client.remote_emulator:RemoteEmulator",
    "launcher": "rig.lab.launched_emulator:LaunchedEmulator",
}

#: the address a bench file gives a port the emulator serves
EMULATOR = "emulator"
#: the emulated BMS's conforming firmware profile (the base ``packrig mutate`` breaks)
CONFORMING_FIRMWARE = Path(__file__).resolve().parents[1] / "emulator" / "firmware" / "conforming.toml"


@dataclass(frozen=True)
class BackendRequest:
    """What a test asks of the bench behind the addresses (an emulator builds its world to it;
    real hardware is as it is, and the fixtures condition the pack).

    :param loaded: the bench file.
    :param clock: the rig clock: an emulator keeps in step with it (advanced by a virtual clock,
        in real time beside a wall clock).
    :param packs: packs on the bench for this test (1 or 2).
    :param seed: the emulated pack's seed.
    :param initial_soc_pct: the packs' state of charge at start, %.
    :param ambient_c: pack and chamber soaked at this temperature, C.
    :param firmware: the firmware profile the emulated pack runs, already loaded (or None).
    :param firmware_path: its file (an emulator in another process loads it there).
    """

    loaded: LoadedBench
    clock: Clock
    packs: int = 1
    seed: int = 1
    initial_soc_pct: float = 50.0
    ambient_c: float = 25.0
    firmware: Any = None
    firmware_path: Path | None = None


class BenchBackend(Protocol):
    """What every backend does (see the module docstring)."""

    #: fault insertion (the emulator's, with the calls of ``emulator.pack.faults.Faults``), or
    #: None: nothing the rig can drive to insert a fault
    faults: Any

    @classmethod
    def start(cls, request: BackendRequest) -> BenchBackend:
        """Built, serving, and kept in step with ``request.clock``."""

    def endpoints(self) -> dict:
        """Where the ports it serves are: ``{"instruments": {name: VISA resource}, "can": python-can
        Bus arguments, "rs485": pyserial URL}``; empty for ports it does not serve."""

    def attach_bus(self, bus: can.BusABC) -> can.BusABC:
        """The rig's CAN bus as the rig is to use it (an emulator in virtual time wraps it so that
        cyclic frames run in its time and arrivals are announced: :mod:`rig.emulator_client.virtual_time_bus`)."""

    def died(self, grace_s: float) -> EmulatorDied | None:
        """The cause behind a failed exchange if what serves the ports died (a child process), else None."""

    def close(self) -> None:
        """Stop serving and let go of the clock (safe to call twice)."""


class Hardware:
    """The real bench: every port at the address the bench file names; nothing stands in."""

    faults = None

    @classmethod
    def start(cls, request: BackendRequest) -> Hardware:
        return cls()

    def endpoints(self) -> dict:
        return {"instruments": {}, "can": {}, "rs485": None}

    def attach_bus(self, bus: can.BusABC) -> can.BusABC:
        return bus

    def died(self, grace_s: float) -> None:
        return None

    def close(self) -> None:
        pass


def backend_name(loaded: LoadedBench) -> str:
    """The backend a bench file chooses: its ``[emulator] process``, or ``hardware``."""
    return loaded.file.emulator.process if loaded.emulated else "hardware"


def backend_class(name: str) -> type:
    """The backend class named ``name``; raises ``ValueError`` listing the known ones."""
    try:
        module, _, cls = BACKENDS[name].partition(":")
    except KeyError:
        raise ValueError(f"no bench backend {name!r}; known: {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module), cls)


def start_backend(loaded: LoadedBench, clock: Clock, *, packs: int = 1, seed: int | None = None,
                  initial_soc_pct: float | None = None, temperature_c: float | None = None,
                  firmware: Any = None, firmware_path: str | Path | None = None) -> BenchBackend:
    """The backend the bench file chooses, started for one test; what the test does not ask
    for (None) comes from the bench file's ``[emulator]`` section."""
    e = loaded.file.emulator
    if e is None:
        request = BackendRequest(loaded, clock, packs=packs)
    else:
        request = BackendRequest(
            loaded, clock, packs=packs, seed=e.seed if seed is None else seed,
            initial_soc_pct=e.initial_soc_pct if initial_soc_pct is None else initial_soc_pct,
            ambient_c=e.ambient_c if temperature_c is None else temperature_c, firmware=firmware,
            firmware_path=Path(firmware_path) if firmware_path else loaded.firmware_path)
    return backend_class(backend_name(loaded)).start(request)


def load_firmware(path: str | Path):
    """The firmware profile an emulated pack runs (its schema is the emulator's:
    ``emulator.firmware.profile``). :raises ConfigError: naming file and field."""
    from emulator.firmware.profile import load_firmware_profile
    return load_firmware_profile(Path(path))


def check_emulated_models(loaded: LoadedBench) -> None:
    """Every instrument at an ``"emulator"`` address has an emulated model.

    :raises ConfigError: naming the file, the ``model`` field and the emulated models."""
    if not loaded.emulated:
        return
    from emulator.instruments import EMULATED
    for name in type(loaded.file.instruments).model_fields:
        spec = getattr(loaded.file.instruments, name)
        if spec is not None and spec.resource == EMULATOR and spec.model not in EMULATED:
            raise ConfigError(loaded.path, f"instruments.{name}.model",
                              f"{spec.model!r} has no emulated instrument for the address 'emulator'; "
                              f"emulated: {', '.join(sorted(EMULATED))}")
