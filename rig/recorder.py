"""Recordings of one test: every CAN frame in a python-can log, every sample and step in a CSV.

Per test, in the bench file's recording directory, named after the pytest node id:

- ``<test>.asc`` or ``<test>.blf``: every CAN frame, written by python-can's own writers
  (:class:`can.ASCWriter`, :class:`can.BLFWriter`); the recorder is a listener
  (``on_message_received``) of the PCS stand-in. Read it back with :func:`read_can`;
- ``<test>.samples.csv``: one row per supervisor sample (``kind = sample``: time, quantity,
  value) and per instrument command (``kind = step``: time, instrument, command, reply, error,
  duration). Read it back with :func:`read_samples`.

**A killed run keeps its recording.** A thread flushes both files every ``flush_s`` seconds of
*wall* time, since a kill happens in wall time whatever the rig clock does, and between flushes
nothing reaches the files (1 MiB buffers, more than a busy bus fills in a second). A SIGKILL
therefore loses at most the last ``flush_s`` seconds; a kill in the middle of a flush leaves a
torn last record, which both readers here skip.

**ASC or BLF.** python-can 4.6's ``BLFWriter`` has no public flush: frames wait in memory until
128 KiB (minutes of a pack's traffic) make a compressed container, or until ``stop()``, which
also writes the file header. Its private ``_flush()`` writes the buffer as one complete
container, and that is what the recorder calls; python-can's reader then reads a killed file
to its last flush. But the header of a killed BLF is never written (0 objects, no start time),
so its frame times count from the first frame (also in every BLF of virtual time, whose
timestamps predate 1990), and tools that trust the header may refuse it. A killed ASC is the
same text as a closed one minus the last line, with public API only: prefer ``asc``.
The first frame's own timestamp is in the CSV (quantity ``can_first_frame_s``), which puts the
log's relative times back on the frames' time base.
"""
from __future__ import annotations

from datetime import datetime

import csv
import hashlib
import io
import re
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import can

from instruments.scpi import Step
from rig.clock import Clock
from rig.errors import RigError

#: python-can writer of each format the bench file allows.
class VirtualTimeAscWriter(can.ASCWriter):
    """python-can's ASC writer with the header dated at the virtual clock's origin.

    The stock writer dates its header with the wall clock, so two identical runs in virtual time
    would give different files; dated at time 0 of the run they are byte-identical.
    """

    def _format_header_datetime(self, dt: datetime) -> str:
        return super()._format_header_datetime(datetime.fromtimestamp(0))


CAN_WRITERS = {"asc": can.ASCWriter, "blf": can.BLFWriter}
#: columns of ``<test>.samples.csv``; a sample fills name/value, a step name (instrument) to duration_s.
COLUMNS = ("time_s", "kind", "name", "value", "command", "reply", "error", "duration_s")
_BUFFER_BYTES = 1 << 20  # larger than flush_s of a busy bus, so only a flush writes to the file


def file_stem(test_name: str) -> str:
    """A file name (no suffix) from a pytest node id: ``tests/t.py::test_x[a/b]`` -> ``tests_t.py__test_x_a_b``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", test_name).strip("._") or "test"
    if len(stem) > 120:  # keep names within file-system limits, and still unique
        stem = f"{stem[:100]}-{hashlib.sha1(test_name.encode()).hexdigest()[:12]}"
    return stem


class Recorder:
    """The recording of one test: a CAN log and a samples CSV, flushed every ``flush_s`` s.

    :param directory: folder of the recordings (created if missing).
    :param test_name: the pytest node id; sanitised into the file names. A rerun overwrites.
    :param can_format: ``"asc"`` or ``"blf"`` (see the module docstring: prefer ``"asc"``).
    :param flush_s: wall seconds between two flushes, > 0; a kill loses at most this much.
    :param clock: the rig clock, which dates the steps (they carry no time of their own).
    :raises ValueError: for an unknown format or a flush period <= 0.
    """

    def __init__(self, directory: str | Path, test_name: str, can_format: str = "blf",
                 flush_s: float = 1.0, *, clock: Clock):
        if can_format not in CAN_WRITERS:
            raise ValueError(f"can_format must be one of {sorted(CAN_WRITERS)}, got {can_format!r}")
        if not flush_s > 0:
            raise ValueError(f"flush_s must be > 0 s, got {flush_s!r}")
        self.clock, self.flush_s, self.can_format = clock, flush_s, can_format
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = file_stem(test_name)
        #: the CAN log and the samples CSV of this test.
        self.can_path = directory / f"{stem}.{can_format}"
        self.samples_path = directory / f"{stem}.samples.csv"
        #: frames and CSV rows written so far.
        self.frames = self.rows = 0
        if can_format == "blf":
            can_file = open(self.can_path, "wb", buffering=_BUFFER_BYTES)  # noqa: SIM115 - the writer closes it
        else:
            can_file = open(self.can_path, "w", encoding="ascii", buffering=_BUFFER_BYTES)  # noqa: SIM115
        writer = CAN_WRITERS[can_format]
        if can_format == "asc" and getattr(clock, "kind", "") == "virtual":
            writer = VirtualTimeAscWriter
        self._can = writer(can_file)
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
        self._flusher = threading.Thread(target=self._flush_every, name=f"recorder {stem}", daemon=True)
        self._flusher.start()

    def on_message_received(self, msg: can.Message) -> None:
        """Log one CAN frame (python-can listener); frames after :meth:`close` are ignored."""
        with self._lock:
            if self._writable():
                if self.frames == 0:
                    self._row(self.clock.now(), "sample", "can_first_frame_s", msg.timestamp)
                self._can.on_message_received(msg)
                self.frames += 1

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
                self._can._flush()  # noqa: SLF001 - no public flush in python-can 4.6; see module docstring
            self._can.file.flush()
            self._csv_file.flush()

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

    Times count from the first frame in ASC (python-can's default) and in a killed or
    virtual-time BLF (see the module docstring); a closed BLF of Unix times keeps them.

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
