"""The bench file: which instruments a bench has, how to reach them, and the rig's hard limits.

One TOML file per bench. The same test cases run on every bench; only this file differs. It
says:

- ``[bench]``: its name, which clock (``wall`` on a real bench, ``virtual`` on the emulator)
  and which pack spec the tests assert against;
- ``[emulator]`` (emulated benches only): the firmware profile, the pack's physics file, the
  number of packs, the seed;
- ``[features]``: what the bench can do, so a test that needs more skips with the reason;
- ``[instruments.*]``, ``[can]``, ``[rs485]``: models and addresses (VISA resource strings,
  python-can interface/channel/bitrate, pyserial URLs). ``"emulator"`` as an address means
  "the port the emulator picked", filled in when the emulated bench starts;
- ``[limits]``: the rig's absolute limits (PACK_SPEC.md 5), checked before any byte is sent
  and by the safety supervisor, whatever the BMS says;
- ``[supervisor]`` and ``[recording]``.

The limits, the watchdogs and the supervisor period may only tighten the safety envelope of
the pack spec the bench names (:mod:`rig.files.envelope`); a looser value refuses the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from instruments import DRIVERS

from rig.errors import ConfigError
from rig.files.envelope import RigLimits, check_bench_against
from rig.files.loader import FileModel, load_toml, resolve_path
from rig.files.pack_spec import PackSpec, load_pack_spec

BENCHES = Path(__file__).resolve().parents[1] / "benches"
#: The default bench: everything on the emulator.
EMULATED_BENCH = BENCHES / "emulated.toml"

Timeout = Annotated[float, Field(gt=0.0, le=60.0)]
Address = Annotated[str, Field(min_length=1)]
#: a path written in the file, relative to the file's folder (a NUL byte is no path on any system)
PathText = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")]


class Bench(FileModel):
    name: str
    clock: Literal["wall", "virtual"]
    pack_spec: PathText  # path, relative to the bench file


class Emulator(FileModel):
    firmware: PathText  # path of the firmware profile, relative to the bench file
    packs: Annotated[int, Field(ge=1, le=2)] = 1
    seed: Annotated[int, Field(ge=0)] = 1
    #: in_process: rig and emulator share a process (python-can virtual, loopback TCP);
    #: subprocess: the emulator runs as `packrig emulate` (socketcand, TCP), as another machine would;
    #: launcher: a lab place's emulator launcher starts it for each test (rig.lab.launched_emulator).
    process: Literal["in_process", "subprocess", "launcher"] = "in_process"
    #: HOST:PORT of the emulator launcher (process = "launcher" only)
    launcher: Annotated[str, Field(pattern=r"^[^\s:]+:[0-9]{1,5}$")] | None = None
    initial_soc_pct: Annotated[float, Field(ge=0.0, le=100.0)] = 50.0
    ambient_c: Annotated[float, Field(ge=-40.0, le=80.0)] = 25.0
    #: the pack's physical parameters (a file ``packrig fit`` wrote, say), relative to the bench
    #: file; None: the parameters shipped with the emulator (emulator/pack/physics.toml)
    physics: PathText | None = None

    @model_validator(mode="after")
    def _launcher_address(self):
        if (self.process == "launcher") != (self.launcher is not None):
            raise ValueError("process = \"launcher\" and launcher = \"HOST:PORT\" go together (the "
                             "address of a lab place's emulator launcher)")
        return self


class Features(FileModel):
    """What the bench can do; a test that needs a missing feature skips, naming it."""

    has_chamber: bool
    parallel_packs: Annotated[int, Field(ge=1, le=2)]
    has_fault_insertion: bool  # a fault-insertion unit (the emulator always has one)
    can_age_pack: bool  # storage ageing in minutes: emulator only
    has_short_circuit_contactor: bool
    has_light_sensors: bool
    has_cell_taps: bool
    has_wake_line: bool
    psu_can_sink: bool  # a bidirectional supply can also discharge


class Instrument(FileModel):
    model: str  # the driver name, e.g. "keysight_n8900"
    resource: Address  # VISA resource string, or "emulator"
    timeout_s: Timeout = 2.0

    @field_validator("model")
    @classmethod
    def _known_driver(cls, model: str) -> str:
        if model not in DRIVERS:
            raise ValueError(f"no driver for model {model!r}; known: {', '.join(sorted(DRIVERS))}")
        return model


class WatchedInstrument(Instrument):
    #: output off when no command arrives for this long (instrument watchdog; kill safety)
    watchdog_s: Annotated[float, Field(gt=0.0, le=60.0)]


class LoadInstrument(Instrument):
    #: input off when no command arrives for this long; None: the load has no I/O watchdog (a
    #: real ITECH IT8900 has none): its over-current protection, the breaker contactor and the
    #: supervisor are then what bound it, and a killed rig leaves it to the breaker's watchdog
    watchdog_s: Annotated[float, Field(gt=0.0, le=60.0)] | None = None


Channel = Annotated[int, Field(ge=1, le=999)]
#: relay outputs by function; the second pack of a parallel bench has its own button and WAKE
IoOutput = Literal["power_button", "breaker", "wake", "short_circuit",
                   "pack2_power_button", "pack2_wake"]
#: light-sensor inputs; pack2_* watch the second pack's panel
IoInput = Literal["run", "alm", "led1", "led2", "led3", "led4", "pack2_run", "pack2_alm",
                  "pack2_led1", "pack2_led2", "pack2_led3", "pack2_led4"]


class IoBox(Instrument):
    #: output off (relays open) when no command arrives for this long; None: no watchdog
    watchdog_s: Annotated[float, Field(gt=0.0, le=60.0)] | None = None
    outputs: dict[IoOutput, Channel]
    inputs: dict[IoInput, Channel]


class ScannerInstrument(Instrument):
    """The cell-tap scanner: per pack, the channel of each of the 16 groups and of each
    case thermocouple."""

    group_channels: list[list[Channel]]
    thermocouple_channels: list[list[Channel]]


class Instruments(FileModel):
    psu: WatchedInstrument
    eload: LoadInstrument
    dmm: Instrument
    scanner: ScannerInstrument | None = None
    chamber: Instrument | None = None
    io: IoBox


class Can(FileModel):
    interface: str  # a python-can interface: virtual, socketcand, pcan, kvaser, canalystii ...
    channel: str
    bitrate: Literal[125000, 250000, 500000, 1000000]
    options: dict[str, str | int | float | bool] = {}  # passed to can.Bus as keyword arguments


class Rs485(FileModel):
    url: Address  # a pyserial URL or port: socket://127.0.0.1:PORT, /dev/ttyUSB0, "emulator"
    baudrate: Literal[9600, 19200, 38400, 57600, 115200]


class Limits(RigLimits):
    """The rig's absolute limits (PACK_SPEC.md 5): refused commands and supervisor trips.
    Each may only tighten the pack spec's safety envelope (:mod:`rig.files.envelope`)."""


class Supervisor(FileModel):
    period_s: Annotated[float, Field(gt=0.0, le=5.0)]


class Recording(FileModel):
    directory: PathText  # relative to the bench file
    can_format: Literal["blf", "asc"]
    flush_s: Annotated[float, Field(gt=0.0, le=1.0)]  # a killed run loses at most this much


class BenchFile(FileModel):
    """A whole bench file, validated."""

    bench: Bench
    emulator: Emulator | None = None
    features: Features
    instruments: Instruments
    can: Can
    rs485: Rs485 | None = None
    limits: Limits
    supervisor: Supervisor
    recording: Recording

    @model_validator(mode="after")
    def _consistent(self):
        if self.bench.clock == "virtual" and self.emulator is None:
            raise ValueError("clock 'virtual' needs an [emulator] section: only the emulator "
                             "runs in virtual time")
        if self.features.has_chamber and self.instruments.chamber is None:
            raise ValueError("features.has_chamber is true but there is no [instruments.chamber]")
        if self.features.parallel_packs == 2 and self.rs485 is None:
            raise ValueError("features.parallel_packs = 2 needs an [rs485] section")
        period = self.supervisor.period_s
        if not period < self.limits.instrument_silent_s:
            raise ValueError(f"supervisor.period_s ({period} s) must be below limits.instrument_silent_s "
                             f"({self.limits.instrument_silent_s} s): a silent instrument is only seen "
                             "by the supervisor's samples")
        for name in ("psu", "eload", "io"):
            wd = getattr(self.instruments, name).watchdog_s
            if wd is not None and wd < 2 * period:
                raise ValueError(f"instruments.{name}.watchdog_s ({wd} s) must be at least twice "
                                 f"supervisor.period_s ({period} s): the supervisor's "
                                 "queries are what keeps an idle instrument's watchdog fed")
        scanner = self.instruments.scanner
        if self.features.has_cell_taps and scanner is None:
            raise ValueError("features.has_cell_taps is true but there is no [instruments.scanner]")
        if scanner is not None and len(scanner.group_channels) < self.features.parallel_packs:
            raise ValueError(f"instruments.scanner.group_channels lists {len(scanner.group_channels)} "
                             f"pack(s); features.parallel_packs is {self.features.parallel_packs}")
        if scanner is not None and any(len(g) != 16 for g in scanner.group_channels):
            raise ValueError("instruments.scanner.group_channels: each pack needs 16 channels, one per group")
        return self


class LoadedBench:
    """A bench file with the paths it names resolved against its own folder, and the pack spec it
    names loaded: the bench's limits are checked against that spec's safety envelope."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.file = load_toml(self.path, BenchFile)
        self.pack_spec_path = resolve_path(self.path, self.file.bench.pack_spec)
        self.firmware_path = (resolve_path(self.path, self.file.emulator.firmware)
                              if self.file.emulator else None)
        e = self.file.emulator
        #: the emulated pack's physics file, or None for the emulator's own
        self.physics_path = resolve_path(self.path, e.physics) if e and e.physics else None
        if self.physics_path is not None and not _is_file(self.physics_path):
            raise ConfigError(self.path, "emulator.physics", f"no such file: {self.physics_path}")
        self.recording_dir = resolve_path(self.path, self.file.recording.directory)
        if not _is_file(self.pack_spec_path):
            raise ConfigError(self.path, "bench.pack_spec", f"no such file: {self.pack_spec_path}")
        #: the pack spec the bench names (a run may assert against another: see check_bench_against)
        self.spec: PackSpec = load_pack_spec(self.pack_spec_path)
        check_bench_against(self.spec, self)
        from rig.backends import check_emulated_models  # the emulator's models, through the backend seam
        check_emulated_models(self)

    @property
    def emulated(self) -> bool:
        return self.file.emulator is not None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def load_bench(path: str | Path = EMULATED_BENCH) -> LoadedBench:
    """Load and validate a bench file.

    :raises ConfigError: naming the file, the field and what is allowed.
    """
    return LoadedBench(path)
