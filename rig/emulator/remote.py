"""The rig's side of an emulator in another process (``packrig emulate``).

:class:`RemoteEmulator` starts ``packrig emulate`` as a child process (or attaches to one
already running), reads where its ports are from the control port, and is the virtual clock's
advancer: an advance tells the emulator how many CAN frames the rig has sent, waits for its
reply, then reads the rig's CAN port until every frame the emulator says it sent has arrived.
So when a virtual sleep returns, the rig holds everything the pack said, in order, with
virtual timestamps, exactly as in one process.

:class:`SyncedBus` is the rig's CAN bus in that setup: a python-can bus wrapping the
socketcand client that counts what goes each way and can be filled up to a frame count.
"""
from __future__ import annotations

import collections
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import can

from rig.emulator.control import FAULTS
from rig.errors import RigError

START_TIMEOUT_S = 30.0
SYNC_TIMEOUT_S = 10.0


class SyncedBus(can.BusABC):
    """A bus around another that counts frames sent and can read ahead to a frame count."""

    def __init__(self, inner: can.BusABC, **kwargs):
        self.inner = inner
        self.sent = 0
        self.received = 0
        self._ahead: collections.deque[can.Message] = collections.deque()
        super().__init__(channel=getattr(inner, "channel_info", "synced"), **kwargs)
        self.channel_info = f"synced {inner.channel_info}"

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.inner.send(msg, timeout)
        self.sent += 1

    def _recv_internal(self, timeout):
        if self._ahead:
            return self._ahead.popleft(), False
        msg = self.inner.recv(timeout)
        if msg is not None:
            self.received += 1
        return msg, False

    def fill_until(self, count: int, timeout: float = SYNC_TIMEOUT_S) -> None:
        """Read from the wire until ``count`` frames have arrived in all (kept for recv)."""
        waited = 0.0
        while self.received < count:
            msg = self.inner.recv(0.05)
            if msg is None:
                waited += 0.05
                if waited >= timeout:
                    raise RigError(f"CAN: the emulator sent {count} frames, {self.received} arrived "
                                   f"within {timeout:g} s")
                continue
            self.received += 1
            self._ahead.append(msg)

    def shutdown(self) -> None:
        super().shutdown()
        self.inner.shutdown()


class _Faults:
    """Fault insertion over the control port, with the same calls as :class:`~rig.emulator.faults.Faults`."""

    def __init__(self, remote: "RemoteEmulator"):
        self._remote = remote

    def __getattr__(self, name: str):
        if name not in FAULTS:
            raise AttributeError(f"no fault {name!r}; choices: {', '.join(sorted(FAULTS))}")
        return lambda *args, **kwargs: self._remote.call("fault", name=name, args=list(args), kwargs=kwargs)


class RemoteEmulator:
    """``packrig emulate`` in a child process, seen from the rig.

    :param args: extra command-line arguments for ``packrig emulate`` (bench, packs, seed ...).
    """

    def __init__(self, args: list[str]):
        self._dir = tempfile.TemporaryDirectory(prefix="packrig-emulator-")
        ready = Path(self._dir.name) / "endpoints.json"
        self.process = subprocess.Popen([sys.executable, "-m", "rig.cli", "emulate", "--quiet",
                                         "--endpoints-file", str(ready), *args])
        self._sock: socket.socket | None = None
        try:
            self._wait_ready(ready)
        except BaseException:
            self.close()
            raise
        self.faults = _Faults(self)
        self.bus: SyncedBus | None = None

    def _wait_ready(self, ready: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists() or not ready.stat().st_size:
            if self.process.poll() is not None:
                raise RigError(f"packrig emulate exited with code {self.process.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise RigError(f"packrig emulate did not publish its endpoints within {START_TIMEOUT_S:g} s")
            time.sleep(0.02)
        self.endpoints_info = json.loads(ready.read_text())
        self._sock = socket.create_connection(("127.0.0.1", self.endpoints_info["control"]), timeout=SYNC_TIMEOUT_S)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._replies = self._sock.makefile("rb")  # buffered: a line in one recv, not one per byte

    def call(self, op: str, **fields) -> dict:
        """One request on the control port; raises :class:`RigError` with the emulator's error."""
        try:
            self._sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            reply = json.loads(self._replies.readline() or b'{"ok": false, "error": "emulator gone"}')
        except OSError as exc:
            raise RigError(f"emulator control port: {exc}") from exc
        if not reply.get("ok"):
            raise RigError(f"emulator refused {op}: {reply.get('error')}")
        return reply

    def endpoints(self) -> dict:
        return {k: self.endpoints_info[k] for k in ("instruments", "can", "rs485")}

    def attach_bus(self, bus: SyncedBus) -> None:
        """The rig's CAN bus, to keep in step with the emulator's frame count."""
        self.bus = bus

    def advance_to(self, t_ns: int) -> None:
        """The virtual clock's advancer (see the module docstring)."""
        reply = self.call("advance", t_ns=t_ns, rig_frames=self.bus.sent if self.bus else 0)
        if self.bus is not None:
            self.bus.fill_until(reply["can_sent"])
        self.last = reply

    def close(self) -> None:
        """Stop the emulator process (safe to call twice)."""
        if self._sock is not None:
            try:
                self.call("shutdown")
            except RigError:
                pass
            self._sock.close()
            self._sock = None
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5.0)
        self._dir.cleanup()
