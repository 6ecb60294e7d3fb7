"""SCPI for emulated instruments: a command table, an error queue, and a TCP server per instrument.

An emulated instrument is a subclass of :class:`ScpiDevice` that declares its commands with
:meth:`ScpiDevice.command` patterns written the way instrument manuals write them::

    [SOURce:]VOLTage[:LEVel][:IMMediate][:AMPLitude] <value>
    MEASure[:SCALar]:VOLTage[:DC]?

Upper-case letters are the short form, ``[...]`` is optional; matching is case-insensitive and
accepts the short or the long form of each node, as real instruments do. What no pattern
matches goes to the error queue as ``-113,"Undefined header"``; a handler raising
:class:`ScpiError` queues its code (``-222,"Data out of range"``, the setting unchanged).

Common to all (IEEE 488.2-1992 chapter 10, SCPI-99 volume 1 chapter 4): ``*IDN? *RST *CLS
*ESE <n> *ESE? *ESR? *SRE <n> *SRE? *STB? *OPC *OPC? *WAI *TST? *SAV <n> *RCL <n>`` and
``SYSTem:ERRor[:NEXT]? SYSTem:ERRor:COUNt? SYSTem:ERRor:ALL? SYSTem:VERSion?``.

Status reporting (488.2 11.5 and 11.2): the standard event status register (ESR) has PON 128
(set at power-on), CME 32 (an error -100..-199 was queued), EXE 16 (-200..-299), DDE 8
(-300..-399 and device errors > 0), QYE 4 (-400..-499), OPC 1 (``*OPC``); URQ 64 and RQC 2 are
never set (no front-panel request, no controller passing). ``*ESR?`` reads and clears it. The
status byte (``*STB?``) has bit 2 the error queue not empty (SCPI-99), MAV 16 the output queue
holds a reply (a query earlier in the same message), ESB 32 ``ESR & ESE``, MSS 64 the summary
of the others ANDed with ``SRE``; ``*SRE`` ignores bit 6 (488.2 10.34). ``*CLS`` clears the
ESR and the error queue, not the enable registers; ``*RST`` changes no status register. Every
operation completes before the next command runs, so ``*OPC`` sets OPC at once and ``*WAI``
has nothing to wait for. ``*TST?`` answers 0 (passed). ``*SAV``/``*RCL`` store and recall
what :meth:`ScpiDevice.settings` returns, in :attr:`ScpiDevice.save_locations` locations.

Compound messages (SCPI-99 volume 1, 6.2.4): after a command, the path is its header less its
last node; a following command without a leading ``:`` continues there (``MEAS:VOLT?;CURR?`` is
``MEAS:VOLT?`` then ``MEAS:CURR?``), a leading ``:`` goes back to the root, a common command
(``*...``) leaves the path alone, and each new line starts at the root.

Measurement time (issue 17 item 4): a model charges the time its real counterpart spends on a
command (:meth:`ScpiDevice.busy`: the DMM's integration time per reading, the scanner's per
channel). With :attr:`ScpiDevice.pace` on the server holds that message's reply, and the
connection's next command, for that long, as the real instrument's bus would; off (the default,
and always in virtual time), replies come at once. Pacing is opt-in (``device.pace = True`` on a
wall-clock bench): the rig's 1-s supervisor cycle does not fit a paced scan of 40 channels.

Arguments (numbers with unit suffixes, ``MIN``/``MAX``/``DEF``, booleans) and :class:`ScpiError`
are :mod:`emulator.instruments.scpi_arguments`, re-exported here.

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
import time
from collections import deque
from collections.abc import Callable

from emulator.instruments.scpi_arguments import (  # noqa: F401 - re-exported: the models import them here
    ScpiError, out_of_range, parse_bool, parse_number)

MAX_LINE = 4096
MAX_ERRORS = 20
#: SYSTem:VERSion? answer: the SCPI version the dialects follow
SCPI_VERSION = "1999.0"

# IEEE 488.2 11.5.1.1: standard event status register bits
ESR_PON, ESR_URQ, ESR_CME, ESR_EXE, ESR_DDE, ESR_QYE, ESR_RQC, ESR_OPC = 128, 64, 32, 16, 8, 4, 2, 1
# IEEE 488.2 11.2.2 and SCPI-99 9.1: status byte bits
STB_EAV, STB_MAV, STB_ESB, STB_MSS = 4, 16, 32, 64
#: connections the OS queues before the server accepts them (socketserver's default is 5)
LISTEN_BACKLOG = 128

log = logging.getLogger(__name__)


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


def error_bit(code: int) -> int:
    """The ESR bit an error sets (488.2 11.5.1.1, SCPI-99 volume 2, 21.8)."""
    if -199 <= code <= -100:
        return ESR_CME
    if -299 <= code <= -200:
        return ESR_EXE
    if -499 <= code <= -400:
        return ESR_QYE
    return ESR_DDE if code != 0 else 0


def _register_value(arg: str) -> int:
    """An enable-register value 0..255 (488.2 10.10, 10.34: a decimal numeric, rounded)."""
    return round(parse_number(arg, 0, 255, minmax=False))


class ScpiDevice:
    """Base of an emulated SCPI instrument: command table, error queue, common commands.

    Subclasses register handlers in ``__init__`` with :meth:`command`; a handler gets the
    argument text (``""`` when none) and returns the reply text for a query, else ``None``.
    """

    #: *IDN? answer: manufacturer,model,serial,firmware
    idn = "packrig,emulated,0,0"
    #: *SAV/*RCL locations (0..n-1); 0 refuses both with -113, as a model without them does
    save_locations = 0
    #: hold replies for the measurement time the message charged (module docstring)
    pace = False

    def __init__(self) -> None:
        self._table: list[tuple[re.Pattern, Handler]] = []
        self.errors: deque[tuple[int, str]] = deque()
        #: the last command lines received, oldest first (what a bench log would show)
        self.history: deque[str] = deque(maxlen=100)
        self.lock = threading.RLock()
        #: 488.2 registers: event status (PON at power-on), its enable, the service request enable
        self.esr, self.ese, self.sre = ESR_PON, 0, 0
        self._saved: dict[int, dict] = {}
        self._path = ""          # the compound-message path (SCPI-99 6.2.4), "" = root
        self._pending = 0        # replies of the message being executed (MAV)
        self._busy_s = 0.0       # measurement time the message being executed charged
        self.command("*IDN?", lambda arg: self.idn)
        self.command("*RST", lambda arg: self.reset())
        self.command("*CLS", lambda arg: self.clear_status())
        self.command("*ESE", lambda arg: setattr(self, "ese", _register_value(arg)))
        self.command("*ESE?", lambda arg: str(self.ese))
        self.command("*ESR?", lambda arg: self._read_esr())
        self.command("*SRE", lambda arg: setattr(self, "sre", _register_value(arg) & ~STB_MSS))
        self.command("*SRE?", lambda arg: str(self.sre))
        self.command("*STB?", lambda arg: str(self.status_byte()))
        self.command("*OPC", lambda arg: setattr(self, "esr", self.esr | ESR_OPC))
        self.command("*OPC?", lambda arg: "1")
        self.command("*WAI", lambda arg: None)
        self.command("*TST?", lambda arg: "0")
        self.command("*SAV", self._save)
        self.command("*RCL", self._recall)
        self.command("SYSTem:ERRor[:NEXT]?", lambda arg: self.next_error())
        self.command("SYSTem:ERRor:COUNt?", lambda arg: str(len(self.errors)))
        self.command("SYSTem:ERRor:ALL?", lambda arg: self._all_errors())
        self.command("SYSTem:VERSion?", lambda arg: SCPI_VERSION)

    def command(self, pattern: str, handler: Handler) -> None:
        self._table.append((compile_pattern(pattern), handler))

    def queue_error(self, code: int, message: str) -> None:
        self.esr |= error_bit(code)
        if len(self.errors) >= MAX_ERRORS:
            self.errors[-1] = (-350, "Queue overflow")
        else:
            self.errors.append((code, message))

    def next_error(self) -> str:
        code, message = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code},"{message}"'

    def _all_errors(self) -> str:
        """SYSTem:ERRor:ALL?: every queued error, oldest first, the queue emptied; ``0,"No error"``
        when there is none."""
        out = [self.next_error()]
        while self.errors:
            out.append(self.next_error())
        return ",".join(out)

    # --- IEEE 488.2 status ----------------------------------------------------------------------
    def clear_status(self) -> None:
        """*CLS: the event register and the error queue; the enable registers stay."""
        self.esr = 0
        self.errors.clear()

    def _read_esr(self) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    def status_byte(self) -> int:
        """*STB?: EAV, MAV, ESB and the summary bit MSS (module docstring)."""
        stb = (STB_EAV if self.errors else 0) | (STB_MAV if self._pending else 0)
        stb |= STB_ESB if self.esr & self.ese else 0
        return stb | (STB_MSS if stb & self.sre else 0)

    def settings(self) -> dict:
        """What *SAV stores: the device's settings (not its readings or outputs). Subclasses with
        :attr:`save_locations` override it and :meth:`apply_settings`."""
        return {}

    def apply_settings(self, settings: dict) -> None:
        """*RCL: put back what :meth:`settings` returned."""

    def _location(self, arg: str) -> int:
        if not self.save_locations:
            raise ScpiError(-113, "Undefined header; this model keeps no saved states")
        value = parse_number(arg, 0, self.save_locations - 1, minmax=False)
        if value != int(value):
            raise ScpiError(-224, f"Illegal parameter value; location {arg!r}")
        return int(value)

    def _save(self, arg: str) -> None:
        self._saved[self._location(arg)] = self.settings()

    def _recall(self, arg: str) -> None:
        location = self._location(arg)
        if location not in self._saved:
            raise ScpiError(-224, f"Illegal parameter value; nothing saved in location {location}")
        self.apply_settings(self._saved[location])

    def reset(self) -> None:
        """*RST: back to the power-on state (outputs off). Subclasses extend it."""

    def on_disconnect(self) -> None:
        """A client went away. A source keeps its output (as a real one does: its watchdog acts);
        a subclass may act here (the IO box opens its relays)."""

    def touched(self) -> None:
        """Any command arrived (feeds a watchdog). Subclasses extend it."""

    def busy(self, seconds: float) -> None:
        """The command being executed takes ``seconds`` on the real instrument (a measurement)."""
        self._busy_s += seconds

    def handle_line(self, line: str) -> list[str]:
        """Execute one line of ``;``-joined commands; return the replies of its queries."""
        return self.handle_message(line)[0]

    def handle_message(self, line: str) -> tuple[list[str], float]:
        """:meth:`handle_line`, and the measurement time (s) the line charged."""
        replies = []
        with self.lock:
            self.history.append(line)
            self.touched()
            self._path, self._pending, self._busy_s = "", 0, 0.0  # a new message starts at the root
            for cmd in filter(None, (c.strip() for c in line.split(";"))):
                reply = self._execute(cmd)
                if reply is not None:
                    replies.append(reply)
                    self._pending += 1
            self._pending = 0  # the replies go out now
            return replies, self._busy_s

    def _full_header(self, header: str) -> str:
        """The header with the compound-message path applied, and the path moved on (SCPI-99 6.2.4)."""
        if header.startswith(":"):
            header = header[1:]
        elif not header.startswith("*"):
            header = self._path + header
        if not header.startswith("*"):
            self._path = header.rpartition(":")[0] + ":" if ":" in header else ""
        return header

    def _execute(self, cmd: str) -> str | None:
        header, _, arg = cmd.replace("\t", " ").partition(" ")
        if not header.isprintable() or len(header) > 128:
            self.queue_error(-102, "Syntax error")
            return None
        upper = self._full_header(header.upper())
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
                replies, busy_s = device.handle_message(line)
                if device.pace and busy_s > 0:  # the real instrument is still measuring
                    time.sleep(busy_s)
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
