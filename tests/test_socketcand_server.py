"""The emulator's socketcand server, against python-can's own socketcand client.

The wire format is checked as known answers (the daemon's ``state_raw.c`` formats and
``doc/protocol.md``'s examples) and against python-can's parser; the server is checked with
real ``can.Bus(interface="socketcand")`` clients and raw sockets, in this process. Every socket
operation has a timeout of a few seconds, so a failure fails, never hangs.
"""
from __future__ import annotations

import logging
import math
import socket
import subprocess
import sys
import threading
import time

import can
import pytest
from can.interfaces.socketcand.socketcand import (convert_ascii_message_to_can_message,
                                                  convert_can_message_to_ascii_message)

import emulator.transports.socketcand_server as socketcand
from rig.bench import quiet_socketcand_fragments
from emulator.pack.can_reports import Frame
from emulator.transports.socketcand_server import SocketcandServer, format_frame, parse_send, split_commands

TIMEOUT = 2.0


def msg(arbitration_id: int, data: bytes = b"", t: float = 0.0, **kw) -> can.Message:
    """A frame; extended when the ID needs it, unless ``is_extended_id`` says otherwise."""
    kw.setdefault("is_extended_id", arbitration_id > 0x7FF)
    return can.Message(timestamp=t, arbitration_id=arbitration_id, data=data, **kw)


def same_frame(got: can.Message, sent: can.Message) -> bool:
    """ID, ID width, data and the timestamp to the microsecond."""
    return (got.arbitration_id, got.is_extended_id, bytes(got.data), round(got.timestamp * 1e6)) == \
        (sent.arbitration_id, sent.is_extended_id, bytes(sent.data), round(sent.timestamp * 1e6))


class RawClient:
    """A plain TCP client of the server, speaking the protocol's text by hand."""

    def __init__(self, port: int, rcvbuf: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode("ascii") if isinstance(data, str) else data)

    def expect(self, text: str) -> None:
        """The next bytes from the server are exactly ``text``."""
        want = text.encode("ascii")
        while len(self.buf) < len(want):
            chunk = self.sock.recv(4096)
            assert chunk, f"connection closed; got {self.buf!r}, expected {want!r}"
            self.buf += chunk
        got, self.buf = self.buf[:len(want)], self.buf[len(want):]
        assert got == want

    def expect_closed(self) -> None:
        """The server closed the connection (whatever it sent before is drained)."""
        while chunk := self.sock.recv(65536):
            pass
        assert chunk == b""

    def open_raw(self) -> None:
        self.expect("< hi >")
        self.send("< open can0 >")
        self.expect("< ok >")
        self.send("< rawmode >")
        self.expect("< ok >")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    srv = SocketcandServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def clients(server):
    """Open python-can buses (``clients()``) and raw sockets (``clients(raw=True)``); all closed after."""
    opened = []

    def open_client(raw: bool = False):
        client = RawClient(server.port) if raw else can.Bus(**server.bus_kwargs())
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close() if isinstance(client, RawClient) else client.shutdown()


def receive(bus: can.BusABC, count: int) -> list[can.Message]:
    got = []
    while len(got) < count and (m := bus.recv(timeout=TIMEOUT)) is not None:
        got.append(m)
    return got


# --- the wire format, without a socket ----------------------------------------------------------

@pytest.mark.parametrize("message, line", [
    (msg(0x123, bytes.fromhex("11223344"), 23.424242), "< frame 123 23.424242 11223344 >"),
    (msg(0x1AAAAAAA, b"\x01\xf1", 1.000001), "< frame 1AAAAAAA 1.000001 01F1 >"),
    (msg(0x7, b"", 0.0), "< frame 007 0.000000  >"),  # no data: the daemon's two spaces
    (msg(0x18A00202, bytes(range(8)), 0.1 + 0.2), "< frame 18A00202 0.300000 0001020304050607 >"),
    (msg(0x351, b"\xff", 12345.9999996), "< frame 351 12346.000000 FF >"),  # rounds into the second
    (msg(0x5, b"", 0.0, is_extended_id=True), "< frame 00000005 0.000000  >"),
])
def test_frames_are_written_as_the_daemon_writes_them(message, line):
    assert format_frame(message) == line


@pytest.mark.parametrize("message", [
    msg(0x123, b"\x01", 4.2), msg(0x1FFFFFFF, bytes(8), 1e6 + 0.000001), msg(0x000, b"", 0.0),
    msg(0x7FF, bytes([0xA5] * 8), 3600.5), msg(0x00000800, b"\x00\x00", 7.25),
])
def test_python_can_reads_our_frames_exactly(message):
    assert same_frame(convert_ascii_message_to_can_message(format_frame(message)), message)


@pytest.mark.parametrize("message", [
    msg(0x18A00302, bytes(range(8)), 3600.5), msg(0x351, bytes.fromhex("3002E803E803D001"), 12.0),
])
def test_the_packs_frame_records_go_on_the_wire_as_their_messages_do(message):
    """The emulated pack hands the server encoded records, not python-can messages: same line."""
    record = Frame(message.timestamp, message.arbitration_id, message.is_extended_id, bytes(message.data))
    assert format_frame(record) == format_frame(message)
    assert same_frame(record.message(), message)


def test_a_burst_is_the_lines_of_its_frames_in_order():
    """format_frames shares work across a burst (timestamps, repeated payloads): same text."""
    burst = [msg(0x351, bytes.fromhex("3002E803E803D001"), 12.0), msg(0x355, b"\x32\x00", 12.0),
             msg(0x18A00302, bytes(range(8)), 12.0), msg(0x351, bytes.fromhex("3002E803E803D001"), 13.0),
             msg(0x351, bytes.fromhex("3002E803E803D002"), 13.0), msg(0x7, b"", 0.0),
             msg(0x5, b"", 0.0, is_extended_id=True), msg(0x351, b"\xff", 12345.9999996)]
    records = [Frame(m.timestamp, m.arbitration_id, m.is_extended_id, bytes(m.data)) for m in burst]
    expected = "".join(format_frame(m) for m in burst)
    assert socketcand.format_frames(burst) == socketcand.format_frames(records) == expected
    assert socketcand.format_frames(burst) == expected  # again, from what it kept


def test_a_burst_with_a_frame_socketcand_cannot_carry_raises():
    with pytest.raises(ValueError):
        socketcand.format_frames([msg(0x123, b"\x01", 1.0), msg(0x123, b"\x01", 1.0, is_remote_frame=True)])
    with pytest.raises(ValueError):
        socketcand.format_frames([msg(0x123, b"\x01", 1.0), msg(0x123, b"\x01", -1.0)])


@pytest.mark.parametrize("message", [
    msg(0x800, b"", 1.0, is_extended_id=False), msg(0x20000000, b"", 1.0),
    msg(0x123, b"", -0.5), msg(0x123, b"", math.nan), msg(0x123, b"", math.inf),
    msg(0x123, b"", 1.0, is_remote_frame=True, dlc=2), msg(0x123, b"", 1.0, is_error_frame=True),
    msg(0x123, bytes(12), 1.0, is_fd=True),
])
def test_frames_socketcand_cannot_carry_raise(message):
    with pytest.raises(ValueError):
        format_frame(message)


@pytest.mark.parametrize("command, arbitration_id, extended, data", [
    ("< send 123 0 >", 0x123, False, b""),  # doc/protocol.md examples
    ("< send 1AAAAAAA 2 1 F1 >", 0x1AAAAAAA, True, b"\x01\xf1"),
    ("< send 7ff 8 0 1 2 3 4 5 6 ff >", 0x7FF, False, bytes([0, 1, 2, 3, 4, 5, 6, 255])),
    ("< send 00000001 1 0a >", 0x1, True, b"\x0a"),  # 8 digits: extended, however small
    ("<send 5 0>", 0x5, False, b""),
])
def test_send_commands_are_read_as_the_daemon_reads_them(command, arbitration_id, extended, data):
    m = parse_send(command)
    assert (m.arbitration_id, m.is_extended_id, bytes(m.data)) == (arbitration_id, extended, data)
    assert m.timestamp == 0.0


@pytest.mark.parametrize("sent", [msg(0x305, b"\x00" * 8), msg(0x18A00202, b"\x01\xf1"), msg(0x12, b""),
                                  msg(0x1, b"\x80", is_extended_id=True)])
def test_what_python_can_sends_is_read_back(sent):
    assert same_frame(parse_send(convert_can_message_to_ascii_message(sent)), sent)


@pytest.mark.parametrize("command", [
    "< send 123 >", "< send 12G 0 >", "< send 123 9 1 2 3 4 5 6 7 8 9 >", "< send 123 2 11 >",
    "< send 123 1 111 >", "< send 800 0 >", "< send 20000000 0 >", "< send 123456789 0 >",
    "< sendx 123 0 >", "< send 0x12 0 >", "< send 123 1 zz >", "< send 123 -1 >",
])
def test_malformed_send_commands_raise(command):
    with pytest.raises(ValueError):
        parse_send(command)


def test_commands_are_cut_out_of_garbage_and_half_commands_wait():
    assert split_commands("junk< hi >x\r\n< open can0 >< raw") == (["< hi >", "< open can0 >"], "< raw")
    assert split_commands("no command at all\n") == ([], "")
    assert split_commands("<a<b> tail>") == (["<a<b>"], "")


# --- the server, with python-can's client and raw sockets ----------------------------------------

def test_the_handshake_and_commands_answer_as_the_daemon(server, clients):
    raw = clients(raw=True)
    raw.expect("< hi >")
    raw.send("< echo >")  # no bus open yet: the daemon knows only open here
    raw.expect("< error unknown command >")
    raw.send("< open can0 >")
    raw.expect("< ok >")
    raw.send("< echo >")
    raw.expect("< echo >")
    raw.send("< subscribe 0 0 123 >< controlmode >")  # BCM jobs and other modes: not emulated
    raw.expect("< error unknown command >< error unknown command >")
    raw.send("< rawmode >")
    raw.expect("< ok >")
    raw.send("< bcmmode >")
    raw.expect("< ok >")
    assert [reason for _, reason in server.protocol_errors] == ["unknown command"] * 3


def test_opening_another_bus_is_refused_and_closes(server, clients):
    raw = clients(raw=True)
    raw.expect("< hi >")
    raw.send("< open vcan7 >")
    raw.expect("< error could not open bus >")
    raw.expect_closed()


def test_endpoint_and_bus_kwargs(server):
    assert server.bus_kwargs() == {"interface": "socketcand", "host": "127.0.0.1", "port": server.port,
                                   "channel": "can0"}
    assert server.endpoint == f"socketcand://127.0.0.1:{server.port}/can0"


@pytest.mark.parametrize("channel", ["", "can 0", "a" * 17, "<can0>"])
def test_a_bus_name_the_protocol_cannot_carry_is_refused(channel):
    with pytest.raises(ValueError):
        SocketcandServer(channel)


def test_python_can_connects_from_another_process_while_the_bus_is_busy(server):
    """python-can must read the rawmode '< ok >' alone; without JOIN_DELAY_S 1 connect in 5 failed."""
    stop = threading.Event()

    def busy_bus():
        t = 0.0
        while not stop.is_set():
            t += 0.001
            server.broadcast([msg(0x351, b"\x01\x02", t)])
            time.sleep(0)  # yield as an emulator does between ticks, so frames follow '< ok >' at once

    pump = threading.Thread(target=busy_bus, daemon=True)
    pump.start()
    script = ("import can\n"
              "for _ in range(25):\n"
              f"    bus = can.Bus(**{server.bus_kwargs()!r})\n"
              "    assert bus.recv(timeout=2.0) is not None\n"
              "    bus.shutdown()\n")
    try:
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        pump.join(TIMEOUT)
    assert run.returncode == 0, run.stderr[-2000:]


def test_a_burst_of_1000_frames_arrives_in_order_with_its_virtual_timestamps(server, clients):
    bus = clients()
    server.wait_for_listeners(1)
    sent = []
    for i in range(1000):
        arbitration_id = (0x18A00000 + i * 7919) & 0x1FFFFFFF if i % 2 else (i * 37) & 0x7FF
        data = bytes((i * 13 + k) & 0xFF for k in range(i % 9))
        t = 86400.0 + i * 0.0123457 + (i % 3) * 1e-6  # irregular, microsecond-fine virtual time
        sent.append(can.Message(timestamp=t, arbitration_id=arbitration_id, is_extended_id=bool(i % 2),
                                data=data))
    server.broadcast(sent[:600])  # one tick's worth, then frame by frame
    for m in sent[600:]:
        server.broadcast([m])
    got = receive(bus, 1000)
    assert len(got) == 1000 and server.sent_count == 1000
    bad = [i for i, (g, s) in enumerate(zip(got, sent)) if not same_frame(g, s)]
    assert not bad, f"frame {bad[0]}: got {got[bad[0]]}, sent {sent[bad[0]]}"
    assert bus.recv(timeout=0.05) is None


def test_a_client_send_reaches_on_receive(server, clients):
    received, done = [], threading.Event()

    def on_receive(m):
        received.append(m)
        if len(received) == 3:
            done.set()

    server.on_receive = on_receive
    bus = clients()
    frames = [msg(0x305, bytes(8)), msg(0x18A00202, b"\x01\xf1\x7f"), msg(0x10, b"")]
    for m in frames:
        bus.send(m)
    assert done.wait(TIMEOUT)
    assert [(m.arbitration_id, m.is_extended_id, bytes(m.data), m.timestamp, m.channel) for m in received] \
        == [(m.arbitration_id, m.is_extended_id, bytes(m.data), 0.0, "can0") for m in frames]


def test_a_client_frame_reaches_the_other_clients_not_the_sender(server, clients):
    sender, other = clients(), clients()
    server.wait_for_listeners(2)
    server.broadcast([msg(0x351, b"\x01", 12.5)])
    assert len(receive(sender, 1)) == 1 and len(receive(other, 1)) == 1
    sender.send(msg(0x305, b"\xaa"))  # not stamped by on_receive: the bus's virtual time so far
    assert same_frame(receive(other, 1)[0], msg(0x305, b"\xaa", 12.5))
    server.on_receive = lambda m: setattr(m, "timestamp", 13.25)  # the emulator stamps it
    sender.send(msg(0x18A00202, b""))
    assert same_frame(receive(other, 1)[0], msg(0x18A00202, b"", 13.25))
    assert sender.recv(timeout=0.1) is None


def test_two_clients_both_receive_every_broadcast(server, clients):
    a, b = clients(), clients()
    server.wait_for_listeners(2)
    sent = [msg(0x100 + i, bytes([i]), 1.0 + i / 100) for i in range(100)]
    server.broadcast(sent)
    for bus in (a, b):
        got = receive(bus, 100)
        assert len(got) == 100 and all(same_frame(g, s) for g, s in zip(got, sent))


def test_a_client_in_bcm_mode_gets_frames_only_after_rawmode(server, clients):
    raw = clients(raw=True)
    raw.expect("< hi >")
    raw.send("< open can0 >")
    raw.expect("< ok >")
    server.broadcast([msg(0x123, b"\x01", 1.0)])
    raw.sock.settimeout(0.1)
    with pytest.raises(TimeoutError):
        raw.sock.recv(100)
    raw.sock.settimeout(TIMEOUT)
    raw.send("< rawmode >")
    raw.expect("< ok >")
    server.wait_for_listeners(1)
    server.broadcast([msg(0x123, b"\x02", 2.0)])
    raw.expect("< frame 123 2.000000 02 >")


def test_garbage_from_one_client_leaves_it_and_another_working(server, clients):
    received = []
    server.on_receive = received.append
    bus, raw = clients(), clients(raw=True)
    raw.open_raw()
    server.wait_for_listeners(2)
    raw.send(b"hello\r\n\x00\xff\xfe garbage without brackets >>>\n")  # dropped, as by the daemon
    raw.send("< bogus command >")
    raw.expect("< error unknown command >")
    raw.send("< send 12G 1 00 >< send 123 2 11 >")  # malformed sends: no reply, recorded
    raw.send("< send 123 1")  # half a command ...
    time.sleep(0.05)  # ... in its own TCP segment
    raw.send(" 42 >")
    raw.send("<" + "A" * (socketcand.MAX_COMMAND + 100))
    raw.expect("< error command too long >")
    raw.send("< echo >")
    raw.expect("< echo >")
    assert same_frame(receive(bus, 1)[0], msg(0x123, b"\x42", 0.0))  # the completed half command
    assert [(m.arbitration_id, bytes(m.data)) for m in received] == [(0x123, b"\x42")]
    server.broadcast([msg(0x200, b"\x01\x02", 3.5)])
    raw.expect("< frame 200 3.500000 0102 >")
    assert same_frame(receive(bus, 1)[0], msg(0x200, b"\x01\x02", 3.5))
    assert [reason for _, reason in server.protocol_errors][0] == "unknown command"
    assert len(server.protocol_errors) == 4 and server.protocol_errors[-1][1] == "command too long"


def test_a_client_gone_is_dropped_and_broadcasting_goes_on(server, clients):
    stays, leaves, aborts = clients(), clients(), clients(raw=True)
    aborts.open_raw()
    server.wait_for_listeners(3)
    leaves.shutdown()
    aborts.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    aborts.close()  # linger 0: a reset, not a FIN
    sent = [msg(0x300 + i % 16, bytes([i % 256]), i * 0.01) for i in range(2000)]
    for i in range(0, 2000, 100):
        server.broadcast(sent[i:i + 100])
    got = receive(stays, 2000)
    assert len(got) == 2000 and all(same_frame(g, s) for g, s in zip(got, sent))


def test_a_client_that_stops_reading_is_dropped_after_the_stall_time(server, monkeypatch):
    monkeypatch.setattr(socketcand, "STALL_S", 0.3)
    stalled = RawClient(server.port, rcvbuf=4096)
    try:
        stalled.open_raw()
        server.wait_for_listeners(1)
        frames = [msg(0x18A00202, bytes(8), i * 1e-3) for i in range(20000)]
        started = time.monotonic()
        for _ in range(10):  # up to 10 x 750 kB, more than loopback buffers hold
            server.broadcast(frames)
        assert time.monotonic() - started < 3.0
        stalled.expect_closed()
    finally:
        stalled.close()


def test_stop_closes_every_client_and_is_safe_twice():
    srv = SocketcandServer().start()
    try:
        raw = RawClient(srv.port)
        raw.open_raw()
        bus = can.Bus(**srv.bus_kwargs())
        srv.wait_for_listeners(2)
    finally:
        srv.stop()
    raw.expect_closed()
    assert bus.recv(timeout=0.1) is None  # python-can does not notice: recv times out, no raise
    bus.shutdown()
    raw.close()
    srv.stop()
    SocketcandServer().stop()  # never started


def test_the_rig_drops_only_pythoncans_split_frame_warnings(caplog):
    """python-can warns for every TCP read that ends inside a frame (thousands an hour on a busy
    bus); the rig drops those and keeps its other socketcand warnings."""
    quiet_socketcand_fragments()
    quiet_socketcand_fragments()  # twice: one filter
    log = logging.getLogger("can.interfaces.socketcand.socketcand")
    assert len(log.filters) == 1
    with caplog.at_level(logging.WARNING, logger=log.name):
        log.warning("Got incomplete message => waiting for more data")
        log.warning("Bad data: No opening < found => discarding entire buffer 'xyz'")
    assert [r.getMessage() for r in caplog.records] == [
        "Bad data: No opening < found => discarding entire buffer 'xyz'"]
