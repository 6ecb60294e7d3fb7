"""Soak: 24 virtual hours of cycling the pack between 10 % and 100 % SOC with the supervisor on.

The bench is built as the pytest fixtures build it (:mod:`rig.fixtures`): the bench file's
emulated bench, the safety supervisor sampling at the bench file's period, the PCS stand-in
sending its heartbeat, the recorder logging every CAN frame, every supervisor sample and every
instrument command. The pack is powered on, then cycled, in the pack spec's terms:

- charge at the standard charge current (64 A) up to the CAN charge voltage limit (CC then CV)
  until the pack reports full (``soc.full_soc_pct``), rest;
- discharge at the continuous discharge current (85 A) until it reports 10 %, rest;

until the virtual time is up. Printed, with the issue's goals:

- spurious trips: supervisor trips during a normal cycle (goal 0; a trip ends the soak);
- RSS growth of the rig's process (and the emulator's, when it runs in its own) from the end of
  the warm-up to the end (goal < 10 MB). The warm-up is the time the rig's bounded histories take
  to fill: the PCS stand-in keeps its last ``history`` receptions of each frame by design
  (10,000 at the 1-s CAN period: 2.8 h, ~50 MB for one pack), so what grows after it is a leak.
  The RSS every sampling period is printed too, the growth during the warm-up included;
- CAN frames logged against those expected: every frame the emulated pack sent plus every
  heartbeat the PCS stand-in sent (goal equal), with what the PCS stand-in received.

Run: ``python benchmarks/bench_soak.py [--hours 24] [--bench FILE]`` (default: the emulated bench).
``tests/test_soak.py`` runs one virtual hour and asserts the three goals.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rig.bench import Bench
from rig.errors import SafetyTrip, WaitTimeout
from rig.files.bench_file import EMULATED_BENCH, load_bench
from rig.files.pack_spec import load_pack_spec
from rig.light_reader import LightReader
from rig.pack import Pack
from rig.pcs import PcsStandIn
from rig.recorder import Recorder, read_can
from rig.supervisor import Supervisor

#: the soak's cycle: the SOC the discharge goes down to, and the rest after each half-cycle
LOW_SOC_PCT = 10.0
REST_S = 1800.0
#: s between two looks at the pack's SOC (every frame received is tested, none is missed)
POLL_S = 10.0
#: RSS growth allowed after the warm-up, MB (the issue's goal)
RSS_GOAL_MB = 10.0
#: RSS samples over the soak (the first at the start)
RSS_SAMPLES = 24


@dataclass
class SoakResult:
    hours: float
    wall_s: float = 0.0
    trips: list[str] = field(default_factory=list)
    cycles: int = 0
    half_cycles: list[str] = field(default_factory=list)
    supervisor_samples: int = 0
    warm_up_s: float = 0.0
    rss_period_s: float = 0.0
    rss_series: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (t, MB by process)
    can_sent_by_pack: int = 0
    heartbeats_sent: int = 0
    can_received: int = 0
    can_logged: int = 0

    @property
    def can_expected(self) -> int:
        return self.can_sent_by_pack + self.heartbeats_sent

    def rss_at(self, t: float) -> dict[str, float]:
        """The first RSS sample at or after ``t`` s (the last one if none)."""
        return next((rss for at, rss in self.rss_series if at >= t), self.rss_series[-1][1])

    @property
    def warmed_up(self) -> bool:
        return self.rss_series[-1][0] > self.warm_up_s

    def rss_growth_mb(self) -> dict[str, float]:
        """Growth from the end of the warm-up (from the start, for a soak inside its warm-up) to
        the end, MB, by process."""
        warm = self.rss_at(self.warm_up_s) if self.warmed_up else self.rss_series[0][1]
        end = self.rss_series[-1][1]
        return {name: end[name] - warm[name] for name in end}

    def report(self) -> str:
        growth = self.rss_growth_mb()
        lines = [
            f"soak: {self.hours:g} virtual h in {self.wall_s:.0f} s wall ({self.hours * 3600 / self.wall_s:,.0f}x), "
            f"{self.cycles} full cycles ({len(self.half_cycles)} half-cycles), "
            f"{self.supervisor_samples} supervisor samples",
            f"  spurious trips:     {len(self.trips)} (goal 0){''.join(f'; {t}' for t in self.trips)}",
        ]
        for name, grown in growth.items():
            since = (f"the end of the warm-up ({self.warm_up_s / 3600:.3g} h)" if self.warmed_up else
                     f"the start (the soak ended inside its {self.warm_up_s / 3600:.3g}-h warm-up)")
            lines.append(f"  RSS growth {name + ':':9} {grown:+.1f} MB from {since} to the end "
                         f"(goal < {RSS_GOAL_MB:g} MB); MB every "
                         f"{self.rss_period_s / 3600:.3g} h from the start: "
                         + " ".join(f"{rss[name]:.0f}" for _, rss in self.rss_series))
        lines.append(f"  CAN frames logged:  {self.can_logged} of {self.can_expected} expected (goal equal): "
                     f"{self.can_sent_by_pack} sent by the pack (received {self.can_received}) + "
                     f"{self.heartbeats_sent} PCS heartbeats")
        return "\n".join(lines)


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_soak(hours: float, directory: Path, bench_path: Path = EMULATED_BENCH, *, history: int | None = None,
             progress=lambda text: None) -> SoakResult:
    """Cycle the pack for ``hours`` of virtual time; recordings go to ``directory``.

    :param history: receptions the PCS stand-in keeps per frame (default: its own default); a
        short soak keeps fewer, so that its warm-up ends early enough to see a leak after it.
    """
    loaded = load_bench(bench_path)
    spec = load_pack_spec(loaded.pack_spec_path)
    result = SoakResult(hours)
    started = time.perf_counter()
    bench = Bench(loaded, packs=1)
    f = loaded.file.recording
    recorder = Recorder(directory, "bench_soak", can_format=f.can_format, flush_s=f.flush_s, clock=bench.clock)
    try:
        for driver in bench.instruments.values():
            driver.listeners.append(recorder.record_step)
        supervisor = Supervisor(bench, listeners=[lambda t, values: recorder.record_sample(t, **values)])
        pcs = PcsStandIn(bench.can, bench.clock, **({} if history is None else {"history": history}))
        pcs.listeners.append(recorder.on_message_received)
        lights = LightReader(bench.io, loaded.file.instruments.io.inputs, bench.clock)
        pack = Pack(bench, spec, pcs, lights)
        processes = {"rig": "self"}
        remote = getattr(bench.emulator, "process", None)
        if remote is not None:
            processes["emulator"] = remote.pid
        result.warm_up_s = pcs.history_size * spec.can.period_s  # the histories full
        result.rss_period_s = hours * 3600 / RSS_SAMPLES
        rss_task = bench.clock.every(result.rss_period_s, lambda: result.rss_series.append(
            (bench.clock.now(), {name: _rss_mb(pid) for name, pid in processes.items()})), "soak RSS")
        supervisor.start()
        pcs.start()
        end = bench.clock.now() + hours * 3600
        try:
            pack.power_on()
            _cycle(pack, spec, end, result, progress)
        except SafetyTrip as trip:
            result.trips.append(str(trip))
        finally:
            rss_task.cancel()
            result.rss_series.append((bench.clock.now(), {n: _rss_mb(p) for n, p in processes.items()}))
            pcs.stop()
            supervisor.stop()
            result.supervisor_samples = supervisor.samples
        pcs.pump()
        result.heartbeats_sent, result.can_received = pcs.heartbeats_sent, pcs.frames_received
        result.can_sent_by_pack = _frames_sent_by_pack(bench)
    finally:
        bench.close()
        recorder.close()
    result.can_logged = len(read_can(recorder.can_path))
    result.wall_s = time.perf_counter() - started
    return result


def _frames_sent_by_pack(bench: Bench) -> int:
    """What the emulator says the pack put on the bus (in this process, or over its control port)."""
    emulator = bench.emulator
    last = getattr(emulator, "last", None)
    return last["can_sent"] if last is not None else emulator.can_sent


def _cycle(pack: Pack, spec, end: float, result: SoakResult, progress) -> None:
    """Discharge to the low SOC and charge to full, with rests, until the clock reaches ``end``."""
    clock, r = pack.clock, spec.ratings
    full = spec.soc.full_soc_pct
    charging = pack.pcs.signal("SOC") < full / 2  # from the bench's initial SOC: the nearer end first
    while clock.now() < end:
        left = end - clock.now()
        current = r.standard_charge_current_a if charging else r.continuous_discharge_current_a
        if charging:
            pack.charge(current, spec.can.charge_voltage_limit_v)
            what, reached = "charge", lambda soc: soc >= full
        else:
            pack.discharge(current)
            what, reached = "discharge", lambda soc: soc <= LOW_SOC_PCT
        longest = 2 * r.nominal_capacity_ah / current * 3600  # twice a whole capacity's time: stuck
        try:
            pack.pcs.wait_until("SOC", reached, within=min(left, longest), poll=POLL_S, frame="StateOfCharge",
                                what=f"the pack's SOC at the end of the {what}")
        except WaitTimeout:  # the soak's time ran out mid half-cycle
            if left > longest:
                raise
            what = f"(time up) {what}"
        else:
            result.cycles += charging  # a full cycle ends with its charge
        result.half_cycles.append(f"{what} to {pack.pcs.signal('SOC'):g} % at {clock.now() / 3600:.2f} h")
        progress(result.half_cycles[-1])
        pack.rest(min(REST_S, max(end - clock.now(), 0.0)))
        charging = not charging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="virtual hours (default 24)")
    parser.add_argument("--bench", default=str(EMULATED_BENCH), help="an emulated bench file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="packrig-soak-") as tmp:
        result = run_soak(args.hours, Path(tmp), Path(args.bench), progress=lambda text: print("  " + text, flush=True))
    print(result.report())


if __name__ == "__main__":
    main()
