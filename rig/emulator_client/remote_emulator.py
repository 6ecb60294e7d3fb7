"""The rig's side of an emulator in another process (``packrig emulate``).

:class:`RemoteEmulator` starts ``packrig emulate`` as a child process, reads where its ports
are from the endpoints file the child publishes, and is the virtual clock's advancer: an advance tells the emulator how many CAN frames the rig has sent, waits for its
reply, then reads the rig's CAN port until every frame the emulator says it sent has arrived.
So when a virtual sleep returns, the rig holds everything the pack said, in order, with
virtual timestamps, exactly as in one process.

While the emulator computes a long advance it streams the frames (a chunk at a time); the rig
reads them and hands them on (:attr:`~rig.emulator_client.virtual_time_bus.EmulatorBus.on_arrival`: the PCS
stand-in decodes and the recorder logs) meanwhile, so the two processes work on two cores.
The rig's CAN bus in this setup is an :class:`~rig.emulator_client.virtual_time_bus.EmulatorBus`.

For the bench it is the ``subprocess`` backend (:mod:`rig.backends`): :meth:`RemoteEmulator.start`
starts it for a test. It speaks the control port's vocabulary (:mod:`rig.protocol.control`)
and imports nothing of the emulator.

The child belongs to this rig (``--owner-pid``): it goes to its safe state and exits when the
rig closes its control connection or dies, however (:mod:`emulator.serve`). When the child
dies first, :meth:`RemoteEmulator.died` names it (exit code or signal, and the safe state it
reported before exiting, if it could): the control port raises that
:class:`~rig.errors.EmulatorDied` instead of a bare "connection closed", and the bench asks it
whenever an instrument's transport fails (:meth:`rig.bench.Bench`).
"""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import can

from instruments.roles import FaultInsertion
from rig.emulator_client.virtual_time_bus import SYNC_TIMEOUT_S, EmulatorBus
from rig.errors import EmulatorDied, EmulatorError, EmulatorRefused, SyncTimeout
from rig.protocol.control import ENDPOINTS, FAULTS, frames_to_wire, request_line

START_TIMEOUT_S = 30.0
#: s to let a child whose connection just closed finish exiting, before asking whether it died
EXIT_GRACE_S = 1.0
#: s the rig waits on the control port between two looks at the CAN port during an advance
_LOOK_S = 0.001


class _Faults(FaultInsertion):
    """Fault insertion over the control port, with the calls of the emulator's ``Faults``
    (:data:`rig.protocol.control.FAULTS`):
    the :class:`~instruments.roles.FaultInsertion` role's by name, the emulator's other faults
    looked up in its list."""

    def __init__(self, remote: "RemoteEmulator"):
        self._remote = remote

    def force_voltage(self, device: int, channel: int, volts: float | None) -> None:
        self._fault("force_voltage", device, channel, volts)

    def force_temperature(self, device: int, channel: int, celsius: float | None) -> None:
        self._fault("force_temperature", device, channel, celsius)

    def offset_current(self, device: int, amps: float) -> None:
        self._fault("offset_current", device, amps)

    def clear(self) -> None:
        self._fault("clear")

    def _fault(self, name: str, *args, **kwargs):
        return self._remote.call("fault", name=name, args=list(args), kwargs=kwargs)["result"]

    def __getattr__(self, name: str):
        if name not in FAULTS:
            raise AttributeError(f"no fault {name!r}; choices: {', '.join(sorted(FAULTS))}")
        return lambda *args, **kwargs: self._fault(name, *args, **kwargs)


class RemoteEmulator:
    """``packrig emulate`` in a child process, seen from the rig.

    :param args: extra command-line arguments for ``packrig emulate`` (bench, packs, seed ...).
    """

    def __init__(self, args: list[str]):
        self._dir = tempfile.TemporaryDirectory(prefix="packrig-emulator-")
        ready = Path(self._dir.name) / "endpoints.json"
        self._exit_file = Path(self._dir.name) / "exit.json"
        self.process = subprocess.Popen([sys.executable, "-m", "rig.cli", "emulate", "--quiet",
                                         "--endpoints-file", str(ready), "--owner-pid", str(os.getpid()),
                                         "--exit-file", str(self._exit_file), *args])
        self._sock: socket.socket | None = None
        self._closing = False
        try:
            self._wait_ready(ready)
        except BaseException:
            self.close()
            raise
        self.faults = _Faults(self)
        self.bus: EmulatorBus | None = None
        self._clock = None  # the rig's virtual clock, when this emulator is its advancer

    @classmethod
    def start(cls, request) -> RemoteEmulator:
        """The ``subprocess`` backend (:class:`rig.backends.BenchBackend`): ``packrig emulate``
        for the bench a test asks for (:class:`rig.backends.BackendRequest`), in the rig
        clock's kind of time."""
        r = request
        args = ["--bench", str(r.loaded.path), "--packs", str(r.packs), "--seed", str(r.seed),
                "--soc", str(r.initial_soc_pct), "--temperature", str(r.ambient_c), "--clock", r.clock.kind]
        if r.firmware_path:
            args += ["--firmware", str(r.firmware_path)]
        emulator = cls(args)
        emulator.follow(r.clock)
        return emulator

    def follow(self, clock) -> None:
        """Keep in step with the rig's clock: a virtual clock advances the emulator as it sleeps
        (until :meth:`close`); one started in wall-clock time (``--clock wall``) runs by itself."""
        if clock.kind == "virtual":
            self._clock = clock
            clock.attach(self)

    def _wait_ready(self, ready: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists() or not ready.stat().st_size:
            if self.process.poll() is not None:
                raise EmulatorDied(self.process.pid, self.process.returncode,
                                   "it never served (its error is above)")
            if time.monotonic() > deadline:
                raise SyncTimeout(f"packrig emulate did not publish its endpoints within {START_TIMEOUT_S:g} s")
            time.sleep(0.02)
        self.endpoints_info = json.loads(ready.read_text())
        self._connect(self.endpoints_info["control"])

    def _connect(self, port: int) -> None:
        """Open the control connection (also :class:`rig.lab.launched_emulator.LaunchedEmulator`'s)."""
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=SYNC_TIMEOUT_S)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._replies = self._sock.makefile("rb")  # buffered: a line in one recv, not one per byte

    def call(self, op: str, **fields) -> dict:
        """One request on the control port; raises :class:`~rig.errors.EmulatorRefused` with the
        emulator's error, :class:`~rig.errors.EmulatorError` (or :class:`~rig.errors.EmulatorDied`)
        when the connection fails."""
        self._request(op, fields)
        return self._reply(op)

    def _request(self, op: str, fields: dict) -> None:
        if self._sock is None:
            raise EmulatorError(f"emulator control port: closed (no {op})")
        try:
            self._sock.sendall(request_line(op, **fields))
        except OSError as exc:
            raise self._lost(str(exc)) from exc

    def _reply(self, op: str) -> dict:
        try:
            line = self._replies.readline()
        except OSError as exc:
            raise self._lost(str(exc)) from exc
        if not line.endswith(b"\n"):  # nothing, or a reply cut short: the connection ended
            raise self._lost(f"closed by the emulator (no reply to {op})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise EmulatorRefused(f"emulator refused {op}: {reply.get('error')}")
        return reply

    def _lost(self, problem: str) -> EmulatorError:
        """The control connection failed: the dead emulator if it died, else the connection's error."""
        return self.died(EXIT_GRACE_S) or EmulatorError(f"emulator control port: {problem}")

    def died(self, grace_s: float = 0.0) -> EmulatorDied | None:
        """The child's death, if it died on its own (not through :meth:`close`): exit code or
        signal, and the safe state it reported. Waits up to ``grace_s`` for a child that is
        exiting (its connections close a moment before its exit status is there)."""
        if self._closing:
            return None
        if self.process.poll() is None:
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                return None
        return EmulatorDied(self.process.pid, self.process.returncode, self._safe_state())

    def _safe_state(self) -> str:
        """What the child said about its outputs as it exited, or why it said nothing."""
        try:
            report = json.loads(self._exit_file.read_text())
        except (OSError, ValueError):
            return ("not reported: it was stopped before it could act; its emulated outputs ended "
                    "with the process")
        held = "reached" if report.get("safe") else "NOT reached"
        return f"{held} by the emulator before it exited ({report.get('reason')}): {report.get('safe_state')}"

    def endpoints(self) -> dict:
        return {k: self.endpoints_info[k] for k in ENDPOINTS if k in self.endpoints_info}

    def attach_bus(self, bus: can.BusABC) -> can.BusABC:
        """The rig's CAN bus as the rig is to use it. In virtual time: wrapped in an
        :class:`EmulatorBus` (cyclic jobs in the emulator's time, kept in step with its frame
        count), returned once the emulator's CAN server has the bus's client listening (a frame
        before that would be lost). In wall-clock time: as it is."""
        if self._clock is None:
            return bus
        self.call("can_listeners", count=1)
        self.bus = EmulatorBus(bus, self)
        return self.bus

    def start_cyclic(self, frames: list[can.Message], period_s: float, duration_s: float | None) -> int:
        """Have the emulator send ``frames`` to the pack every ``period_s`` of its time (the bus's
        ``send_periodic``); frames the rig sent before reach the pack first."""
        reply = self.call("cyclic", action="start", period_s=period_s, duration_s=duration_s,
                          rig_frames=self.bus.sent if self.bus else 0,
                          frames=frames_to_wire(frames))
        return reply["handle"]

    def stop_cyclic(self, handle: int) -> None:
        """Stop a cyclic job; nothing to do once the emulator is closed."""
        if self._sock is not None:
            self.call("cyclic", action="stop", handle=handle)

    def advance_to(self, t_ns: int) -> None:
        """The virtual clock's advancer (see the module docstring)."""
        self._request("advance", {"t_ns": t_ns, "rig_frames": self.bus.sent if self.bus else 0})
        if self.bus is not None:
            self._take_frames_until_reply()
        reply = self._reply("advance")
        if self.bus is not None:
            self.bus.fill_until(reply["can_sent"])
            self.bus.arrived()
        self.last = reply

    def _take_frames_until_reply(self) -> None:
        """Until the advance's reply is there: take the frames streaming in and hand them on."""
        quiet_since, wait = time.monotonic(), 0.0
        while not select.select([self._sock], [], [], wait)[0]:
            if self.bus.fill_available():  # the listeners take them while the emulator works on
                self.bus.arrived()
                quiet_since, wait = time.monotonic(), 0.0
            elif time.monotonic() - quiet_since > SYNC_TIMEOUT_S:
                raise self.died() or SyncTimeout(f"emulator: no reply to advance and no CAN frame for "
                                                 f"{SYNC_TIMEOUT_S:g} s")
            else:
                wait = _LOOK_S

    def _shut_down(self) -> None:
        """Leave the clock, ask the emulator to shut down over its control port (an emulator that
        no longer answers is stopped by the caller) and let go of the connection."""
        self._closing = True
        if self._clock is not None:
            self._clock.detach(self)
            self._clock = None
        if self._sock is not None:
            try:
                self.call("shutdown")
            except (EmulatorError, SyncTimeout):
                pass
            self._replies.close()  # the socket's file holds its descriptor open too
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop the emulator process (safe to call twice)."""
        self._shut_down()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)
        self._dir.cleanup()
