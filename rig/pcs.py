"""The inverter's side of the CAN link: a PCS stand-in that keeps the pack talking and listens to it.

A Pylon-LV pack expects the PCS (the inverter) to answer every second with 0x305; silence is PCS
loss (PACK_SPEC.md 6). :class:`PcsStandIn` plays that part: it sends the heartbeat every 1 s
(``silence(True)`` stops it), and decodes every frame the pack sends through pack.dbc, keeping
per (frame name, pack address) a bounded history of (timestamp, signals). The timestamp is the
frame's own: virtual seconds on the emulated bench, the interface's receive time on a real one
(python-can: Unix seconds, not the rig clock), so frame times are compared with frame times. A
frame that breaks the protocol never stops the rig: it goes to ``errors`` with the raw frame.
Every raw frame goes to the ``listeners`` (the recorder), and so does every heartbeat the
stand-in sent, marked ``is_rx = False`` (a log shows it as Tx), stamped on the received frames'
clock and handed over in time order among them.

Two ways to run, chosen by the bus:

- the bus of an emulated bench in virtual time (an
  :class:`~rig.emulator_client.virtual_time_bus.EmulatorBus`): the heartbeat is the bus's
  ``send_periodic`` job, which the emulator runs in virtual time, and the stand-in pumps
  whenever the bus says frames arrived (its ``on_arrival``). Nothing wakes
  every virtual second, so a long wait is one advance of the emulator;
- any other bus: a 1-s task on the rig clock sends the heartbeat and pumps (on a wall clock it
  runs on its own thread).

Reception is a *pump* that drains what the bus has queued, and every query pumps first, so a
query sees everything received up to that instant. Queries speak the pack's terms:
``signal("SOC")``, ``wait_until("State", "Run", within=30)``, ``periods("ChargeLimits")``.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import can

from rig.can_history import BY_ID, BadFrame, Reception, Seen, frame_key, frame_of
from rig.clock import Clock, Periodic
from rig.emulator_client.virtual_time_bus import EmulatorBus
from rig.errors import ProtocolError, RigError
from rig.protocol import can_frames

HEARTBEAT_PERIOD_S = 1.0  #: s; PACK_SPEC.md 6: "The PCS answers every second with 0x305"
#: Unix time of 1990-01-01: a frame stamped earlier carries rig-clock (or emulator) time.
UNIX_1990 = 631152000.0

_HEARTBEAT = can_frames.encode("PcsHeartbeat", {})  # 8 zero bytes, standard ID 0x305


class CanCheckFailed(RigError, AssertionError):
    """The pack's CAN traffic failed a check: a frame never received, a signal out of its band.
    An ``AssertionError`` too, so pytest reports the pack failing, not the rig crashing."""


class PcsStandIn:
    """The PCS end of the CAN link: heartbeat out, pack frames in, queries in the pack's terms.

    :param bus: the rig's CAN interface; the stand-in never shuts it down (its owner does).
    :param clock: the rig clock; the heartbeat and the pump run as one periodic task on it.
    :param history: receptions kept per (frame, pack address), and bad frames kept, at most.
    """

    def __init__(self, bus: can.BusABC, clock: Clock, *, history: int = 10_000):
        if history < 2:
            raise ValueError(f"history must keep at least 2 receptions, got {history}")
        self.bus, self.clock, self.history_size = bus, clock, history
        #: callables given every raw frame received, good or bad, and every heartbeat sent
        #: (``is_rx`` False), in time order (the CAN recorder).
        self.listeners: list[Callable[[can.Message], Any]] = []
        #: frames taken from the bus, good and bad.
        self.frames_received = 0
        #: frames that broke the protocol: all counted in bad_frames, the first ``history`` kept in errors.
        self.bad_frames = 0
        self.errors: list[BadFrame] = []
        self._sent = 0                                # heartbeats sent by the 1-s task or stopped jobs
        self._last_at: float | None = None
        self._silent = False
        self._task: Periodic | None = None
        # On an emulator's bus in virtual time the heartbeat is a cyclic job of the emulator and
        # the pump runs when frames arrive: the job and the clock time it started.
        self._cyclic = isinstance(bus, EmulatorBus)
        self._job: can.broadcastmanager.CyclicSendTaskABC | None = None
        self._job_started = 0.0
        # The heartbeats handed to the listeners: the job's (counted; they are due at exact
        # times) and the 1-s task's (their rig-clock send times, queued until the first frame
        # received says which clock the frames carry: the rig's, or Unix time).
        self._job_logged = 0
        self._tx_queue: deque[float] = deque()
        self._tx_base: float | None = 0.0 if self._cyclic else None  # frame time - rig time of our frames
        self._tx_next = math.inf  # frame time of the next heartbeat to hand over
        # Per (frame, pack address): the last ``history`` receptions, and how many ever came.
        self._tracks: dict[tuple[str, int | None], deque[Reception]] = {}
        self._counts: dict[tuple[str, int | None], int] = {}
        # The periodic task (its own thread on the wall clock) and the test both pump.
        self._lock = threading.RLock()

    @property
    def heartbeats_sent(self) -> int:
        """Heartbeats sent since start."""
        return self._sent + self._job_count()[0]

    @property
    def last_heartbeat_at(self) -> float | None:
        """The clock time of the last heartbeat, s (None: none yet)."""
        count, last = self._job_count()
        return last if count else self._last_at

    def start(self) -> None:
        """Send the heartbeat every 1 s from now on and pump the bus as frames come (no-op if running)."""
        if self._cyclic:
            if self.pump not in self.bus.on_arrival:
                self.bus.on_arrival.append(self.pump)
                self._start_job()
        elif self._task is None:
            self._task = self.clock.every(HEARTBEAT_PERIOD_S, self._tick, "PCS heartbeat and CAN pump")

    def silence(self, silent: bool) -> None:
        """Stop (True) or resume (False) the heartbeat, to provoke PCS loss; reception goes on.
        A resumed heartbeat starts at once, then every 1 s, as an inverter coming back does."""
        resume, self._silent = self._silent and not silent, bool(silent)
        if self._cyclic and self.pump in self.bus.on_arrival:
            with self._lock:
                if self._silent:
                    self._stop_job()
                else:
                    self._start_job()
        elif resume and self._task is not None:
            self._task.cancel()
            self._task = self.clock.every(HEARTBEAT_PERIOD_S, self._tick, "PCS heartbeat and CAN pump")

    def stop(self) -> None:
        """Stop the heartbeat and the periodic pump (safe to call twice; the bus stays open);
        the heartbeats sent and not yet handed to the listeners are handed over now."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        with self._lock:
            if self._cyclic and self.pump in self.bus.on_arrival:
                self.bus.on_arrival.remove(self.pump)
                self._stop_job()
            if self._tx_base is None:  # no frame ever came: the frames' clock is taken as the rig's
                self._tx_base = 0.0
            self._log_own(math.inf)

    def _start_job(self) -> None:
        if self._job is None and not self._silent:
            self._job_started, self._job_logged = self.clock.now(), 0
            self._job = self._guard(lambda: self.bus.send_periodic(self._heartbeat(), HEARTBEAT_PERIOD_S))
            self._tx_next = self._own_next()

    def _stop_job(self) -> None:
        count, last = self._job_count()
        if count:
            self._log_own(last)  # the job's heartbeats up to its last one, before it is gone
        job, self._job = self._job, None
        self._tx_next = self._own_next()
        if job is not None:
            with suppress(can.CanError, OSError, RigError):  # an interface that is gone sends nothing
                job.stop()
            self._sent += count
            self._last_at = last if count else self._last_at

    def _job_count(self) -> tuple[int, float]:
        """Heartbeats the running job has sent by now (the first at its start), and the time of the last."""
        if self._job is None:
            return 0, 0.0
        count = int((self.clock.now() - self._job_started) / HEARTBEAT_PERIOD_S + 1e-9) + 1
        return count, self._job_started + (count - 1) * HEARTBEAT_PERIOD_S

    def _heartbeat(self) -> can.Message:
        return can.Message(timestamp=self.clock.now(), arbitration_id=_HEARTBEAT.arbitration_id,
                           is_extended_id=False, data=_HEARTBEAT.data, dlc=_HEARTBEAT.dlc)

    def _guard(self, send: Callable[[], Any]) -> Any:
        try:
            return send()
        except (can.CanError, OSError, RigError) as exc:  # the interface (or what serves it) is gone
            raise RigError(f"CAN interface {self.bus.channel_info}: PCS heartbeat not sent "
                           f"({type(exc).__name__}: {exc})") from exc

    def _tick(self) -> None:
        if not self._silent:
            self._guard(lambda: self.bus.send(self._heartbeat()))
            self._sent += 1
            self._last_at = self.clock.now()
            with self._lock:
                self._tx_queue.append(self._last_at)
                self._tx_next = self._own_next()
        self.pump()

    def pump(self) -> None:
        """Take every frame the bus has queued, decode and store it, and hand it to the listeners.

        :raises: whatever a listener raises (a recorder that cannot write must fail the test)."""
        with self._lock:
            recv, tracks, counts = self.bus.recv, self._tracks, self._counts
            last = -math.inf
            while (msg := recv(0)) is not None:
                self.frames_received += 1
                last = msg.timestamp
                if self._tx_base is None:
                    self._frames_clock(msg)
                if last >= self._tx_next:  # our heartbeats sent before this frame go first
                    self._log_own(last)
                # the frame's identity and length are checked now, its signals decoded when read
                key = BY_ID.get((msg.arbitration_id, msg.is_extended_id, msg.dlc, len(msg.data)))
                if key is None or msg.is_remote_frame or msg.is_error_frame:
                    self._bad(msg)
                else:
                    track = tracks.get(key)
                    if track is None:
                        track = tracks[key] = deque(maxlen=self.history_size)
                        counts[key] = 0
                    track.append(Reception(msg.timestamp, msg))
                    counts[key] += 1
                for listener in self.listeners:
                    listener(msg)
            if self._tx_base is not None:
                self._log_own(max(last, self.clock.now() + self._tx_base))

    def _frames_clock(self, msg: can.Message) -> None:
        """The first frame received says which clock the frames carry: Unix time (a real
        interface) or the rig's (an emulator's); our queued heartbeats are stamped on it."""
        self._tx_base = time.time() - self.clock.now() if msg.timestamp >= UNIX_1990 else 0.0
        self._tx_next = self._own_next()

    def _own_next(self) -> float:
        """Frame time of the next heartbeat not yet handed to the listeners (inf: none)."""
        t = math.inf
        if self._job is not None:
            t = self._job_started + self._job_logged * HEARTBEAT_PERIOD_S
        if self._tx_queue and self._tx_base is not None:
            t = min(t, self._tx_queue[0] + self._tx_base)
        return t

    def _log_own(self, until: float) -> None:
        """Hand the listeners every heartbeat sent up to frame time ``until``, oldest first, as
        the frames a log marks Tx."""
        while self._tx_next <= until and self._tx_next != math.inf:
            t = self._tx_next
            if self._job is not None and t == self._job_started + self._job_logged * HEARTBEAT_PERIOD_S:
                self._job_logged += 1
            else:
                self._tx_queue.popleft()
            sent = can.Message(timestamp=t, arbitration_id=_HEARTBEAT.arbitration_id, is_extended_id=False,
                               data=_HEARTBEAT.data, dlc=_HEARTBEAT.dlc, is_rx=False)
            for listener in self.listeners:
                listener(sent)
            self._tx_next = self._own_next()

    def _bad(self, msg: can.Message) -> None:
        try:
            can_frames.decode(msg)
            problem = "undecodable frame"
        except ProtocolError as error:
            problem = str(error)
        self.bad_frames += 1
        if len(self.errors) < self.history_size:  # the first ones say most
            self.errors.append(BadFrame(msg.timestamp, problem, msg))

    def latest(self, frame: str, pack_address: int | None = None) -> dict[str, int | float | str]:
        """The signals of the last ``frame`` received (a copy).

        :param frame: frame name as in pack.dbc (``"ChargeLimits"``, ``"DetailStatus"``).
        :param pack_address: 2 or 3 for a detail frame (None: the master, 2); None for Pylon frames.
        :raises CanCheckFailed: if that frame was never received, naming it and what was received.
        :raises ValueError: for a frame not in pack.dbc or a pack address that does not fit it
            (the same for every query below).
        """
        return dict(self.received(frame, pack_address)[-1].signals)

    def received(self, frame: str, pack_address: int | None = None) -> list[Reception]:
        """Every ``frame`` kept so far (at most ``history``), oldest first, each with its timestamp.

        :raises CanCheckFailed: if that frame was never received.
        """
        key = frame_key(frame, pack_address)
        self.pump()
        with self._lock:
            if key not in self._tracks:
                where = "" if key[1] is None else f" from pack address {key[1]}"
                seen = ", ".join(sorted(f"{n}@{a}" if a else n for n, a in self._tracks)) or "none"
                raise CanCheckFailed(f"no {frame} frame{where} received yet ({self.frames_received} "
                                     f"frames received in all; frames seen: {seen})")
            return list(self._tracks[key])

    def signal(self, name: str, frame: str | None = None, pack_address: int | None = None) -> int | float | str:
        """The last value of signal ``name`` (DBC units, or the value-table name such as ``"Run"``).

        With no ``frame``, the frame carrying that signal is found in pack.dbc. ``SOC`` is in two:
        without a pack address it is the system's (0x355, what the inverter sees), with one it is
        that pack's own (DetailStatus).

        :raises CanCheckFailed: if the frame was never received.
        :raises ValueError: unknown signal, or a frame that does not carry it."""
        frame = frame_of(name, frame, pack_address)
        return self.latest(frame, pack_address)[name]

    def wait_until(self, signal: str, predicate: Callable[[Any], bool] | Any, within: float, *,
                   frame: str | None = None, pack_address: int | None = None, what: str = "",
                   poll: float = 0.1) -> tuple[Any, float]:
        """Wait until a received value of ``signal`` satisfies ``predicate``; return (value, frame time s).

        Every frame received is tested, not only the latest at each poll, so a value held for one
        frame between two polls is not missed. The last value received before the wait counts.

        :param predicate: a callable on the value, or a plain value meaning "equals" (``"Run"``).
        :param within: seconds to wait at most (rig clock).
        :param what: the condition in words for the timeout message (default: the predicate's name).
        :param poll: seconds between two looks at the bus.
        :raises WaitTimeout: naming the signal, the condition and the last value with its time.
        """
        frame = frame_of(signal, frame, pack_address)
        key = frame_key(frame, pack_address)
        if not callable(predicate):
            predicate, what = (lambda value, wanted=predicate: value == wanted), what or f"== {predicate!r}"
        description = what or getattr(predicate, "__name__", "").replace("<lambda>", "") or "(unnamed predicate)"
        cursor = max(self._counts.get(key, 0) - 1, 0)
        last = Seen(None, None, False)

        def read() -> Seen:
            nonlocal cursor, last
            fresh, cursor = self._new(key, cursor)
            for reception in fresh:
                last = Seen(reception.signals[signal], reception.t, False)
                if predicate(last.value):
                    return last._replace(hit=True)
            return last

        where = "" if key[1] is None else f" (pack address {key[1]})"
        seen = self.clock.wait_for(read, timeout=within, poll=poll, until=lambda s: s.hit,
                                   what=f"CAN {frame}.{signal}{where} {description}")
        return seen.value, seen.t

    def stayed_within(self, signal: str, low: float, high: float, during: float, *,
                      frame: str | None = None, pack_address: int | None = None,
                      poll: float = 0.1) -> tuple[float, float]:
        """Watch ``signal`` for ``during`` seconds (rig clock); every frame received must be in [low, high].

        :return: (lowest, highest) value received while watching.
        :raises CanCheckFailed: at the first excursion, naming its value and frame time; or if no
            frame carrying the signal arrived while watching (a silent pack does not pass).
        :raises ValueError: if ``low > high``.
        """
        if low > high:
            raise ValueError(f"stayed_within: low {low:g} is above high {high:g}")
        frame = frame_of(signal, frame, pack_address)
        key = frame_key(frame, pack_address)
        self.pump()
        cursor = self._counts.get(key, 0)
        started = self.clock.now()
        end = started + during
        seen: list[float] = []
        while True:
            fresh, cursor = self._new(key, cursor)
            for reception in fresh:
                value = reception.signals[signal]
                if not low <= value <= high:
                    raise CanCheckFailed(
                        f"CAN {frame}.{signal} = {value:g} in the frame at t={reception.t:.3f} s, outside "
                        f"[{low:g}, {high:g}] (watched from t={started:.3f} s for {during:g} s)")
                seen.append(value)
            remaining = end - self.clock.now()
            if remaining <= 1e-12:
                break
            self.clock.sleep(min(poll, remaining))
        if not seen:
            raise CanCheckFailed(f"no {frame} frame carrying {signal} received in the {during:g} s "
                                 f"watched from t={started:.3f} s")
        return min(seen), max(seen)

    def periods(self, frame: str, pack_address: int | None = None) -> list[float]:
        """Seconds between consecutive receptions of ``frame``, from the frames' timestamps;
        for CAN schedule checks. :raises CanCheckFailed: if that frame was never received."""
        times = [r.t for r in self.received(frame, pack_address)]
        return [b - a for a, b in zip(times, times[1:])]

    def _new(self, key: tuple[str, int | None], cursor: int) -> tuple[list[Reception], int]:
        """After a pump: the receptions numbered ``cursor`` and later, and the next cursor."""
        self.pump()
        with self._lock:
            receptions, count = self._tracks.get(key, ()), self._counts.get(key, 0)
            fresh = min(count - cursor, len(receptions))
            # Index from the right end: O(1) per item on a deque, however long the history.
            return [receptions[i] for i in range(-fresh, 0)], count
