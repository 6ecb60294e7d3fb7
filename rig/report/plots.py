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

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox, blended_transform_factory

from rig.light_reader import classify, display_name
from rig.protocol import can_frames
from rig.report.plot_data import (Series, TestRecording, both_closed, last_window, lights_shown, read_recording,
                                  runs, sample_period)
from rig.report.plot_marks import (BMS, DPI, FAILED, PASSED, RIG, Protection, driven_groups, event_list, key,
                                   marks, measurement_dots, shorten, thresholds, windows)

SIZE_PX = (1400, 900)
#: The smallest y range of a panel: finer than the instruments' resolution would only show noise.
MIN_SPAN = {"pack": 1.0, "current": 2.0, "groups": 0.02, "temps": 1.0, "spread": 0.02}
_STATE_NAMES = [str(can_frames.dbc_message("DetailStatus", 2).get_signal_by_name("State").choices.get(i, i))
                for i in range(5)]
_FIGURES: dict[tuple, tuple[Figure, dict]] = {}  # layout -> a figure to reuse (see the module docstring)


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
    ctx = _Context(scale, driven_groups(rec.marks, measurements),
                   protection.level_signal if protection is not None else None, measurements)
    for name, ax in axes.items():
        DRAWERS[name](ax, rec, ctx)
    if protection is not None:
        thresholds(axes, protection)
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
    shaded = windows(axes, rec, measurements, scale)
    measurement_dots(axes, measurements, scale)
    events = marks(axes, rec, scale)
    for ax in axes.values():
        key(fig, ax)
    failed = any(not m.passed for m in measurements) or subtitle.startswith(("FAILED", "ERROR"))
    fig.text(0.065, 0.965, shorten(title, 140), fontsize=13, fontweight="bold", va="center")
    if subtitle:
        fig.text(0.065, 0.932, shorten(subtitle, 185), fontsize=9, va="center", color=FAILED if failed else "#333")
    event_list(fig, events, shaded)
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


# --- helpers -------------------------------------------------------------------------------------------

def _time_scale(span_s: float) -> tuple[float, str]:
    if span_s > 3 * 3600:
        return 3600.0, "h"
    if span_s > 1200:
        return 60.0, "min"
    return 1.0, "s"
