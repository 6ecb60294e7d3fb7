"""The ``launcher`` bench backend: an emulator a lab place starts for its holder.

A bench file with ``[emulator] process = "launcher"`` and ``launcher = "HOST:PORT"`` (the place's
``emulator_launcher``, :mod:`rig.lab.emulator_launcher`) has each test's emulator started by the
place, with the firmware profile this rig sends (its text: the place has no copy of the holder's
files), the test's seed, packs, state of charge and temperature, in the rig clock's kind of time.
From there it is :class:`~rig.emulator_client.remote_emulator.RemoteEmulator`: the same control
port client (virtual time, CAN frame counts, cyclic jobs, fault insertion), the same bench.

The emulator is not this process's child; what stands for the child is the *launch connection*:
while it is open the emulator runs, closing it stops the emulator (safe state first), and the
launcher writes on it how the emulator exited, which :meth:`LaunchedEmulator.died` reports.
"""
from __future__ import annotations

import json
import select
import socket
import subprocess

from rig.emulator_client.remote_emulator import RemoteEmulator, _Faults
from rig.errors import EmulatorError, EmulatorRefused

#: s to reach the launcher and have it start an emulator
LAUNCH_TIMEOUT_S = 60.0
#: s for a launched emulator to say it exited after a shutdown
EXIT_WAIT_S = 10.0


class _Launched:
    """The launched emulator, seen as :class:`RemoteEmulator` sees its child process: ``pid``,
    ``returncode``, ``poll()``, ``wait(timeout)``, ``kill()``; ended when the launcher says so."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.pid = 0
        self.returncode: int | None = None
        self.exit: dict = {}
        self._buffer = b""

    def line(self, timeout: float) -> dict:
        """The launcher's next line (its reply to the launch); :raises OSError, ValueError."""
        while b"\n" not in self._buffer:
            if not select.select([self.sock], [], [], timeout)[0]:
                raise TimeoutError(f"no answer in {timeout:g} s")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the launcher closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def poll(self) -> int | None:
        return self._read(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._read(EXIT_WAIT_S if timeout is None else timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"emulator {self.pid} at the launcher", timeout)
        return code

    def kill(self) -> None:
        """Close the launch connection: the launcher stops the emulator."""
        if self.returncode is None:
            self.exit = {"safe_state": "not reported: stopped by its launcher when the rig let go"}
            self.returncode = -9
        self.sock.close()

    def _read(self, timeout: float) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            while b"\n" not in self._buffer:
                if not select.select([self.sock], [], [], timeout)[0]:
                    return None
                chunk = self.sock.recv(4096)
                if not chunk:  # the launcher went away: its emulators went with it
                    self.exit = {"safe_state": "not reported: the place's launcher closed the connection"}
                    self.returncode = -15
                    return self.returncode
                self._buffer += chunk
        except OSError as exc:
            self.exit = {"safe_state": f"not reported: launch connection failed ({exc})"}
            self.returncode = -15
            return self.returncode
        self.exit = json.loads(self._buffer.partition(b"\n")[0] or b"{}")
        self.returncode = int(self.exit.get("returncode", 0))
        return self.returncode


class LaunchedEmulator(RemoteEmulator):
    """``packrig emulate`` started by a lab place's launcher, seen from the rig.

    :param address: the launcher, ``HOST:PORT``.
    :param request: what to launch (:func:`rig.lab.emulator_launcher.check_request`).
    :raises EmulatorRefused: the launcher refused (its reason); :raises EmulatorError: no launcher there.
    """

    def __init__(self, address: str, request: dict):
        host, _, port = address.rpartition(":")
        lease = None
        try:
            lease = socket.create_connection((host, int(port)), timeout=LAUNCH_TIMEOUT_S)
            self.process = _Launched(lease)
            lease.sendall(json.dumps(request).encode() + b"\n")
            reply = self.process.line(LAUNCH_TIMEOUT_S)
        except (OSError, ValueError) as exc:
            if lease is not None:
                lease.close()
            raise EmulatorError(f"emulator launcher at {address}: {exc}") from None
        if not reply.get("ok"):
            lease.close()
            raise EmulatorRefused(f"emulator launcher at {address}: {reply.get('error', 'no reply')}")
        self.launcher = address
        self.process.pid = int(reply["pid"])
        self.endpoints_info = reply["endpoints"]
        self._sock = None
        self._closing = False
        try:
            self._connect(self.endpoints_info["control"])
        except OSError as exc:
            self.process.kill()
            raise EmulatorError(f"launched emulator's control port: {exc}") from None
        self.faults = _Faults(self)
        self.bus = None
        self._clock = None

    @classmethod
    def start(cls, request) -> LaunchedEmulator:
        """The ``launcher`` backend (:class:`rig.backends.BenchBackend`): the bench file's launcher
        starts an emulator with this test's firmware, pack and clock kind."""
        r = request
        firmware = r.firmware_path or r.loaded.firmware_path
        emulator = cls(r.loaded.file.emulator.launcher,
                       {"op": "launch", "firmware": firmware.read_text(encoding="utf-8"), "clock": r.clock.kind,
                        "packs": r.packs, "seed": r.seed, "soc": r.initial_soc_pct, "temperature": r.ambient_c})
        emulator.follow(r.clock)
        return emulator

    def _safe_state(self) -> str:
        """What the launcher said of the emulator's outputs as it exited (there is no exit file:
        :meth:`RemoteEmulator.died` reads this, the rest of a death is the same)."""
        said = self.process.exit
        if "safe" not in said:
            return said.get("safe_state", "not reported")
        held = "reached" if said.get("safe") else "NOT reached"
        return f"{held} by the emulator before it exited ({said.get('reason')}): {said.get('safe_state')}"

    def close(self) -> None:
        """Shut the emulator down over its control port, wait for the launcher to say it exited,
        let go of the launch connection (safe to call twice)."""
        self._shut_down()
        try:
            self.process.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        self.process.kill()
