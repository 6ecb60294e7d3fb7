"""The rig's CAN bus on an emulated bench in virtual time.

A python-can bus around the stock one the bench file names (``virtual`` in one process,
``socketcand`` across processes) that adds what virtual time needs and a real interface does
not:

- **cyclic frames in the emulator's time.** ``send_periodic`` (python-can's API for a frame a
  test must send every period, like the PCS heartbeat) becomes a job of the emulator, which
  sends the frame to the pack at exact virtual instants, as a socketcand BCM job or an
  adapter's cyclic buffer would in real time. python-can's own fallback, a thread, would send
  in wall time;
- **arrival.** The emulator calls :meth:`EmulatorBus.arrived` when the frames of an advance
  have reached this bus (and during a long one, as they stream in), and the bus calls each of
  :attr:`EmulatorBus.on_arrival`: the PCS stand-in pumps there, so it need not wake every
  virtual second, and a long wait is one advance;
- **counting** (across processes): frames sent, and reading ahead up to the count the
  emulator says it sent, so no frame races the time channel.
"""
from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Protocol

import can
from can.broadcastmanager import CyclicSendTaskABC

from rig.errors import SyncTimeout

SYNC_TIMEOUT_S = 10.0


class CyclicScheduler(Protocol):
    """The emulator's side of ``send_periodic`` (in this process or over its control port)."""

    def start_cyclic(self, frames: list[can.Message], period_s: float, duration_s: float | None) -> int: ...

    def stop_cyclic(self, handle: int) -> None: ...


class EmulatedCyclicTask(CyclicSendTaskABC):
    """A ``send_periodic`` job the emulator runs in virtual time; ``stop()`` ends it."""

    def __init__(self, scheduler: CyclicScheduler, messages: Sequence[can.Message], period: float,
                 duration: float | None):
        super().__init__(messages, period)
        self.duration = duration
        self._scheduler = scheduler
        self._handle: int | None = scheduler.start_cyclic(list(self.messages), period, duration)

    def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._scheduler.stop_cyclic(handle)


class EmulatorBus(can.BusABC):
    """A bus around ``inner`` whose cyclic jobs run in the emulator's virtual time.

    :param inner: the python-can bus the bench file names for the emulator.
    :param scheduler: the emulator (it runs the cyclic jobs).
    """

    def __init__(self, inner: can.BusABC, scheduler: CyclicScheduler, **kwargs):
        self.inner, self.scheduler = inner, scheduler
        #: callables run (no arguments) whenever frames from the emulator have arrived
        self.on_arrival: list[Callable[[], object]] = []
        self.sent = 0
        self.received = 0
        self._ahead: collections.deque[can.Message] = collections.deque()
        super().__init__(channel=getattr(inner, "channel_info", "emulator"), **kwargs)
        self.channel_info = f"emulated, through {inner.channel_info}"

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.inner.send(msg, timeout)
        self.sent += 1

    def _recv_internal(self, timeout):
        if self._ahead:
            return self._ahead.popleft(), False
        msg = self.inner.recv(timeout)
        if msg is not None:
            self.received += 1
        return msg, False

    def _send_periodic_internal(self, msgs, period, duration=None, autostart=True, modifier_callback=None):
        if modifier_callback is not None or not autostart:
            raise NotImplementedError("the emulator runs cyclic frames as given and at once "
                                      "(no modifier_callback, autostart only)")
        return EmulatedCyclicTask(self.scheduler, [msgs] if isinstance(msgs, can.Message) else msgs,
                                  period, duration)

    def arrived(self) -> None:
        """The emulator says frames have arrived: run :attr:`on_arrival`."""
        for callback in self.on_arrival:
            callback()

    def fill_available(self) -> int:
        """Read what is on the wire now without waiting (kept for recv); returns how many."""
        count = 0
        while (msg := self.inner.recv(0)) is not None:
            self._ahead.append(msg)
            count += 1
        self.received += count
        return count

    def fill_until(self, count: int, timeout: float = SYNC_TIMEOUT_S) -> None:
        """Read from the wire until ``count`` frames have arrived in all (kept for recv)."""
        waited = 0.0
        while self.received < count:
            msg = self.inner.recv(0.05)
            if msg is None:
                waited += 0.05
                if waited >= timeout:
                    raise SyncTimeout(f"CAN: the emulator sent {count} frames, {self.received} arrived "
                                   f"within {timeout:g} s")
                continue
            self.received += 1
            self._ahead.append(msg)

    def shutdown(self) -> None:
        super().shutdown()  # stops the cyclic jobs
        self.inner.shutdown()
