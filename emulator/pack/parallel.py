"""Two packs in parallel: the master's RS485 polling and the parallel-connection rules (manual 5, 6.2).

The master (the pack on the CAN bus, ADR 2) polls the slave (ADR 3) with 0x42 (analog values)
and 0x44 (alarm info) every ``parallel.rs485_poll_period_s`` (PACK_SPEC.md 7); the polls and
answers are real frames on the emulated RS485 line, so the rig sees the same traffic it would
sniff on a real link. A poll is answered when both commands are. The rules, from the firmware
profile:

- both packs must be on within ``power_on_window_s`` of each other: a master that hears no
  slave in that time, or a slave that is not polled in that time, fails;
- at the first answer the master compares the two module voltages: within
  ``max_voltage_difference_v`` both packs join (relays close, RUN flickers five times, the
  master reports two modules); beyond it both fail;
- once joined, ``rs485_missed_polls`` polls in a row without an answer is a link failure for
  the master, and as many poll periods without a poll one for the slave: a partner that was
  turned off (button, fault power-off, PCS loss) is noticed by the silence on the line, as a
  firmware can notice it, never at once.

A failure is the parallel-connection failure of PACK_SPEC.md 4: ALM on, then the fault power-off.
"""
from __future__ import annotations

from emulator.pack.bms import Bms
from rig.clock import ns
from rig.errors import FrameError
from rig.protocol import rs485
from rig.protocol.rs485_commands import AlarmInfo, AnalogValues

#: The commands of one poll, in the order the master sends them (PACK_SPEC.md 7).
POLLS = (rs485.Cid2.ANALOG_VALUES, rs485.Cid2.ALARM_INFO)


class ParallelLink:
    """The RS485 side of a two-pack system.

    :param master: the BMS of the pack on the CAN bus (ADR 2); :param slave: the other (ADR 3).
    :param line: the RS485 line: ``transmit(bytes)`` puts bytes on it; every frame on the line
        (from anyone) is handed back through :meth:`on_line`.
    """

    def __init__(self, master: Bms, slave: Bms, line):
        self.master, self.slave, self.line = master, slave, line
        self.timers = master.timers  # the world's event queue: the next poll, the silence and window limits
        self.p = master.p.parallel
        self._period = ns(self.p.rs485_poll_period_s)
        self._window = ns(self.p.power_on_window_s)
        self._on_since: dict[int, int | None] = {2: None, 3: None}
        self._next_poll: int | None = None
        self._answer: AnalogValues | None = None
        self._alarms: AlarmInfo | None = None
        self._waiting: rs485.Cid2 | None = None  # the command of the poll on the line now
        self._last_polled: int | None = None   # when the slave last heard a poll
        self.missed = 0
        self.joined = False
        self._reader = rs485.FrameReader()
        self._polls = {cid2: rs485.encode_frame(rs485.request(cid2, rs485.SLAVE_ADR, bytes([rs485.SLAVE_ADR])))
                       for cid2 in POLLS}
        for bms in (master, slave):
            bms.parallel_mode = True

    # --- the line --------------------------------------------------------------------------------
    def on_line(self, data: bytes) -> None:
        """Bytes seen on the RS485 line; the master keeps the slave's answers to its own polls."""
        for item in self._reader.feed(data):
            if isinstance(item, FrameError) or item.adr != rs485.SLAVE_ADR or self._waiting is None:
                continue
            if item.cid1 == rs485.CID1 and item.cid2_or_rtn == rs485.Rtn.OK and item.info:
                try:
                    if self._waiting == rs485.Cid2.ANALOG_VALUES:
                        self._answer = AnalogValues.decode(item.info)
                    else:
                        self._alarms = AlarmInfo.decode(item.info)
                except FrameError:
                    continue  # a garbled answer counts as a missed poll

    def _poll(self, t_ns: int) -> bool:
        """One poll of the slave, 0x42 then 0x44; True when it answered both."""
        with self.line.lock:  # a console's traffic on the line must not pass for the answer
            self._answer = self._alarms = None
            for cid2 in POLLS:
                self._waiting = cid2
                self.line.transmit(self._polls[cid2], sender=rs485.MASTER_ADR)
            self._waiting = None
        answered = self._answer is not None and self._alarms is not None
        if answered:
            self._last_polled = t_ns
        return answered

    # --- time ------------------------------------------------------------------------------------
    def on_time(self, t_ns: int) -> None:
        for bms in (self.master, self.slave):
            if bms.awake and bms.state != "PoweringOff" and self._on_since[bms.address] is None:
                self._on_since[bms.address] = t_ns
            elif not bms.awake:
                self._on_since[bms.address] = None
                if bms is self.master:
                    self._next_poll = None
        if not (self.master.awake or self.slave.awake):
            self.joined = False  # both off: the next power-on is a new connection
        master_on = self._on_since[2] is not None
        if master_on and self._next_poll is None:
            self._next_poll = t_ns
        if master_on and t_ns >= self._next_poll:
            self._next_poll += self._period
            self._after_poll(self._poll(t_ns), t_ns)
        self._unpolled(t_ns)
        self._windows(t_ns)
        self._time()

    def _unpolled(self, t_ns: int) -> None:
        """A joined slave that has heard no poll for ``rs485_missed_polls`` periods: link failure."""
        if self.joined and self._on_since[3] is not None and t_ns >= self._unpolled_at():
            self._fail(t_ns, self.slave)

    def _unpolled_at(self) -> int:
        return self._last_polled + self.p.rs485_missed_polls * self._period

    def _after_poll(self, answered: bool, t_ns: int) -> None:
        if self.joined:
            self.missed = 0 if answered else self.missed + 1
            if self.missed >= self.p.rs485_missed_polls:
                self._fail(t_ns, self.master, self.slave)
            return
        if not answered:
            return
        difference = abs(self.master.report.pack_v - self._answer.module_mv / 1000.0)
        if difference > self.p.max_voltage_difference_v:
            self._fail(t_ns, self.master, self.slave)
        else:
            self.joined, self.missed = True, 0
            for bms in (self.master, self.slave):
                bms.parallel_joined(t_ns, modules=2)

    def _windows(self, t_ns: int) -> None:
        if self.joined:
            return
        m, s = self._on_since[2], self._on_since[3]
        if m is not None and t_ns - m >= self._window and s is None:
            self._fail(t_ns, self.master)
        if s is not None and t_ns - s >= self._window and (self._last_polled is None or m is None):
            self._fail(t_ns, self.slave)

    def _fail(self, t_ns: int, *packs: Bms) -> None:
        self.joined = False
        for bms in packs:
            if bms.awake and bms.state != "PoweringOff":
                bms.parallel_failure(t_ns)

    def _time(self) -> None:
        """File the link's timers: the next poll; once joined, the slave's silence limit; before,
        each pack's power-on window."""
        slave_on = self._on_since[3] is not None
        self.timers.schedule((self, "poll"), self._next_poll)
        self.timers.schedule((self, "unpolled"), self._unpolled_at() if self.joined and slave_on else None)
        for address, since in self._on_since.items():
            window_ends = None if self.joined or since is None else since + self._window
            self.timers.schedule((self, "window", address), window_ends)

    def next_deadline_ns(self) -> None:
        """None: the link files its timers in the world's event queue (it is a timed device of the
        world only to be called at the end of each step, :meth:`on_time`)."""
        return None
