"""The emulator launcher of an emulated place: ``packrig emulate`` with the holder's firmware.

A place's own emulator runs the exporter's firmware in wall-clock time, shared by whoever holds
the place. A mutant, though, is a firmware profile of the holder's, and its tests need the
holder's virtual time and fault insertion. So ``packrig export --serve`` of an emulated bench
also serves this small TCP service (its address is the place's ``emulator_launcher`` parameter).
One connection is one emulator, for as long as the connection stays open::

    -> {"op": "launch", "firmware": "<profile TOML text>", "clock": "virtual", "packs": 1,
        "seed": 1, "soc": 50.0, "temperature": 25.0}
    <- {"ok": true, "endpoints": {...what packrig emulate --endpoints-file wrote...}, "pid": 1234}
    ...                                   (the holder drives the emulator over its control port)
    <- {"event": "exited", "returncode": 0, "reason": "...", "safe": true, "safe_state": "..."}

The emulator is ``packrig emulate --bench <the place's bench> --firmware <the text> --owner-pid
<this process>`` with the holder's seed, packs, state of charge and temperature: the place's
wiring, the holder's pack. It stops (safe state first, :mod:`emulator.serve`) when its holder
closes the control connection (an owned emulator stops with its last control client) or this
launch connection, or dies (the kernel closes both); the launcher then says how it exited on
the connection, if it is still open. A bad request gets ``{"ok": false, "error": ...}``.

The emulator's ports listen on 127.0.0.1, as the place's own emulator's do: an emulated place
serves holders on its own machine (a CI runner with its places).
"""
from __future__ import annotations

import json
import logging
import math
import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: bytes of one launch request (a firmware profile is ~10 kB)
MAX_REQUEST = 1 << 20
#: s for a launched emulator to publish its endpoints
READY_S = 60.0
#: emulators running at once on one place (a holder's tests start one after another)
MAX_RUNNING = 4

log = logging.getLogger("packrig.launcher")


def check_request(request: dict) -> list[str]:
    """The ``packrig emulate`` arguments a launch request asks for; :raises ValueError: one line."""
    if not isinstance(request, dict):
        raise ValueError("a launch request is a JSON object")
    if request.get("op") != "launch":
        raise ValueError(f"unknown op {request.get('op')!r}; the launcher knows 'launch'")
    firmware = request.get("firmware")
    if not isinstance(firmware, str) or not firmware.strip():
        raise ValueError("'firmware': the firmware profile's TOML text is missing")
    clock = request.get("clock", "virtual")
    if clock not in ("virtual", "wall"):
        raise ValueError(f"'clock' must be 'virtual' or 'wall', got {clock!r}")
    args = ["--clock", clock]
    for key, flag, kind in (("packs", "--packs", int), ("seed", "--seed", int), ("soc", "--soc", float),
                            ("temperature", "--temperature", float)):
        value = request.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (kind is int and value != int(value)):
            raise ValueError(f"{key!r} must be a number{' (whole)' if kind is int else ''}, got {value!r}")
        args += [flag, str(kind(value))]
    return args


class _Launch(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: EmulatorLauncher = self.server  # type: ignore[assignment]
        raw = self.rfile.readline(MAX_REQUEST + 1)
        if not raw:
            return
        try:
            if len(raw) > MAX_REQUEST or not raw.endswith(b"\n"):
                raise ValueError(f"a launch request is one line of at most {MAX_REQUEST} bytes")
            args = check_request(json.loads(raw))
            firmware = json.loads(raw)["firmware"]
        except ValueError as exc:  # json.JSONDecodeError is one
            self._say({"ok": False, "error": str(exc)})
            return
        server.serve_one(self, firmware, args)

    def _say(self, reply: dict) -> None:
        self.wfile.write(json.dumps(reply).encode() + b"\n")
        self.wfile.flush()


class EmulatorLauncher(socketserver.ThreadingTCPServer):
    """Launches emulators of ``bench`` for the place's holder (module docstring).

    :param bench: the place's (emulated) bench file: wiring, limits, physics.
    :param host: the address to listen on.
    :param say: called with one line for each emulator launched and ended (the exporter's log).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bench: Path, host: str = "127.0.0.1", say: Callable[[str], None] | None = None):
        super().__init__((host, 0), _Launch)
        self.bench = Path(bench)
        self.say = say or log.info
        self.folder = Path(tempfile.mkdtemp(prefix="packrig-launcher-"))
        self.children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._count = 0
        self._closed = False
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="emulator-launcher",
                                        daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "EmulatorLauncher":
        self._thread.start()
        return self

    def handle_error(self, request, client_address) -> None:
        """A holder whose connection broke before its answer: one line, no traceback."""
        self.say(f"launch request from {client_address[0]}:{client_address[1]}: {sys.exc_info()[1]}")

    def serve_one(self, conn: _Launch, firmware: str, args: list[str]) -> None:
        """Start one emulator, tell the holder where it is, stop it when the holder lets go."""
        with self._lock:
            if self._closed or len(self.children) >= MAX_RUNNING:
                conn._say({"ok": False, "error": "the place's launcher is stopping" if self._closed else
                           f"{MAX_RUNNING} emulators already run on this place"})
                return
            self._count += 1
            work = self.folder / f"emulator-{self._count}"
            work.mkdir()
            (work / "firmware.toml").write_text(firmware, encoding="utf-8")
            cmd = [sys.executable, "-m", "rig.cli", "emulate", "--quiet", "--bench", str(self.bench),
                   "--firmware", str(work / "firmware.toml"), "--endpoints-file", str(work / "endpoints.json"),
                   "--exit-file", str(work / "exit.json"), "--owner-pid", str(os.getpid()), *args]
            errors = open(work / "stderr.log", "wb")  # noqa: SIM115 - closed below, when the child has ended
            child = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=errors)
            self.children.add(child)
        try:
            endpoints = _wait_ready(child, work)
            if endpoints is None:
                said = (work / "stderr.log").read_text(errors="replace").strip().splitlines()
                conn._say({"ok": False, "error": f"packrig emulate stopped before it served (exit code "
                                                 f"{child.poll()}): {said[-1] if said else 'nothing said'}"})
                return
            conn._say({"ok": True, "endpoints": endpoints, "pid": child.pid})
            self.say(f"emulator {child.pid} launched for {conn.client_address[0]}:{conn.client_address[1]} "
                     f"({' '.join(args)})")
            gone = _wait_until_either_ends(conn.connection, child)
            if gone == "holder":  # the launch connection closed: the holder let go, or died
                _stop(child)
            exit_said = _read_json(work / "exit.json")
            self.say(f"emulator {child.pid} ended ({'its holder let go' if gone == 'holder' else 'it exited'}): "
                     f"{exit_said.get('reason', '')}; safe state: {exit_said.get('safe_state')}")
            if gone == "emulator":
                conn._say({"event": "exited", "returncode": child.returncode, **exit_said})
        except OSError:  # the holder's connection broke while we answered: stop its emulator
            _stop(child)
        finally:
            _stop(child)
            errors.close()
            shutil.rmtree(work, ignore_errors=True)
            with self._lock:
                self.children.discard(child)

    def close(self) -> None:
        """Stop serving and stop every emulator still running (each goes to its safe state)."""
        with self._lock:
            self._closed = True
            children = list(self.children)
        self.shutdown()
        self.server_close()
        for child in children:
            _stop(child)
        shutil.rmtree(self.folder, ignore_errors=True)


def _wait_ready(child: subprocess.Popen, work: Path) -> dict | None:
    ready = work / "endpoints.json"
    deadline = time.monotonic() + READY_S
    while not ready.exists():
        if child.poll() is not None:
            return None
        if time.monotonic() > deadline:
            _stop(child)
            return None
        time.sleep(0.02)
    return json.loads(ready.read_text(encoding="utf-8"))


def _wait_until_either_ends(sock: socket.socket, child: subprocess.Popen) -> str:
    """``"holder"`` when the launch connection closed (or sent anything: it has nothing more to
    say), ``"emulator"`` when the emulator exited."""
    while child.poll() is None:
        if select.select([sock], [], [], 0.1)[0]:
            return "holder"
    return "emulator"


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM (the emulator makes its bench safe and exits), then insist."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(10.0)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"safe_state": "not reported: it was stopped before it could act"}
