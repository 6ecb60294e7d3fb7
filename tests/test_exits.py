"""Safe state on every way out: the rig in a pytest subprocess, the bench in another process.

The emulator runs on its own (``packrig emulate``, wall-clock time) like a bench the rig reaches
over the network; a generated bench file points a pytest run at it as if it were real hardware.
The run powers the pack on and charges, then leaves in one of the ways a run can end. Afterwards
the emulator says what its instruments were last told and what state their outputs are in.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rig.emulator_client.remote_emulator import RemoteEmulator
from rig.files.bench_file import BENCHES

WALL_BENCH = BENCHES / "emulated-wall.toml"

CHARGING_TEST = '''
import os
from pathlib import Path

def test_charging(pack, bench):
    pack.power_on()
    pack.charge(10.0)
    bench.clock.sleep(0.5)
    mode = os.environ["EXIT_MODE"]
    if mode == "fail":
        assert False, "deliberate failure while charging"
    if mode == "raise":
        raise RuntimeError("deliberate crash while charging")
    Path(os.environ["READY_FILE"]).write_text("charging")
    bench.clock.sleep(30.0)
'''


def bench_file_for(emulator: RemoteEmulator, directory: Path) -> Path:
    """A 'real' bench file whose addresses are the running emulator's ports."""
    ends = emulator.endpoints()
    text = WALL_BENCH.read_text()
    start, end = text.index("[emulator]"), text.index("[features]")
    text = text[:start] + text[end:]  # no [emulator]: to the rig this is hardware
    text = text.replace("parallel_packs = 2", "parallel_packs = 1")
    for name, resource in ends["instruments"].items():
        text = text.replace(f'[instruments.{name}]', f'[instruments.{name}]\n#', 1)
        text = text.replace(f'[instruments.{name}]\n#', f'[instruments.{name}]\nresource = "{resource}"\n#', 1)
    text = text.replace('resource = "emulator"\n', "")
    can = ends["can"]
    text = text.replace('interface = "virtual"\nchannel = "emulator"',
                        f'interface = "socketcand"\nchannel = "{can["channel"]}"\n'
                        f'options = {{ host = "{can["host"]}", port = {can["port"]} }}')
    text = text.replace('url = "emulator"', f'url = "{ends["rs485"]}"')
    text = text.replace('directory = "../../reports/recordings"', f'directory = "{directory / "recordings"}"')
    text = text.replace('pack_spec = "../../testcases/pack_spec.toml"',
                        f'pack_spec = "{BENCHES.parent.parent / "testcases" / "pack_spec.toml"}"')
    path = directory / "bench.toml"
    path.write_text(text)
    return path


@pytest.fixture
def run(tmp_path):
    """Start the emulator and a pytest run against it; yields a controller for the test."""
    emulator = RemoteEmulator(["--bench", str(WALL_BENCH), "--clock", "wall", "--packs", "1"])
    bench = bench_file_for(emulator, tmp_path)
    (tmp_path / "test_case.py").write_text(CHARGING_TEST)
    ready = tmp_path / "ready"

    class Run:
        def start(self, mode: str) -> subprocess.Popen:
            env = {**os.environ, "EXIT_MODE": mode, "READY_FILE": str(ready)}
            args = ["-q", "-p", "no:cacheprovider", "--bench", str(bench), "--run-dir", str(tmp_path / "run"),
                    str(tmp_path / "test_case.py")]
            # Ctrl-C as in a terminal: a suite started in the background inherits SIGINT ignored,
            # and Python then installs no KeyboardInterrupt handler; the run gets one back here.
            self.process = subprocess.Popen(
                [sys.executable, "-c", "import signal, sys, pytest; "
                 "signal.signal(signal.SIGINT, signal.default_int_handler); "
                 f"sys.exit(pytest.main({args!r}))"], cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            return self.process

        def wait_charging(self) -> None:
            deadline = time.monotonic() + 30.0
            while not ready.exists():
                assert self.process.poll() is None, self.process.stdout.read()
                assert time.monotonic() < deadline, "the run never started charging"
                time.sleep(0.05)
            assert self.status()["outputs"]["psu_on"], "charging, so the PSU is on"

        def finish(self, timeout: float = 30.0) -> str:
            out, _ = self.process.communicate(timeout=timeout)
            return out

        def status(self) -> dict:
            return emulator.call("status")

    yield Run(), emulator
    emulator.close()


def assert_made_safe_by_the_rig(status: dict) -> None:
    """The rig itself sent the safe state before it went away (not only the disconnect)."""
    commands = status["commands"]
    assert any(c.upper().startswith("OUTP OFF") or c.upper().startswith("OUTP 0") for c in commands["psu"]), \
        f"the PSU never got its output turned off: {commands['psu'][-5:]}"
    assert any("ROUT:OPEN" in c.upper() for c in commands["io"]), f"no relay opened: {commands['io'][-5:]}"
    assert not status["outputs"]["psu_on"] and not status["outputs"]["eload_on"]
    assert not any(status["outputs"]["io"].values())


@pytest.mark.parametrize("mode,expected", [("fail", "deliberate failure while charging"),
                                           ("raise", "deliberate crash while charging")])
def test_failing_or_crashing_test_leaves_the_bench_safe(run, mode, expected):
    controller, _ = run
    controller.start(mode)
    out = controller.finish()
    assert controller.process.returncode == 1 and expected in out
    assert_made_safe_by_the_rig(controller.status())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_leaves_the_bench_safe(run, sig):
    controller, _ = run
    controller.start("wait")
    controller.wait_charging()
    controller.process.send_signal(sig)
    controller.finish()
    assert controller.process.returncode != 0
    assert_made_safe_by_the_rig(controller.status())


def test_instrument_that_stops_answering_trips_the_supervisor(run):
    controller, emulator = run
    controller.start("wait")
    controller.wait_charging()
    emulator.call("stop_instrument", name="dmm")
    out = controller.finish()
    # a trip also aborts the session: pytest reports it as interrupted (exit code 2)
    assert controller.process.returncode == 2 and "SAFETY TRIP" in out and "dmm silent" in out
    assert_made_safe_by_the_rig(controller.status())


def test_sigkill_of_the_rig_leaves_the_watchdogs_to_switch_off(run):
    """Nothing in a killed process can act: the PSU output is off within its watchdog time."""
    controller, emulator = run
    controller.start("wait")
    controller.wait_charging()
    killed = time.monotonic()
    controller.process.kill()
    controller.finish()
    watchdog_s = float(next(line.split("=")[1].split("#")[0] for line in WALL_BENCH.read_text().splitlines()
                            if line.startswith("watchdog_s")))
    while emulator.call("status")["outputs"]["psu_on"]:
        assert time.monotonic() - killed < watchdog_s + 0.5, "PSU still on after its watchdog time"
        time.sleep(0.02)


def test_dead_emulator_fails_the_run_naming_the_lost_link(run):
    """The whole bench gone: whichever link notices first (an instrument silent, the CAN interface
    unable to send the heartbeat) fails the test, and the teardown still tries the safe state."""
    controller, emulator = run
    controller.start("wait")
    controller.wait_charging()
    emulator.process.kill()
    out = controller.finish()
    assert controller.process.returncode != 0
    assert "silent" in out or "PCS heartbeat not sent" in out, textwrap.shorten(out, 600)
