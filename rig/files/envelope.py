"""The pack's safety envelope: the rig's absolute limits (PACK_SPEC.md 5), which a bench can only tighten.

The envelope is data of the pack spec (its ``[safety_envelope]`` section), because it belongs
to the pack: what no bench may ever do to it, whoever wrote the bench file. A bench file states
the limits it works to (``[limits]``, its instruments' watchdogs, its supervisor period); on
load each is compared with the envelope of the pack spec in force (:func:`check_bench_against`),
and one value looser than the envelope refuses the whole bench file, naming the field, the
bench's value and the envelope's. Each field has a direction (:data:`RULES`): a maximum may
only go down, a minimum only up, a duration (how long an excursion or a silence is tolerated)
only down, so the chamber's range may only shrink.

:func:`limits_in_force` renders the comparison as a table for ``packrig check``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from rig.errors import ConfigError
from rig.files.loader import FileModel

if TYPE_CHECKING:
    from rig.files.bench_file import BenchFile, LoadedBench
    from rig.files.pack_spec import PackSpec

Volts = Annotated[float, Field(gt=0.0, le=1000.0)]
Amps = Annotated[float, Field(gt=0.0, le=5000.0)]
Celsius = Annotated[float, Field(ge=-80.0, le=200.0)]
GroupVolts = Annotated[float, Field(ge=0.0, le=5.0)]

#: Limit pairs that must be ordered in a bench's [limits] and in the envelope alike:
#: (lower, upper, strictly below?).
ORDERED = (
    ("chamber_min_c", "chamber_max_c", True),
    ("pack_min_v", "pack_max_v", True),
    ("group_min_v", "group_max_v", True),
    ("group_min_v", "group_sustained_max_v", True),
    ("group_sustained_max_v", "group_max_v", True),
    ("case_min_c", "case_max_c", True),
    # pack_min_v applies above this reading only: above pack_min_v it would never apply
    ("pack_connected_above_v", "pack_min_v", True),
    # a set-point the rig may command must not trip its own supervisor
    ("psu_max_current_a", "current_max_a", False),
    ("eload_max_current_a", "current_max_a", False),
    ("current_max_a", "short_circuit_max_a", False),
)


def check_ordered(limits: FileModel) -> None:
    """Raise ValueError naming the first pair of :data:`ORDERED` out of order."""
    for lo, hi, strict in ORDERED:
        a, b = getattr(limits, lo), getattr(limits, hi)
        if (a >= b) if strict else (a > b):
            relation = "below" if strict else "at most"
            raise ValueError(f"{lo} ({a}) must be {relation} {hi} ({b})")


class RigLimits(FileModel):
    """The rig's absolute limits (PACK_SPEC.md 5): the fields a bench file's ``[limits]`` and
    the pack spec's envelope share, with the same ranges and the same order between them."""

    # refused commands: set-point caps
    psu_max_voltage_v: Volts
    psu_max_current_a: Amps
    eload_max_current_a: Amps
    chamber_min_c: Celsius
    chamber_max_c: Celsius
    # supervisor trips
    group_max_v: GroupVolts
    group_sustained_max_v: GroupVolts
    group_sustained_for_s: Annotated[float, Field(gt=0.0, le=3600.0)]
    group_min_v: GroupVolts
    pack_max_v: Volts
    pack_min_v: Volts
    #: the DMM reads the pack as connected (relays closed) above this; pack_min_v applies then
    pack_connected_above_v: Annotated[float, Field(ge=0.0, le=60.0)]
    current_max_a: Amps
    current_max_for_s: Annotated[float, Field(ge=0.0, le=10.0)]
    short_circuit_max_a: Amps
    short_circuit_max_for_s: Annotated[float, Field(ge=0.0, le=1.0)]
    case_max_c: Celsius
    case_min_c: Celsius
    instrument_silent_s: Annotated[float, Field(gt=0.0, le=60.0)]

    @model_validator(mode="after")
    def _ordered(self):
        check_ordered(self)
        return self


class SafetyEnvelope(RigLimits):
    """PACK_SPEC.md 5 as data: the loosest limits any bench may use on this pack."""

    id: Annotated[str, Field(pattern=r"^REQ-[A-Z0-9.-]+$")]
    # time bounds beyond the shared limits
    watchdog_max_s: Annotated[float, Field(gt=0.0, le=60.0)]
    supervisor_max_period_s: Annotated[float, Field(gt=0.0, le=5.0)]

    @model_validator(mode="after")
    def _consistent(self):
        if not self.supervisor_max_period_s < self.instrument_silent_s:
            raise ValueError(f"supervisor_max_period_s ({self.supervisor_max_period_s}) must be below "
                             f"instrument_silent_s ({self.instrument_silent_s})")
        if not 2 * self.supervisor_max_period_s <= self.watchdog_max_s:
            raise ValueError(f"watchdog_max_s ({self.watchdog_max_s}) must be at least twice "
                             f"supervisor_max_period_s ({self.supervisor_max_period_s})")
        return self


AT_MOST, AT_LEAST = "at most", "at least"

#: What a bench may do with each value: (bench field, envelope field, the bench value must be ...
#: the envelope's). Maxima, durations and the silence limit may only go down; minima only up.
RULES: tuple[tuple[str, str, str], ...] = (
    ("limits.psu_max_voltage_v", "psu_max_voltage_v", AT_MOST),
    ("limits.psu_max_current_a", "psu_max_current_a", AT_MOST),
    ("limits.eload_max_current_a", "eload_max_current_a", AT_MOST),
    ("limits.chamber_min_c", "chamber_min_c", AT_LEAST),
    ("limits.chamber_max_c", "chamber_max_c", AT_MOST),
    ("limits.group_max_v", "group_max_v", AT_MOST),
    ("limits.group_sustained_max_v", "group_sustained_max_v", AT_MOST),
    ("limits.group_sustained_for_s", "group_sustained_for_s", AT_MOST),
    ("limits.group_min_v", "group_min_v", AT_LEAST),
    ("limits.pack_max_v", "pack_max_v", AT_MOST),
    ("limits.pack_min_v", "pack_min_v", AT_LEAST),
    ("limits.pack_connected_above_v", "pack_connected_above_v", AT_MOST),
    ("limits.current_max_a", "current_max_a", AT_MOST),
    ("limits.current_max_for_s", "current_max_for_s", AT_MOST),
    ("limits.short_circuit_max_a", "short_circuit_max_a", AT_MOST),
    ("limits.short_circuit_max_for_s", "short_circuit_max_for_s", AT_MOST),
    ("limits.case_max_c", "case_max_c", AT_MOST),
    ("limits.case_min_c", "case_min_c", AT_LEAST),
    ("limits.instrument_silent_s", "instrument_silent_s", AT_MOST),
    ("supervisor.period_s", "supervisor_max_period_s", AT_MOST),
    ("instruments.psu.watchdog_s", "watchdog_max_s", AT_MOST),
    ("instruments.eload.watchdog_s", "watchdog_max_s", AT_MOST),
    ("instruments.io.watchdog_s", "watchdog_max_s", AT_MOST),
)


@dataclass(frozen=True)
class Compared:
    """One bench value against the envelope's."""

    field: str               #: the bench file's dotted field
    bench: float | None      #: the bench's value (None: the IO box has no watchdog of its own)
    envelope_field: str
    envelope: float
    direction: str           #: AT_MOST or AT_LEAST

    @property
    def looser(self) -> bool:
        if self.bench is None:
            return False
        return self.bench > self.envelope if self.direction == AT_MOST else self.bench < self.envelope

    @property
    def tighter(self) -> bool:
        return self.bench is not None and self.bench != self.envelope and not self.looser


def compare(bench: BenchFile, envelope: SafetyEnvelope) -> list[Compared]:
    """Every rule of :data:`RULES`, for this bench file and envelope."""
    return [Compared(field, _get(bench, field), env_field, getattr(envelope, env_field), direction)
            for field, env_field, direction in RULES]


def check_bench_against(spec: PackSpec, loaded: LoadedBench, spec_file: str | Path | None = None) -> None:
    """Refuse a bench whose limits are looser than the safety envelope of ``spec``.

    :param spec: the pack spec in force (the bench's own, or one given with ``--pack-spec``).
    :param loaded: the bench file, loaded and validated.
    :param spec_file: where ``spec`` came from, for the message (default: the bench's own).
    :raises ConfigError: naming the bench file, the field, the bench value and the envelope's.
    """
    envelope = spec.safety_envelope
    source = Path(spec_file) if spec_file is not None else loaded.pack_spec_path
    for row in compare(loaded.file, envelope):
        if row.looser:
            verb = "raise" if row.direction == AT_MOST else "lower"
            raise ConfigError(
                loaded.path, row.field,
                f"{_value(row.field, row.bench)} is looser than the pack's safety envelope: "
                f"{row.direction} {_value(row.field, row.envelope)} (safety_envelope.{row.envelope_field} "
                f"of {source.name}, {envelope.id}); a bench may tighten it, never {verb} it")


def limits_in_force(loaded: LoadedBench, spec: PackSpec | None = None,
                    spec_file: str | Path | None = None) -> list[str]:
    """The limits in force on this bench, as lines of a plain-text table: per field the bench
    value, the envelope's bound and which of the two is in force."""
    spec = spec if spec is not None else loaded.spec
    source = Path(spec_file) if spec_file is not None else loaded.pack_spec_path
    rows = compare(loaded.file, spec.safety_envelope)
    width = max(len(r.field) for r in rows)
    lines = [f"limits in force on bench {loaded.file.bench.name!r}, within the safety envelope "
             f"{spec.safety_envelope.id} of {source}:",
             f"  {'field':{width}}  {'bench':>10}  {'envelope':>12}  in force"]
    for r in rows:
        bound = ("<= " if r.direction == AT_MOST else ">= ") + _value(r.field, r.envelope)
        if r.bench is None:
            bench, in_force = "none", "no watchdog in the instrument (see the bench file)"
        else:
            bench = _value(r.field, r.bench)
            in_force = (f"{bench}, the bench's (tighter)" if r.tighter else
                        f"{bench}, the envelope's" if not r.looser else f"REFUSED: looser than {bound}")
        lines.append(f"  {r.field:{width}}  {bench:>10}  {bound:>12}  {in_force}")
    period = loaded.file.supervisor.period_s
    lines.append(f"  and: every watchdog >= 2 x supervisor.period_s = {_value('_s', 2 * period)}; "
                 f"supervisor.period_s < limits.instrument_silent_s "
                 f"({_value('_s', period)} < {_value('_s', loaded.file.limits.instrument_silent_s)})")
    return lines


def _get(model, dotted: str):
    node = model
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


_UNITS = {"_v": "V", "_a": "A", "_c": "C", "_s": "s"}


def _value(field: str, value: float) -> str:
    """A value with the unit its field name ends in; never fails, whatever the value."""
    unit = _UNITS.get(field[-2:], "")
    number = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
    return f"{number} {unit}".rstrip()
