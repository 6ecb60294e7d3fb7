"""Recordings of one test: every CAN frame in a python-can log, every sample and step in a CSV.

Per test, in the run's recording directory, named after the pytest node id (:func:`file_stem`:
readable, the test's parameters kept, unique within a run):

- ``<stem>.asc`` or ``<stem>.blf``: every CAN frame, written by python-can's own writers
  (:class:`can.ASCWriter`, :class:`can.BLFWriter`); the recorder is a listener
  (``on_message_received``) of the PCS stand-in. Read it back with :func:`read_can`;
- ``<stem>.samples.csv``: one row per supervisor sample (``kind = sample``: time, quantity,
  value) and per instrument command (``kind = step``: time, instrument, command, reply, error,
  duration). Read it back with :func:`read_samples`.

**A log as a Vector tool expects it** (CANalyzer, CANoe, the BLF/ASC viewers):

- *one channel*: the PCS bus is channel :data:`CAN_CHANNEL` (1) in every file, whatever the
  interface calls it (python-can's writers would number a channel named
  ``packrig-emulator-4711-3`` as 4);
- *direction*: frames the rig sent itself (the PCS heartbeat 0x305) come with ``is_rx = False``
  from the stand-in and are written as ``Tx``, the pack's frames as ``Rx``;
- *a real start time*: frames stamped in rig-clock seconds (virtual time, or an emulator's own
  time, anything before 1990) are dated ``time_origin`` + their time, where ``time_origin`` is
  the wall time of the rig clock's 0 (by default: the wall time when the recording opened,
  less the clock's time then), so the BLF header's start time and the ASC's ``date`` and
  ``Begin Triggerblock`` lines say when the test ran. Frames already in Unix time (a real
  interface) are written as they are. ``time_origin=0.0`` keeps rig-clock times, dated 1970:
  two identical virtual runs then give byte-identical logs.

**A killed run keeps its recording.** A thread flushes both files every ``flush_s`` seconds of
*wall* time, since a kill happens in wall time whatever the rig clock does, and between flushes
nothing reaches the files (1 MiB buffers, more than a busy bus fills in a second). A SIGKILL
therefore loses at most the last ``flush_s`` seconds; a kill in the middle of a flush leaves a
torn last record, which both readers here skip.

**ASC or BLF.** python-can 4.6's ``BLFWriter`` has no public flush: frames wait in memory until
128 KiB (minutes of a pack's traffic) make a compressed container, or until ``stop()``, which
also writes the file header. The recorder calls its private ``_flush()`` (one complete container)
and rewrites the header after it (``_write_header``: object count, start and last frame time),
so a killed BLF reads to its last flush with its start time in the header. A killed ASC is the
same text as a closed one minus the last line, with public API only.

**Rig time of a frame.** The CSV says how the log's times map to the rig clock: at the first
frame written, ``can_first_frame_s`` (that frame's own timestamp) and ``can_clock_offset_s``
(frame time minus rig time: 0 on a virtual clock, where frames carry the rig clock's time; on a
wall clock, estimated at that frame). :func:`frame_times` applies them.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import re
import struct
import threading
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import can
import pytest

from instruments.scpi import Step
from rig.clock import Clock
from rig.errors import RigError

#: The channel of the PCS bus in every CAN log, numbered as Vector's tools do (from 1).
CAN_CHANNEL = 1
#: Unix time of 1990-01-01: an earlier timestamp is rig-clock time, not wall time (python-can's
#: BLF writer draws the same line).
UNIX_1990 = 631152000.0
#: Where the ``bench`` fixture keeps a test's :class:`Recorder` (``item.stash[RECORDING]``).
RECORDING = pytest.StashKey["Recorder"]()
#: columns of ``<test>.samples.csv``; a sample fills name/value, a step name (instrument) to duration_s.
COLUMNS = ("time_s", "kind", "name", "value", "command", "reply", "error", "duration_s")
_BUFFER_BYTES = 1 << 20  # larger than flush_s of a busy bus, so only a flush writes to the file
#: Longest stem: with ``.samples.csv`` well within every file system's 255 bytes, and a run
#: folder's path, within Windows' 260 characters for a short one.
MAX_STEM = 150
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DatedAscWriter(can.ASCWriter):
    """python-can's ASC writer whose ``date`` line is the time given, not the wall clock's now
    (the ``Begin Triggerblock`` line is the first frame's time, as python-can writes it), and
    whose dates carry three digits of milliseconds, as Vector writes them (python-can 4.6 writes
    ``.34`` for 34 ms, which a reader takes for 340 ms)."""

    def __init__(self, file, *, channel: int, started: float):
        self._date: datetime | None = datetime.fromtimestamp(started)
        super().__init__(file, channel=channel)

    def _format_header_datetime(self, dt: datetime) -> str:
        date, self._date = self._date, None  # the first call formats the ``date`` line
        dt = dt if date is None else date
        return dt.strftime(f"%a %b %d %H:%M:%S.{dt.microsecond // 1000:03d} %Y")


def file_stem(node_id: str) -> str:
    """A file name (no suffix) from a pytest node id: readable, the parameters kept, unique.

    ``testcases/test_protections.py::test_trips[cell_over_voltage-L2]`` ->
    ``testcases.test_protections.test_trips--cell_over_voltage-L2``: the module path with dots,
    ``::`` as a dot, the parameters after ``--``. A name that had to lose information (a
    character outside ``A-Z a-z 0-9 . _ -``, or cut to :data:`MAX_STEM`) ends in ``-`` and six hex
    digits of the node id's SHA-1, so two tests of a run never share a stem.
    """
    where, bracket, params = node_id.partition("[")
    params = params[:-1] if bracket and params.endswith("]") else params
    path, _, name = where.partition("::")
    path = path[:-3] if path.endswith(".py") else path
    head = ".".join(p for p in (path.replace("/", ".").replace("\\", "."), name.replace("::", ".")) if p)
    tail = f"--{params}" if bracket else ""
    safe_head, safe_tail = _UNSAFE.sub("_", head).strip("._-") or "test", _UNSAFE.sub("_", tail)
    lossy = (safe_head, safe_tail) != (head, tail)
    room = MAX_STEM - 7  # a cut name gets "-" and 6 hex digits
    if len(safe_head) + len(safe_tail) > MAX_STEM:  # cut the test's name, keep the parameters
        safe_tail = safe_tail[: room // 2]
        safe_head, lossy = safe_head[: room - len(safe_tail)], True
    stem = safe_head + safe_tail
    return f"{stem}-{hashlib.sha1(node_id.encode()).hexdigest()[:6]}" if lossy else stem


class Recorder:
    """The recording of one test: a CAN log and a samples CSV, flushed every ``flush_s`` s.

    :param directory: folder of the recordings (created if missing).
    :param test_name: the pytest node id; :func:`file_stem` makes the file names. A rerun overwrites.
    :param can_format: ``"asc"`` or ``"blf"``.
    :param flush_s: wall seconds between two flushes, > 0; a kill loses at most this much.
    :param clock: the rig clock, which dates the steps (they carry no time of their own).
    :param time_origin: Unix time of the rig clock's 0, which dates frames stamped in rig-clock
        time (see the module docstring); default: now, less the clock's time now. ``0.0`` keeps
        rig-clock times (deterministic files).
    :param can_channel: the channel number written for every frame (default :data:`CAN_CHANNEL`).
    :raises ValueError: for an unknown format or a flush period <= 0.
    """

    def __init__(self, directory: str | Path, test_name: str, can_format: str = "blf",
                 flush_s: float = 1.0, *, clock: Clock, time_origin: float | None = None,
                 can_channel: int = CAN_CHANNEL):
        if can_format not in ("asc", "blf"):
            raise ValueError(f"can_format must be 'asc' or 'blf', got {can_format!r}")
        if not flush_s > 0:
            raise ValueError(f"flush_s must be > 0 s, got {flush_s!r}")
        self.clock, self.flush_s, self.can_format = clock, flush_s, can_format
        #: Unix time of the rig clock's 0: the date of frames stamped in rig-clock time.
        self.time_origin = time.time() - clock.now() if time_origin is None else time_origin
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        #: the file name of this test's recordings, without suffix.
        self.stem = file_stem(test_name)
        #: the CAN log and the samples CSV of this test.
        self.can_path = directory / f"{self.stem}.{can_format}"
        self.samples_path = directory / f"{self.stem}.samples.csv"
        #: the plot made from this recording after the test (``<stem>.png``), once made; else None.
        self.plot_path: Path | None = None
        #: frames and CSV rows written so far.
        self.frames = self.rows = 0
        self._shift = 0.0  # added to every frame's timestamp in the log; set at the first frame
        if can_format == "blf":
            can_file = open(self.can_path, "wb", buffering=_BUFFER_BYTES)  # noqa: SIM115 - the writer closes it
            self._can: can.ASCWriter | can.BLFWriter = can.BLFWriter(can_file, channel=can_channel)
        else:
            can_file = open(self.can_path, "w", encoding="ascii", buffering=_BUFFER_BYTES)  # noqa: SIM115
            self._can = DatedAscWriter(can_file, channel=can_channel, started=self.time_origin + clock.now())
        self._csv_file = open(self.samples_path, "w", encoding="utf-8", newline="",  # noqa: SIM115
                              buffering=_BUFFER_BYTES)
        self._csv = csv.writer(self._csv_file, lineterminator="\n")
        self._csv.writerow(COLUMNS)
        self._closed = False
        self._failure: OSError | None = None
        # The stand-in's pump, the supervisor and the test all write; the flusher flushes.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.flush()  # headers on disk now: a run killed before the first tick leaves valid, empty files
        self._flusher = threading.Thread(target=self._flush_every, name=f"recorder {self.stem}", daemon=True)
        self._flusher.start()

    def on_message_received(self, msg: can.Message) -> None:
        """Log one CAN frame (python-can listener); frames after :meth:`close` are ignored.

        The frame is written on :data:`CAN_CHANNEL`, as ``Tx`` if ``msg.is_rx`` is False, dated
        as the module docstring says; the message itself is not changed."""
        with self._lock:
            if self._writable():
                if self.frames == 0:
                    self._first_frame(msg)
                out = copy.copy(msg)
                out.channel = None  # the writer's channel: the same in every file
                out.timestamp = msg.timestamp + self._shift
                self._can.on_message_received(out)
                self.frames += 1

    def _first_frame(self, msg: can.Message) -> None:
        now = self.clock.now()
        self._shift = self.time_origin if msg.timestamp < UNIX_1990 else 0.0
        # on a virtual clock, frames carry the rig clock's time; on a wall clock, the
        # interface's (Unix time, or an emulator's own): the difference seen now
        offset = 0.0 if getattr(self.clock, "kind", "") == "virtual" else msg.timestamp - now
        self._row(now, "sample", "can_first_frame_s", msg.timestamp)
        self._row(now, "sample", "can_clock_offset_s", offset)

    def record_sample(self, t: float, **values: Any) -> None:
        """Log one supervisor sample: a row per quantity, e.g. ``record_sample(12.5, pack_v=53.1)``.

        :param t: the sample's clock time, s.
        """
        with self._lock:
            if self._writable():
                for quantity, value in values.items():
                    self._row(t, "sample", quantity, value)

    def record_step(self, step: Step) -> None:
        """Log one instrument command (an ``instruments.scpi`` listener), dated when it is
        recorded: the end of the step, by the rig clock."""
        with self._lock:
            if self._writable():
                self._row(self.clock.now(), "step", step.instrument, "", step.command, step.reply,
                          step.error, step.duration_s)

    def flush(self) -> None:
        """Push everything logged so far to the files (the flusher thread does it every flush_s)."""
        with self._lock:
            if self._closed:
                return
            if isinstance(self._can, can.BLFWriter):
                self._flush_blf(self._can)
            self._can.file.flush()
            self._csv_file.flush()

    @staticmethod
    def _flush_blf(writer: can.BLFWriter) -> None:
        # python-can 4.6 has no public flush (see the module docstring): whole containers, then
        # the header rewritten in place (fixed size) with the count and times so far.
        while writer._buffer_size:  # noqa: SLF001
            writer._flush()  # noqa: SLF001
        end = writer.file.tell()
        writer.file.seek(0)
        writer._write_header(end)  # noqa: SLF001
        writer.file.seek(end)

    def close(self) -> None:
        """Flush and close both files; the BLF header is written now (safe to call twice)."""
        self._stop.set()
        if self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._can.stop()
            finally:
                self._csv_file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _writable(self) -> bool:
        if self._failure is not None:
            raise RigError(f"recording to {self.can_path.parent} failed: {self._failure}") from self._failure
        return not self._closed

    def _row(self, t: float, kind: str, name: str, value: Any, command: str = "", reply: str | None = "",
             error: str | None = "", duration_s: float | str = "") -> None:
        self._csv.writerow((t, kind, name, value, command, reply or "", error or "", duration_s))
        self.rows += 1

    def _flush_every(self) -> None:
        # Wall time on purpose: virtual time may stand still while the world computes, or run
        # an hour ahead in a second; a kill comes in wall time.
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except OSError as error:  # disk full, file gone: the next record raises it
                self._failure = error
                return


def read_can(path: str | Path) -> list[can.Message]:
    """Read a CAN recording back with python-can's reader, skipping a last record torn by a kill.

    Times count from the first frame in ASC (python-can's default); a BLF's are the dated
    times the recorder wrote (see the module docstring), or count from its first frame if its
    header has no start time (``time_origin=0.0`` on a virtual clock). :func:`frame_times` puts
    them on the rig clock.

    :raises ValueError: for a suffix other than .asc or .blf.
    """
    path = Path(path)
    if path.suffix == ".asc":
        data = path.read_bytes()
        text = data[: data.rfind(b"\n") + 1].decode("ascii")  # up to the last complete line
        return list(can.ASCReader(io.StringIO(text)))
    if path.suffix != ".blf":
        raise ValueError(f"not a CAN recording (.asc or .blf): {path}")
    size, frames = path.stat().st_size, []
    with can.BLFReader(path) as reader:
        try:
            frames.extend(reader)
        except (struct.error, zlib.error):
            # python-can reads a container cut short up to its last whole frame, but an object
            # header cut short raises; that is only a kill's torn tail if it is the end of the file.
            if reader.file.tell() < size:
                raise
    return frames


def frame_times(frames: list[can.Message], samples: list[dict[str, Any]]) -> list[float]:
    """The rig-clock time of each frame :func:`read_can` returned, from the recording's CSV rows
    ``can_first_frame_s`` and ``can_clock_offset_s`` (see the module docstring): log times count
    from the first frame in every format, so the first frame's own time and the offset of the
    frames' clock put them back on the rig clock."""
    if not frames:
        return []
    found = {r["name"]: r["value"] for r in samples if r["name"] in ("can_first_frame_s", "can_clock_offset_s")}
    first = found.get("can_first_frame_s", frames[0].timestamp)
    offset = found.get("can_clock_offset_s", 0.0)
    base = first - offset - frames[0].timestamp
    return [m.timestamp + base for m in frames]


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """Read a samples CSV back: one dict per row, keys :data:`COLUMNS`, a last row torn by a kill skipped.

    ``time_s`` is a float; ``value`` a float where it reads as one (else the text, e.g. ``"Run"``);
    ``duration_s`` a float or None; empty ``reply``/``error`` are None.
    """
    data = Path(path).read_bytes()
    text = data[: data.rfind(b"\n") + 1].decode("utf-8")  # up to the last complete line
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: not a samples CSV (expected the header {','.join(COLUMNS)})")
    if len(rows) > 1 and len(rows[-1]) != len(COLUMNS):
        rows.pop()  # a text field with a newline, cut inside it
    out = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(COLUMNS):
            raise ValueError(f"{path}: row {number} has {len(row)} fields, not {len(COLUMNS)}")
        record = dict(zip(COLUMNS, row))
        record["time_s"] = float(record["time_s"])
        record["value"] = _number(record["value"])
        record["duration_s"] = float(record["duration_s"]) if record["duration_s"] else None
        record["reply"] = record["reply"] or None
        record["error"] = record["error"] or None
        out.append(record)
    return out


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
