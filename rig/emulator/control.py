"""The emulator's control port: time and fault insertion, for a rig in another process.

One JSON object per line over TCP on 127.0.0.1, one reply line per request::

    {"op": "advance", "t_ns": 5000000000, "rig_frames": 12}
        -> {"ok": true, "t_ns": 5000000000, "can_sent": 70, "rs485_sent": 0}
    {"op": "fault", "name": "force_group", "args": [0, 5, 3.7]}  -> {"ok": true, "result": null}
    {"op": "cyclic", "action": "start", "frames": [[773, false, "0000000000000000"]], "period_s": 1.0,
     "duration_s": null, "rig_frames": 12}  -> {"ok": true, "handle": 1}
    {"op": "cyclic", "action": "stop", "handle": 1}  -> {"ok": true}
    {"op": "can_listeners", "count": 1}  -> {"ok": true}  (once that many CAN clients hear the bus)
    {"op": "endpoints"}  -> {"ok": true, "instruments": {...}, "can": {...}, "rs485": "socket://..."}
    {"op": "status"}     -> {"ok": true, "t_ns": ..., "packs": [{"state": "Standby", ...}]}
    {"op": "shutdown"}   -> {"ok": true}

``advance`` is what keeps the two processes in step: before advancing, the emulator waits
until it has received the ``rig_frames`` CAN frames the rig says it sent (they travel on the
socketcand connection, not this one), and the reply says how many frames it has sent in all,
so the rig reads its CAN port until it has them. No frame races the time channel. ``cyclic``
runs the rig bus's ``send_periodic`` in the emulator's time (the PCS heartbeat); it waits for
``rig_frames`` the same way, so frames the rig sent before reach the pack first. An error
comes back as ``{"ok": false, "error": "..."}``; nothing a client sends crashes the emulator.
"""
from __future__ import annotations

import inspect
import json
import socketserver
import threading

import can

from rig.emulator.bench import EmulatedBench
from rig.emulator.faults import Faults

#: The fault-insertion calls a remote rig may make: the public methods of Faults.
FAULTS = {name for name, fn in inspect.getmembers(Faults, inspect.isfunction) if not name.startswith("_")}
RIG_FRAMES_TIMEOUT_S = 5.0


class _Handler(socketserver.StreamRequestHandler):
    disable_nagle_algorithm = True  # one small reply per request: send it now
    def handle(self) -> None:
        server: ControlServer = self.server  # type: ignore[assignment]
        server.clients += 1
        try:
            for raw in self.rfile:
                try:
                    request = json.loads(raw)
                    reply = {"ok": True, **server.execute(request)}
                except Exception as exc:  # noqa: BLE001 - any bad request gets an error reply
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                self.wfile.write(json.dumps(reply).encode() + b"\n")
                if reply.get("bye"):
                    return
        finally:
            server.clients -= 1
            server.on_client_gone()


class ControlServer(socketserver.ThreadingTCPServer):
    """Serves the control port of one :class:`EmulatedBench` (see the module docstring)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bench: EmulatedBench, *, virtual: bool = True):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bench, self.virtual = bench, virtual
        self.clients = 0
        self.stopped = threading.Event()
        self._lock = threading.Lock()  # one advance or fault at a time
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="emulator-control",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def on_client_gone(self) -> None:
        """The rig went away (it may have been killed): its instruments' watchdogs and the SCPI
        servers' disconnect handling make the bench safe; the emulator keeps running."""

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
                self.stopped.set()
                return {"bye": True}
        raise ValueError(f"unknown op {op!r}; choices: advance, fault, cyclic, can_listeners, endpoints, "
                         "status, stop_instrument, shutdown")

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
            raise ValueError(f"unknown cyclic action {action!r}; choices: start, stop")
        self._wait_rig_frames(int(request.get("rig_frames", 0)))
        frames = [can.Message(arbitration_id=int(i), is_extended_id=bool(ext), data=bytes.fromhex(data))
                  for i, ext, data in request["frames"]]
        duration = request.get("duration_s")
        return {"handle": self.bench.start_cyclic(frames, float(request["period_s"]),
                                                  None if duration is None else float(duration))}

    def _wait_rig_frames(self, rig_frames: int) -> None:
        if not self.bench.wait_received(rig_frames, RIG_FRAMES_TIMEOUT_S):
            raise TimeoutError(f"the rig sent {rig_frames} CAN frames, {self.bench.can_received} arrived "
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
