"""The recorder: CAN frames through python-can's writers and readers, the samples CSV, flushing,
and a recording that survives a SIGKILL up to its last flush."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import can
import pytest

from instruments.scpi import Step
from rig.clock import VirtualClock, WallClock
from rig.pcs import PcsStandIn
from rig.protocol.can_frames import encode
from rig.recorder import CAN_CHANNEL, MAX_STEM, Recorder, file_stem, frame_times, read_can, read_samples

ROOT = Path(__file__).resolve().parents[1]


def _frames():
    return [can.Message(timestamp=12.5, arbitration_id=0x351, is_extended_id=False,
                        data=bytes.fromhex("3002E803E803D001")),
            can.Message(timestamp=13.5, arbitration_id=0x18A00102, is_extended_id=True,
                        data=bytes.fromhex("0203000032000000")),
            can.Message(timestamp=13.75, arbitration_id=0x355, is_extended_id=False,
                        data=bytes.fromhex("58005E00"))]


def test_file_stem_is_readable_keeps_the_parameters_and_stays_unique():
    assert (file_stem("testcases/test_protections.py::test_trips[cell_over_voltage-L2]")
            == "testcases.test_protections.test_trips--cell_over_voltage-L2")
    assert file_stem("tests/t.py::TestA::test_b") == "tests.t.TestA.test_b"
    # a character a file name should not hold: replaced, and a hash of the node id keeps it unique
    lossy = file_stem("testcases/test_storage.py::test_recharge[55V/64A-chamber 25C]")
    assert re.fullmatch(r"testcases\.test_storage\.test_recharge--55V_64A-chamber_25C-[0-9a-f]{6}", lossy)
    assert lossy != file_stem("testcases/test_storage.py::test_recharge[55V_64A-chamber_25C]")
    # a long name is cut in the test's name, the parameters kept
    long = file_stem("t.py::test_" + "x" * 300 + "[cell_over_voltage-L2]")
    assert len(long) <= MAX_STEM and "--cell_over_voltage-L2-" in long
    assert long != file_stem("t.py::test_" + "x" * 299 + "[cell_over_voltage-L2]")


def test_every_test_case_of_a_run_has_its_own_readable_file_stem():
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             "testcases"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    ids = [line for line in listed.stdout.splitlines() if "::" in line]
    assert len(ids) > 100, listed.stdout[-2000:]
    stems = [file_stem(i) for i in ids]
    assert len(set(stems)) == len(ids)
    for node_id, stem in zip(ids, stems):
        if "[" in node_id and not re.search(r"-[0-9a-f]{6}$", stem):  # kept whole: readable as the id
            assert stem.endswith("--" + node_id[node_id.index("[") + 1:-1])


@pytest.mark.parametrize("can_format", ["asc", "blf"])
def test_frames_round_trip_through_python_can(tmp_path, can_format):
    clock = VirtualClock()
    with Recorder(tmp_path, "tests/test_x.py::test_y", can_format, clock=clock) as recorder:
        for msg in _frames():
            recorder.on_message_received(msg)
    assert recorder.can_path == tmp_path / f"tests.test_x.test_y.{can_format}"
    back = read_can(recorder.can_path)
    plain = list(can.LogReader(recorder.can_path))  # a closed file: python-can's plain reader agrees
    assert len(plain) == len(back) and all(a.equals(b) for a, b in zip(plain, back))
    sent = _frames()
    assert [(m.arbitration_id, m.is_extended_id, m.dlc, bytes(m.data)) for m in back] == \
           [(m.arbitration_id, m.is_extended_id, m.dlc, bytes(m.data)) for m in sent]
    assert [m.timestamp - back[0].timestamp for m in back] == pytest.approx([0.0, 1.0, 1.25], abs=1e-6)
    first = [r for r in read_samples(recorder.samples_path) if r["name"] == "can_first_frame_s"]
    assert first[0]["value"] == 12.5
    # the rig time of every frame, from the CSV: the virtual times they were sent at
    assert frame_times(back, read_samples(recorder.samples_path)) == pytest.approx([12.5, 13.5, 13.75], abs=1e-6)


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
        while not (read_can(recorder.can_path) and read_samples(recorder.samples_path)[-1]["name"] == "pack_v"):
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


# --- CAN logs as a Vector tool expects them (issue 14, item 7) -------------------------------------

def _mixed_frames():
    """Frames as interfaces name their channel (an emulator's virtual channel, a number, a
    SocketCAN name, none), and one the rig sent itself (the PCS heartbeat, Tx)."""
    frames = _frames()
    for msg, channel in zip(frames, ("packrig-emulator-4711-3", 0, "can1")):
        msg.channel = channel
    heartbeat = can.Message(timestamp=13.0, arbitration_id=0x305, is_extended_id=False, data=bytes(8),
                            is_rx=False)
    return [frames[0], heartbeat, *frames[1:]]


@pytest.mark.parametrize("can_format", ["asc", "blf"])
def test_every_frame_on_the_same_channel_and_the_rigs_own_marked_tx(tmp_path, can_format):
    sent = _mixed_frames()
    with Recorder(tmp_path, "t::channels", can_format, clock=VirtualClock()) as recorder:
        for msg in sent:
            recorder.on_message_received(msg)
    assert [m.channel for m in sent] == ["packrig-emulator-4711-3", None, 0, "can1"]  # not changed
    back = read_can(recorder.can_path)
    assert [m.channel for m in back] == [CAN_CHANNEL - 1] * 4  # python-can reads channel 1 as 0
    assert [(m.arbitration_id, m.is_rx) for m in back] == [(0x351, True), (0x305, False), (0x18A00102, True),
                                                            (0x355, True)]
    if can_format == "asc":
        lines = [f for f in map(str.split, recorder.can_path.read_text().splitlines()) if f[3:4] in (["Rx"], ["Tx"])]
        assert [(f[1], f[2], f[3]) for f in lines] == [("1", "351", "Rx"), ("1", "305", "Tx"),
                                                       ("1", "18A00102x", "Rx"), ("1", "355", "Rx")]


def test_blf_dated_at_the_wall_time_of_the_virtual_run(tmp_path):
    clock = VirtualClock()
    opened = time.time()
    with Recorder(tmp_path, "t::dated", "blf", clock=clock) as recorder:
        for msg in _frames():  # virtual times 12.5 .. 13.75 s
            recorder.on_message_received(msg)
        recorder.flush()
        with can.BLFReader(recorder.can_path) as flushed:  # a run killed now: the header has its start
            assert flushed.start_timestamp == pytest.approx(opened + 12.5, abs=1.0)
            assert flushed.object_count == 3
    with can.BLFReader(recorder.can_path) as reader:
        start, stop, frames = reader.start_timestamp, reader.stop_timestamp, list(reader)
    assert start == pytest.approx(recorder.time_origin + 12.5, abs=0.001)  # the header's ms
    assert stop == pytest.approx(recorder.time_origin + 13.75, abs=0.001)
    assert [m.timestamp - start for m in frames] == pytest.approx([0.0, 1.0, 1.25], abs=0.002)
    assert frame_times(read_can(recorder.can_path), read_samples(recorder.samples_path)) == \
        pytest.approx([12.5, 13.5, 13.75], abs=1e-6)


def test_asc_dated_at_the_wall_time_of_the_virtual_run_and_deterministic_on_request(tmp_path):
    clock = VirtualClock()
    with Recorder(tmp_path / "dated", "t::asc", "asc", clock=clock) as recorder:
        for msg in _frames():
            recorder.on_message_received(msg)
    head = recorder.can_path.read_text().splitlines()
    assert re.search(r":\d\d\.\d{3} \d{4}$", head[0]) and re.search(r":\d\d\.\d{3} \d{4}$", head[3])  # ms as Vector
    with can.ASCReader(recorder.can_path, relative_timestamp=False) as absolute:
        assert [m.timestamp for m in absolute] == pytest.approx([recorder.time_origin + t for t in (12.5, 13.5, 13.75)],
                                                                abs=0.002)
    date = datetime.strptime(head[0].removeprefix("date "), "%a %b %d %H:%M:%S.%f %Y")
    assert abs(date.timestamp() - recorder.time_origin) < 1.0
    begin = datetime.strptime(head[3].removeprefix("Begin Triggerblock "), "%a %b %d %H:%M:%S.%f %Y")
    assert begin.timestamp() == pytest.approx(recorder.time_origin + 12.5, abs=0.001)  # the first frame
    logs = []
    for name in ("a", "b"):  # time_origin=0.0: rig-clock times as they are, the same file twice
        with Recorder(tmp_path / name, "t::asc", "asc", clock=VirtualClock(), time_origin=0.0) as again:
            for msg in _frames():
                again.on_message_received(msg)
        logs.append(again.can_path.read_bytes())
    assert logs[0] == logs[1]


def test_frames_in_unix_time_are_written_as_they_are(tmp_path):
    clock = WallClock()
    now = time.time()
    frames = [can.Message(timestamp=now + dt, arbitration_id=0x351, data=bytes(8), is_extended_id=False)
              for dt in (0.0, 1.0)]
    with Recorder(tmp_path, "t::real", "blf", clock=clock) as recorder:
        for msg in frames:
            recorder.on_message_received(msg)
    with can.BLFReader(recorder.can_path) as reader:
        assert reader.start_timestamp == pytest.approx(now, abs=0.001)
        assert [m.timestamp for m in reader] == pytest.approx([now, now + 1.0], abs=0.002)
    samples = read_samples(recorder.samples_path)
    rig = frame_times(read_can(recorder.can_path), samples)
    assert rig[1] - rig[0] == pytest.approx(1.0, abs=0.002) and abs(rig[0] - clock.now()) < 0.5


@pytest.mark.parametrize("can_format", ["asc", "blf"])
def test_the_pcs_heartbeat_is_logged_as_tx_among_the_packs_frames(tmp_path, can_format):
    channel = f"recorder-test-{os.getpid()}-{can_format}"
    pack = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    rig = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    clock = VirtualClock()

    def report():
        msg = encode("StateOfCharge", {"SOC": 50, "SOH": 94})
        msg.timestamp = clock.now() + 0.5  # the pack reports half a second after the heartbeat
        pack.send(msg)

    try:
        clock.every(1.0, lambda: clock.now() % 1.0 or report(), "fake pack")
        recorder = Recorder(tmp_path, "t::pcs", can_format, clock=clock)
        pcs = PcsStandIn(rig, clock)
        pcs.listeners.append(recorder.on_message_received)
        pcs.start()
        clock.sleep(4.2)
        pcs.stop()
        recorder.close()
    finally:
        pack.shutdown()
        rig.shutdown()
    back = read_can(recorder.can_path)
    rig_t = frame_times(back, read_samples(recorder.samples_path))
    logged = [(round(t, 3), m.arbitration_id, m.is_rx, m.channel) for t, m in zip(rig_t, back)]
    heartbeats = [(float(t), 0x305, False, 0) for t in range(5)]
    reports = [(t + 0.5, 0x355, True, 0) for t in range(5)]
    assert logged == sorted(heartbeats + reports)


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
