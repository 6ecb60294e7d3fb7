"""Instrument drivers: transport and SCPI dialect, nothing about batteries.

Drivers are plug-ins, found by the model name a bench file gives (as python-can finds its
interfaces): one entry of :data:`DRIVERS` per model, imported only when a bench uses it.
"""
from __future__ import annotations

import importlib

#: model name in a bench file -> (module, class)
DRIVERS: dict[str, tuple[str, str]] = {
    "keysight_n8900": ("instruments.keysight_n8900", "KeysightN8900"),
    "itech_it8900": ("instruments.itech_it8900", "ItechIT8900"),
    "keysight_34465a": ("instruments.keysight_34465a", "Keysight34465A"),
    "keysight_daq970a": ("instruments.keysight_daq970a", "KeysightDaq970A"),
    "keysight_daq970a_io": ("instruments.keysight_daq970a_io", "KeysightDaq970AIo"),
    "espec_sh": ("instruments.espec_sh", "EspecSh"),
}


def driver_class(model: str) -> type:
    """The driver class of ``model``; raises ``ValueError`` listing the known models."""
    try:
        module, name = DRIVERS[model]
    except KeyError:
        raise ValueError(f"no driver for instrument model {model!r}; known: {', '.join(sorted(DRIVERS))}") from None
    return getattr(importlib.import_module(module), name)
