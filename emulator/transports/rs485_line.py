"""The RS485 line between the emulated packs, as a TCP endpoint (PACK_SPEC.md 7).

RS485 here is one shared half-duplex pair: every byte a party drives onto it is heard by every
other party. :class:`Rs485Bus` *is* that line. Its parties are

* **TCP clients**: the rig (which sniffs the master's polls of the slave, and may poll a pack
  itself) and Pylontech console clients. They connect with pyserial,
  ``serial.serial_for_url(bus.url)``, exactly as they would open a USB-RS485 adapter.
* **the emulated packs**: the emulator puts a pack's bytes on the line with :meth:`Rs485Bus.transmit`
  (the master's poll), and attaches one :class:`~emulator.pack.rs485_responder.PackResponder` per
  pack to :attr:`Rs485Bus.responders`; every complete frame on the line is offered to them and
  their replies go on the line at once (the slave answering the poll, a pack answering the rig).

The emulator runs in virtual time, so replies are produced synchronously, with no baud-rate delay.
A real line at 115200 8N1 carries 10 bits per byte, :data:`BYTE_TIME_S` = 86.8 us per byte (a 0x42
reply of 144 characters takes 12.5 ms); :attr:`Rs485Bus.bytes_sent` lets the emulator charge that.

Rules of the line:

* A client's bytes go, as they arrive, to every *other* client (an adapter does not echo its own
  transmission). Each client has its own reader (:class:`~emulator.pack.rs485_responder.RawFrameReader`,
  which keeps a bad frame's bytes so the addressed pack can answer its RTN), so a client's
  frame is cut cleanly even if another client talks at the same time (a real line would garble
  both; the emulator does not model collisions).
* A responder's reply goes to every client, the requester included, and is not offered back to
  the responders: a pack does not hear itself, and the other pack ignores a frame with another ADR.
* :meth:`Rs485Bus.cut` inserts a broken link: nothing crosses between the packs and the clients
  (client frames reach no responder, :meth:`~Rs485Bus.transmit` bytes are dropped). Clients still
  hear each other: they are on the same side of the break.
* :attr:`Rs485Bus.on_line` is the emulator's tap on the packs' side of the line: it gets every run
  of bytes there, in line order, exactly as sent (garbage included), like a sniffer's capture:
  transmit() bytes, replies, and clients' bytes (not while cut). The master's poller and the
  recorder frame them with their own :class:`~rig.protocol.rs485.FrameReader`.

One thread per client, as :mod:`emulator.instruments.scpi_server`. Every socket operation has a timeout
(:data:`IO_TIMEOUT_S`); a client that does not read within it is dropped. Garbage from a client is
framing errors, never an exception in the bus, and a client disconnecting only removes itself.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable

from emulator.pack.rs485_responder import PackResponder, RawFrameReader
from rig.errors import EmulatorNotRunning, FrameError
from rig.protocol.rs485 import Frame, FrameReader, encode_frame

#: Seconds one byte occupies a real line at 115200 baud, 8N1 (start + 8 data + stop bits).
BYTE_TIME_S = 10 / 115200
#: Upper bound, s, of any one socket operation (send to a client, wait for its bytes).
IO_TIMEOUT_S = 1.0
#: Bytes read from a client at a time.
CHUNK = 4096
#: Connections queued before they are accepted (socketserver's default is 5).
LISTEN_BACKLOG = 128

log = logging.getLogger(__name__)

#: ``on_line(data)``: bytes that went on the line (module docstring).
LineListener = Callable[[bytes], None]


class _Client(socketserver.BaseRequestHandler):
    """One TCP client of a :class:`LineServer`: read with a timeout (so the owner's stop is
    noticed) and hand the bytes to the owner, which answers; an ``OSError`` the owner raises
    while answering ends this client."""

    def setup(self) -> None:
        self.request.settimeout(IO_TIMEOUT_S)
        self.server.owner._join(self.request)  # type: ignore[attr-defined]

    def handle(self) -> None:
        owner = self.server.owner  # type: ignore[attr-defined]
        reader = RawFrameReader()
        while not owner._stopping:
            try:
                data = self.request.recv(CHUNK)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return  # the client closed; a frame it left half-sent dies with its reader
            try:
                owner._from_client(self.request, data, reader)
            except OSError:
                return

    def finish(self) -> None:
        self.server.owner._leave(self.request)  # type: ignore[attr-defined]


class LineServer(socketserver.ThreadingTCPServer):
    """The listening socket of an RS485 line (the packs' link, or a pack's console port): each
    client in its own thread, bytes handed to ``owner`` (``_join``, ``_from_client``, ``_leave``,
    ``_stopping``); bursts of connections queue (``LISTEN_BACKLOG``)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address, owner, what: str):
        self.owner, self.what = owner, what
        super().__init__(address, _Client)

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside the client's own checks: one log line, no traceback."""
        log.warning("%s %s:%s: %s", self.what, *client_address[:2], sys.exc_info()[1])

    def serve_in_background(self, thread_name: str) -> threading.Thread:
        """Accept clients in a daemon thread (a stop is noticed within 50 ms); returns it, started."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=thread_name, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop accepting and close the listening socket; the owner drops its clients."""
        self.shutdown()
        self.server_close()


class Rs485Bus:
    """The shared RS485 line of the emulated packs, reachable at :attr:`url` by pyserial.

    :param host: the interface to listen on; the port is picked by the OS at :meth:`start`.
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        #: one responder per emulated pack, attached by the emulator
        self.responders: list[PackResponder] = []
        #: called with the bytes of the line, on the thread that put them there (a client's, or
        #: transmit()'s caller) with :attr:`lock` held: keep it quick
        self.on_line: LineListener | None = None
        #: bytes the packs put on the line (transmit() and replies), counted once however many hear them
        self.bytes_sent = 0
        #: held while a party has the line; hold it while changing a Bms, so a reply never mixes
        #: two BMS samples
        self.lock = threading.RLock()
        self._joined = threading.Condition(self.lock)
        self._clients: list[socket.socket] = []
        self._pack_reader = RawFrameReader()
        self._cut = False
        self._stopping = False
        self._server: LineServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifetime ------------------------------------------------------------------------------
    def start(self) -> Rs485Bus:
        """Listen and serve clients in background threads.

        :raises EmulatorNotRunning: already started, or stopped (a bus is started once).
        """
        if self._server is not None or self._stopping:
            raise EmulatorNotRunning("Rs485Bus.start(): a bus starts once (this one is started or stopped)")
        self._server = LineServer((self.host, 0), self, "RS485 client")
        self._thread = self._server.serve_in_background("rs485-bus")
        return self

    def stop(self) -> None:
        """Stop listening and drop every client (safe to call twice, or before start)."""
        self._stopping = True
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with self.lock:
            for sock in list(self._clients):
                self._drop(sock)
        self._thread.join(IO_TIMEOUT_S)

    def __enter__(self) -> Rs485Bus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port of the line. :raises EmulatorNotRunning: not started."""
        if self._server is None:
            raise EmulatorNotRunning("Rs485Bus.port: the bus is not started (or already stopped)")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """pyserial URL of the line: ``socket://127.0.0.1:PORT``."""
        return f"socket://{self.host}:{self.port}"

    @property
    def client_count(self) -> int:
        """TCP clients connected now."""
        with self.lock:
            return len(self._clients)

    def wait_for_clients(self, count: int, timeout_s: float = 2.0) -> bool:
        """Wait until at least ``count`` clients are connected; False when ``timeout_s`` runs out."""
        with self._joined:
            return self._joined.wait_for(lambda: len(self._clients) >= count, timeout_s)

    # --- the emulator's side -----------------------------------------------------------------
    def cut(self, cut: bool = True) -> None:
        """Break (True) or mend (False) the link between the packs and the clients (fault insertion)."""
        with self.lock:
            self._cut = bool(cut)

    @property
    def is_cut(self) -> bool:
        """True while the link is cut."""
        return self._cut

    def transmit(self, data: bytes, sender: int | None = None) -> list[Frame]:
        """Put a pack's bytes on the line: every client gets them, in order, before this returns,
        and each frame completed by them is offered to the responders (the slave answers a poll).

        :param data: the bytes, usually one encoded frame.
        :param sender: the transmitting pack's ADR; its own responder does not hear them.
        :return: the replies the responders put on the line, in order (empty while the link is cut).
        """
        with self.lock:
            if self._cut:
                return []
            data = bytes(data)
            self.bytes_sent += len(data)
            self._deliver(data)
            self._notify(data)
            replies: list[Frame] = []
            for item in self._pack_reader.feed(data):
                replies += self._answer(item, deaf=sender)
            return replies

    # --- the line ------------------------------------------------------------------------------
    def _from_client(self, sender: socket.socket, data: bytes, reader: FrameReader) -> None:
        with self.lock:
            self._deliver(data, skip=sender)
            if self._cut:
                return  # the packs hear nothing: the reader is not fed, as if the bytes never came
            self._notify(data)
            for item in reader.feed(data):
                self._answer(item)

    def _answer(self, item: Frame | FrameError, deaf: int | None = None) -> list[Frame]:
        """Offer one frame to every responder (but the sender's); put each reply on the line."""
        replies = []
        for responder in list(self.responders):
            if deaf is not None and responder.bms.address == deaf:
                continue  # a half-duplex transceiver does not hear its own transmission
            answer = responder.respond(item)
            if answer is not None:
                wire = encode_frame(answer)
                self.bytes_sent += len(wire)
                self._deliver(wire)
                self._notify(wire)
                replies.append(answer)
        return replies

    def _notify(self, data: bytes) -> None:
        if self.on_line is not None:
            self.on_line(data)

    def _deliver(self, data: bytes, skip: socket.socket | None = None) -> None:
        """sendall to every client but ``skip``; a client that cannot take them in time is dropped."""
        for sock in list(self._clients):
            if sock is skip:
                continue
            try:
                sock.sendall(data)
            except OSError:  # timeout included: a client that stopped reading
                self._drop(sock)

    def _join(self, sock: socket.socket) -> None:
        with self._joined:
            self._clients.append(sock)
            self._joined.notify_all()

    def _leave(self, sock: socket.socket) -> None:
        with self.lock:
            if sock in self._clients:
                self._clients.remove(sock)

    def _drop(self, sock: socket.socket) -> None:
        """Disconnect a client; its thread sees the closed socket and leaves."""
        self._leave(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
