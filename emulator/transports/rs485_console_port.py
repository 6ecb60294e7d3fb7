"""Each emulated pack's console port: a point-to-point RS485 line between one client and one pack.

A real pack has two RS485 sockets. The link port is the shared line of :mod:`emulator.transports.rs485_line`,
where the master polls the slave (0x42 and 0x44 every few seconds, PACK_SPEC.md 7): a console
client there hears those polls and their answers between its own request and its reply, and
clients that read "the next frame" (python-pylontech's ``readline()``, pylontech's
``receive()``) take the wrong one. The console port is the pack's *other* socket, the one an
inverter or a service laptop is cabled to: only that client and that pack are on it, so every
frame the client reads is a reply to what it sent. That is how the emulated bench lets a console
client share the packs with their own polling: :class:`ConsolePort`, one per pack, reached by
pyserial at :attr:`ConsolePort.url`, exactly like a USB-RS485 adapter
(``serial.serial_for_url(url)``; a pty bridge such as ``socat`` gives the clients that open only
device paths their ``/dev/pts/N``).

Who answers what on a console port:

* The pack answers its own ADR, and ADR 0 (0x4F, 0x51: a console that knows no address yet);
  nobody else can collide on a point-to-point line, so the slave answers ADR 0 on its own console
  too, with its own ADR in the reply.
* On the **master's** console, a frame for a partner's ADR is answered by that partner, relayed
  over the link while the pair is joined (``bms.modules`` > 1) and the link is not cut, as a
  Pylontech group's master does for the packs behind it; 0x42 with command value 0xFF gives the
  whole group (:meth:`~emulator.pack.rs485_responder.PackResponder.group_analog_values`).
* An Off pack is silent (its transceiver is unpowered); so is the partner behind a cut link.
* Replies are what :class:`~emulator.pack.rs485_responder.PackResponder` gives, with the line's
  :attr:`~emulator.transports.rs485_line.Rs485Bus.lock` held, so a reply never mixes two BMS samples.

Console traffic is not on the link: the master's poller and the recorder (the link's
``on_line``) do not see it, as on the real pack.
"""
from __future__ import annotations

import logging
import socket

from emulator.transports.rs485_line import LineServer, Rs485Bus
from emulator.pack.rs485_responder import PackResponder, RawFrameReader
from rig.errors import EmulatorNotRunning, FrameError
from rig.protocol.rs485 import Frame, encode_frame

log = logging.getLogger(__name__)


class ConsolePort:
    """The console socket of the pack behind ``link_responder`` (module docstring).

    :param bus: the packs' link line: its lock is held while answering, and a cut link keeps the
        partners out of reach.
    :param link_responder: the pack's responder on the link; its ``partners`` are the packs this
        console reaches through the master.
    :param host: the interface to listen on; the port is picked by the OS at :meth:`start`.
    """

    def __init__(self, bus: Rs485Bus, link_responder: PackResponder, host: str = "127.0.0.1"):
        self.bus, self.host = bus, host
        self.link_responder = link_responder
        #: the pack's own answers on this line: ADR 0 included (nobody to collide with)
        self.own = PackResponder(link_responder.bms, answers_adr0=True)
        self.own.partners = link_responder.partners
        self._clients: set[socket.socket] = set()
        self._stopping = False
        self._server: LineServer | None = None

    # --- lifetime ------------------------------------------------------------------------------
    def start(self) -> ConsolePort:
        """Listen and serve clients in background threads (once)."""
        if self._server is not None or self._stopping:
            raise EmulatorNotRunning("ConsolePort.start(): a console port starts once")
        self._server = LineServer((self.host, 0), self, "RS485 console client")
        self._server.serve_in_background(f"rs485-console-{self.own.bms.address}")
        return self

    def stop(self) -> None:
        """Stop listening and drop every client (safe to call twice, or before start)."""
        self._stopping = True
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for sock in list(self._clients):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self) -> str:
        """pyserial URL of this console: ``socket://127.0.0.1:PORT``. :raises EmulatorNotRunning: not started."""
        if self._server is None:
            raise EmulatorNotRunning("ConsolePort.url: not started (or already stopped)")
        return f"socket://{self.host}:{self._server.server_address[1]}"

    # --- its clients (LineServer's hooks) ------------------------------------------------------
    def _join(self, sock: socket.socket) -> None:
        self._clients.add(sock)

    def _leave(self, sock: socket.socket) -> None:
        self._clients.discard(sock)

    def _from_client(self, sock: socket.socket, data: bytes, reader: RawFrameReader) -> None:
        """Answer each whole frame to this client alone (an OSError ends the client)."""
        for item in reader.feed(data):
            answer = self.answer(item)
            if answer is not None:
                sock.sendall(encode_frame(answer))

    # --- answers -------------------------------------------------------------------------------
    def answer(self, item: Frame | FrameError) -> Frame | None:
        """The reply to one frame from the console client, or ``None`` (silence)."""
        with self.bus.lock:
            if isinstance(item, Frame):
                partner = self._partner(item.adr)
                if partner is not None:
                    return partner.respond(item)
            return self.own.respond(item)

    def _partner(self, adr: int) -> PackResponder | None:
        """The partner with this ADR when this pack can reach it: joined, link not cut."""
        if adr == self.own.bms.address or self.bus.is_cut or self.own.bms.modules <= 1:
            return None
        if not self.own.bms.awake:  # an Off master relays nothing
            return None
        return next((p for p in self.own.partners if p.bms.address == adr and p.bms.awake), None)
