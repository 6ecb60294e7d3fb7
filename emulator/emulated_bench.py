"""The emulated bench: the world behind the same transports a real bench has.

Every instrument is a SCPI server on 127.0.0.1 (pyvisa-py ``TCPIP::127.0.0.1::PORT::SOCKET``),
the pack's CAN port is a python-can ``virtual`` channel (rig and emulator in one process) or a
socketcand server (the emulator in another process, ``packrig emulate``), and the RS485 line
between the packs is a TCP endpoint read with pyserial ``socket://``. The rig reaches it only
through those, as it reaches a real bench; the bench file's ``"emulator"`` addresses are
replaced by :meth:`EmulatedBench.endpoints`.

Time: :meth:`EmulatedBench.advance_to` is the clock's advancer. Frames the rig sent are handed
to the world first (at the world's current time, when the rig sent them), the world advances,
and every frame it produced is on the rig's CAN channel, with its virtual timestamp and in
order, before the call returns; RS485 bytes are on the line as they are produced. So when a
virtual sleep returns, the rig has everything the pack said in that interval. A long advance
goes in chunks of :data:`CHUNK_NS` of virtual time, each chunk's frames sent when it is done,
so that a rig in another process reads and logs them while the world computes the next one.

Cyclic frames the rig asks its bus for (``send_periodic``: the PCS heartbeat) are sent by the
world in its own time (:meth:`EmulatedBench.start_cyclic`, :mod:`emulator.cyclic`).

The bench file's ``model`` of each instrument picks its emulation
(:data:`emulator.instruments.EMULATED`). For the rig this class is the ``in_process`` backend
(:mod:`rig.backends`): :meth:`EmulatedBench.start` builds it for a test and keeps it in step
with the rig clock.
"""
from __future__ import annotations

import itertools
import os
import threading
import time

import can

from emulator.cyclic import CyclicFrames
from emulator.firmware.profile import FirmwareProfile, load_firmware_profile
from emulator.instruments import emulated_class
from emulator.instruments.scpi_server import ScpiServer
from emulator.pack.faults import Faults
from emulator.pack.parallel import ParallelLink
from emulator.pack.rs485_responder import PackResponder
from emulator.transports.rs485_console_port import ConsolePort
from emulator.transports.rs485_line import Rs485Bus
from emulator.transports.socketcand_server import SocketcandServer
from emulator.world import World
from rig.files.bench_file import BenchFile, Instrument, IoBox, ScannerInstrument

_channels = itertools.count()
#: virtual time per chunk of a long advance (a multiple of the pack's 1-s report period, so a
#: chunk ends where a step ends anyway while the pack reports)
CHUNK_NS = 10_000_000_000


class EmulatedBench:
    """One emulated bench: a world, its instruments' servers, its CAN and RS485 ports.

    :param bench: the bench file (instrument wiring: IO and scanner channel maps).
    :param profile: the firmware profile the pack(s) run.
    :param packs: 1, or 2 in parallel (a parallel test asks for two).
    :param can_transport: ``"virtual"`` (same process) or ``"socketcand"`` (across processes).
    :param world_kwargs: passed to :class:`~emulator.world.World`, e.g. ``physics`` (the physics
        file the bench file names, ``LoadedBench.physics_path``; None: the emulator's own).
    """

    def __init__(self, bench: BenchFile, profile: FirmwareProfile, *, packs: int = 1, seed: int = 1,
                 initial_soc_pct: float = 50.0, ambient_c: float = 25.0,
                 can_transport: str = "virtual", **world_kwargs):
        self.world = World(profile, packs=packs, seed=seed, initial_soc_pct=initial_soc_pct,
                           ambient_c=ambient_c, **world_kwargs)
        plant = self.world.plant
        #: the emulated instruments by role, each the model its bench-file section names
        self.devices = {name: emulated_class(spec.model)(plant, **_wiring(spec, packs))
                        for name, spec in dict(bench.instruments).items() if spec is not None}
        self.world.timed.extend(d for d in self.devices.values() if hasattr(d, "on_time"))
        self.servers = {name: ScpiServer(device).start() for name, device in self.devices.items()}
        self.rs485 = Rs485Bus().start()
        self.faults = Faults(self.world, self.rs485)
        self.rs485.responders.extend(PackResponder(b) for b in self.world.bms)
        self.rs485.responders[0].partners = self.rs485.responders[1:]  # the master answers for its group
        #: each pack's console port, a line of its own beside the link (rs485_console.py)
        self.consoles = [ConsolePort(self.rs485, r).start() for r in self.rs485.responders]
        if packs == 2:
            link = ParallelLink(self.world.bms[0], self.world.bms[1], self.rs485)
            self.rs485.on_line = link.on_line
            self.world.timed.append(link)
        self.can_transport = can_transport
        self.can_sent = 0      # frames the pack put on the bus so far
        self.can_received = 0  # frames the rig sent that reached the emulator (socketcand)
        if can_transport == "virtual":
            self._channel = f"packrig-emulator-{os.getpid()}-{next(_channels)}"
            self.can_bus = can.Bus(interface="virtual", channel=self._channel, preserve_timestamps=True)
            self.socketcand = None
        elif can_transport == "socketcand":
            self.can_bus = None
            self.socketcand = SocketcandServer().start()
            self.socketcand.on_receive = self._received
        else:
            raise ValueError(f"can_transport {can_transport!r}: 'virtual' or 'socketcand'")
        self._inbox: list[can.Message] = []
        self._inbox_lock = threading.Condition()  # the socketcand thread adds, an advance waits and takes
        self._cyclic: dict[int, CyclicFrames] = {}
        self._cyclic_ids = itertools.count(1)
        self._rig_bus = None  # the rig's bus in this process, told when frames have arrived
        self._clock = None    # the rig's virtual clock, when this bench is its advancer
        self._closed = False

    @classmethod
    def start(cls, request) -> EmulatedBench:
        """The ``in_process`` backend (:class:`rig.backends.BenchBackend`): the emulated bench
        a test asks for (:class:`rig.backends.BackendRequest`), advanced by the rig's virtual
        clock or running in real time beside its wall clock."""
        r = request
        profile = r.firmware or load_firmware_profile(r.firmware_path)
        bench = cls(r.loaded.file, profile, packs=r.packs, seed=r.seed, initial_soc_pct=r.initial_soc_pct,
                    ambient_c=r.ambient_c, physics=r.loaded.physics_path)
        bench.follow(r.clock)
        return bench

    def follow(self, clock) -> None:
        """Keep in step with the rig's clock: a virtual clock advances this bench as it sleeps
        (until :meth:`close`); beside a wall clock the world runs in real time."""
        if clock.kind == "virtual":
            self._clock = clock
            clock.attach(self)
        else:
            self.run_in_real_time()

    # --- the pack's CAN port ------------------------------------------------------------------
    def _received(self, msg: can.Message) -> None:
        with self._inbox_lock:
            self._inbox.append(msg)
            self.can_received += 1
            self._inbox_lock.notify_all()

    def wait_received(self, count: int, timeout: float) -> bool:
        """Wait (wall clock) until ``count`` frames from the rig have arrived in all; False on timeout."""
        with self._inbox_lock:
            return self._inbox_lock.wait_for(lambda: self.can_received >= count, timeout)

    def _deliver_in(self) -> None:
        """Frames the rig sent since the last advance reach the pack now (when they were sent)."""
        if self.can_bus is not None:
            while (msg := self.can_bus.recv(timeout=0)) is not None:
                self.world.on_can_frame(msg)
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
        for msg in inbox:
            self.world.on_can_frame(msg)

    def _deliver_out(self) -> None:
        frames = self.world.take_frames()
        if not frames:
            return
        if self.can_bus is not None:
            for frame in frames:
                self.can_bus.send(frame.message())
        else:
            self.socketcand.broadcast(frames)
        self.can_sent += len(frames)

    def start_cyclic(self, frames: list[can.Message], period_s: float, duration_s: float | None = None) -> int:
        """Send ``frames`` to the pack every ``period_s`` in the world's time, the first now, as a
        CAN interface runs ``send_periodic``; returns the job's handle for :meth:`stop_cyclic`."""
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        with self.world.plant.lock:
            self._deliver_in()  # what the rig sent before comes first
            now = self.world.t_ns
            end = None if duration_s is None else now + round(duration_s * 1e9)
            job = CyclicFrames(self.world.on_can_frame, frames, round(period_s * 1e9), now, end)
            job.on_time(now)
            handle = next(self._cyclic_ids)
            self._cyclic[handle] = job
            self.world.timed.append(job)
        return handle

    def stop_cyclic(self, handle: int) -> None:
        """Stop a cyclic job (an unknown or stopped handle is ignored, as stopping twice is)."""
        with self.world.plant.lock:
            job = self._cyclic.pop(handle, None)
            if job is not None:
                job.stop()
                self.world.timed.remove(job)

    def attach_bus(self, bus: can.BusABC) -> can.BusABC:
        """The rig's CAN bus as the rig is to use it. In virtual time: wrapped in the rig's
        :class:`~rig.emulator_client.virtual_time_bus.EmulatorBus` (its cyclic jobs run here, in
        the world's time) and told after each advance that everything the pack said has
        arrived. In real time: as it is."""
        if self._clock is None:
            return bus
        from rig.emulator_client.virtual_time_bus import EmulatorBus  # the rig's side of the bus
        self._rig_bus = EmulatorBus(bus, self)
        return self._rig_bus

    def died(self, grace_s: float = 0.0) -> None:
        """Never: this emulator lives in the rig's own process."""
        return None

    # --- time ----------------------------------------------------------------------------------------
    def advance_to(self, t_ns: int) -> None:
        """The clock's advancer: see the module docstring."""
        self._deliver_in()
        while self.world.t_ns < t_ns:
            self.world.advance_to(min(t_ns, (self.world.t_ns // CHUNK_NS + 1) * CHUNK_NS))
            self._deliver_out()
        if self._rig_bus is not None:
            self._rig_bus.arrived()

    def run_in_real_time(self, period_s: float = 0.005) -> threading.Thread:
        """Advance in wall-clock time from a thread (a wall-clock emulated bench), until :meth:`close`."""
        started = time.monotonic()

        def loop():
            while not self._closed:
                self.advance_to(round((time.monotonic() - started) * 1e9))
                time.sleep(period_s)

        thread = threading.Thread(target=loop, name="emulator-real-time", daemon=True)
        thread.start()
        return thread

    # --- how to reach it -------------------------------------------------------------------------------
    def endpoints(self) -> dict:
        """Where each port is: VISA resources, python-can Bus arguments, the RS485 URL."""
        can_kwargs = ({"interface": "virtual", "channel": self._channel, "preserve_timestamps": True}
                      if self.can_bus is not None else self.socketcand.bus_kwargs())
        return {"instruments": {name: s.resource for name, s in self.servers.items()},
                "can": can_kwargs, "rs485": self.rs485.url,
                "rs485_console": [console.url for console in self.consoles]}

    def close(self) -> None:
        """Stop every server (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        if self._clock is not None:
            self._clock.detach(self)
        for server in self.servers.values():
            server.stop()
        self.rs485.stop()
        for console in self.consoles:
            console.stop()
        if self.can_bus is not None:
            self.can_bus.shutdown()
        if self.socketcand is not None:
            self.socketcand.stop()

    def __enter__(self) -> "EmulatedBench":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _wiring(spec: Instrument, packs: int) -> dict:
    """What the bench file wires to an instrument, as its emulated model takes it: a scanner its
    channel maps (the packs on this bench), an IO box its outputs and inputs."""
    if isinstance(spec, ScannerInstrument):
        return {"group_channels": spec.group_channels[:packs],
                "thermocouple_channels": spec.thermocouple_channels[:packs]}
    if isinstance(spec, IoBox):
        return {"outputs": spec.outputs, "inputs": spec.inputs}
    return {}
