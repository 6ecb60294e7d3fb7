"""Loading the files a user writes (bench, pack spec, firmware profile) into validated objects.

Each file kind is a tree of pydantic models (``extra="forbid"``: an unknown key is an error,
never silently ignored). A bad file raises :class:`~rig.errors.ConfigError` naming the file,
the field as a dotted path (``limits.psu_max_voltage_v``, ``lights.charging.2.leds.0``) and
what is allowed there (the range, the choices or the known keys), so the user can fix it
without reading our code.
"""
from __future__ import annotations

import reprlib
import stat
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
import pydantic
from pydantic import BaseModel, ConfigDict

from rig.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


#: The largest file the rig reads. A bench file, pack spec or firmware profile is a few kB; a
#: bigger file is a mistake (a log, an image, a runaway generator), refused before parsing.
MAX_FILE_BYTES = 1024 * 1024
#: The deepest nesting of tables and arrays a file may have (the pack spec needs 4).
MAX_NESTING = 32


class FileModel(BaseModel):
    """Base of every model read from a user file: strict about keys and types, immutable once loaded.

    Strict types: a number field takes a TOML number, never ``true`` (which lax parsing reads as
    1) or a string such as ``"3.6"``; a bool field takes ``true``/``false``, never ``1`` or
    ``"yes"``. A tuple field must say ``Field(strict=False)`` to take a TOML array (its items
    stay strict).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def load_toml(path: str | Path, model: type[M]) -> M:
    """Read ``path`` as TOML and validate it as ``model``.

    :raises ConfigError: the file is missing, not a small UTF-8 TOML file, or a value is not allowed.
    """
    return validate(read_toml(path), model, path)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read ``path`` as a TOML table. Whatever the file holds (binary, another encoding, nothing,
    megabytes, arrays inside arrays thousands deep), a bad file is one line of ConfigError.

    :raises ConfigError: naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a folder, a FIFO, a device: never open it
            raise ConfigError(path, "", "not a regular file")
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(path, "", f"larger than the {MAX_FILE_BYTES // 2**20} MiB a file may have: not a "
                                    "bench file, pack spec or firmware profile (these are a few kB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not UTF-8 text: byte 0x{raw[exc.start]:02X} at offset "
                                    f"{exc.start} (save the file as UTF-8)") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ConfigError(path, "", f"binary, not a text file (NUL byte at offset {nul})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(path, "", f"not valid TOML: arrays or inline tables nested too deeply "
                                    f"(at most {MAX_NESTING} levels)") from None
    if not data:
        raise ConfigError(path, "", "empty: no keys or sections in it")
    depth = _nesting(data)
    if depth > MAX_NESTING:
        raise ConfigError(path, "", f"tables and arrays nested {depth} levels deep; at most {MAX_NESTING}")
    return data


def _nesting(data: dict) -> int:
    """How deep tables and arrays nest in ``data`` (a loop, not recursion: any depth is safe)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def validate(data: dict[str, Any], model: type[M], path: str | Path) -> M:
    """Validate already-parsed ``data`` as ``model``; errors name ``path``."""
    try:
        return model.model_validate(data, context={"file": Path(path)})
    except pydantic.ValidationError as exc:
        raise _config_error(exc, model, path) from None
    except RecursionError:
        raise ConfigError(path, "", f"nested too deeply (at most {MAX_NESTING} levels)") from None


def _config_error(exc: pydantic.ValidationError, model: type[BaseModel], path) -> ConfigError:
    # Errors of one field (e.g. each branch of "on" | "off" | a period) are merged into one line.
    problems: dict[str, list[str]] = {}
    # An unknown key first: a misspelt key also makes its real name "missing", and the typo is the cause.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    for err in errors:
        loc = _field_loc(err["loc"])
        text = _describe(err, model, loc)
        problems.setdefault(".".join(str(p) for p in loc), []).append(text)
    lines = [(field, " or ".join(dict.fromkeys(texts))) for field, texts in problems.items()]
    field, problem = lines[0]
    if len(lines) > 1:
        others = "; ".join(f"{f or '(top)'}: {p}" for f, p in lines[1:4])
        problem += f" (and {len(lines) - 1} more: {others})"
    return ConfigError(path, field, problem)


def _field_loc(loc) -> tuple:
    """The location without pydantic's union-branch tags such as ``literal['on','off']``."""
    return tuple(p for p in loc if isinstance(p, int) or str(p).isidentifier())


def _describe(err: dict, model: type[BaseModel], loc: tuple) -> str:
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = _resolve(model, loc[:-1])
        known = sorted(parent.model_fields) if _is_model(parent) else []
        return f"unknown key {loc[-1]!r}; allowed keys: {', '.join(known)}"
    if kind == "missing":
        return "required but missing"
    text = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind != "literal_error":  # a literal error already lists the choices
        allowed = _allowed(model, loc)
        if allowed:
            text += f"; allowed: {allowed}"
    if kind not in ("value_error", "assertion_error"):
        text += f" (got {_shown(given)})"
    return text


def _shown(value: object) -> str:
    """repr() of a value as an error quotes it: short and flat, whatever the file held."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlist, short.maxdict = 3, 60, 60, 6, 4
    return short.repr(value)


def _allowed(model: type[BaseModel], loc: tuple) -> str:
    """The allowed range or choices of the field at ``loc``, as text ('' when unconstrained)."""
    if not loc:
        return ""
    parent = _resolve(model, loc[:-1])
    if not _is_model(parent) or not isinstance(loc[-1], str) or loc[-1] not in parent.model_fields:
        return ""
    info = parent.model_fields[loc[-1]]
    lo = hi = None
    lo_op, hi_op = ">=", "<="
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lo, lo_op = meta.gt, ">"
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.Lt):
            hi, hi_op = meta.lt, "<"
    if lo is not None and hi is not None:
        return f"{lo_op} {lo} and {hi_op} {hi}" if (lo_op, hi_op) != (">=", "<=") else f"[{lo}, {hi}]"
    if lo is not None:
        return f"{lo_op} {lo}"
    if hi is not None:
        return f"{hi_op} {hi}"
    choices = _literal_choices(info.annotation)
    return "one of " + ", ".join(repr(c) for c in choices) if choices else ""


def _literal_choices(annotation) -> list:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return []


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _resolve(model: type[BaseModel], loc: tuple):
    """Walk ``loc`` through the model's annotations to the type found there (or None)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if _is_model(tp) and isinstance(part, str) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _unwrap(tp):
    """Strip Optional / Annotated so the walk reaches the model or container inside."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if _is_model(a) or typing.get_origin(a) in (list, dict, tuple)]
            tp = models[0] if models else args[0]
        else:
            return tp


def resolve_path(base_file: Path | None, value: str) -> Path:
    """A path written in a file is relative to that file's folder, as a user expects."""
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # "~someone" with no such user: the path as written, which will not be found
        p = Path(value)
    if not p.is_absolute() and base_file is not None:
        p = Path(base_file).parent / p
    return p.resolve()
