"""The emulator's control port: its vocabulary, shared by the server and the rig's client.

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
    {"op": "stop_instrument", "name": "dmm"}  -> {"ok": true}  (that instrument stops answering)
    {"op": "shutdown"}   -> {"ok": true, "bye": true}

``advance`` keeps the two processes in step: before advancing, the emulator waits until it has
received the ``rig_frames`` CAN frames the rig says it sent (they travel on the socketcand
connection, not this one), and the reply says how many frames it has sent in all, so the rig
reads its CAN port until it has them. ``cyclic`` waits for ``rig_frames`` the same way. An error
comes back as ``{"ok": false, "error": "..."}``.

The server is :mod:`emulator.transports.control_port`, the client
:mod:`rig.emulator_client.remote_emulator`; this module is all they share (no import of either).
"""
from __future__ import annotations

import json

import can

#: the requests the control port serves
OPS = ("advance", "fault", "cyclic", "can_listeners", "endpoints", "status", "stop_instrument", "shutdown")
#: what a ``cyclic`` request may ask
CYCLIC_ACTIONS = ("start", "stop")
#: the fault-insertion calls a remote rig may make: the public methods of the emulator's
#: ``emulator.pack.faults.Faults`` (tests/test_backends.py checks the two agree)
FAULTS = frozenset({
    "offset_group", "force_group", "force_voltage", "offset_current", "temperature_sensor", "force_temperature",
    "sensor_failure", "relay_stuck", "precharge_failure", "rs485_cut", "can_silence", "age", "set_soc",
    "soc_estimate", "clear",
})
#: the parts of an ``endpoints`` reply that say where the bench's ports are
ENDPOINTS = ("instruments", "can", "rs485", "rs485_console")
#: bytes of one request line at most, its newline included (the largest real one is ~200 bytes)
MAX_REQUEST = 64 * 1024


def request_line(op: str, **fields) -> bytes:
    """One request as it goes on the wire (a JSON line)."""
    return json.dumps({"op": op, **fields}).encode() + b"\n"


def reply_line(reply: dict) -> bytes:
    """One reply as it goes on the wire (a JSON line)."""
    return json.dumps(reply).encode() + b"\n"


def frames_to_wire(frames: list[can.Message]) -> list[list]:
    """CAN frames as a ``cyclic`` request carries them: ``[ID, extended, data in hex]``."""
    return [[f.arbitration_id, f.is_extended_id, bytes(f.data).hex()] for f in frames]


def frames_from_wire(rows: list[list]) -> list[can.Message]:
    """The CAN frames of a ``cyclic`` request."""
    return [can.Message(arbitration_id=int(i), is_extended_id=bool(ext), data=bytes.fromhex(data))
            for i, ext, data in rows]
