"""The emulated pack's CAN bus, served as the socketcand daemon serves a bus, for a rig in another process.

python-can's stock ``socketcand`` interface is a client of linux-can/socketcand, so the rig opens
``can.Bus(**server.bus_kwargs())`` as on a real bench, and ``python -m can.viewer`` or ``cantools
monitor`` can watch the same bus. Served is what python-can uses, as the daemon writes it
(``doc/protocol.md``, ``src/state_*.c``); no UDP beacon, the rig is given the port::

    server → client                 client → server
    < hi >                          (on connect)
                                    < open can0 >   (another bus: < error could not open bus >, closed)
    < ok >                          (BCM mode: no frames; BCM jobs are not emulated)
                                    < rawmode >     (and < bcmmode > back)
    < ok >                          (RAW mode: every frame on the bus follows)
    < frame 123 12.345678 1122 >    standard ID: 3 digits; data: one unspaced hex string
    < frame 18A00202 12.400000  >   extended ID: 8 digits; no data: two spaces, as the daemon
                                    < send 1AAAAAAA 2 1 F1 >   (8 digits: extended)
    < echo >                        < echo >
    < error unknown command >       anything else (BCM jobs, controlmode, isotpmode too)

Text outside ``<`` ... ``>`` is dropped, as by the daemon; over :data:`MAX_COMMAND` characters
without ``>`` earn ``< error command too long >``. A malformed ``send`` gets no reply (the daemon
only logs it) and goes to :attr:`SocketcandServer.protocol_errors`.

**Frames carry the emulator's timestamps**, not a wall clock: ``msg.timestamp`` is the virtual
time the pack sent the frame at, so the rig sees the pack's timing however fast the emulator
runs. A client's ``send`` goes to :attr:`SocketcandServer.on_receive` (timestamp 0: the emulator
stamps it) and to the *other* RAW clients, as the daemon's other sockets hear it (the sender's
does not: ``CAN_RAW_RECV_OWN_MSGS`` is off by default).

Quirks of python-can's client (``can/interfaces/socketcand/socketcand.py``): its handshake reads
each reply with one ``recv(256)`` and compares it whole, so ``< hi >`` and ``< ok >`` go alone and
a RAW client joins the bus :data:`JOIN_DELAY_S` after its ``< ok >`` (a frame in the same read
fails ``Bus()``: 1 connect in 5 on a busy bus). It splits a frame on spaces into 4 parts at most
(hence the unspaced data, the two spaces), takes 3 ID digits as standard and other counts as
extended, reads ``< error`` as an error frame (text there makes ``recv`` raise), misses EOF, and
logs a warning for each read that ends mid-frame, common in bursts (the rig drops those:
:func:`rig.bench.quiet_socketcand_fragments`).
"""
from __future__ import annotations

import logging
import math
import re
import socket
import socketserver
import sys
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress

import can

from rig.errors import WaitTimeout

MAX_COMMAND = 8290  # the daemon's receive buffer (socketcand.h MAXLEN)
STALL_S = 5.0  # a client that takes no bytes for this long is dropped, not waited for forever
JOIN_DELAY_S = 0.05  # python-can must read the rawmode '< ok >' alone (module docstring)
LISTEN_BACKLOG = 128  # connections queued before they are accepted (socketserver's default: 5)
_CHUNK = 65536  # bytes per sendall, so STALL_S is a time without progress, not for a whole burst

log = logging.getLogger(__name__)
_COMMAND = re.compile(r"<[^>]*>")  # the daemon's receive_command(): first '<' to the next '>'
_SEND = re.compile(r"<\s*send\s+([0-9A-Fa-f]{1,8})\s+([0-8])((?:\s+[0-9A-Fa-f]{1,2})*)\s*>", re.ASCII)


def format_frame(msg: can.Message, timestamp: float | None = None) -> str:
    """The ``< frame ... >`` line the daemon's RAW mode sends for ``msg``.

    :param timestamp: seconds (>= 0) to print instead of ``msg.timestamp``.
    :raises ValueError: for an error, remote, CAN FD or over-long frame (the emulated pack sends
        classic data frames only), an ID beyond its width, or a negative or non-finite time.
    """
    stamp = _stamp(msg.timestamp if timestamp is None else timestamp)
    ident, data = _id_and_data(msg)
    return f"< frame {ident} {stamp} {data} >"


def format_frames(messages: list) -> str:
    """The RAW-mode text of ``messages`` in order: :func:`format_frame` of each, the timestamp
    written once for the frames that share it (a pack's report is ~14 frames at one instant).

    :raises ValueError: as :func:`format_frame`, for the first frame socketcand cannot carry.
    """
    lines = []
    last_ts, stamp = None, ""
    for m in messages:
        if m.timestamp != last_ts:
            last_ts, stamp = m.timestamp, _stamp(m.timestamp)
        ident, data = _id_and_data(m)
        lines.append(f"< frame {ident} {stamp} {data} >")
    return "".join(lines)


def _stamp(ts: float) -> str:
    """A frame time as the daemon writes it: seconds with 6 decimals."""
    if not (math.isfinite(ts) and ts >= 0):
        raise ValueError(f"timestamp {ts!r} is not a time >= 0 s")
    sec, usec = divmod(round(ts * 1_000_000), 1_000_000)
    return f"{sec}.{usec:06d}"


def _id_and_data(msg: can.Message) -> tuple[str, str]:
    """A frame's ID (3 digits standard, 8 extended) and data (one unspaced hex string) as written."""
    if msg.is_error_frame or msg.is_remote_frame or msg.is_fd or len(msg.data) > 8:
        raise ValueError(f"CAN ID 0x{msg.arbitration_id:X}: only classic data frames (<= 8 bytes) are served")
    limit, width = (0x1FFFFFFF, 8) if msg.is_extended_id else (0x7FF, 3)
    if not 0 <= msg.arbitration_id <= limit:
        raise ValueError(f"CAN ID 0x{msg.arbitration_id:X} beyond 0x{limit:X}")
    return f"{msg.arbitration_id:0{width}X}", msg.data.hex().upper()


def parse_send(command: str) -> can.Message:
    """The frame of a ``< send ID DLC [byte]* >`` command, with timestamp 0, read as the daemon
    reads it: the ID in hex, extended when written with 8 digits; the DLC 0 to 8; then exactly
    DLC bytes of 1 or 2 hex digits (python-can writes them unpadded).

    :raises ValueError: naming what is wrong.
    """
    match = _SEND.fullmatch(command)
    if match is None:
        raise ValueError(f"{command!r} is not '< send ID DLC [byte]* >' (ID 1 to 8 hex digits, "
                         "DLC 0 to 8, bytes 1 or 2 hex digits)")
    ident, dlc, data = match[1], int(match[2]), bytes(int(b, 16) for b in match[3].split())
    limit = 0x1FFFFFFF if len(ident) == 8 else 0x7FF
    if int(ident, 16) > limit:
        raise ValueError(f"{command!r}: CAN ID {ident} beyond 0x{limit:X}")
    if len(data) != dlc:
        raise ValueError(f"{command!r}: DLC {dlc} but {len(data)} data bytes")
    return can.Message(timestamp=0.0, arbitration_id=int(ident, 16), is_extended_id=len(ident) == 8,
                       data=data, is_rx=True)


def split_commands(text: str) -> tuple[list[str], str]:
    """Cut the ``< ... >`` commands out of ``text``; return them and the unfinished rest.

    As the daemon, text outside ``<`` ... ``>`` is dropped and a ``<`` not yet closed by ``>``
    waits for more bytes (a command may span TCP segments).
    """
    end = text.rfind(">") + 1
    start = text.find("<", end)
    return _COMMAND.findall(text, 0, end), text[start:] if start >= 0 else ""


class _Client:
    """One connection: its socket, its mode, and a lock so frames and replies never interleave."""

    def __init__(self, sock: socket.socket):
        self.sock, self.mode, self.lock = sock, "nobus", threading.Lock()


class SocketcandServer(socketserver.ThreadingTCPServer):
    """One CAN bus served as socketcand serves it, on ``host`` at a port the OS picks.

    :param channel: the bus name clients open; 1 to 16 characters, as the daemon's.
    :param host: the address to listen on.
    :raises ValueError: for a bus name the protocol cannot carry.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, channel: str = "can0", host: str = "127.0.0.1"):
        if not 1 <= len(channel) <= 16 or not channel.isprintable() or any(c in channel for c in " <>"):
            raise ValueError(f"bus name {channel!r}: 1 to 16 printable characters, no space, < or >")
        super().__init__((host, 0), socketserver.BaseRequestHandler)
        self.channel, self.host = channel, host
        #: called in the client's thread with each frame a client sends (timestamp 0)
        self.on_receive: Callable[[can.Message], None] | None = None
        #: frames broadcast so far
        self.sent_count = 0
        #: virtual time of the last frame broadcast, s: the stamp of a client's frame to the others
        self.bus_time = 0.0
        #: the last 100 commands refused or dropped: (command, reason)
        self.protocol_errors: deque[tuple[str, str]] = deque(maxlen=100)
        # One lock orders the bus: every client sees the frames in one order, as on a wire.
        self._bus = threading.Condition()
        self._clients: set[_Client] = set()
        self._listeners: set[_Client] = set()  # the RAW clients that have joined the bus
        self._stopping = threading.Event()
        # serve_forever checks for stop() every 50 ms, not 0.5 s, so that stop() returns quickly.
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        """The TCP port the OS picked."""
        return self.server_address[1]

    @property
    def endpoint(self) -> str:
        """Where the bus is, as text: ``socketcand://HOST:PORT/CHANNEL``."""
        return f"socketcand://{self.host}:{self.port}/{self.channel}"

    def bus_kwargs(self) -> dict:
        """The arguments of ``can.Bus`` that open this bus with python-can."""
        return {"interface": "socketcand", "host": self.host, "port": self.port, "channel": self.channel}

    def start(self) -> "SocketcandServer":
        """Accept clients from now on, each in its own thread."""
        self._thread.start()
        return self

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside the session's own checks: one log line, no traceback."""
        log.warning("socketcand client %s:%s: %s", *client_address[:2], sys.exc_info()[1])

    def stop(self) -> None:
        """Stop accepting and close every client's connection (safe to call twice)."""
        self._stopping.set()
        if self._thread.is_alive():
            self.shutdown()
        for client in list(self._clients):  # list() of a set is one step under the GIL
            self._drop(client)
        self.server_close()

    def wait_for_listeners(self, count: int, timeout: float = 5.0) -> None:
        """Wait (wall clock) until ``count`` clients receive broadcasts.

        :raises WaitTimeout: after ``timeout`` s, with the number of listeners seen.
        """
        with self._bus:
            if not self._bus.wait_for(lambda: len(self._listeners) >= count, timeout):
                raise WaitTimeout(f"{count} clients in rawmode", timeout, len(self._listeners), timeout)

    def broadcast(self, messages: list) -> None:
        """Put ``messages`` on the bus, in order, each with its own timestamp, to every RAW client.
        (python-can messages, or the emulated pack's :class:`~emulator.pack.can_reports.Frame` records.)

        Returns when the bytes are in every client's socket; a client that is gone, or takes
        nothing for :data:`STALL_S`, is dropped, and the others still get every frame.
        :raises ValueError: for a frame socketcand cannot carry (:func:`format_frame`); nothing sent.
        """
        payload = format_frames(messages).encode("ascii")
        with self._bus:
            for client in list(self._listeners):
                self._deliver(client, payload)
            self.sent_count += len(messages)
            if messages:
                self.bus_time = messages[-1].timestamp

    # --- one client's session, in its own thread --------------------------------------------------
    def finish_request(self, sock: socket.socket, client_address) -> None:
        """Run one connection (socketserver's hook): greet, then execute its commands until it ends."""
        client = _Client(sock)
        sock.settimeout(STALL_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the daemon: no Nagle delay
        with self._bus:
            self._clients.add(client)
        pending = ""
        try:
            self._deliver(client, b"< hi >")
            while not self._stopping.is_set():
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:  # an idle client is fine; the timeout only lets stop() in
                    continue
                if not chunk:
                    return
                commands, pending = split_commands(pending + chunk.decode("latin-1"))
                if len(pending) > MAX_COMMAND:
                    self._refuse(client, pending[:80] + "...", "command too long")
                    pending = ""
                for command in commands:
                    if not self._execute(client, command):
                        return
        except OSError:
            return
        finally:
            self._drop(client)

    def _execute(self, client: _Client, command: str) -> bool:
        """Act on one command; False ends the session (the daemon closes on a refused open)."""
        words, opened = command[1:-1].split(), client.mode != "nobus"
        if not opened and words[:1] == ["open"]:
            if words[1:] != [self.channel]:
                self._refuse(client, command, "could not open bus")
                return False
            client.mode = "bcm"
            self._deliver(client, b"< ok >")
        elif opened and words[:1] == ["send"]:
            self._received(client, command)
        elif opened and words == ["echo"]:
            self._deliver(client, b"< echo >")
        elif opened and words in (["rawmode"], ["bcmmode"]):
            self._switch(client, words[0][:3])
        else:
            self._refuse(client, command, "unknown command")
        return True

    def _switch(self, client: _Client, mode: str) -> None:
        with self._bus:
            self._listeners.discard(client)
        client.mode = mode
        self._deliver(client, b"< ok >")
        # python-can reads this '< ok >' alone: join the bus a moment after it, not with it.
        if mode == "raw" and not self._stopping.wait(JOIN_DELAY_S):
            with self._bus:
                if client in self._clients and client.mode == "raw":
                    self._listeners.add(client)
                    self._bus.notify_all()

    def _received(self, sender: _Client, command: str) -> None:
        try:
            msg = parse_send(command)
        except ValueError as exc:
            # state_raw.c only logs a bad send; a reply would also make python-can's recv raise.
            self.protocol_errors.append((command, str(exc)))
            return
        msg.channel = self.channel
        if self.on_receive is not None:
            self.on_receive(msg)
        with self._bus:
            line = format_frame(msg, msg.timestamp or self.bus_time).encode("ascii")
            for client in list(self._listeners - {sender}):
                self._deliver(client, line)

    def _refuse(self, client: _Client, command: str, reason: str) -> None:
        self.protocol_errors.append((command, reason))
        self._deliver(client, f"< error {reason} >".encode("ascii"))

    def _deliver(self, client: _Client, payload: bytes) -> None:
        """Hand ``payload`` to the client's socket; drop the client (its session ends) if it cannot."""
        view = memoryview(payload)
        try:
            with client.lock:
                for start in range(0, len(view), _CHUNK):
                    client.sock.sendall(view[start:start + _CHUNK])
        except OSError:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        with self._bus:
            self._clients.discard(client)
            self._listeners.discard(client)
        with suppress(OSError):  # already gone
            client.sock.shutdown(socket.SHUT_RDWR)
