"""The bench: a bench file made real. Instruments connected and protected, CAN and RS485 open.

:class:`Bench` is built from a loaded bench file. It first starts what stands behind the
file's addresses, the backend the file chooses (:mod:`rig.backends`: the real hardware, or an
emulator in this process or another), and reads where its ports are; from then on it talks to
every instrument exactly as on a real bench: pyvisa, python-can, pyserial.

It owns the safety of the bench:

- every driver gets the bench file's **hard limits** and the bench's **interlock**: once the
  supervisor has tripped, every command except those that make the bench safe is refused; the
  e-load's limits carry the bench's voltage range (CR and CP imply a current over it), each
  watched instrument's the longest watchdog the bench allows;
- short-circuit mode of the e-load and the ``short_circuit`` relay close only inside the
  supervisor's short-circuit step (:attr:`Bench.in_short_circuit_step`, the drivers' permit);
- the instruments' own protections are programmed at start (PSU OVP/OCP and output watchdog,
  e-load and IO box watchdogs), so a killed rig leaves the outputs to switch themselves off;
- :meth:`Bench.make_safe` is the safe state: PSU off, e-load off, breaker contactor and every
  relay open, chamber to standby. Each step is tried even if another fails, and it can run
  twice. :meth:`Bench.close` makes safe, then lets go of everything.
"""
from __future__ import annotations

import logging
import socket
from contextlib import suppress

import can
import pyvisa
import serial

from instruments import driver_class
from rig.backends import EMULATOR, BenchBackend, start_backend
from rig.clock import Clock, make_clock
from rig.errors import InstrumentError, RigError, SafetyTrip
from rig.files.bench_file import LoadedBench
from rig.psu_latch import settle_psu_latch

log = logging.getLogger(__name__)


class _NoFragmentWarnings(logging.Filter):
    """python-can's socketcand client logs a warning each time a TCP read ends inside a frame
    (it then waits for the rest, correctly); in a burst that is every read, thousands an hour."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Got incomplete message")


def quiet_socketcand_fragments() -> None:
    """Drop python-can's socketcand warnings about a frame split between two reads (only those)."""
    log = logging.getLogger("can.interfaces.socketcand.socketcand")
    if not any(isinstance(f, _NoFragmentWarnings) for f in log.filters):
        log.addFilter(_NoFragmentWarnings())


def _tcp_no_delay(resource) -> None:
    """Send each command at once on a TCP instrument (TCP_NODELAY).

    A write followed by a query is two small segments; with Nagle's algorithm the second waits
    for the instrument's delayed ACK, ~40 ms per exchange. VISA has an attribute for it, but
    pyvisa-py (0.8) does not honour it for SOCKET resources, so its socket is set directly.
    """
    try:
        resource.set_visa_attribute(pyvisa.constants.VI_ATTR_TCPIP_NODELAY, pyvisa.constants.VisaBoolean.true)
        return
    except Exception:  # noqa: BLE001 - pyvisa-py raises its own UnknownAttribute here
        pass
    session = getattr(resource.visalib, "sessions", {}).get(resource.session)
    sock = getattr(session, "interface", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Bench:
    """A bench ready to use.

    :param loaded: the bench file, loaded.
    :param firmware: emulated benches only: the firmware profile, loaded (default: the bench file's).
    :param firmware_path: its file, for an emulator in another process (default: the bench file's).
    :param seed: emulated benches only: overrides the bench file's seed.
    :param packs: emulated benches only: how many packs this test needs (1 or 2).
    :param initial_soc_pct: emulated benches only: the packs' state of charge at start.
    :param temperature_c: emulated benches only: pack and chamber soaked at this temperature.
    :param clock: the clock to use (default: the kind the bench file names).
    """

    def __init__(self, loaded: LoadedBench, *, firmware=None, firmware_path: str | None = None,
                 seed: int | None = None, packs: int = 1, initial_soc_pct: float | None = None,
                 temperature_c: float | None = None, clock: Clock | None = None):
        self.loaded, self.file = loaded, loaded.file
        #: packs on this bench for this test: what the emulator was asked for, or the bench's own
        self.packs = packs if loaded.emulated else loaded.file.features.parallel_packs
        self.features, self.limits = self.file.features, self.file.limits
        self.clock = clock or make_clock(self.file.bench.clock)
        self.trip: SafetyTrip | None = None
        #: set by the supervisor's short-circuit step: the only time a short may be closed
        self.in_short_circuit_step = False
        #: what serves the bench file's addresses (rig.backends); set by _start
        self.backend: BenchBackend | None = None
        self.instruments: dict[str, object] = {}
        self.can: can.BusABC | None = None
        self._rs485 = None
        self._rs485_url: str | None = None
        self._closed = False
        try:
            self.backend = start_backend(loaded, self.clock, packs=self.packs, seed=seed,
                                         initial_soc_pct=initial_soc_pct, temperature_c=temperature_c,
                                         firmware=firmware, firmware_path=firmware_path)
            self._start()
        except BaseException:
            self.close()
            raise

    @property
    def emulator(self):
        """The emulator behind this bench (its backend), or None on a real bench."""
        return self.backend if self.loaded.emulated else None

    # --- start ---------------------------------------------------------------------------------
    def _start(self) -> None:
        f = self.file
        ends = self.backend.endpoints()
        self.rm = pyvisa.ResourceManager("@py")
        limits, options = self._driver_limits(), self._driver_options()
        for name in ("psu", "eload", "dmm", "scanner", "chamber", "io"):
            spec = getattr(f.instruments, name)
            if spec is None:
                continue
            address = ends["instruments"].get(name) if spec.resource == EMULATOR else spec.resource
            self.instruments[name] = self._open(name, spec, address, limits.get(name, {}),
                                                **options.get(name, {}))
        can_kwargs = ends["can"] if f.can.channel == EMULATOR or f.can.interface == EMULATOR else {
            "interface": f.can.interface, "channel": f.can.channel, "bitrate": f.can.bitrate, **f.can.options}
        if can_kwargs.get("interface") == "socketcand":
            quiet_socketcand_fragments()
        self.can = self.backend.attach_bus(can.Bus(**can_kwargs))
        if f.rs485 is not None:
            self._rs485_url = ends["rs485"] if f.rs485.url == EMULATOR else f.rs485.url
        self._protect()

    def _driver_limits(self) -> dict[str, dict[str, tuple[float, float]]]:
        """Each driver's hard limits, from the bench file. The e-load's ``"voltage"`` is the range
        it is operated over: at most the PSU cap or the pack maximum (what a CR load sees at
        worst), at least the supervisor's pack minimum (a CP load draws most there; below it the
        supervisor trips and the load's own OCP cuts it). ``"watchdog"``: the longest silence
        each watched instrument may be given (absent for an IO box without a watchdog)."""
        L, i = self.limits, self.file.instruments
        limits = {
            "psu": {"voltage": (0.0, L.psu_max_voltage_v), "current": (0.0, L.psu_max_current_a)},
            "eload": {"current": (0.0, L.eload_max_current_a),
                      "voltage": (L.pack_min_v, max(L.psu_max_voltage_v, L.pack_max_v))},
            "chamber": {"temperature": (L.chamber_min_c, L.chamber_max_c)},
            "io": {},
        }
        for name in ("psu", "eload", "io"):
            watchdog_s = getattr(getattr(i, name), "watchdog_s", None)
            if watchdog_s is not None:
                limits[name]["watchdog"] = (0.0, watchdog_s)
        return limits

    def _driver_options(self) -> dict[str, dict]:
        """Role-specific driver arguments: the short-circuit permits."""
        options = {"eload": {"short_permit": self.short_circuit_permitted}}
        channel = self.file.instruments.io.outputs.get("short_circuit")
        if channel is not None:
            options["io"] = {"permits": {channel: self.short_circuit_permitted}}
        return options

    def short_circuit_permitted(self) -> bool:
        """True only inside the supervisor's short-circuit step, and never after a trip."""
        return self.in_short_circuit_step and self.trip is None

    def _open(self, name: str, spec, address: str, limits: dict, **options):
        resource = self.rm.open_resource(address, read_termination="\n", write_termination="\n",
                                         timeout=round(spec.timeout_s * 1000))
        _tcp_no_delay(resource)
        driver = driver_class(spec.model)(resource, name, limits=limits, interlock=self.interlock, **options)
        driver.listeners.append(self._emulator_check)
        driver.identify()
        return driver

    def _emulator_check(self, step) -> None:
        """After a failed exchange: if the emulator process died, raise that
        (:class:`~rig.errors.EmulatorDied`, exit code or signal and its safe state) out of the
        driver's call instead of the instrument's timeout or transport error."""
        if not step.error:
            return
        timed_out = "TMO" in step.error or "imeout" in step.error
        dead = self.backend.died(0.0 if timed_out else 1.0)  # a closed socket: give the exit a moment
        if dead:
            raise dead

    def _protect(self) -> None:
        """Program the instruments' own protections: they act even when the rig is dead."""
        i, L = self.file.instruments, self.limits
        # PSU OCP off: the N8900's trips the output in CC, which is how the pack is charged; the
        # CC limit (gated against the bench's current limit) is what bounds the current
        self.psu.protect(ovp_v=L.psu_max_voltage_v, ocp=False, watchdog_s=i.psu.watchdog_s)
        self.eload.protect(watchdog_s=i.eload.watchdog_s)  # and its OCP at the current limit
        if i.io.watchdog_s is not None:  # a stock DAQ970A has none: ask it for nothing
            self.io.protect(watchdog_s=i.io.watchdog_s)
        self._clear_a_stale_watchdog_latch()

    def _clear_a_stale_watchdog_latch(self) -> None:
        """A bench used before may hold the latch its last run left: the PSU's watchdog trips, and
        latches, once a rig stops talking to it (a run that ended, or died), and a latched output
        refuses this run's first output on. Only that latch is cleared, with the output off; any
        other latched protection is a finding for a person, and the bench does not start
        (:mod:`rig.psu_latch`, the lab's hand-over applies the same policy)."""
        latch = settle_psu_latch(self.psu)
        if latch.kept:
            raise RigError(f"bench {self.file.bench.name!r}: the PSU's output is {latch.said}")
        if latch.cleared:
            log.info("psu: the watchdog latch the last run left was cleared (output off)")

    # --- roles ---------------------------------------------------------------------------------------
    psu = property(lambda self: self.instruments["psu"], doc="the power supply (PowerSupply role)")
    eload = property(lambda self: self.instruments["eload"], doc="the e-load (ElectronicLoad role)")
    dmm = property(lambda self: self.instruments["dmm"], doc="the DMM on the pack terminals")
    scanner = property(lambda self: self.instruments.get("scanner"), doc="the cell-tap scanner")
    chamber = property(lambda self: self.instruments.get("chamber"), doc="the climate chamber")
    io = property(lambda self: self.instruments["io"], doc="the relay/IO box")

    @property
    def rs485(self):
        """The RS485 line between the packs (pyserial), opened on first use (only the tests that
        listen to the line need it)."""
        if self._rs485 is None:
            if self._rs485_url is None:
                raise RigError(f"bench {self.file.bench.name!r} has no [rs485] port")
            self._rs485 = serial.serial_for_url(self._rs485_url, baudrate=self.file.rs485.baudrate,
                                                timeout=0.0)
        return self._rs485

    def output(self, function: str, closed: bool) -> None:
        """Close or open the IO box relay wired to ``function`` (``breaker``, ``power_button`` ...)."""
        channels = self.file.instruments.io.outputs
        if function not in channels:
            raise RigError(f"bench {self.file.bench.name!r} has no IO output for {function!r}; "
                           f"wired: {', '.join(channels)}")
        self.io.set_output(channels[function], closed)

    # --- safety --------------------------------------------------------------------------------------
    def interlock(self) -> None:
        """Refuse any command that is not making the bench safe once the supervisor has tripped."""
        if self.trip is not None:
            raise SafetyTrip(f"command refused: bench tripped ({self.trip.condition})",
                             self.trip.reading, self.trip.limit, self.clock.now())

    def make_safe(self) -> list[str]:
        """The safe state: sources off, every relay open (the breaker first), chamber standby.

        Every step is tried even if one fails; returns the failures (empty: all done).
        """
        problems = []
        for name in ("psu", "eload", "io", "chamber"):
            driver = self.instruments.get(name)
            if driver is None:
                continue
            try:
                driver.make_safe()
            except Exception as exc:  # noqa: BLE001 - keep making the rest safe
                problems.append(f"{name}: {exc}")
        return problems

    def close(self) -> None:
        """Safe state, then close every instrument, the CAN bus, the RS485 port and the emulator."""
        if self._closed:
            return
        self._closed = True
        with suppress(Exception):
            self.make_safe()
        for driver in self.instruments.values():
            with suppress(Exception):
                driver.shutdown()
        if self.can is not None:
            with suppress(Exception):
                self.can.shutdown()
        if self._rs485 is not None:
            with suppress(Exception):
                _close_port(self._rs485)
        if self.backend is not None:
            self.backend.close()

    def __enter__(self) -> "Bench":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Bench", "InstrumentError"]


def _close_port(port) -> None:
    """Close a pyserial port. A ``socket://`` port's own close() then sleeps 0.3 s "in case of
    quick reconnects", which a bench never makes (it opens its line once): its socket is closed
    here and the port marked closed, so the sleep is skipped; any other port closes as usual."""
    sock = getattr(port, "_socket", None)
    if isinstance(sock, socket.socket):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        port._socket, port.is_open = None, False
    port.close()
