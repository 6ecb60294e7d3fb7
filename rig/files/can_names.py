"""Names in a pack spec or firmware profile that point into the DBC must exist there.

A spec or profile says which CAN bit reports what (``can_alarm = "AlarmHighVoltage"``). A typo
would make a test watch a bit that does not exist, so every such name is checked on load and a
wrong one is reported like any other bad value: file, dotted field, the allowed choices.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from rig.errors import ConfigError
from rig.protocol.can_frames import DATABASE


def _signals(frame: str) -> list[str]:
    return [s.name for s in DATABASE.get_message_by_name(frame).signals]


#: field name -> the names allowed there
CHOICES: dict[str, list[str]] = {
    "can_alarm": [n for n in _signals("ProtectionsAlarms") if n.startswith("Alarm")],
    "can_protection": [n for n in _signals("ProtectionsAlarms") if n.startswith("Protection")],
    "failure_bit": [n for n in _signals("DetailStatus_Master") if n.startswith("Failure")],
    "frames": [m.name for m in DATABASE.messages if m.senders == ["BMS"] and not m.is_extended_frame],
}


def check_can_names(model: BaseModel, path: str | Path) -> None:
    """Walk ``model``; raise :class:`ConfigError` for the first CAN name the DBC lacks."""
    for field, value in _walk(model, ()):
        allowed = CHOICES.get(field[-1]) if isinstance(field[-1], str) else CHOICES.get(field[-2])
        if allowed is None or value is None:
            continue
        if value not in allowed:
            raise ConfigError(path, ".".join(map(str, field)),
                              f"{value!r} is not in the DBC; allowed: {', '.join(allowed)}")


def _walk(node, prefix: tuple):
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _walk(getattr(node, name), prefix + (name,))
    elif isinstance(node, tuple) and node and all(isinstance(v, str) for v in node):
        for i, v in enumerate(node):
            yield prefix + (i,), v
    elif isinstance(node, tuple):
        for i, v in enumerate(node):
            yield from _walk(v, prefix + (i,))
    elif prefix:
        yield prefix, node
