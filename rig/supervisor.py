"""The safety supervisor: the rig's own eyes on the pack, independent of the BMS.

It samples the rig's instruments (the DMM on the terminals, the cell-tap scanner and its case
thermocouples, the PSU and e-load read-backs) on the clock at the bench file's period and
checks PACK_SPEC.md 5's limits. The BMS is the thing under test and may be wrong, so nothing
it says on CAN is used here. On any excursion it trips:

1. the bench refuses every further command except those that make it safe (the interlock);
2. the bench goes to its safe state: PSU and e-load off, breaker contactor and relays open,
   chamber to standby;
3. :class:`~rig.errors.SafetyTrip` names the quantity, the reading, the limit and the time; it
   fails the running test (raised out of its sleep or wait) and the plugin aborts the session.

An instrument that stops answering for ``instrument_silent_s`` is an excursion too.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

from rig.bench import Bench
from rig.errors import InstrumentError, SafetyTrip


class Supervisor:
    """Samples and checks; see the module docstring.

    :param bench: the bench to watch and make safe.
    :param listeners: called with ``(t, values)`` after every sample (the recorder).
    """

    def __init__(self, bench: Bench, listeners: list[Callable[[float, dict], None]] | None = None):
        self.bench, self.limits = bench, bench.limits
        self.listeners = listeners or []
        self.samples = 0
        self.last: dict[str, float] = {}
        self._over_since: dict[tuple, float] = {}    # (pack, group) -> above the sustained limit since
        self._answered: dict[str, float] = {}        # instrument -> last good reading at
        self._short_until: float | None = None
        self._task = None

    def start(self) -> None:
        now = self.bench.clock.now()
        self._answered = dict.fromkeys(self.bench.instruments, now)
        self._task = self.bench.clock.every(self.bench.file.supervisor.period_s, self.sample,
                                            "safety supervisor")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @contextmanager
    def short_circuit_step(self):
        """Allow the short-circuit current (PACK_SPEC.md 5: up to 2000 A for 10 ms) while the
        test closes the short-circuit contactor. Only inside this step do the drivers close the
        ``short_circuit`` relay or put the e-load in short mode (the bench's permit); the step
        does not nest."""
        if self.bench.in_short_circuit_step:
            raise RuntimeError("short_circuit_step does not nest: one short at a time")
        self._short_until = self.bench.clock.now() + self.limits.short_circuit_max_for_s
        self.bench.in_short_circuit_step = True
        try:
            yield
        finally:
            self.bench.in_short_circuit_step = False
            self._short_until = None

    # --- one sample -------------------------------------------------------------------------------
    def _read(self, name: str, read: Callable[[], object], now: float):
        """One reading; an instrument that has not answered for ``instrument_silent_s``, or whose
        connection is gone (nothing will answer any more), trips the bench."""
        try:
            value = read()
        except InstrumentError as exc:
            silent = now - self._answered.get(name, now)
            gone = "transport error" in exc.reply
            if gone or silent >= self.limits.instrument_silent_s:
                self._trip(f"{name} silent ({exc.reply})", silent, f"{self.limits.instrument_silent_s:g} s", now)
            return None
        self._answered[name] = now
        return value

    def sample(self) -> dict[str, float]:
        """Read every watched quantity once and check it; raises :class:`SafetyTrip`."""
        if self.bench.trip is not None:
            return {}
        b, now = self.bench, self.bench.clock.now()
        values: dict[str, float] = {}
        pack_v = self._read("dmm", b.dmm.voltage, now)
        if pack_v is not None:
            values["pack_v"] = pack_v
        # the IO box too: the relays' state goes in the record, and the query keeps its watchdog
        # fed (on a dead rig, the watchdog opens the breaker)
        relays = self._read("io", b.io.outputs, now)
        if relays is not None:
            for function, channel in b.file.instruments.io.outputs.items():
                values[f"{function}_closed"] = float(relays.get(channel, False))
        currents = []
        for name in ("psu", "eload"):
            vi = self._read(name, b.instruments[name].measure, now)
            if vi is not None:
                values[f"{name}_v"], values[f"{name}_a"] = vi
                currents.append(vi[1])
        packs, cases = [], []   # packs: each pack's 16 group voltages
        scanner = b.scanner
        if scanner is not None:
            wiring = b.file.instruments.scanner
            for p in range(b.packs):
                v = self._read("scanner", lambda p=p: scanner.voltages(wiring.group_channels[p]), now)
                t = self._read("scanner", lambda p=p: scanner.temperatures(wiring.thermocouple_channels[p]), now)
                if v:
                    packs.append(v)
                cases += t or []
        for p, groups in enumerate(packs):
            prefix = "" if p == 0 else f"pack{p + 1}_"
            values |= {f"{prefix}group{i + 1}_v": v for i, v in enumerate(groups)}
        values |= {f"case{i + 1}_c": t for i, t in enumerate(cases)}
        self.samples += 1
        self.last = values
        for listener in self.listeners:
            listener(now, values)
        self._check(now, pack_v, currents, packs, cases)
        return values

    def _check(self, now, pack_v, currents, packs, cases) -> None:
        L = self.limits
        for p, groups in enumerate(packs):
            self._check_pack(now, p, pack_v, groups)
        current = max((abs(a) for a in currents), default=0.0)
        in_short = self._short_until is not None and now <= self._short_until
        limit = L.short_circuit_max_a if in_short else L.current_max_a
        # sampled at the supervisor period (> 10 ms): any sample above the limit has lasted longer
        # than the 10 ms allowed, unless it falls in the short-circuit step
        if current > limit:
            self._trip("current (PSU/e-load read-back)", current, f"{limit:g} A", now)
        for i, t in enumerate(cases):
            if not L.case_min_c <= t <= L.case_max_c:
                self._trip(f"case temperature {i + 1} (thermocouple)", t,
                           f"[{L.case_min_c:g}, {L.case_max_c:g}] C", now)
        if not packs:
            self._check_pack(now, 0, pack_v, [])

    def _check_pack(self, now, p: int, pack_v, groups) -> None:
        L = self.limits
        name = "" if p == 0 else f"pack {p + 1} "
        for i, v in enumerate(groups):
            if v > L.group_max_v:
                self._trip(f"{name}group {i + 1} voltage (cell tap)", v, f"{L.group_max_v:g} V", now)
            if v < L.group_min_v:
                self._trip(f"{name}group {i + 1} voltage (cell tap)", v, f">= {L.group_min_v:g} V", now)
            if v > L.group_sustained_max_v:
                since = self._over_since.setdefault((p, i), now)
                if now - since >= L.group_sustained_for_s:
                    self._trip(f"{name}group {i + 1} voltage above {L.group_sustained_max_v:g} V for "
                               f"{now - since:.1f} s", v, f"{L.group_sustained_for_s:g} s", now)
            else:
                self._over_since.pop((p, i), None)
        # The pack's own voltage is the sum of its cell taps: the DMM on the terminals shows the
        # PSU, not the pack, while the relays are open (activation probes up to 60.5 V there).
        own = sum(groups) if groups else pack_v
        what = name + ("pack voltage (cell-tap sum)" if groups else "pack voltage (DMM)")
        if own is not None and own > L.pack_max_v:
            self._trip(what, own, f"{L.pack_max_v:g} V", now)
        connected = pack_v is not None and pack_v > L.pack_connected_above_v
        if own is not None and connected and own < L.pack_min_v:
            self._trip(what + " while connected", own, f">= {L.pack_min_v:g} V", now)

    def _trip(self, condition: str, reading: float, limit: str, now: float) -> None:
        trip = SafetyTrip(condition, reading, limit, now)
        self.bench.trip = trip
        problems = self.bench.make_safe()
        if problems:
            trip.args = (f"{trip.args[0]}; safe state incomplete: {'; '.join(problems)}",)
        self.stop()
        raise trip
