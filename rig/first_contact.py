"""First contact with a real bench, before any test: who answers, and a stop naming who does not.

A bench file can name an instrument that is switched off, on another address, or another model.
Without this step every test would wait for its own timeouts and fail on something unrelated.
So a run on a real bench (a bench file without ``[emulator]``) starts here:

- every instrument is opened (VISA, with the bench file's timeout) and asked ``*IDN?`` through its
  driver's ``identify()``, which also checks the reply names the model the bench file declares;
- the CAN interface is opened and listened to for ``listen_s``: a frame heard, and the pack's
  manufacturer name if 0x35E comes by (the pack identity of the manifest);
- the RS485 port is opened and listened to (two packs in parallel talk; one alone is silent).

Nothing is switched or set: only identification queries are sent. The result is a table; an
instrument, the CAN interface or the RS485 port that fails is a stop (exit code 4, a usage error:
the bench file does not describe the bench that is there), naming it. A silent CAN bus is shown,
not a stop: a pack that is off sends nothing until a test powers it on (nor does a lone pack
on RS485 until asked).
"""
from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass

from rig.files.bench_file import LoadedBench

INSTRUMENTS = ("psu", "eload", "dmm", "scanner", "chamber", "io")


@dataclass
class Contact:
    """One row of the first-contact table."""

    part: str        #: "psu" ... "io", "can", "rs485"
    address: str     #: model and address, as the bench file gives them
    ok: bool         #: answered as expected (a stop when false)
    answer: str      #: the identification, what was heard, or why it failed
    warning: bool = False  #: answered, but something is worth a look (a silent CAN bus)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def check_instruments(loaded: LoadedBench) -> list[Contact]:
    import pyvisa

    from instruments import driver_class

    rows: list[Contact] = []
    try:
        rm = pyvisa.ResourceManager("@py")
    except Exception as exc:  # noqa: BLE001 - no VISA library at all: every instrument fails
        return [Contact(name, "", False, _one_line(exc)) for name in INSTRUMENTS
                if getattr(loaded.file.instruments, name) is not None]
    for name in INSTRUMENTS:
        spec = getattr(loaded.file.instruments, name)
        if spec is None:
            continue
        where = f"{spec.model} at {spec.resource}"
        resource = None
        try:
            resource = rm.open_resource(spec.resource, read_termination="\n", write_termination="\n",
                                        timeout=round(spec.timeout_s * 1000))
            idn = driver_class(spec.model)(resource, name).identify()
            rows.append(Contact(name, where, True, " ".join(str(idn).split())))
        except Exception as exc:  # noqa: BLE001 - any failure is this instrument's row
            rows.append(Contact(name, where, False, f"no answer: {_one_line(exc)}"))
        finally:
            if resource is not None:
                with suppress(Exception):
                    resource.close()
    with suppress(Exception):
        rm.close()
    return rows


def check_can(loaded: LoadedBench, listen_s: float) -> tuple[Contact, dict | None]:
    """Open the CAN interface and listen; returns the row and the pack identity heard (0x35E)."""
    import can

    from rig.protocol import can_frames

    c = loaded.file.can
    where = f"{c.interface} {c.channel} @ {c.bitrate} bit/s"
    try:
        bus = can.Bus(interface=c.interface, channel=c.channel, bitrate=c.bitrate, **c.options)
    except Exception as exc:  # noqa: BLE001
        return Contact("can", where, False, f"cannot open: {_one_line(exc)}"), None
    heard, name = [], None
    try:
        deadline = time.monotonic() + listen_s
        while time.monotonic() < deadline and name is None:
            msg = bus.recv(timeout=max(0.0, deadline - time.monotonic()))
            if msg is None:
                break
            heard.append(msg.arbitration_id)
            with suppress(Exception):
                decoded = can_frames.decode(msg)
                if decoded.name == "ManufacturerName":
                    name = str(decoded.signals.get(can_frames.NAME_SIGNAL, "")).strip()
    finally:
        with suppress(Exception):
            bus.shutdown()
    if not heard:
        return Contact("can", where, True, f"opened; no frame in {listen_s:g} s (pack off?)", warning=True), None
    text = f"heard 0x{heard[0]:X}" + (f", manufacturer {name!r} (0x35E)" if name else "")
    return Contact("can", where, True, text), ({"can_name": name} if name else None)


def check_rs485(loaded: LoadedBench, listen_s: float = 0.5) -> Contact | None:
    """Open the RS485 port and listen: two packs in parallel talk (the master polls the slave);
    one pack alone is silent until asked, so silence is shown, not a stop."""
    if loaded.file.rs485 is None:
        return None
    import serial

    r = loaded.file.rs485
    where = f"{r.url} @ {r.baudrate} Bd"
    try:
        port = serial.serial_for_url(r.url, baudrate=r.baudrate, timeout=listen_s)
    except Exception as exc:  # noqa: BLE001
        return Contact("rs485", where, False, f"cannot open: {_one_line(exc)}")
    heard = b""
    try:
        heard = port.read(256)
    except Exception as exc:  # noqa: BLE001
        return Contact("rs485", where, False, f"opened, then: {_one_line(exc)}")
    finally:
        with suppress(Exception):
            port.close()
    if not heard:
        return Contact("rs485", where, True, f"opened; silent for {listen_s:g} s (one pack talks only when asked)",
                       warning=True)
    return Contact("rs485", where, True, f"opened; heard {len(heard)} bytes")


def first_contact(loaded: LoadedBench, listen_s: float = 3.0) -> tuple[list[Contact], dict | None]:
    """Every instrument, the CAN interface and the RS485 port of a real bench; see the module doc.

    :returns: the table's rows and the pack identity heard (or None).
    """
    rows = check_instruments(loaded)
    can_row, identity = check_can(loaded, listen_s)
    rows.append(can_row)
    rs485 = check_rs485(loaded)
    if rs485 is not None:
        rows.append(rs485)
    return rows, identity


def table(rows: list[Contact], bench_name: str) -> str:
    """The first-contact table as text (one row per part)."""
    width = max(len(r.address) for r in rows) if rows else 10
    lines = [f"first contact with bench {bench_name!r}:"]
    for r in rows:
        mark = "ok  " if r.ok and not r.warning else ("??  " if r.ok else "FAIL")
        lines.append(f"  {mark} {r.part:8} {r.address:{width}}  {r.answer}")
    return "\n".join(lines) + "\n"


def stop_message(rows: list[Contact], bench_path) -> str | None:
    """The one line that stops the run, naming what did not answer (None: all did)."""
    failed = [r for r in rows if not r.ok]
    if not failed:
        return None
    named = "; ".join(f"{r.part} ({r.address}): {r.answer}" for r in failed)
    return f"first contact failed, check the bench and {bench_path}: {named}"
