"""Cyclic CAN frames the rig asked for, sent in the world's time.

A rig that must send a frame every period (the PCS heartbeat, 0x305 every second) asks its CAN
interface to do it: python-can's ``bus.send_periodic``, which a socketcand server runs as a BCM
job and a CAN adapter from its own cyclic buffer. The emulator does the same in virtual time: a
:class:`CyclicFrames` is one such job, a timed device of the world that hands each frame to the
pack at its exact instant. So the rig does not have to wake every second to keep the pack
talking, and a long virtual wait is one advance.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import can

from rig.clock import NS


class CyclicFrames:
    """Send ``frames`` one per ``period_ns``, in turn, from ``start_ns`` (as python-can does with a
    sequence of messages), until ``end_ns`` (None: until stopped).

    :param deliver: called with each frame, at its instant, its timestamp set to that instant.
    """

    def __init__(self, deliver: Callable[[can.Message], None], frames: Sequence[can.Message],
                 period_ns: int, start_ns: int, end_ns: int | None = None):
        if not frames:
            raise ValueError("a cyclic job needs at least one frame")
        if period_ns <= 0:
            raise ValueError(f"period must be positive, got {period_ns} ns")
        self.deliver, self.frames, self.period_ns, self.end_ns = deliver, list(frames), period_ns, end_ns
        self.next_ns: int | None = start_ns
        self.sent = 0
        self.stopped = False

    def next_deadline_ns(self) -> int | None:
        return None if self.stopped else self.next_ns

    def on_time(self, t_ns: int) -> None:
        """Send every frame due by ``t_ns`` (the world calls it at the end of each step)."""
        while not self.stopped and self.next_ns <= t_ns:
            if self.end_ns is not None and self.next_ns > self.end_ns:
                self.stop()
                return
            frame = self.frames[self.sent % len(self.frames)]
            self.deliver(can.Message(timestamp=self.next_ns / NS, arbitration_id=frame.arbitration_id,
                                     is_extended_id=frame.is_extended_id, dlc=frame.dlc, data=frame.data))
            self.sent += 1
            self.next_ns += self.period_ns

    def stop(self) -> None:
        self.stopped = True
