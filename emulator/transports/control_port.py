"""The emulator's control port: time and fault insertion, for a rig in another process.

The vocabulary (ops, fields, the fault calls, the request cap) is
:mod:`rig.protocol.control`, shared with the rig's client; this is the server. ``advance``
and ``cyclic`` first wait (up to :data:`RIG_FRAMES_TIMEOUT_S`) for the CAN frames the rig says
it sent, then act; a wait that runs out is a :class:`~rig.errors.SyncTimeout`. Nothing a client
sends crashes the emulator: any bad request gets an error reply.

A request line is at most :data:`~rig.protocol.control.MAX_REQUEST` bytes: a longer one is read
through and discarded (the memory held stays bounded) and answered with an error. A client that
resets its connection is one log line. Connections wait in a listen backlog of
:data:`LISTEN_BACKLOG`. An emulator *owned* by the rig that started it (``packrig emulate
--owner-pid``) stops when its last control client has gone (:attr:`ControlServer.stopped`, with
:attr:`ControlServer.reason`); one started by hand keeps serving whoever comes and goes.
"""
from __future__ import annotations

import json
import logging
import socketserver
import sys
import threading

from emulator.emulated_bench import EmulatedBench
from rig.errors import SyncTimeout
from rig.protocol.control import CYCLIC_ACTIONS, FAULTS, MAX_REQUEST, OPS, frames_from_wire, reply_line

#: s the emulator waits for the CAN frames the rig says it sent before an advance or a cyclic job
RIG_FRAMES_TIMEOUT_S = 5.0
#: connections the OS queues before the server accepts them (socketserver's default is 5)
LISTEN_BACKLOG = 128

log = logging.getLogger(__name__)


class _Handler(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True  # one small reply per request: send it now

    def handle(self) -> None:
        server: ControlServer = self.server  # type: ignore[assignment]
        server.client_came()
        try:
            self._serve(server)
        except OSError as exc:  # a reset or a broken pipe: the client is gone, nothing to answer
            log.warning("control client %s:%s: %s", *self.client_address[:2], exc)
        finally:
            server.client_went()

    def _serve(self, server: "ControlServer") -> None:
        while raw := self.rfile.readline(MAX_REQUEST + 1):
            if len(raw) > MAX_REQUEST:
                length = len(raw) + (0 if raw.endswith(b"\n") else self._discard_line())
                reply = {"ok": False, "error": f"request line of {length} bytes is over the "
                                               f"{MAX_REQUEST}-byte cap; discarded"}
            else:
                try:
                    reply = {"ok": True, **server.execute(json.loads(raw))}
                except Exception as exc:  # noqa: BLE001 - any bad request gets an error reply
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.wfile.write(reply_line(reply))
            if reply.get("bye"):
                return

    def _discard_line(self) -> int:
        """Read the rest of an over-long line a bounded chunk at a time; returns how many bytes."""
        count = 0
        while chunk := self.rfile.readline(MAX_REQUEST):
            count += len(chunk)
            if chunk.endswith(b"\n"):
                break
        return count


class ControlServer(socketserver.ThreadingTCPServer):
    """Serves the control port of one :class:`EmulatedBench` (see the module docstring)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, bench: EmulatedBench, *, virtual: bool = True, owned: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bench, self.virtual, self.owned = bench, virtual, owned
        self.clients = 0
        #: set when the emulator should stop: a shutdown request, or an owned emulator's last client gone
        self.stopped = threading.Event()
        #: why it stopped, for the log
        self.reason = ""
        self._clients_lock = threading.Lock()
        self._lock = threading.Lock()  # one advance or fault at a time
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="emulator-control",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside the handler's own checks: one log line, no traceback."""
        log.warning("control client %s:%s: %s", *client_address[:2], sys.exc_info()[1])

    def client_came(self) -> None:
        with self._clients_lock:
            self.clients += 1

    def client_went(self) -> None:
        """A control client has gone. An owned emulator stops with its last one: the rig that
        started it closed its connection, or died (the kernel closed it)."""
        with self._clients_lock:
            self.clients -= 1
            last = self.clients == 0
        if last and self.owned:
            self.stop_for("its control connection closed")

    def stop_for(self, reason: str) -> None:
        """Ask the emulator to stop (the first reason given is kept)."""
        with self._clients_lock:
            self.reason = self.reason or reason
        self.stopped.set()

    def execute(self, request: dict) -> dict:
        op = request.get("op")
        with self._lock:
            if op == "advance":
                return self._advance(int(request["t_ns"]), int(request.get("rig_frames", 0)))
            if op == "fault":
                name = request.get("name")
                if name not in FAULTS:
                    raise ValueError(f"unknown fault {name!r}; choices: {', '.join(sorted(FAULTS))}")
                return {"result": getattr(self.bench.faults, name)(*request.get("args", []),
                                                                    **request.get("kwargs", {}))}
            if op == "cyclic":
                return self._cyclic(request)
            if op == "can_listeners":  # a frame sent before a client joined would never reach it
                self.bench.socketcand.wait_for_listeners(int(request.get("count", 1)))
                return {}
            if op == "endpoints":
                return self.bench.endpoints()
            if op == "status":
                return self._status()
            if op == "stop_instrument":  # an instrument that stops answering (its server goes away)
                self.bench.servers[request["name"]].stop()
                return {}
            if op == "shutdown":
                self.stop_for("shutdown requested")
                return {"bye": True}
        raise ValueError(f"unknown op {op!r}; choices: {', '.join(OPS)}")

    def _status(self) -> dict:
        """The world as the instruments' far ends see it, and the last commands each one got."""
        w, p = self.bench.world, self.bench.world.plant
        with p.lock:
            outputs = {"psu_on": p.psu.on and not p.psu.tripped, "psu_tripped": p.psu.tripped,
                       "eload_on": p.eload.on, "eload_short": p.eload.short, "io": dict(p.io.outputs),
                       "chamber_running": p.chamber.running}
        return {"t_ns": w.t_ns, "can_sent": self.bench.can_sent, "outputs": outputs,
                "packs": [{"state": b.state, "relays": list(b.relays), "soc_pct": b.report.soc_pct}
                          for b in w.bms],
                "commands": {name: list(d.history)[-30:] for name, d in self.bench.devices.items()}}

    def _cyclic(self, request: dict) -> dict:
        action = request.get("action")
        if action == "stop":
            self.bench.stop_cyclic(int(request["handle"]))
            return {}
        if action != "start":
            raise ValueError(f"unknown cyclic action {action!r}; choices: {', '.join(CYCLIC_ACTIONS)}")
        self._wait_rig_frames(int(request.get("rig_frames", 0)))
        frames = frames_from_wire(request["frames"])
        duration = request.get("duration_s")
        return {"handle": self.bench.start_cyclic(frames, float(request["period_s"]),
                                                  None if duration is None else float(duration))}

    def _wait_rig_frames(self, rig_frames: int) -> None:
        if not self.bench.wait_received(rig_frames, RIG_FRAMES_TIMEOUT_S):
            raise SyncTimeout(f"the rig sent {rig_frames} CAN frames, {self.bench.can_received} arrived "
                               f"within {RIG_FRAMES_TIMEOUT_S:g} s")

    def _advance(self, t_ns: int, rig_frames: int) -> dict:
        if not self.virtual:
            raise ValueError("this emulator runs in wall-clock time; it cannot be advanced")
        self._wait_rig_frames(rig_frames)
        if t_ns > self.bench.world.t_ns:
            self.bench.advance_to(t_ns)
        return {"t_ns": self.bench.world.t_ns, "can_sent": self.bench.can_sent,
                "rs485_sent": self.bench.rs485.bytes_sent}

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
