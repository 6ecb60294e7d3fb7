"""First contact with a real bench: every instrument identified before the first test, and a stop
naming the one that does not answer (instead of a timeout in every test).

A bench file whose instruments point at closed local ports stands for a bench that is switched
off; the emulator in its own process (``packrig emulate``, wall clock) stands for one that is on.
"""
from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from rig.cli import main
from rig.emulator_client.remote_emulator import RemoteEmulator
from rig.files.bench_file import BENCHES, load_bench
from rig.first_contact import first_contact, stop_message, table

pytest_plugins = ["pytester"]

REAL_BENCH = BENCHES / "example-real.toml"
INSTRUMENTS = ("psu", "eload", "dmm", "scanner", "chamber", "io")


def closed_port() -> int:
    """A local TCP port nothing listens on (bound by the OS, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def switched_off_bench(directory: Path) -> Path:
    """The example real bench with every instrument and the RS485 port at a closed local port,
    short timeouts, and a CAN bus (python-can 'virtual') on which nobody talks."""
    lines = []
    for line in REAL_BENCH.read_text().splitlines():
        if line.startswith("resource = "):
            line = f'resource = "TCPIP0::127.0.0.1::{closed_port()}::SOCKET"'
        elif line.startswith("timeout_s = "):
            line = "timeout_s = 0.5"
        elif line.startswith('interface = "pcan"'):
            line = 'interface = "virtual"'
        elif line.startswith('channel = "PCAN_USBBUS1"'):
            line = f'channel = "first-contact-{uuid.uuid4().hex}"'
        elif line.startswith('url = "/dev/ttyUSB0"'):
            line = f'url = "socket://127.0.0.1:{closed_port()}"'
        elif line.startswith("pack_spec = "):
            line = f'pack_spec = "{BENCHES.parent.parent / "testcases" / "pack_spec.toml"}"'
        lines.append(line)
    path = directory / "switched-off.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_part_of_a_switched_off_bench_is_named(tmp_path):
    bench = load_bench(switched_off_bench(tmp_path))
    rows, identity = first_contact(bench, listen_s=0.2)
    by_part = {r.part: r for r in rows}
    assert set(by_part) == {*INSTRUMENTS, "can", "rs485"} and identity is None
    for name in INSTRUMENTS:
        assert not by_part[name].ok and "no answer" in by_part[name].answer
    assert not by_part["rs485"].ok and "cannot open" in by_part["rs485"].answer
    assert by_part["can"].ok and by_part["can"].warning  # opened, silent: shown, not a stop
    stop = stop_message(rows, bench.path)
    assert all(f"{name} (" in stop for name in (*INSTRUMENTS, "rs485")) and "\n" not in stop
    assert "FAIL psu" in table(rows, "lab-bench-1")


def test_packrig_run_stops_at_first_contact_in_one_line_and_runs_nothing(tmp_path, capsys):
    bench = switched_off_bench(tmp_path)
    folder = tmp_path / "run"
    assert main(["run", "--plain", "--bench", str(bench), "--reports", str(folder)]) == 4
    out, err = capsys.readouterr()
    assert "first contact with bench 'lab-bench-1'" in out and "FAIL psu" in out  # the table
    assert len(err.strip().splitlines()) == 1 and "first contact failed" in err and "psu (keysight_n8900" in err
    assert not folder.exists(), "nothing ran: no run folder"


def test_pytest_stops_at_first_contact_before_the_first_test(pytester, tmp_path):
    bench = switched_off_bench(tmp_path)
    pytester.makepyfile("def test_uses_the_bench(bench):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest("--bench", str(bench), "--run-dir", str(tmp_path / "run"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*first contact with bench 'lab-bench-1'*", "*FAIL psu*"])
    result.stderr.fnmatch_lines(["ERROR: packrig: first contact failed*psu (keysight_n8900*"])
    assert "must not run" not in result.stdout.str()


def test_a_bench_that_is_on_answers_every_part(tmp_path):
    from tests.test_exits import WALL_BENCH, bench_file_for

    emulator = RemoteEmulator(["--bench", str(WALL_BENCH), "--clock", "wall", "--packs", "1"])
    try:
        bench = load_bench(bench_file_for(emulator, tmp_path))
        rows, _ = first_contact(bench, listen_s=0.5)
    finally:
        emulator.close()
    by_part = {r.part: r for r in rows}
    assert all(r.ok for r in rows), table(rows, "emulated as real")
    assert "N89" in by_part["psu"].answer.upper() and "34465A" in by_part["dmm"].answer.upper()
    assert stop_message(rows, bench.path) is None
