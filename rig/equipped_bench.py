"""The bench a test runs on: a :class:`~rig.bench.Bench` with everything that watches it.

:class:`EquippedBench` is built by one constructor, as labgrid builds a target from its
environment: the bench (instruments, CAN, RS485, the backend behind them), then the parts that
run around a test, each declared here and started in this order:

- :attr:`~EquippedBench.recorder`: every SCPI step, supervisor sample and CAN frame, on the
  bench's clock (the bench file's ``[recording]`` settings);
- :attr:`~EquippedBench.measurements`: the test's measurements, recorded as they are taken;
- :attr:`~EquippedBench.supervisor`: the safety supervisor, its samples recorded;
- :attr:`~EquippedBench.pcs`: the PCS stand-in, heartbeat on, every frame recorded.

:meth:`EquippedBench.close` stops them in the reverse order, puts the bench in its safe state
and lets go of it, then closes the recording, however the test ended.
"""
from __future__ import annotations

from pathlib import Path

from rig.bench import Bench
from rig.files.bench_file import LoadedBench
from rig.measure import Measurements
from rig.pcs import PcsStandIn
from rig.recorder import Recorder
from rig.supervisor import Supervisor


class EquippedBench(Bench):
    """A bench with its recorder, measurements, supervisor and PCS stand-in running.

    :param loaded: the bench file, loaded.
    :param recordings: the folder the recordings go to (the run folder's ``recordings``).
    :param test_name: what the recordings are named for (a pytest node id).
    :param bench_options: as :class:`~rig.bench.Bench` takes them (packs, seed, firmware ...).
    """

    def __init__(self, loaded: LoadedBench, recordings: Path, test_name: str, **bench_options):
        #: declared before anything starts, so that close() can run at any point of the start
        self.recorder: Recorder | None = None
        self.measurements: Measurements | None = None
        self.supervisor: Supervisor | None = None
        self.pcs: PcsStandIn | None = None
        super().__init__(loaded, **bench_options)
        try:
            self._equip(recordings, test_name)
        except BaseException:
            self.close()
            raise

    def _equip(self, recordings: Path, test_name: str) -> None:
        f = self.file.recording
        self.recorder = Recorder(recordings, test_name, can_format=f.can_format, flush_s=f.flush_s,
                                 clock=self.clock)
        for driver in self.instruments.values():
            driver.listeners.append(self.recorder.record_step)
        self.measurements = Measurements(self.clock, self.recorder)
        self.supervisor = Supervisor(self, listeners=[lambda t, values: self.recorder.record_sample(t, **values)])
        self.pcs = PcsStandIn(self.can, self.clock)
        self.pcs.listeners.append(self.recorder.on_message_received)
        self.supervisor.start()
        self.pcs.start()

    def close(self) -> None:
        """Stop the PCS stand-in and the supervisor, make the bench safe and close it, then close
        the recording (safe to call twice)."""
        if self.pcs is not None:
            self.pcs.stop()
        if self.supervisor is not None:
            self.supervisor.stop()
        super().close()
        if self.recorder is not None:
            self.recorder.close()
