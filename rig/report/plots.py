"""The plot of one test, made after the test from its recording (matplotlib's Agg canvas, no pyplot).

Panels share one time axis, the rig clock (s, or min / h on a long test); the rig's instruments
are drawn solid and blue, the BMS's reports on CAN dashed and orange, as steps (a PCS sees a
reported value until the next report):

1. **Pack voltage** [V]: the rig's DMM on the terminals, the BMS's report (0x356).
2. **Current** [A], + charge: the PSU's read-back, the e-load's (drawn negative: it
   discharges), the BMS's report. The rig's lines here are every reading it took: the
   supervisor's samples and the test's own (a wait for a cut reads every 50 ms).
3. **Group voltages** [V]: the band between the lowest and highest of the 16 cell taps (rig) and
   the BMS's lowest and highest group; the driven group as lines of its own when a stimulus
   names it ("group 16 driven to 3.63 V").
4. **Temperatures** [°C]: the case thermocouples (rig), the BMS's sensors T1-T4 and T5.
5. **Status on CAN**: a protection test's level of its row (None, L1, L2, L3), any other test's
   BMS state; below it a lane while both relays are reported closed.
6. **Lights**, on a test that watched them: a lane per light, a bar while lit, a thin line while
   dark, blank where no one looked; at the right the pattern of the last window, as the rig's
   light reader classifies it ("LED1 flickering, T = 1.00 s").

Over the panels: the marks as numbered vertical lines, listed with their times below the plot
(black a stimulus, blue "on CAN", red "cut", green "release", grey others); a protection's
thresholds (L1-L3) and release on the panel of its quantity; each measured time "after the
stimulus" as the window its limits allow, shaded from the last stimulus (green passed, red
failed), with the measured instant as a line (W1, W2 ... in the list); the other measurements in
V, A or °C as dots at their time (a cross when failed).

**Cost.** A figure is made once per layout and process and reused: only the data, texts and
legends are replaced, so tick and axes objects are not rebuilt for every test; vertical lines
go in one collection per panel. ``benchmarks/bench_plots.py`` measures what a plot costs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox, IdentityTransform, blended_transform_factory

from rig.light_reader import classify, display_name
from rig.protocol import can_frames
from rig.report.plot_data import (Series, TestRecording, both_closed, last_window, lights_shown, read_recording,
                                  runs, sample_period)

SIZE_PX, DPI = (1400, 900), 100
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
#: The smallest y range of a panel: finer than the instruments' resolution would only show noise.
MIN_SPAN = {"pack": 1.0, "current": 2.0, "groups": 0.02, "temps": 1.0, "spread": 0.02}
_STATE_NAMES = [str(can_frames.dbc_message("DetailStatus", 2).get_signal_by_name("State").choices.get(i, i))
                for i in range(5)]
_FIGURES: dict[tuple, tuple[Figure, dict]] = {}
   # layout -> a figure to reuse (see the module docstring)


@dataclass
class Protection:
    """The pack spec row a protection test checks: its key (``cell_over_voltage``) and the row."""

    name: str
    row: object  # rig.files.pack_spec's protection row: quantity, trips, unit, l1..l3, release

    @property
    def level_signal(self) -> str:
        """The row's level in the DetailProtection frame (``CellOverVoltageLevel``)."""
        return "".join(w.capitalize() for w in self.name.split("_")) + "Level"


@dataclass
class _Context:
    scale: float              #: seconds per unit of the time axis
    driven: set[int]          #: groups a stimulus names
    level_signal: str | None  #: the protection row's level on CAN, or None
    measurements: list        #: the test's measurements


def plot_test(can_path: str | Path, samples_path: str | Path, png_path: str | Path, *, title: str,
              subtitle: str = "", protection: Protection | None = None, measurements=(),
              marks: list[tuple[float, str]] | None = None) -> Path:
    """Read a test's recording and draw its plot into ``png_path`` (see the module docstring).

    :param title: the test, as the report names it.
    :param subtitle: its requirement (id, title, manual section) and the measurements' outcome.
    :param protection: the protection row the test checks, for its thresholds and level.
    :param measurements: the test's :class:`rig.measure.Measurement` objects.
    :param marks: ``(t, label)`` instants; default: those the recording holds.
    :return: the PNG's path.
    """
    recording = read_recording(can_path, samples_path)
    if marks is not None:
        recording.marks = sorted(marks, key=lambda m: m[0])
    return draw(recording, Path(png_path), title=title, subtitle=subtitle, protection=protection,
                measurements=list(measurements))


def draw(rec: TestRecording, png: Path, *, title: str, subtitle: str = "", protection: Protection | None = None,
         measurements: list | None = None) -> Path:
    """Draw a read recording into ``png`` (1400 x 900 px); see :func:`render`."""
    fig = render(rec, title=title, subtitle=subtitle, protection=protection, measurements=measurements)
    png.parent.mkdir(parents=True, exist_ok=True)
    # zlib's fastest level: a third of the default's time for a few per cent more bytes (a
    # palette PNG would be faster still, but its quantizer merges a pale window into the white)
    fig.savefig(png, dpi=DPI, pil_kwargs={"compress_level": 1})
    return png


def render(rec: TestRecording, *, title: str, subtitle: str = "", protection: Protection | None = None,
           measurements: list | None = None) -> Figure:
    """The figure of a read recording, not saved. It is this process's figure of its layout,
    drawn again by the next call with the same layout: save it before that."""
    measurements = measurements or []
    scale, unit = _time_scale(rec.end_s - rec.start_s)
    fig, axes = _figure(_panels(rec, protection))
    ctx = _Context(scale, _driven_groups(rec.marks, measurements),
                   protection.level_signal if protection is not None else None, measurements)
    for name, ax in axes.items():
        DRAWERS[name](ax, rec, ctx)
    if protection is not None:
        _thresholds(axes, protection)
    last = list(axes.values())[-1]
    last.set_xlim(rec.start_s / scale, max(rec.end_s, rec.start_s + 1e-3) / scale)
    last.set_xlabel(f"rig time [{unit}]", fontsize=9)
    for name, ax in axes.items():
        if name in MIN_SPAN:
            ax.autoscale_view(scalex=False)
            low, high = ax.get_ylim()
            if high - low < MIN_SPAN[name]:  # a flat trace: a readable scale around it, not 1e-16 A
                middle = (low + high) / 2
                ax.set_ylim(middle - MIN_SPAN[name] / 2, middle + MIN_SPAN[name] / 2)
    windows = _windows(axes, rec, measurements, scale)
    _measurement_dots(axes, measurements, scale)
    events = _marks(axes, rec, scale)
    for ax in axes.values():
        _key(fig, ax)
    failed = any(not m.passed for m in measurements) or subtitle.startswith(("FAILED", "ERROR"))
    fig.text(0.065, 0.965, _shorten(title, 140), fontsize=13, fontweight="bold", va="center")
    if subtitle:
        fig.text(0.065, 0.932, _shorten(subtitle, 185), fontsize=9, va="center", color=FAILED if failed else "#333")
    _event_list(fig, events, windows)
    return fig


# --- the figure -------------------------------------------------------------------------------------

def _panels(rec: TestRecording, protection: Protection | None) -> tuple[tuple[str, float], ...]:
    panels = [("pack", 1.0), ("current", 1.0), ("groups", 1.2), ("temps", 0.8)]
    if protection is not None and protection.row.quantity == "group_voltage_difference":
        panels.append(("spread", 0.8))
    panels.append(("status", 0.7))
    lanes = len(lights_shown(rec))
    if lanes:
        panels.append(("lights", max(0.9, 0.22 * lanes)))
    return tuple(panels)


def _figure(panels: tuple[tuple[str, float], ...]) -> tuple[Figure, dict]:
    """The figure of this layout, emptied of the last test's data (made on first use)."""
    cached = _FIGURES.get(panels)
    if cached is not None:
        fig, axes = cached
        for artist in [*fig.texts, *fig.artists]:
            artist.remove()
        for ax in axes.values():
            for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
                artist.remove()
            ax.dataLim = Bbox.null()  # autoscaling from this test's data only
            ax.ignore_existing_data_limits = True
            ax.set_autoscaley_on(True)
        return fig, axes
    fig = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    top, bottom, gap = 0.895, 0.215, 0.012
    height = (top - bottom - gap * (len(panels) - 1)) / sum(w for _, w in panels)
    axes, y, first = {}, top, None
    for i, (name, weight) in enumerate(panels):
        ax = fig.add_axes((0.065, y - height * weight, 0.655, height * weight), sharex=first)
        first = first or ax
        ax.grid(True, color="#dddddd", linewidth=0.6)
        bottom = i == len(panels) - 1  # the time axis is read on the last panel (marks cross them all)
        ax.tick_params(labelsize=8, labelbottom=bottom, bottom=bottom)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3))  # every tick costs a text and two lines
        ax.yaxis.get_major_formatter().set_useOffset(False)
        if first is ax:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))  # shared by all panels
        axes[name] = ax
        y -= height * weight + gap
    _FIGURES[panels] = fig, axes
    return fig, axes


# --- panels ------------------------------------------------------------------------------------------

def _line(ax, series: Series | None, scale: float, label: str | None, bms: bool = False, **style) -> None:
    if series is not None and series.t:
        t = [x / scale for x in series.t]
        if bms:
            ax.step(t, series.v, where="post", label=label, **{"color": BMS, "ls": "--", "lw": 1.2, **style})
        else:
            dots = {"marker": ".", "ms": 3} if len(t) <= 400 else {}  # the samples, while they stand apart
            ax.plot(t, series.v, label=label, **{"color": RIG, "lw": 1.4, **dots, **style})


def _every_reading(rec, instrument: str, quantity: str) -> Series | None:
    """Every reading the rig took of an instrument (the supervisor's and the test's own: a wait
    for a cut polls every 50 ms), else the supervisor's samples alone."""
    return rec.rig.get(f"{instrument}_{quantity}_read") or rec.rig.get(f"{instrument}_{quantity}")


def _pack(ax, rec, ctx: _Context) -> None:
    _line(ax, rec.rig.get("dmm_v_read") or rec.rig.get("pack_v"), ctx.scale, "terminals (rig DMM)", lw=1.2)
    _line(ax, rec.bms.get("Voltage"), ctx.scale, "pack voltage (BMS, CAN)", bms=True)
    ax.set_ylabel("pack [V]", fontsize=9)


def _current(ax, rec, ctx: _Context) -> None:
    _line(ax, _every_reading(rec, "psu", "a"), ctx.scale, "PSU read-back (rig)", lw=1.2)
    eload = _every_reading(rec, "eload", "a")
    if eload is not None and any(eload.v):
        _line(ax, Series(eload.t, [-a for a in eload.v]), ctx.scale, "e-load read-back (rig), -", color="#6a3d9a",
              lw=1.2)
    _line(ax, rec.bms.get("Current"), ctx.scale, "current (BMS, CAN)", bms=True)
    ax.axhline(0.0, color="#999999", lw=0.6)
    ax.set_ylabel("current [A]\n+ charge", fontsize=9)


def _groups(ax, rec, ctx: _Context) -> None:
    scale = ctx.scale
    low, high = rec.rig.get("taps_low_v"), rec.rig.get("taps_high_v")
    if low is not None and high is not None and len(low.t) == len(high.t):
        ax.fill_between([x / scale for x in low.t], low.v, high.v, color=RIG, alpha=0.25, lw=0.8,
                        label="16 cell taps, min-max (rig)")
    low, high = rec.bms.get("MinGroupVoltage"), rec.bms.get("MaxGroupVoltage")
    if low is not None and high is not None and len(low.t) == len(high.t):
        t = [x / scale for x in low.t]
        ax.fill_between(t, low.v, high.v, step="post", color=BMS, alpha=0.2, lw=0, label="min-max group (BMS, CAN)")
        _line(ax, high, scale, None, bms=True, lw=0.9)
        _line(ax, low, scale, None, bms=True, lw=0.9)
    for group in sorted(ctx.driven):
        _line(ax, rec.rig.get(f"group{group}_v"), scale, f"group {group}, driven (rig tap)", color=PASSED, lw=1.6)
        _line(ax, rec.bms.get(f"Group{group}Voltage"), scale, f"group {group}, driven (BMS)", bms=True, color=PASSED)
    ax.set_ylabel("groups [V]", fontsize=9)


def _temps(ax, rec, ctx: _Context) -> None:
    for i in range(1, 9):
        _line(ax, rec.rig.get(f"case{i}_c"), ctx.scale, "case thermocouples (rig)" if i == 1 else None, lw=1.0, ms=2)
    for i in range(1, 5):
        _line(ax, rec.bms.get(f"Temperature{i}"), ctx.scale, "sensors T1-T4 (BMS, CAN)" if i == 1 else None, bms=True,
              lw=1.0)
    _line(ax, rec.bms.get("Temperature5PowerStage"), ctx.scale, "T5 power stage (BMS, CAN)", bms=True,
          color="#8c564b", lw=1.0)
    ax.set_ylabel("temp. [°C]", fontsize=9)


def _spread(ax, rec, ctx: _Context) -> None:
    low, high = rec.bms.get("MinGroupVoltage"), rec.bms.get("MaxGroupVoltage")
    if low is not None and high is not None and len(low.t) == len(high.t):
        _line(ax, Series(low.t, [b - a for a, b in zip(low.v, high.v)]), ctx.scale, "max - min group (BMS, CAN)",
              bms=True)
    ax.set_ylabel("spread [V]", fontsize=9)


def _status(ax, rec, ctx: _Context) -> None:
    if ctx.level_signal:
        series, names = rec.bms.get(ctx.level_signal), ["None", "L1", "L2", "L3"]
        label = f"{ctx.level_signal.removesuffix('Level')} level (BMS, CAN)"
    else:
        series, names, label = rec.bms.get("State"), _STATE_NAMES, "state (BMS, CAN)"
    if series is not None and series.t:
        ax.step([t / ctx.scale for t in series.t], series.v, where="post", color=BMS, lw=1.6, label=label)
    r1, r2 = rec.bms.get("Relay1Closed"), rec.bms.get("Relay2Closed")
    if r1 is not None and r2 is not None:
        closed = both_closed(r1, r2)
        bars = [(a / ctx.scale, (b - a) / ctx.scale) for a, b, on in runs(closed.t, closed.v, rec.end_s) if on]
        ax.broken_barh(bars, (-1.35, 0.7), color="#7f7f7f", label="relays 1 and 2 closed (BMS, CAN)")
    ax.set_yticks(range(-1, len(names)), ["relays", *names], fontsize=7)
    ax.grid(False, axis="y")
    ax.set_ylim(-1.6, len(names) - 0.5)


def _lights(ax, rec, ctx: _Context) -> None:
    shown = lights_shown(rec)
    beside = blended_transform_factory(ax.transAxes, ax.transData)
    for lane, name in enumerate(shown):
        y, series = len(shown) - 1 - lane, rec.lights[name]
        period = sample_period(series.t)
        spans = runs(series.t, series.v, None, period)
        colour = FAILED if name.endswith("alm") else PASSED
        lit = any(on for _, _, on in spans)
        ax.broken_barh([(a / ctx.scale, (b - a) / ctx.scale) for a, b, on in spans if on], (y - 0.35, 0.7), color=colour)
        ax.broken_barh([(a / ctx.scale, (b - a) / ctx.scale) for a, b, on in spans if not on], (y - 0.03, 0.06),
                       color="#555555")
        window = last_window(series, period)
        checked = [m for m in ctx.measurements if m.name.startswith(display_name(name) + " ")]
        if window:
            seen = str(classify(name, window))
            if checked:
                seen += ", expected " + " / ".join(m.want().replace("'", "") for m in checked)
            failed = any(not m.passed for m in checked)
            ax.text(1.005, y, seen + (" FAILED" if failed else ""), transform=beside, fontsize=7.5, va="center",
                    color=FAILED if failed else colour if lit else "#333333")
    ax.set_yticks(range(len(shown)), [display_name(n) for n in reversed(shown)], fontsize=7.5)
    ax.grid(False, axis="y")
    ax.set_ylim(-0.6, len(shown) - 0.4)


DRAWERS = {"pack": _pack, "current": _current, "groups": _groups, "temps": _temps, "spread": _spread,
           "status": _status, "lights": _lights}


def _key(fig, ax) -> None:
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

def _thresholds(axes, protection: Protection) -> None:
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


def _marks(axes, rec: TestRecording, scale: float) -> list[tuple[str, str, str, str]]:
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


def _windows(axes, rec: TestRecording, measurements, scale: float) -> list[tuple[str, str, str, str]]:
    """Each time measured "after the stimulus": the window its limits allow from the last
    stimulus before it, and the measured instant."""
    stimuli = [t for t, label in rec.marks if label.startswith("stimulus: ")]
    out = []
    for m in measurements:
        if m.unit != "s" or "after the stimulus" not in m.name or m.limits is None or not _number(m.value):
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


def _measurement_dots(axes, measurements, scale: float) -> None:
    drawn = set()
    for m in measurements:
        if m.unit not in ("V", "A", "C", "°C") or not _number(m.value) or "after the stimulus" in m.name:
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


def _event_list(fig, events: list, windows: list) -> None:
    """The windows (a line each, the whole width) and the marks (two columns, each one text of
    numbers and one of labels: one layout, not one per line) below the plot."""
    windows = windows[:4]
    room = 2 * (6 - len(windows))
    if len(events) > room:
        events = events[: room - 1] + [("…", "", f"{len(events) - room + 1} more: rows 'mark' of the samples CSV", "#333")]
    top, step = 0.14, 0.0215
    for i, (name, at, label, colour) in enumerate(windows):
        fig.text(0.065, top - i * step, f"{name}  {at}", fontsize=8, va="top", color=colour, fontweight="bold")
        fig.text(0.14, top - i * step, _shorten(label, 175), fontsize=8, va="top")
    per_column = 6 - len(windows)
    for c, x in enumerate((0.065, 0.535)):
        rows = events[c * per_column:(c + 1) * per_column]
        if rows:
            y = top - len(windows) * step
            fig.text(x, y, "\n".join(f"{n}   {at}" for n, at, _, _ in rows), fontsize=8, va="top", linespacing=1.6)
            fig.text(x + 0.075, y, "\n".join(_shorten(label, 82) for _, _, label, _ in rows), fontsize=8, va="top",
                     linespacing=1.6)


# --- helpers -------------------------------------------------------------------------------------------

def _time_scale(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 1200:
        return 60.0, "min"
    return 1.0, "s"


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _mark_kind(label: str) -> str:
    """A mark's kind, by its prefix ("stimulus: ...", "on CAN: ...", "cut: ...", "release: ...")
    or, failing that, its words ("L2 on CAN", "cut measured (rig)")."""
    prefix = label.partition(": ")[0]
    if prefix in MARK_STYLES:
        return prefix
    return next((kind for kind in ("on CAN", "cut", "release") if kind in label), "")


def _driven_groups(marks, measurements) -> set[int]:
    """Groups a stimulus names ("group 16 driven to 3.63 V", "groups 1 and 2 ..."), 1..16."""
    texts = [label for _, label in marks if label.startswith("stimulus: ")]
    texts += [m.stimulus for m in measurements if getattr(m, "stimulus", None)]
    found = set()
    for text in texts:
        for match in re.finditer(r"\bgroups? ((?:\d+(?:, | and |,)?)+)", text):
            found |= {int(n) for n in re.findall(r"\d+", match.group(1)) if 1 <= int(n) <= 16}
    return found
