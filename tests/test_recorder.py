"""The recorder: CAN frames through python-can's writers and readers, the samples CSV, flushing,
and a recording that survives a SIGKILL up to its last flush."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import can
import pytest

from instruments.scpi import Step
from rig.clock import VirtualClock
from rig.recorder import Recorder, file_stem, read_can, read_samples


def _frames():
    return [can.Message(timestamp=12.5, arbitration_id=0x351, is_extended_id=False,
                        data=bytes.fromhex("3002E803E803D001")),
            can.Message(timestamp=13.5, arbitration_id=0x18A00102, is_extended_id=True,
                        data=bytes.fromhex("0203000032000000")),
            can.Message(timestamp=13.75, arbitration_id=0x355, is_extended_id=False,
                        data=bytes.fromhex("58005E00"))]


def test_file_stem_sanitises_a_pytest_node_id():
    assert (file_stem("testcases/test_storage.py::test_recharge[55V/64A-chamber 25C]")
            == "testcases_test_storage.py__test_recharge_55V_64A-chamber_25C")
    long = file_stem("t.py::test_" + "x" * 300)
    assert len(long) == 113 and long != file_stem("t.py::test_" + "x" * 299)  # unique via hash


@pytest.mark.parametrize("can_format", ["asc", "blf"])
def test_frames_round_trip_through_python_can(tmp_path, can_format):
    clock = VirtualClock()
    with Recorder(tmp_path, "tests/test_x.py::test_y", can_format, clock=clock) as recorder:
        for msg in _frames():
            recorder.on_message_received(msg)
    assert recorder.can_path == tmp_path / f"tests_test_x.py__test_y.{can_format}"
    back = read_can(recorder.can_path)
    plain = list(can.LogReader(recorder.can_path))  # a closed file: python-can's plain reader agrees
    assert len(plain) == len(back) and all(a.equals(b) for a, b in zip(plain, back))
    sent = _frames()
    assert [(m.arbitration_id, m.is_extended_id, m.dlc, bytes(m.data)) for m in back] == \
           [(m.arbitration_id, m.is_extended_id, m.dlc, bytes(m.data)) for m in sent]
    # times count from the first frame (virtual timestamps predate 1990 for BLF, ASC is relative)
    assert [m.timestamp - back[0].timestamp for m in back] == pytest.approx([0.0, 1.0, 1.25], abs=1e-6)
    first = [r for r in read_samples(recorder.samples_path) if r["name"] == "can_first_frame_s"]
    assert first[0]["value"] == 12.5


def test_samples_and_steps_round_trip_through_the_csv(tmp_path):
    clock = VirtualClock()
    recorder = Recorder(tmp_path, "t::csv", "asc", clock=clock)
    recorder.record_sample(0.05, pack_v=53.125, state="Run")
    clock.sleep(1.0)
    recorder.record_step(Step("psu", "VOLT 55.000", None, None, 0.0123))
    recorder.record_step(Step("psu", "SYST:ERR?", '-222,"Data out of range"', "-222", 0.004))
    recorder.close()
    recorder.close()  # safe twice
    rows = read_samples(recorder.samples_path)
    assert [(r["time_s"], r["kind"], r["name"], r["value"]) for r in rows[:2]] == \
           [(0.05, "sample", "pack_v", 53.125), (0.05, "sample", "state", "Run")]
    write, query = rows[2:]
    assert (write["time_s"], write["name"], write["command"], write["reply"], write["error"], write["duration_s"]) == \
           (1.0, "psu", "VOLT 55.000", None, None, 0.0123)
    assert query["reply"] == '-222,"Data out of range"' and query["error"] == "-222"


def test_read_samples_skips_a_torn_last_line(tmp_path):
    with Recorder(tmp_path, "t::torn", "asc", clock=VirtualClock()) as recorder:
        recorder.record_sample(1.0, pack_v=52.0)
        recorder.record_sample(2.0, pack_v=52.1)
    whole = recorder.samples_path.read_text(encoding="utf-8")
    for torn in ("3.0,sample,pack_v,52",  # a kill in the middle of a row
                 '4.0,step,psu,,"MEAS?","52.\n'):  # ... or inside a quoted field with a newline
        recorder.samples_path.write_text(whole + torn, encoding="utf-8")
        assert [r["value"] for r in read_samples(recorder.samples_path)] == [52.0, 52.1]
    recorder.samples_path.write_text(whole + "3.0,sample,pack_v\n" + whole.splitlines()[-1] + "\n")
    with pytest.raises(ValueError, match="row 4 has 3 fields"):  # not at the end: not a kill's tear
        read_samples(recorder.samples_path)


@pytest.mark.parametrize("can_format", ["asc", "blf"])
def test_flushed_to_the_file_within_flush_s_without_closing(tmp_path, can_format):
    recorder = Recorder(tmp_path, "t::flush", can_format, flush_s=0.1, clock=VirtualClock())
    try:
        started = time.monotonic()
        recorder.on_message_received(_frames()[0])
        recorder.record_sample(0.0, pack_v=52.0)
        while not (read_can(recorder.can_path) and len(read_samples(recorder.samples_path)) == 2):
            assert time.monotonic() - started < 2.0, "nothing reached the files in 2 s with flush_s = 0.1 s"
            time.sleep(0.02)
        assert time.monotonic() - started < 1.0
    finally:
        recorder.close()


def test_records_after_close_are_ignored(tmp_path):
    recorder = Recorder(tmp_path, "t::late", "asc", clock=VirtualClock())
    recorder.close()
    recorder.on_message_received(_frames()[0])  # a pump during teardown must not crash
    recorder.record_sample(1.0, pack_v=52.0)
    assert read_can(recorder.can_path) == [] and read_samples(recorder.samples_path) == []


CHILD = """
import sys, time
from pathlib import Path
import can
from rig.clock import WallClock
from rig.recorder import Recorder

directory, flush_s = Path(sys.argv[1]), float(sys.argv[2])
clock = WallClock()
recorders = [Recorder(directory, "killed-" + fmt, fmt, flush_s, clock=clock) for fmt in ("asc", "blf")]
i = 0
while True:  # until SIGKILLed: one frame and one sample every ~2 ms, numbered
    i += 1
    now = time.time()
    msg = can.Message(timestamp=now, arbitration_id=0x18A00102, is_extended_id=True, data=i.to_bytes(8, "little"))
    for recorder in recorders:
        recorder.on_message_received(msg)
        recorder.record_sample(now, counter=i)
    if i == 1:
        (directory / "ready").touch()
    time.sleep(0.002)
"""
FLUSH_S = 0.5
SLACK_S = 0.5  # scheduling of the flusher thread and of this test


def test_recording_survives_sigkill_up_to_the_last_flush(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(FLUSH_S)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20.0
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the recording child did not start in 20 s"
            time.sleep(0.01)
        time.sleep(3 * FLUSH_S)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10.0) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10.0)
        proc.stderr.close()

    for fmt in ("asc", "blf"):
        samples = [r for r in read_samples(tmp_path / f"killed-{fmt}.samples.csv") if r["name"] == "counter"]
        counters = [int(r["value"]) for r in samples]
        assert counters == list(range(1, len(counters) + 1)), "rows missing before the last flush"
        assert samples[-1]["time_s"] >= killed_at - FLUSH_S - SLACK_S, (
            f"{fmt}: last row written {killed_at - samples[-1]['time_s']:.2f} s before the kill")
        frames = read_can(tmp_path / f"killed-{fmt}.{fmt}")  # python-can's reader, torn tail skipped
        numbers = [int.from_bytes(m.data, "little") for m in frames]
        assert numbers == list(range(1, len(numbers) + 1)), "frames missing before the last flush"
        sent_at = {int(r["value"]): r["time_s"] for r in samples}
        assert sent_at.get(numbers[-1], killed_at) >= killed_at - FLUSH_S - SLACK_S, (
            f"{fmt}: last frame recorded {killed_at - sent_at[numbers[-1]]:.2f} s before the kill")
