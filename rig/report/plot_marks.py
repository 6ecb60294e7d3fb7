"""What a test said, drawn on its plot (:mod:`rig.report.plots`): a protection's thresholds and
release, the marks, the windows of the times measured after a stimulus, the other measurements
as dots, each panel's key and the list of marks and windows below the plot.

The colours and line styles of the plot are here too, so that the key and the panels agree.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import IdentityTransform, blended_transform_factory

from rig.report.plot_data import TestRecording

DPI = 100
RIG, BMS = "#1f4e9c", "#d9730d"                       # the rig's instruments, the BMS's reports
LEVEL_COLOURS = ("#c9a100", "#e06000", "#c00000")     # L1, L2, L3
PASSED, FAILED, RELEASE = "#2ca02c", "#d62728", "#1a9850"
MARK_STYLES = {"stimulus": ("black", "solid"), "on CAN": ("#1f77b4", "dashed"), "cut": ("#d62728", "dashed"),
               "release": (RELEASE, "dashed")}
OTHER_MARK = ("#999999", "dotted")
#: Which panel draws a protection row's quantity (and its thresholds).
QUANTITY_PANELS = {"max_group_voltage": "groups", "min_group_voltage": "groups", "pack_voltage": "pack",
                   "charge_current": "current", "discharge_current": "current", "max_temperature": "temps",
                   "min_temperature": "temps", "group_voltage_difference": "spread"}


@dataclass
class Protection:
    """The pack spec row a protection test checks: its key (``cell_over_voltage``) and the row."""

    name: str
    row: object  # rig.files.pack_spec's protection row: quantity, trips, unit, l1..l3, release

    @property
    def level_signal(self) -> str:
        """The row's level in the DetailProtection frame (``CellOverVoltageLevel``)."""
        return "".join(w.capitalize() for w in self.name.split("_")) + "Level"


def key(fig, ax) -> None:
    """The panel's key, right of it (over no data): a sample of each labelled artist beside its
    label, placed in pixels (a matplotlib legend lays out a box per entry, a fifth of a plot's
    time); two columns when one would overflow the panel."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    box = ax.get_window_extent()
    fits = box.height // (1.45 * 7.5 * DPI / 72)  # entries of one column at 7.5 pt
    size = 7.5 if len(handles) <= fits else 7.0
    pitch = 1.45 * size * DPI / 72
    per_column = len(handles) if len(handles) <= fits else math.ceil(len(handles) / 2)
    pixels = IdentityTransform()
    for column in range(math.ceil(len(handles) / per_column)):
        x = box.x1 + 7 + column * 190
        entries = list(zip(handles, labels))[column * per_column:(column + 1) * per_column]
        for i, (handle, label) in enumerate(entries):
            y = box.y1 - (i + 0.5) * pitch
            fig.text(x + 26, y, label, transform=pixels, fontsize=size, va="center_baseline")
            if isinstance(handle, Line2D):
                sample = Line2D([x, x + 20], [y, y])
                sample.update_from(handle)
                sample.set_transform(pixels)
                sample.set_clip_on(False)
                if handle.get_linestyle() in ("None", "none", " ", ""):
                    sample.set_data([x + 10], [y])
            else:  # a band or bars: a patch of their colour
                face = handle.get_facecolor()
                sample = Rectangle((x, y - 3.5), 20, 7, transform=pixels, clip_on=False,
                                   facecolor=face[0] if len(face) else "#888888", alpha=handle.get_alpha())
            fig.add_artist(sample)


# --- what the test said: thresholds, marks, measurements ----------------------------------------------

def thresholds(axes, protection: Protection) -> None:
    row = protection.row
    ax = axes.get(QUANTITY_PANELS[row.quantity])
    if ax is None:
        return
    sign = -1.0 if row.quantity == "discharge_current" else 1.0  # the e-load's current is drawn negative
    unit = "°C" if row.unit == "C" else row.unit
    past = ">" if row.trips == "above" else "<"
    for n, (level, colour) in enumerate(zip(row.levels(), LEVEL_COLOURS), start=1):
        ax.axhline(sign * level.threshold, color=colour, lw=1.1, ls=(0, (6, 3)),
                   label=f"L{n}: {past} {level.threshold:g} {unit} for {level.delay_s:g} s")
    release = row.release
    if release.value is not None:
        ax.axhline(sign * release.value, color=RELEASE, lw=1.1, ls=(0, (2, 2)), label=f"release {release.value:g} {unit}")
    elif release.margin is not None:
        back = -release.margin if row.trips == "above" else release.margin
        for n, level in enumerate(row.levels(), start=1):
            ax.axhline(sign * (level.threshold + back), color=RELEASE, lw=0.9, ls=(0, (2, 2)),
                       label=f"L{n} release {level.threshold + back:g} {unit}")
    else:
        how = f"{release.after_cut_s:g} s after the cut" if release.after_cut_s else "by a power cycle"
        ax.plot([], [], color=RELEASE, ls=(0, (2, 2)), label=f"release {how}")


def marks(axes, rec: TestRecording, scale: float) -> list[tuple[str, str, str, str]]:
    """The marks as numbered vertical lines on every panel (one collection each); the rows of
    the list below the plot: (number, time, label, colour)."""
    if not rec.marks:
        return []
    styles = [MARK_STYLES.get(_mark_kind(label), OTHER_MARK) for _, label in rec.marks]
    for ax in axes.values():
        lines = LineCollection([[(t / scale, 0.0), (t / scale, 1.0)] for t, _ in rec.marks],
                               colors=[c for c, _ in styles], linestyles=[s for _, s in styles], linewidths=1.0,
                               alpha=0.85, transform=ax.get_xaxis_transform())
        ax.add_collection(lines, autolim=False)
    first, span = next(iter(axes.values())), max(rec.end_s - rec.start_s, 1e-9)
    groups: list[tuple[float, list[str]]] = []  # numbers of marks too close to print apart
    for number, (t, _) in enumerate(rec.marks, start=1):
        if groups and t - groups[-1][0] < 0.012 * span:
            groups[-1][1].append(str(number))
        else:
            groups.append((t, [str(number)]))
    above = blended_transform_factory(first.transData, first.transAxes)
    for t, numbers in groups:
        first.text(t / scale, 1.02, ",".join(numbers), transform=above, fontsize=7.5, ha="center", va="bottom")
    return [(str(n), f"{t:.2f} s", label, colour) for n, ((t, label), (colour, _)) in enumerate(zip(rec.marks, styles), 1)]


def windows(axes, rec: TestRecording, measurements, scale: float) -> list[tuple[str, str, str, str]]:
    """Each time measured "after the stimulus": the window its limits allow from the last
    stimulus before it, and the measured instant."""
    stimuli = [t for t, label in rec.marks if label.startswith("stimulus: ")]
    out = []
    for m in measurements:
        if m.unit != "s" or "after the stimulus" not in m.name or m.limits is None or not number(m.value):
            continue
        before = [t for t in stimuli if t <= m.at + 1e-9]
        if not before:
            continue
        t0, colour = before[-1], PASSED if m.passed else FAILED
        low = t0 + (m.limits.low if m.limits.low is not None else 0.0)
        high = t0 + m.limits.high if m.limits.high is not None else rec.end_s
        name = f"W{len(out) + 1}"
        for ax in axes.values():
            ax.axvspan(low / scale, high / scale, color=colour, alpha=0.14, lw=0)
            ax.axvline((t0 + m.value) / scale, color=colour, lw=1.8, alpha=0.9)
        first = next(iter(axes.values()))
        first.text((t0 + m.value) / scale, 0.96, f" {name}", transform=first.get_xaxis_transform(), fontsize=8,
                   va="top", color=colour, fontweight="bold")
        verdict = "passed" if m.passed else "FAILED"
        out.append((name, f"{t0 + m.value:.2f} s", f"{m.name} = {m.value:.3g} s, expected {m.want()} "
                                                    f"(window shaded from the stimulus at {t0:.2f} s): {verdict}", colour))
    return out


def measurement_dots(axes, measurements, scale: float) -> None:
    drawn = set()
    for m in measurements:
        if m.unit not in ("V", "A", "C", "°C") or not number(m.value) or "after the stimulus" in m.name:
            continue
        panel = {"A": "current", "C": "temps", "°C": "temps"}.get(m.unit) or ("pack" if abs(m.value) > 10 else "groups")
        ax = axes.get(panel)
        low, high = ax.get_ylim() if ax is not None else (0.0, 0.0)
        if ax is None or not low - (high - low) <= m.value <= high + (high - low):
            continue
        outcome = "passed" if m.passed else "failed"
        ax.plot([m.at / scale], [m.value], marker="o" if m.passed else "X", ms=6 if m.passed else 9,
                color=PASSED if m.passed else FAILED, ls="none",
                label=None if (outcome, panel) in drawn else f"measurement, {outcome}")
        drawn.add((outcome, panel))
        ax.set_ylim(low, high)  # a dot never rescales the panel


def event_list(fig, events: list, windows: list) -> None:
    """The windows (a line each, the whole width) and the marks (two columns, each one text of
    numbers and one of labels: one layout, not one per line) below the plot."""
    windows = windows[:4]
    room = 2 * (6 - len(windows))
    if len(events) > room:
        events = events[: room - 1] + [("…", "", f"{len(events) - room + 1} more: rows 'mark' of the samples CSV", "#333")]
    top, step = 0.14, 0.0215
    for i, (name, at, label, colour) in enumerate(windows):
        fig.text(0.065, top - i * step, f"{name}  {at}", fontsize=8, va="top", color=colour, fontweight="bold")
        fig.text(0.14, top - i * step, shorten(label, 175), fontsize=8, va="top")
    per_column = 6 - len(windows)
    for c, x in enumerate((0.065, 0.535)):
        rows = events[c * per_column:(c + 1) * per_column]
        if rows:
            y = top - len(windows) * step
            fig.text(x, y, "\n".join(f"{n}   {at}" for n, at, _, _ in rows), fontsize=8, va="top", linespacing=1.6)
            fig.text(x + 0.075, y, "\n".join(shorten(label, 82) for _, _, label, _ in rows), fontsize=8, va="top",
                     linespacing=1.6)


# --- helpers -------------------------------------------------------------------------------------------

def number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _mark_kind(label: str) -> str:
    """A mark's kind, by its prefix ("stimulus: ...", "on CAN: ...", "cut: ...", "release: ...")
    or, failing that, its words ("L2 on CAN", "cut measured (rig)")."""
    prefix = label.partition(": ")[0]
    if prefix in MARK_STYLES:
        return prefix
    return next((kind for kind in ("on CAN", "cut", "release") if kind in label), "")


def driven_groups(marks, measurements) -> set[int]:
    """Groups a stimulus names ("group 16 driven to 3.63 V", "groups 1 and 2 ..."), 1..16."""
    texts = [label for _, label in marks if label.startswith("stimulus: ")]
    texts += [m.stimulus for m in measurements if getattr(m, "stimulus", None)]
    found = set()
    for text in texts:
        for match in re.finditer(r"\bgroups? ((?:\d+(?:, | and |,)?)+)", text):
            found |= {int(n) for n in re.findall(r"\d+", match.group(1)) if 1 <= int(n) <= 16}
    return found
