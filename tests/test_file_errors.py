"""Every file error is one line: whatever a file holds, loading it gives a ConfigError naming the
file, never a traceback, and `packrig check` / `run` / `emulate` print that one line.

The bad files are the kinds an outside tester throws at a loader: another encoding, binary
data, nothing at all, megabytes, arrays or tables nested thousands deep, duplicate keys, values
of the wrong type or with control characters, paths that cannot be paths.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.cli import main
from rig.errors import ConfigError
from rig.files.bench_file import EMULATED_BENCH, load_bench
from rig.files.envelope import limits_in_force
from emulator.firmware.profile import CONFORMING_PROFILE, load_firmware_profile
from rig.files.loader import MAX_FILE_BYTES, MAX_NESTING, read_toml
from rig.files.pack_spec import DEFAULT_PACK_SPEC, load_pack_spec

LOADERS = {"bench": (load_bench, EMULATED_BENCH), "spec": (load_pack_spec, DEFAULT_PACK_SPEC),
           "firmware": (load_firmware_profile, CONFORMING_PROFILE)}


def _bench_text() -> str:
    return EMULATED_BENCH.read_text().replace('pack_spec = "../../testcases/pack_spec.toml"',
                                              f'pack_spec = "{DEFAULT_PACK_SPEC}"')


def _latin1(original: Path) -> bytes:
    return ("# température de la chambre\n" + original.read_text()).encode("latin-1", "replace")


def _first_table(original: Path) -> str:
    return re.search(r"^\[([a-z_.0-9]+)\]", original.read_text(), re.M).group(1)


# name -> (bytes of the file given the original, what the one line says)
BAD_FILES = {
    "latin-1": (_latin1, "not UTF-8 text: byte 0xE9 at offset 6"),
    "utf-16": (lambda o: o.read_text().encode("utf-16"), "not UTF-8 text"),
    "binary": (lambda o: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(64), "not UTF-8 text"),
    "nul-byte": (lambda o: o.read_bytes().replace(b"\n", b"\n\x00", 1), "binary, not a text file"),
    "empty": (lambda o: b"", "empty"),
    "blank": (lambda o: b"\n   \n\t\n", "empty"),
    "comments-only": (lambda o: b"# nothing here\n# at all\n", "empty"),
    "huge": (lambda o: o.read_bytes() + b"#" * MAX_FILE_BYTES, "larger than the 1 MiB a file may have"),
    "nested-arrays": (lambda o: b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "nested-inline-tables": (lambda o: b"a = " + b"{ b = " * 5000 + b"1" + b" }" * 5000,
                             "nested too deeply"),
    "nested-table-header": (lambda o: b"[" + b".".join([b"a"] * 5000) + b"]\nx = 1\n",
                            f"nested 5001 levels deep; at most {MAX_NESTING}"),
    "nested-dotted-key": (lambda o: b".".join([b"k"] * 5000) + b" = 1\n", "nested 5000 levels deep"),
    "nested-just-over": (lambda o: b"a = " + b"[" * MAX_NESTING + b"]" * MAX_NESTING,
                         f"nested {MAX_NESTING + 1} levels deep"),
    "duplicate-key": (lambda o: o.read_bytes().replace(b"[meta]\n", b"[meta]\nname = 'x'\n", 1)
                      if b"[meta]\n" in o.read_bytes() else
                      o.read_bytes().replace(b"[bench]\n", b"[bench]\nname = 'x'\n", 1), "not valid TOML"),
    "duplicate-table": (lambda o: o.read_bytes() + f"\n[{_first_table(o)}]\n".encode(), "not valid TOML"),
    "not-toml": (lambda o: b"{\"json\": true}\n", "not valid TOML"),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_a_bad_file_is_one_config_error(tmp_path, kind, bad):
    loader, original = LOADERS[kind]
    make, says = BAD_FILES[bad]
    path = tmp_path / f"{bad}.toml"
    path.write_bytes(make(original))
    with pytest.raises(ConfigError) as info:
        loader(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and says in text, text
    assert len(text) <= ConfigError.MAX_CHARS


@pytest.mark.parametrize("bad", sorted(BAD_FILES))
def test_packrig_check_prints_one_line_and_fails(tmp_path, capsys, bad):
    make, says = BAD_FILES[bad]
    path = tmp_path / f"{bad}.toml"
    path.write_bytes(make(EMULATED_BENCH))
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"error: {path}: ") and says in err


# (the bench's edited text, what the one line says): a value a field cannot take
ODD_VALUES = [
    ('psu_max_voltage_v = 64.5', 'psu_max_voltage_v = "sixty"', "valid number"),
    ('psu_max_voltage_v = 64.5', 'psu_max_voltage_v = "' + "6" * 100_000 + '"', "valid number"),
    ('psu_max_voltage_v = 64.5', "psu_max_voltage_v = " + "[" * 30 + "1" + "]" * 30, "valid number"),
    ('psu_max_voltage_v = 64.5', "psu_max_voltage_v = 1979-05-27T07:32:00Z", "valid number"),
    ('psu_max_voltage_v = 64.5', 'psu_max_voltage_v = 64.5\n"bad\\nkey\\u0007" = 1', "unknown key"),
    ('name = "emulated"', 'name = 12', "valid string"),
    ('packs = 2', 'packs = 2.0', "valid integer"),
    ('packs = 2', 'packs = "2"', "valid integer"),
    ('bitrate = 500000', 'bitrate = "500000"', "500000"),
    ('has_chamber = true', 'has_chamber = "true"', "valid boolean"),
    ('[limits]', '[limits.extra]\nx = 1\n[limits]', "unknown key"),
    ('pack_spec = "', 'pack_spec = "\\u0000', "should match pattern"),
    ('pack_spec = "', 'pack_spec = "~no-such-user-here/', "bench.pack_spec: no such file"),
    ('pack_spec = "', 'pack_spec = "' + "x" * 300 + '/', "bench.pack_spec: no such file"),
]


@pytest.mark.parametrize("old,new,says", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_an_odd_value_is_one_line(tmp_path, old, new, says):
    text = _bench_text()
    assert old in text, f"test setup: {old!r}"
    path = tmp_path / "bench.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_bench(path)
    text = str(info.value)
    assert "\n" not in text and "\x07" not in text and "\x1b" not in text and says in text, text
    assert len(text) <= ConfigError.MAX_CHARS


def test_a_name_with_control_characters_is_shown_escaped(tmp_path):
    """A bench's name is free text; where the rig shows it, it stays one line per line."""
    path = tmp_path / "bench.toml"
    path.write_text(_bench_text().replace('name = "emulated"', 'name = "line\\nbreak\\u001b[31m"', 1))
    bench = load_bench(path)
    assert bench.file.bench.name == "line\nbreak\x1b[31m"
    title = limits_in_force(bench)[0]
    assert "\\n" in title and "\n" not in title and "\x1b" not in title


def test_config_error_never_fails_on_odd_values():
    """The message is built from whatever the caller passes: no format code can fail on it."""
    for value in ("64.5 V", None, b"\xff", 1e400, float("nan"), object(), ["a\nb"], "x" * 10_000):
        err = ConfigError(Path("f.toml"), f"limits.{value}", f"got {value}\r\n")
        assert "\n" not in str(err) and "\r" not in str(err) and len(str(err)) <= ConfigError.MAX_CHARS


def test_a_folder_or_a_fifo_is_not_read(tmp_path):
    with pytest.raises(ConfigError, match="not a regular file"):
        read_toml(tmp_path)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # opening it would block until a writer came: never opened
    with pytest.raises(ConfigError, match="not a regular file"):
        load_bench(fifo)


def test_at_the_size_cap_a_file_is_still_read(tmp_path):
    text = _bench_text()
    path = tmp_path / "bench.toml"
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_bench(path).file.bench.name == "emulated"


def _packrig(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("bad", ["latin-1", "nested-arrays", "empty"])
def test_packrig_emulate_and_run_give_the_one_line_as_a_usage_error(tmp_path, bad):
    make, says = BAD_FILES[bad]
    path = tmp_path / f"{bad}.toml"
    path.write_bytes(make(EMULATED_BENCH))
    for command in (["emulate", "--bench", str(path)],
                    ["run", "--bench", str(path), "--reports", str(tmp_path / "reports"), "--no-html"]):
        done = _packrig(*command, cwd=tmp_path)
        assert done.returncode == 4, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
        lines = [line for line in (done.stderr + done.stdout).splitlines() if str(path) in line]
        assert len(lines) == 1 and says in lines[0], (command, done.stdout, done.stderr)


@pytest.mark.parametrize("kind,old,new,field,says", [
    ("spec", "l3 = { threshold = 3.65, delay_s = 0.5 }", "l3 = { threshold = true, delay_s = 0.5 }",
     "protections.cell_over_voltage.l3.threshold", "valid number"),
    ("spec", "l3 = { threshold = 3.65, delay_s = 0.5 }", 'l3 = { threshold = "3.65", delay_s = 0.5 }',
     "protections.cell_over_voltage.l3.threshold", "valid number"),
    ("firmware", "wake_enabled = true", "wake_enabled = 1", "power_on.wake_enabled", "valid boolean"),
    ("firmware", "wake_enabled = true", 'wake_enabled = "yes"', "power_on.wake_enabled", "valid boolean"),
])
def test_types_are_strict_in_every_file_kind(tmp_path, kind, old, new, field, says):
    """``true`` is no number and ``1`` or ``"yes"`` no bool, in a pack spec or profile too."""
    loader, original = LOADERS[kind]
    text = original.read_text()
    assert old in text, f"test setup: {old!r}"
    path = tmp_path / original.name
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        loader(path)
    assert info.value.field == field and says in str(info.value) and "\n" not in str(info.value)
