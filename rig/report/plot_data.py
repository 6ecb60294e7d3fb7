"""What a test's plot shows, read back from the test's recording after the test.

Two views of the pack, on one time axis (the rig clock, s):

- **the rig's**, from the samples CSV: every supervisor sample (``pack_v`` on the DMM,
  ``psu_a``/``eload_a`` read-backs, ``group1_v``.. on the cell taps, ``case1_c``.. on the
  thermocouples, relay states), every light sample (rows ``light:<name>``, 1 lit / 0 dark) and
  the marks the test and the stimulus helpers noted (rows ``mark``);
- **the BMS's**, from the CAN log: the master pack's own reports (0x356 pack voltage, current and
  temperature; the detail frames' 16 group voltages, min/max group, temperatures, protection
  levels and state), decoded through pack.dbc. Voltage and temperature faults act on the BMS's
  sense lines only, so a protection's stimulus shows here and not on the rig's cell taps.

A long test is thinned to about ``max_points`` reports per frame (evenly in time), but a status
frame (levels, state) is kept whenever its payload changes, so no level change is lost.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from rig.protocol import can_frames
from rig.recorder import COLUMNS, frame_times, read_can

#: The master pack's address: the plot shows the pack under test (pack 1).
MASTER = 2
#: Frames whose every change matters (a level, a state): kept whenever the payload changes.
STATUS_FRAMES = ("DetailProtection", "DetailStatus")
#: Frames of measured values: thinned evenly in time on a long test.
VALUE_FRAMES = ("PackMeasurements", "StateOfCharge", "DetailGroupVoltages1to4", "DetailGroupVoltages5to8",
                "DetailGroupVoltages9to12", "DetailGroupVoltages13to16", "DetailTemperatures", "DetailSummary")
#: Samples CSV rows that are not quantities of the pack.
_NOT_SAMPLES = ("can_first_frame_s", "can_clock_offset_s")


@dataclass
class Series:
    """One quantity over time: times (rig clock, s) and values, oldest first."""

    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def add(self, t: float, v: float) -> None:
        self.t.append(t)
        self.v.append(v)


@dataclass
class TestRecording:
    """A test's recording as the plot reads it (see the module docstring)."""

    #: supervisor quantity -> series (``pack_v``, ``group3_v`` ...; ``taps_low_v`` and ``taps_high_v``:
    #: the lowest and highest of the 16 cell taps of each sample)
    rig: dict[str, Series]
    bms: dict[str, Series]             #: DBC signal of the master's reports -> series (``Group3Voltage``)
    lights: dict[str, Series]          #: light name -> lit (1) / dark (0) per sample
    marks: list[tuple[float, str]]     #: (rig time s, label), oldest first
    start_s: float                     #: first instant recorded, rig time s
    end_s: float                       #: last instant recorded, rig time s
    frames: int                        #: CAN frames in the log


def _frame_ids() -> dict[int, tuple[str, bool]]:
    """Arbitration ID -> (frame name, is a status frame) of the frames the plot reads."""
    ids = {}
    for f in can_frames.FRAMES:
        if f.pack_address not in (None, MASTER):
            continue
        if f.name in STATUS_FRAMES or f.name in VALUE_FRAMES:
            ids[f.frame_id] = (f.name, f.name in STATUS_FRAMES)
    return ids


_IDS = _frame_ids()
#: The same IDs as an ASC log writes them (hex, ``x`` after an extended one).
_ASC_IDS = {f"{i:X}x" if i > 0x7FF else f"{i:X}": i for i in _IDS}


def read_recording(can_path: str | Path, samples_path: str | Path, max_points: int = 1500) -> TestRecording:
    """Read a test's recording (its CAN log and samples CSV) into what the plot draws.

    :param max_points: about how many reports of each measured-value frame to keep.
    :raises OSError, ValueError: a file missing or not a recording.
    """
    samples, first, last = _sample_rows(samples_path)
    rig: dict[str, Series] = {}
    lights: dict[str, Series] = {}
    marks: list[tuple[float, str]] = []
    times = [first, last] if first is not None else []
    for t, name, value in samples:
        if name == "mark":
            marks.append((t, value))
        elif name.startswith("light:"):
            lights.setdefault(name[6:], Series()).add(t, float(value))
        elif name.startswith("measure:") or name in _NOT_SAMPLES:
            continue
        else:
            try:
                rig.setdefault(name, Series()).add(t, float(value))
            except ValueError:
                continue  # a state in words ("Run"): not drawn
    taps = [rig.get(f"group{i}_v") for i in range(1, 17)]
    rig = {name: _thin(series, max_points) for name, series in rig.items()}
    if all(taps) and len({len(tap.t) for tap in taps}) == 1:  # the 16 taps of one sample: their band
        low = Series(taps[0].t, [min(vs) for vs in zip(*(tap.v for tap in taps))])
        high = Series(taps[0].t, [max(vs) for vs in zip(*(tap.v for tap in taps))])
        keep = _thin_indices(low.v, max_points, min) | _thin_indices(high.v, max_points, max)
        rig["taps_low_v"], rig["taps_high_v"] = (Series([s.t[i] for i in sorted(keep)], [s.v[i] for i in sorted(keep)])
                                                 for s in (low, high))
    samples = [{"name": name, "value": float(value)} for _, name, value in samples if name in _NOT_SAMPLES]
    can_path = Path(can_path)
    if not can_path.exists():
        reports, count = [], 0
    elif can_path.suffix == ".asc":
        reports, count = _asc_reports(can_path, samples)
    else:
        frames = read_can(can_path)
        reports = [(t, m.arbitration_id, bytes(m.data)) for t, m in zip(frame_times(frames, samples), frames)
                   if m.is_rx and not m.is_error_frame and not m.is_remote_frame and m.arbitration_id in _IDS]
        count = len(frames)
    times += [r[0] for r in reports[:1] + reports[-1:]]
    start, end = (min(times), max(times)) if times else (0.0, 0.0)
    bms = _decode(reports, max(end - start, 1e-9) / max(max_points, 1))
    marks.sort(key=lambda m: m[0])
    return TestRecording(rig, bms, lights, marks, start, end, count)


def _sample_rows(path: str | Path) -> tuple[list[tuple[float, str, str]], float | None, float | None]:
    """The ``sample`` rows of a samples CSV as (time, name, value text), and the first and last
    time of the file's rows (None without rows). The columns are :data:`rig.recorder.COLUMNS`;
    unlike :func:`rig.recorder.read_samples` this parses no step row (an emulated hour has a
    few hundred thousand). A last row torn by a kill is skipped."""
    data = Path(path).read_bytes()
    lines = data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines()
    if not lines or tuple(next(csv.reader(lines[:1]))) != COLUMNS:
        raise ValueError(f"{path}: not a samples CSV (expected the header {','.join(COLUMNS)})")
    times = [line.partition(",")[0] for line in (lines[1], lines[-1])] if len(lines) > 1 else []
    # a sample row is one line; step rows (most of them) are skipped before the csv parser,
    # but for the readings of the PSU, e-load and DMM (see _readings)
    kept = (line for line in lines[1:] if line[line.find(",") + 1:][:7] == "sample," or _READING.match(line))
    out = []
    for row in csv.reader(kept):
        if len(row) != len(COLUMNS):
            continue
        if row[1] == "sample":
            out.append((float(row[0]), row[2], row[3]))
        else:
            out += _readings(float(row[0]), row[2], row[4], row[5])
    first, last = math.inf, -math.inf
    for text in times:
        try:
            first, last = min(first, float(text)), max(last, float(text))
        except ValueError:
            pass
    if out:
        first, last = min(first, out[0][0]), max(last, out[-1][0])
    return (out, first, last) if last >= first else (out, None, None)


#: A step row of a reading instrument whose command measures (the rest is set-up and checks).
_READING = re.compile(r"[^,]*,step,(psu|eload|dmm),,[^,]*(MEAS|READ|FETC)", re.IGNORECASE)


def _readings(t: float, instrument: str, command: str, reply: str) -> list[tuple[float, str, str]]:
    """The values a PSU, e-load or DMM query returned, as samples ``<instrument>_v_read`` /
    ``<instrument>_a_read``: each SCPI query of the command (``MEAS:VOLT?;:MEAS:CURR?``, ``READ?``)
    against its value in the reply. These are the test's own readings (a wait for a cut polls
    every 50 ms), denser than the supervisor's samples."""
    queries, values = command.split(";"), reply.split(";")
    if len(queries) != len(values):
        return []
    out = []
    for query, value in zip(queries, values):
        query = query.strip(": ").upper()
        if not query.endswith("?"):
            continue
        quantity = "a" if "CURR" in query else "v" if "VOLT" in query or query.startswith(("READ", "FETC")) else None
        if quantity is not None:
            out.append((t, f"{instrument}_{quantity}_read", value.strip()))
    return out


def _thin(series: Series, max_points: int) -> Series:
    """At most about ``2 * max_points`` points: the lowest and the highest sample of each of
    ``max_points`` runs of samples, in time order, so that a spike is never thinned away."""
    if len(series.t) <= 2 * max_points:
        return series
    keep = sorted(_thin_indices(series.v, max_points, min) | _thin_indices(series.v, max_points, max))
    return Series([series.t[i] for i in keep], [series.v[i] for i in keep])


def _thin_indices(values: list[float], max_points: int, pick) -> set[int]:
    """The index of the ``pick`` (min or max) value of each of ``max_points`` runs of values
    (every index when there are no more values than that)."""
    n = len(values)
    if n <= 2 * max_points:
        return set(range(n))
    step = n / max_points
    runs = ((int(k * step), min(int((k + 1) * step), n)) for k in range(max_points))
    return {pick(range(a, b), key=values.__getitem__) for a, b in runs if a < b}


def _asc_reports(path: Path, samples: list[dict]) -> tuple[list[tuple[float, int, bytes]], int]:
    """(rig time, ID, data) of the received frames the plot reads, from an ASC log, and the count
    of all its frames. python-can's reader parses every line (~20 us each: 1.5 s for an emulated
    hour); this reads only the few fields of the lines it keeps. Times are the log's (relative
    to its first frame) put on the rig clock as :func:`rig.recorder.frame_times` does."""
    found = {r["name"]: r["value"] for r in samples if r["name"] in _NOT_SAMPLES}
    base = found.get("can_first_frame_s", 0.0) - found.get("can_clock_offset_s", 0.0)
    data = path.read_bytes()
    reports, count = [], 0
    for line in data[: data.rfind(b"\n") + 1].decode("ascii").splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[4] != "d" or fields[3] not in ("Rx", "Tx"):
            continue  # header, an event, an error or remote frame
        count += 1
        frame_id = _ASC_IDS.get(fields[2])
        if frame_id is not None and fields[3] == "Rx":
            size = int(fields[5], 16)
            reports.append((float(fields[0]) + base, frame_id, bytes.fromhex("".join(fields[6:6 + size]))))
    return reports, count


def _decode(reports: list[tuple[float, int, bytes]], min_dt: float) -> dict[str, Series]:
    """The master's reports decoded through pack.dbc: thinned to one per ``min_dt`` s per frame,
    status frames kept at every change; one decode per distinct payload (reports repeat)."""
    bms: dict[str, Series] = {}
    kept_at: dict[int, float] = {}
    last_data: dict[int, bytes] = {}
    decoded: dict[tuple[int, bytes], dict] = {}
    held: set[str] = set()  # signals of status frames
    for t, frame_id, data in reports:
        status = _IDS[frame_id][1]
        if status:
            if last_data.get(frame_id) == data:
                continue
        elif t - kept_at.get(frame_id, -1e300) < min_dt:
            continue
        kept_at[frame_id], last_data[frame_id] = t, data
        signals = decoded.get((frame_id, data))
        if signals is None:
            try:
                signals = can_frames.DATABASE.get_message_by_frame_id(frame_id).decode(data, decode_choices=False)
            except Exception:  # noqa: BLE001 - a frame that breaks the protocol is the test's to report
                continue
            decoded[(frame_id, data)] = signals
        for name, value in signals.items():
            if isinstance(value, (int, float)):
                bms.setdefault(name, Series()).add(t, float(value))
                if status:
                    held.add(name)
    # a status frame is kept at its changes: its last value holds to the end of the log
    for name in held:
        series = bms[name]
        if series.t[-1] < reports[-1][0]:
            series.add(reports[-1][0], series.v[-1])
    return bms


# --- shapes the plot draws ------------------------------------------------------------------------

def lights_shown(rec: TestRecording) -> list[str]:
    """The pack's own lights, and another pack's (``pack2_run`` ...) only if ever lit."""
    return [n for n, s in rec.lights.items() if "_" not in n or any(s.v)]


def sample_period(t: list[float]) -> float:
    """The usual time between two samples (the median step), s."""
    steps = sorted(b - a for a, b in zip(t, t[1:]) if b > a)
    return steps[len(steps) // 2] if steps else 0.05


def runs(t: list[float], v: list[float], end: float | None, period: float | None = None) -> list[tuple]:
    """``(from, to, on)`` runs of a sampled level (on: >= 0.5), each sample held until the next;
    with a ``period``, a gap of more than 3 periods ends the run one period after its last sample
    (no one looked in between). The last sample holds until ``end`` (or one period)."""
    out: list[list] = []
    for i, (ti, vi) in enumerate(zip(t, v)):
        nxt = t[i + 1] if i + 1 < len(t) else (end if end is not None else ti + (period or 0.0))
        if period is not None and nxt - ti > 3 * period:
            nxt = ti + period
        on = vi >= 0.5
        if out and out[-1][2] == on and abs(out[-1][1] - ti) < 1e-9:
            out[-1][1] = nxt
        else:
            out.append([ti, nxt, on])
    return [tuple(r) for r in out]


def last_window(series: Series, period: float) -> list[tuple[float, bool]]:
    """The (time, lit) samples of the last unbroken observation of a light."""
    i = len(series.t) - 1
    while i > 0 and series.t[i] - series.t[i - 1] <= 3 * period:
        i -= 1
    return [(t, v >= 0.5) for t, v in zip(series.t[i:], series.v[i:])]


def both_closed(r1: Series, r2: Series) -> Series:
    """1 while both relays are reported closed, over the union of their report times."""
    out, a, b = Series(), 0.0, 0.0
    events = sorted([(t, 1, v) for t, v in zip(r1.t, r1.v)] + [(t, 2, v) for t, v in zip(r2.t, r2.v)])
    for t, which, v in events:
        a, b = (v, b) if which == 1 else (a, v)
        out.add(t, 1.0 if a >= 0.5 and b >= 0.5 else 0.0)
    return out
