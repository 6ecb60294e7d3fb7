"""The channels a fit needs, read from run folders: time, current, terminal and group voltages,
case temperatures.

A run folder's recordings (``recordings/<test>.samples.csv``, :mod:`rig.recorder`) hold one row per
supervisor sample and quantity. A recording becomes one :class:`Series` with a row per sample
time: ``pack_v`` (the DMM on the terminals), the current into the pack ``psu_a - eload_a``
(+ charges), ``group1_v``..``group16_v`` (the cell taps) and the mean of ``case1_c``.. (the case
thermocouples). A sample time is left out if it lacks the terminal voltage or a current (an
instrument that did not answer that sample). Where the terminals are not on the cells (the pack
off or its relays open, e.g. a protection's trip: the DMM reads under 1 V, or more than 10 % away
from the cell taps' sum, e.g. the PSU's set-point on open terminals) the sample stays with its
current (none flows) and cell taps, its terminal voltage NaN: dropped, the current before a trip
would be held over the whole time the relays were open. Only recordings of the characterisation procedures
(:data:`PROCEDURE_PREFIX`) are read from a run folder; a samples CSV named directly is read
whatever its name.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rig.errors import ConfigError
from rig.recorder import COLUMNS

#: The sample names a fit reads (the rest of a recording, the instruments' steps included, is skipped).
WANTED = frozenset(["pack_v", "psu_a", "eload_a"] + [f"group{g + 1}_v" for g in range(16)]
                   + [f"case{k + 1}_c" for k in range(8)])
#: Recordings of testcases/test_characterisation.py start with this (the node id's file part).
PROCEDURE_PREFIX = "test_characterisation"
GROUPS = 16


@dataclass
class Series:
    """One recording as arrays, one row per sample time (seconds from the recording's start)."""

    name: str
    t: np.ndarray            # s
    current: np.ndarray      # A, + charges the pack
    pack_v: np.ndarray       # V at the terminals (NaN: the terminals not on the cells)
    groups_v: np.ndarray     # (samples, 16) V, NaN where the scanner gave nothing
    case_c: np.ndarray       # C, mean of the case thermocouples (NaN: none)

    def __len__(self) -> int:
        return len(self.t)


def read_series(path: Path) -> Series:
    """One samples CSV as a :class:`Series`.

    :raises ConfigError: not a samples CSV, or one without terminal voltage and current.
    """
    try:
        by_time = _sample_rows(Path(path))
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(path, "", str(exc)) from exc
    times, cur, volts, groups, cases = [], [], [], [], []
    for t in sorted(by_time):
        s = by_time[t]
        if "pack_v" not in s or ("psu_a" not in s and "eload_a" not in s):
            continue
        taps = [s[f"group{g + 1}_v"] for g in range(GROUPS) if f"group{g + 1}_v" in s]
        on_cells = s["pack_v"] >= 1.0 and not (len(taps) == GROUPS and abs(s["pack_v"] - sum(taps)) > 0.1 * sum(taps))
        times.append(t)
        cur.append(s.get("psu_a", 0.0) - s.get("eload_a", 0.0))
        volts.append(s["pack_v"] if on_cells else np.nan)
        groups.append([s.get(f"group{g + 1}_v", np.nan) for g in range(GROUPS)])
        case = [v for k, v in s.items() if k.startswith("case") and k.endswith("_c")]
        cases.append(np.mean(case) if case else np.nan)
    if np.isfinite(volts).sum() < 2:
        raise ConfigError(path, "", "no samples with the terminal voltage (pack_v) and a current "
                                    "(psu_a / eload_a): not a recording of a characterisation run")
    t = np.array(times)
    return Series(Path(path).name.removesuffix(".samples.csv"), t - t[0], np.array(cur), np.array(volts),
                  np.array(groups), np.array(cases))


def read_runs(paths: list[str | Path]) -> list[Series]:
    """Every characterisation recording in the given run folders (or samples CSVs), in name order.

    :raises ConfigError: a path that is neither, or a run folder without such recordings.
    """
    out = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(read_series(p))
            continue
        folder = p / "recordings" if (p / "recordings").is_dir() else p
        if not folder.is_dir():
            raise ConfigError(p, "", "no such run folder or samples CSV")
        found = sorted(folder.glob(f"*{PROCEDURE_PREFIX}*.samples.csv"))
        if not found:
            raise ConfigError(p, "", f"no characterisation recordings ({PROCEDURE_PREFIX}*.samples.csv) "
                                     f"in {folder}: run `packrig run -m characterisation` first")
        out += [read_series(f) for f in found]
    return out


def _sample_rows(path: Path) -> dict[float, dict[str, float]]:
    """The wanted sample rows of a samples CSV (:mod:`rig.recorder`), by time: read as a stream, as
    a characterisation run at the supervisor's period holds millions of rows (a last row torn by
    a kill is skipped)."""
    by_time: dict[float, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        if tuple(next(rows, ())) != COLUMNS:
            raise ValueError(f"{path}: not a samples CSV (expected the header {','.join(COLUMNS)})")
        for row in rows:
            if len(row) == len(COLUMNS) and row[1] == "sample" and row[2] in WANTED:
                try:
                    value = float(row[3])
                except ValueError:
                    continue
                by_time.setdefault(float(row[0]), {})[row[2]] = value
    return by_time
