"""``packrig emulate`` as a well-behaved process: it never outlives the rig that started it, it
leaves the emulated bench safe on its way out, the rig names its death, and its ports hold up.

Each test proves one thing. The emulator runs as a real child process (``python -m rig.cli
emulate``), the rig too where the rig is the one that dies (a child SIGKILLed by the test), and
everything is reached through the real transports: TCP sockets, pyvisa-py, the control port.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pyvisa

from rig.bench import Bench
from emulator.transports.control_port import LISTEN_BACKLOG, MAX_REQUEST, ControlServer
from rig.emulator_client.remote_emulator import RemoteEmulator
from emulator.transports.rs485_line import LineServer
from emulator.instruments.scpi_server import ScpiDevice, ScpiServer
from emulator.transports.socketcand_server import SocketcandServer
from rig.errors import EmulatorDied, InstrumentError
from rig.files.bench_file import BENCHES, load_bench

SUBPROCESS_BENCH = BENCHES / "emulated-subprocess.toml"
EXIT_WITHIN_S = 5.0  # the bound: the emulator is gone this long after its rig
BURST = 100


def _gone(pid: int) -> bool:
    """No such process any more, or only its exit status left (a zombie holds no port)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, within_s: float) -> float:
    started = time.monotonic()
    while not _gone(pid):
        assert time.monotonic() - started < within_s, f"emulator pid {pid} still running after {within_s:g} s"
        time.sleep(0.02)
    return time.monotonic() - started


def _wait_file(path: Path, process: subprocess.Popen | None = None, within_s: float = 30.0) -> dict:
    deadline = time.monotonic() + within_s
    while not (path.exists() and path.stat().st_size):
        assert process is None or process.poll() is None, f"exited with {process.returncode} before {path.name}"
        assert time.monotonic() < deadline, f"no {path.name} within {within_s:g} s"
        time.sleep(0.02)
    return json.loads(path.read_text())


class HandStarted:
    """``packrig emulate`` started as a person starts it (no owner), its stderr in a file."""

    def __init__(self, tmp_path: Path, *args: str):
        self.endpoints_file, self.exit_file = tmp_path / "endpoints.json", tmp_path / "exit.json"
        self.stderr_path = tmp_path / "stderr.txt"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rig.cli", "emulate", "--quiet", "--bench", str(SUBPROCESS_BENCH),
                 "--packs", "1", "--endpoints-file", str(self.endpoints_file),
                 "--exit-file", str(self.exit_file), *args], stderr=stderr)
        self.ends = _wait_file(self.endpoints_file, self.process)

    def port(self, name: str) -> int:
        return self.ends["control"] if name == "control" else int(self.ends["instruments"][name].split("::")[2])

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


@pytest.fixture
def hand_started(tmp_path):
    emulator = HandStarted(tmp_path)
    yield emulator
    emulator.stop()


def _rig_child(tmp_path: Path, script: str) -> tuple[subprocess.Popen, dict]:
    """A rig process running ``script``; it writes what the test needs to ``rig.json``."""
    out = tmp_path / "rig.json"
    code = "import json, os, sys, time\nOUT = " + repr(str(out)) + "\n" + textwrap.dedent(script)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    return process, _wait_file(out, process)


# --- the rig dies or lets go: the emulator stops, safe --------------------------------------------

def test_sigkill_of_the_rig_leaves_no_emulator_process_within_5_s(tmp_path):
    rig, info = _rig_child(tmp_path, f"""
        from rig.emulator_client.remote_emulator import RemoteEmulator
        emulator = RemoteEmulator(["--bench", {str(SUBPROCESS_BENCH)!r}, "--packs", "1"])
        json.dump({{"pid": emulator.process.pid, "exit_file": str(emulator._exit_file)}}, open(OUT + ".tmp", "w"))
        os.replace(OUT + ".tmp", OUT)
        time.sleep(60)
    """)
    try:
        rig.kill()
        rig.wait(5)
        took = _wait_gone(info["pid"], EXIT_WITHIN_S)
        report = json.loads(Path(info["exit_file"]).read_text())
    finally:
        if not _gone(info["pid"]):
            os.kill(info["pid"], signal.SIGKILL)
    assert report["safe"], report
    assert report["safe_state"].startswith("PSU output off, e-load input off"), report
    print(f"emulator gone {took:.2f} s after the rig's SIGKILL ({report['reason']})")


def test_owned_emulator_stops_when_its_rig_process_is_gone_even_without_a_control_connection(tmp_path):
    """The parent watch alone (the rig never connected to the control port, so no EOF tells)."""
    rig, info = _rig_child(tmp_path, f"""
        import subprocess
        ready, exit_file = OUT + ".endpoints", OUT + ".exit"
        p = subprocess.Popen([sys.executable, "-m", "rig.cli", "emulate", "--quiet", "--bench",
                              {str(SUBPROCESS_BENCH)!r}, "--packs", "1", "--endpoints-file", ready,
                              "--exit-file", exit_file, "--owner-pid", str(os.getpid())])
        while not os.path.exists(ready):
            time.sleep(0.02)
        json.dump({{"pid": p.pid, "exit_file": exit_file}}, open(OUT + ".tmp", "w"))
        os.replace(OUT + ".tmp", OUT)
        time.sleep(60)
    """)
    try:
        time.sleep(0.5)
        assert not _gone(info["pid"]), "the emulator stopped while its rig was alive"
        rig.kill()
        rig.wait(5)
        _wait_gone(info["pid"], EXIT_WITHIN_S)
        report = _wait_file(Path(info["exit_file"]), within_s=1.0)
    finally:
        if not _gone(info["pid"]):
            os.kill(info["pid"], signal.SIGKILL)
    assert report["reason"] == f"its rig, pid {rig.pid}, is gone" and report["safe"], report


def test_closing_the_control_connection_stops_the_emulator_safe():
    remote = RemoteEmulator(["--bench", str(SUBPROCESS_BENCH), "--packs", "1"])
    try:
        remote._replies.close()  # the rig lets go without a shutdown request
        remote._sock.close()
        assert remote.process.wait(EXIT_WITHIN_S) == 0
        report = json.loads(remote._exit_file.read_text())
    finally:
        remote._sock = None
        remote.close()
    assert report["reason"] == "its control connection closed" and report["safe"], report


def test_emulator_started_by_hand_keeps_running_when_clients_come_and_go(hand_started):
    for name in ("control", "psu"):
        with socket.create_connection(("127.0.0.1", hand_started.port(name)), timeout=2) as client:
            client.sendall(b'{"op": "status"}\n' if name == "control" else b"*IDN?\n")
            assert client.makefile("rb").readline()
    time.sleep(2 * 0.1 + 0.5)  # several of its looks at its parent and its clients
    assert hand_started.process.poll() is None, hand_started.stderr()


def test_sigterm_puts_the_emulated_bench_in_its_safe_state_before_exit(hand_started):
    rm = pyvisa.ResourceManager("@py")
    psu = rm.open_resource(hand_started.ends["instruments"]["psu"], read_termination="\n",
                           write_termination="\n", timeout=2000)
    io = rm.open_resource(hand_started.ends["instruments"]["io"], read_termination="\n",
                          write_termination="\n", timeout=2000)
    psu.write("VOLT 55;CURR 5;OUTP ON")
    io.write("ROUT:CLOS (@102)")  # the breaker contactor
    assert psu.query("STAT:OPER:COND?") != "4" and io.query("ROUT:CLOS? (@102)") == "1"
    assert hand_started.stop() == 0
    psu.close(), io.close()
    report = json.loads(hand_started.exit_file.read_text())
    assert report == {"reason": "SIGTERM", "safe": True, "safe_state": "PSU output off, e-load input off, "
                      "e-load short off, every relay open, chamber standby"}


@pytest.mark.parametrize("content,option", [
    (b"\xff\xfe[bench]\n", "--bench"),                 # not UTF-8
    (b"x = " + b"[" * 5000 + b"\n", "--bench"),        # nested past any sane depth
    (None, "--bench"),                                 # a real bench: no [emulator] section
    (b"\xff\xfe[bms]\n", "--firmware"),
], ids=["non-utf8-bench", "nested-bench", "real-bench", "non-utf8-firmware"])
def test_emulate_refuses_a_bad_file_in_one_line_before_serving(tmp_path, content, option):
    path = BENCHES / "example-real.toml" if content is None else tmp_path / "bad.toml"
    if content is not None:
        path.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "rig.cli", "emulate", option, str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 4 and done.stdout == "", done
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"error: {path}: "), done.stderr


# --- behind a killed rig, the instruments' own watchdogs act --------------------------------------

def test_psu_and_eload_outputs_go_off_through_their_watchdogs_after_the_rig_is_killed(tmp_path):
    """The emulator outlives the rig here (started by the test, wall-clock time), as a real bench
    would: the outputs stay on after the rig's connections are gone, then their watchdogs latch off."""
    emulator = HandStarted(tmp_path, "--clock", "wall")
    watchdog_s = 2
    try:
        rig, _ = _rig_child(tmp_path, f"""
            import pyvisa
            rm = pyvisa.ResourceManager("@py")
            ends = json.load(open({str(emulator.endpoints_file)!r}))["instruments"]
            psu, eload = (rm.open_resource(ends[n], read_termination="\\n", write_termination="\\n",
                                           timeout=2000) for n in ("psu", "eload"))
            psu.write("OUTP:PROT:WDOG:DEL {watchdog_s};:OUTP:PROT:WDOG ON;:VOLT 55;:CURR 5;:OUTP ON")
            eload.write("INP:PROT:WDOG:DEL {watchdog_s};:INP:PROT:WDOG ON;:CURR 5;:INP ON")
            assert psu.query("*OPC?") == eload.query("*OPC?") == "1"
            json.dump({{"on": True}}, open(OUT + ".tmp", "w"))
            os.replace(OUT + ".tmp", OUT)
            while True:  # a live rig feeds the watchdogs
                psu.query("*OPC?"), eload.query("*OPC?")
                time.sleep(0.2)
        """)
        rig.kill()
        rig.wait(5)
        killed = time.monotonic()
        rm = pyvisa.ResourceManager("@py")
        psu, eload = (rm.open_resource(emulator.ends["instruments"][n], read_termination="\n",
                                       write_termination="\n", timeout=2000) for n in ("psu", "eload"))
        time.sleep(0.3)  # the server has seen the rig's connections close
        # still on after the disconnect (this query feeds the watchdog: it counts from here)
        oper, ques = int(psu.query("STAT:OPER:COND?")), int(psu.query("STAT:QUES:COND?"))
        assert not oper & 4 and ques == 0, f"PSU output not on after the rig's kill (OPER {oper}, QUES {ques})"
        assert eload.query("INP?") == "1"
        assert time.monotonic() - killed < watchdog_s, "too slow to see the outputs before the watchdog"
        time.sleep(watchdog_s + 1.5)  # silence: nothing feeds the watchdogs now
        oper, ques = int(psu.query("STAT:OPER:COND?")), int(psu.query("STAT:QUES:COND?"))
        assert oper & 4 and ques & 2048, f"PSU output not latched off by its watchdog (OPER {oper}, QUES {ques})"
        assert eload.query("INP?") == "0"
        psu.close(), eload.close()
    finally:
        emulator.stop()


# --- the rig names a dead emulator ---------------------------------------------------------------

@pytest.fixture
def bench():
    b = Bench(load_bench(SUBPROCESS_BENCH), packs=1)
    yield b
    b.close()


def test_killed_emulator_is_named_by_the_clock(bench):
    os.kill(bench.emulator.process.pid, signal.SIGKILL)
    with pytest.raises(EmulatorDied, match=r"emulator process died \(signal SIGKILL, pid \d+\); safe state: "
                                           r"not reported") as died:
        bench.clock.sleep(1.0)
    assert died.value.returncode == -signal.SIGKILL


def test_killed_emulator_is_named_by_an_instrument_read_not_a_timeout(bench):
    bench.clock.sleep(2.0)
    os.kill(bench.emulator.process.pid, signal.SIGKILL)
    with pytest.raises(EmulatorDied, match="signal SIGKILL") as died:
        bench.dmm.voltage()  # what the supervisor's sample reads first
    assert isinstance(died.value.__context__, InstrumentError)


def test_emulator_that_exits_is_named_with_the_safe_state_it_reached(bench):
    bench.psu.apply(55.0, 5.0)
    bench.psu.output_on()
    bench.emulator.process.send_signal(signal.SIGTERM)
    bench.emulator.process.wait(EXIT_WITHIN_S)
    with pytest.raises(EmulatorDied, match=r"\(exit code 0, pid \d+\); safe state: reached by the emulator "
                                           r"before it exited \(SIGTERM\): PSU output off, e-load input off"):
        bench.clock.sleep(1.0)


# --- the control port and the other servers hold up ----------------------------------------------

def _rss_kib(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


def test_control_port_caps_a_request_line_and_keeps_serving(hand_started):
    pid = hand_started.process.pid
    with socket.create_connection(("127.0.0.1", hand_started.port("control")), timeout=10) as client:
        replies = client.makefile("rb")
        client.sendall(b'{"op": "status"}\n')
        assert json.loads(replies.readline())["ok"]
        before = _rss_kib(pid)
        chunk = b"x" * (1 << 20)
        for _ in range(64):  # a 64 MiB line
            client.sendall(chunk)
        client.sendall(b"\n" + b'{"op": "status"}\n')
        refused = json.loads(replies.readline())
        assert not refused["ok"] and refused["error"] == (f"request line of {64 * (1 << 20) + 1} bytes is over "
                                                          f"the {MAX_REQUEST}-byte cap; discarded")
        assert json.loads(replies.readline())["ok"], "the same connection still serves"
        grown_mib = (_rss_kib(pid) - before) / 1024
    assert grown_mib < 4, f"the emulator grew by {grown_mib:.1f} MiB reading a 64 MiB line"


def test_control_client_reset_is_one_log_line(hand_started):
    with socket.create_connection(("127.0.0.1", hand_started.port("control")), timeout=2) as client:
        client.sendall(b'{"op": "sta')
        time.sleep(0.2)  # the server is reading the line
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    with socket.create_connection(("127.0.0.1", hand_started.port("control")), timeout=2) as client:
        client.sendall(b'{"op": "status"}\n')
        assert json.loads(client.makefile("rb").readline())["ok"], "the emulator still serves"
    deadline = time.monotonic() + 2.0
    while not hand_started.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = hand_started.stderr().splitlines()
    assert len(lines) == 1 and "control client 127.0.0.1:" in lines[0] and "reset" in lines[0], lines


def _connect_all(port: int, count: int, within_s: float) -> list[socket.socket]:
    """``count`` connections started at once; returns those the OS completed within ``within_s``."""
    pending = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        pending.append(sock)
    done, deadline = [], time.monotonic() + within_s
    while pending and (left := deadline - time.monotonic()) > 0:
        _, writable, _ = select.select([], pending, [], left)
        for sock in writable:
            pending.remove(sock)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                done.append(sock)
            else:
                sock.close()
    for sock in pending:
        sock.close()
    return done


@pytest.mark.parametrize("make", [
    lambda: ControlServer(None),
    lambda: ScpiServer(ScpiDevice()),
    lambda: SocketcandServer(),
    lambda: LineServer(("127.0.0.1", 0), None, "RS485 client"),
], ids=["control", "scpi", "socketcand", "rs485"])
def test_listen_backlog_queues_a_burst_the_server_has_not_accepted_yet(make):
    """Not accepting (not started): only the listen backlog holds the connections (5 would refuse)."""
    server = make()
    try:
        connected = _connect_all(server.server_address[1], BURST, within_s=0.5)
        assert len(connected) == BURST, f"{len(connected)} of {BURST} connections queued"
        assert server.request_queue_size == LISTEN_BACKLOG >= 64
    finally:
        for sock in locals().get("connected", []):
            sock.close()
        server.server_close()


@pytest.mark.parametrize("name,request_,ok", [("control", b'{"op": "endpoints"}\n', b'{"ok": true'),
                                              ("psu", b"*IDN?\n", b"Keysight")])
def test_a_burst_of_100_connections_is_accepted_and_served(hand_started, name, request_, ok):
    clients = _connect_all(hand_started.port(name), BURST, within_s=5.0)
    try:
        assert len(clients) == BURST
        for client in clients:
            client.setblocking(True)
            client.settimeout(10)
            client.sendall(request_)
        assert all(client.makefile("rb").readline().startswith(ok) for client in clients)
    finally:
        for client in clients:
            client.close()
