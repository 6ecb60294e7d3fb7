"""SCPI for emulated instruments: a command table, an error queue, and a TCP server per instrument.

An emulated instrument is a subclass of :class:`ScpiDevice` that declares its commands with
:meth:`ScpiDevice.command` patterns written the way instrument manuals write them::

    [SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude] <value>
    MEASure[:SCALar]:VOLTage[:DC]?

Upper-case letters are the short form, ``[...]`` is optional; matching is case-insensitive and
accepts the short or the long form of each node, as real instruments do. What no pattern
matches goes to the error queue as ``-113,"Undefined header"``; a handler raising
:class:`ScpiError` queues its code (``-222,"Data out of range"``, the setting unchanged).
``*IDN?``, ``*RST``, ``*CLS``, ``*OPC?`` and ``SYSTem:ERRor[:NEXT]?`` are common to all.

:class:`ScpiServer` serves one device on ``127.0.0.1`` at a port the OS picks, one line per
command (``\\n`` terminated, several commands joined by ``;``), so pyvisa-py reaches it as
``TCPIP::127.0.0.1::PORT::SOCKET``. Garbage never crashes it, a client reset is one log line,
and a burst of connections waits in a listen backlog of :data:`LISTEN_BACKLOG`. A client that
disconnects calls :meth:`ScpiDevice.on_disconnect`; sources keep their output then, as the real
instruments do (their output watchdog is what acts on a controller that went away).
"""
from __future__ import annotations

import logging
import re
import socket
import socketserver
import sys
import threading
from collections import deque
from collections.abc import Callable

MAX_LINE = 4096
MAX_ERRORS = 20
#: connections the OS queues before the server accepts them (socketserver's default is 5)
LISTEN_BACKLOG = 128

log = logging.getLogger(__name__)


class ScpiError(Exception):
    """A SCPI error to queue: ``code`` and message as the standard numbers them."""

    def __init__(self, code: int, message: str):
        super().__init__(f'{code},"{message}"')
        self.code, self.message = code, message


def out_of_range(value: float, lo: float, hi: float) -> ScpiError:
    return ScpiError(-222, f"Data out of range; {value:g} not in [{lo:g}, {hi:g}]")


def _node_regex(node: str) -> str:
    """``VOLTage`` matches VOLT or VOLTAGE (any case); a numeric suffix like ``OUTPut1`` is kept."""
    short = "".join(c for c in node if c.isupper() or c.isdigit() or c in "*?")
    rest = node[len(short):].upper() if node.startswith(short) else ""
    if rest:
        return re.escape(short) + "(?:" + re.escape(rest) + ")?"
    return re.escape(node.upper())


def compile_pattern(pattern: str) -> re.Pattern:
    """Turn a manual-style header pattern into a regex over the upper-cased header.

    Nodes are joined by ``:``; ``[:NODE]`` and a leading ``[NODE:]`` are optional.
    """
    out = []
    for tok in re.findall(r"\[[A-Za-z0-9*]+:\]|\[:[A-Za-z0-9*]+\]|:?[A-Za-z0-9*]+|\?", pattern):
        if tok.startswith("[") and tok.endswith(":]"):  # [SOURce:]VOLTage
            out.append("(?:" + _node_regex(tok[1:-2]) + ":)?")
        elif tok.startswith("["):  # VOLTage[:LEVel]
            out.append("(?::" + _node_regex(tok[2:-1]) + ")?")
        elif tok == "?":
            out.append(r"\?")
        else:
            out.append((":" if tok.startswith(":") else "") + _node_regex(tok.lstrip(":")))
    return re.compile("^:?" + "".join(out) + "$")


Handler = Callable[..., "str | None"]


class ScpiDevice:
    """Base of an emulated SCPI instrument: command table, error queue, common commands.

    Subclasses register handlers in ``__init__`` with :meth:`command`; a handler gets the
    argument text (``""`` when none) and returns the reply text for a query, else ``None``.
    """

    #: *IDN? answer: manufacturer,model,serial,firmware
    idn = "packrig,emulated,0,0"

    def __init__(self) -> None:
        self._table: list[tuple[re.Pattern, Handler]] = []
        self.errors: deque[tuple[int, str]] = deque()
        #: the last command lines received, oldest first (what a bench log would show)
        self.history: deque[str] = deque(maxlen=100)
        self.lock = threading.RLock()
        self.command("*IDN?", lambda arg: self.idn)
        self.command("*RST", lambda arg: self.reset())
        self.command("*CLS", lambda arg: self.errors.clear())
        self.command("*OPC?", lambda arg: "1")
        self.command("SYSTem:ERRor[:NEXT]?", lambda arg: self.next_error())

    def command(self, pattern: str, handler: Handler) -> None:
        self._table.append((compile_pattern(pattern), handler))

    def queue_error(self, code: int, message: str) -> None:
        if len(self.errors) >= MAX_ERRORS:
            self.errors[-1] = (-350, "Queue overflow")
        else:
            self.errors.append((code, message))

    def next_error(self) -> str:
        code, message = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code},"{message}"'

    def reset(self) -> None:
        """*RST: back to the power-on state (outputs off). Subclasses extend it."""

    def on_disconnect(self) -> None:
        """A client went away. A source keeps its output (as a real one does: its watchdog acts);
        a subclass may act here (the IO box opens its relays)."""

    def touched(self) -> None:
        """Any command arrived (feeds a watchdog). Subclasses extend it."""

    def handle_line(self, line: str) -> list[str]:
        """Execute one line of ``;``-joined commands; return the replies of its queries."""
        replies = []
        with self.lock:
            self.history.append(line)
            self.touched()
            for cmd in filter(None, (c.strip() for c in line.split(";"))):
                reply = self._execute(cmd)
                if reply is not None:
                    replies.append(reply)
        return replies

    def _execute(self, cmd: str) -> str | None:
        header, _, arg = cmd.partition(" ")
        if not header.isprintable() or len(header) > 128:
            self.queue_error(-102, "Syntax error")
            return None
        upper = header.upper()
        for regex, handler in self._table:
            if regex.match(upper):
                try:
                    return handler(arg.strip())
                except ScpiError as exc:
                    self.queue_error(exc.code, exc.message)
                    return None
                except (ValueError, IndexError):
                    self.queue_error(-104, "Data type error")
                    return None
        self.queue_error(-113, "Undefined header")
        return None


def parse_number(arg: str, lo: float, hi: float, *, minmax: bool = True) -> float:
    """A numeric argument within [lo, hi]; ``MIN``/``MAX`` accepted like real instruments.

    :raises ScpiError: -222 when outside the range, -104 when not a number.
    """
    text = arg.strip().upper()
    if minmax and text in ("MIN", "MINIMUM"):
        return lo
    if minmax and text in ("MAX", "MAXIMUM"):
        return hi
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(-104, f"Data type error; {arg!r} is not a number") from None
    if not lo <= value <= hi or value != value:
        raise out_of_range(value, lo, hi)
    return value


def parse_bool(arg: str) -> bool:
    text = arg.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ScpiError(-104, f"Data type error; {arg!r} is not ON/OFF/1/0")


class _Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        # Replies are small and each one is awaited: without TCP_NODELAY, Nagle's algorithm and
        # the client's delayed ACK add tens of milliseconds to every query.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def handle(self) -> None:
        device: ScpiDevice = self.server.device  # type: ignore[attr-defined]
        self.server.clients.add(self.request)  # type: ignore[attr-defined]
        try:
            while True:
                raw = self.rfile.readline(MAX_LINE + 1)
                if not raw:
                    return
                if len(raw) > MAX_LINE:  # an over-long line is garbage: drop the rest of it
                    while raw and not raw.endswith(b"\n"):
                        raw = self.rfile.readline(MAX_LINE + 1)
                    with device.lock:
                        device.queue_error(-223, "Too much data")
                    continue
                line = raw.decode("ascii", errors="replace").strip()
                replies = device.handle_line(line)
                if replies:  # IEEE 488.2: the replies of one message go back as one, ';'-separated
                    self.wfile.write(";".join(replies).encode("ascii", errors="replace") + b"\n")
        except (ConnectionError, OSError):
            return
        finally:
            self.server.clients.discard(self.request)  # type: ignore[attr-defined]
            with device.lock:
                device.on_disconnect()


class ScpiServer(socketserver.ThreadingTCPServer):
    """Serves one :class:`ScpiDevice` on 127.0.0.1 at an OS-picked port (see :attr:`port`)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, device: ScpiDevice, host: str = "127.0.0.1"):
        super().__init__((host, 0), _Handler)
        self.device = device
        self.clients: set[socket.socket] = set()
        # a short poll interval: stop() returns within it (the default 0.5 s adds up over a suite)
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,),
                                        name=f"scpi-{type(device).__name__}", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def resource(self) -> str:
        """The VISA resource string a client opens with pyvisa-py."""
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def start(self) -> "ScpiServer":
        self._thread.start()
        return self

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside the handler's own checks: one log line, no traceback."""
        log.warning("%s client %s:%s: %s", type(self.device).__name__, *client_address[:2], sys.exc_info()[1])

    def stop(self) -> None:
        """Stop serving and drop every client (safe to call twice)."""
        self.shutdown() if self._thread.is_alive() else None
        for sock in list(self.clients):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
