"""What a lab place holds and what ``packrig run --lab`` / ``packrig export --labgrid`` refuse,
without a coordinator: the bench's lab form, its tags, the exporter file as labgrid reads it, the
client's bench file, one-line usage errors, and the seam (a place is released on every way out of
a run, whatever the engine)."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.files.bench_file import load_bench
from rig.lab.backend import LabBackend, LabError, Lease, parse_address, parse_wants
from rig.lab.place_bench import bench_resource, lab_form, place_tags, write_place_bench

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ROOT / "rig" / "benches"
SPEC = ROOT / "testcases" / "pack_spec.toml"
#: what `packrig emulate --endpoints-file` writes (the ports are made up: nothing connects here)
ENDPOINTS = {"instruments": {name: f"TCPIP::127.0.0.1::{5000 + n}::SOCKET" for n, name in
                             enumerate(("psu", "eload", "dmm", "scanner", "chamber", "io"))},
             "can": {"interface": "socketcand", "host": "127.0.0.1", "port": 5100, "channel": "can0"},
             "rs485": "socket://127.0.0.1:5200", "rs485_console": ["socket://127.0.0.1:5201"],
             "control": 5300, "clock": "wall"}


def _packrig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_wants_and_address_are_checked_in_one_line():
    assert parse_wants(["packs=2", "pack=6.5kWh-16S", "chamber=yes"]) == {
        "packs": "2", "pack": "6.5kWh-16S", "chamber": "yes"}
    for bad in (["packs"], ["Packs=2"], ["p=2"], ["packs=two words"], ["packs=1", "packs=2"], ["packs="]):
        with pytest.raises(ValueError, match="--want"):
            parse_wants(bad)
    assert parse_address("127.0.0.1:20408") == "127.0.0.1:20408"
    for bad in ("127.0.0.1", ":20408", "host:0", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="--lab"):
            parse_address(bad)


def test_an_emulated_bench_in_lab_form_is_a_wall_clock_bench_of_the_real_kind():
    loaded = load_bench(BENCHES / "emulated-wall.toml")
    data = lab_form(loaded, ENDPOINTS)
    assert "emulator" not in data and data["bench"]["clock"] == "wall"
    assert data["instruments"]["psu"]["resource"] == ENDPOINTS["instruments"]["psu"]
    assert data["can"] == {"interface": "socketcand", "channel": "can0", "bitrate": 500000,
                           "options": {"host": "127.0.0.1", "port": 5100}}
    assert data["rs485"]["url"] == "socket://127.0.0.1:5200"
    # fault insertion and storage ageing act through an emulator in the rig's process: not offered
    assert data["features"]["has_fault_insertion"] is False and data["features"]["can_age_pack"] is False
    assert data["features"]["parallel_packs"] == loaded.file.emulator.packs
    with pytest.raises(ConfigError, match="emulator: an emulated bench is published with its running"):
        lab_form(loaded)


def test_a_real_bench_with_local_addresses_is_refused_naming_the_field():
    real = load_bench(BENCHES / "example-real.toml")  # a USB DMM, PCAN-USB, /dev/ttyUSB0
    with pytest.raises(ConfigError, match=r"instruments\.dmm\.resource: 'USB0::.*' is not reachable from another "
                                          r"machine: give the instrument's LAN address"):
        lab_form(real)
    proc = _packrig("export", "--labgrid", str(BENCHES / "example-real.toml"))
    assert proc.returncode == 4 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "instruments.dmm.resource" in proc.stderr


def test_a_real_bench_reachable_over_the_lan_is_exported(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed (labgrid brings it: the optional extra packrig[lab])")
    data = tomllib.loads((BENCHES / "example-real.toml").read_text(encoding="utf-8"))
    data["bench"]["pack_spec"] = str(SPEC)
    data["recording"]["directory"] = str(tmp_path)
    data["instruments"]["dmm"]["resource"] = "TCPIP0::192.168.10.13::inst0::INSTR"
    data["instruments"]["scanner"]["resource"] = "TCPIP0::192.168.10.16::5025::SOCKET"
    data["can"] = {"interface": "socketcand", "channel": "can0", "bitrate": 500000,
                   "options": {"host": "192.168.10.2", "port": 29536}}
    data["rs485"]["url"] = "socket://192.168.10.2:3001"
    import tomli_w
    bench = tmp_path / "lan-bench.toml"
    bench.write_text(tomli_w.dumps(data), encoding="utf-8")
    out = tmp_path / "exporter.yaml"
    proc = _packrig("export", "--labgrid", str(bench), "--place", "bench-1", "--tag", "site=lab2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "labgrid-client -x COORDINATOR:PORT -p bench-1 add-match bench-1/bench-1/PackrigBench" in proc.stderr
    assert "set-tags pack=6.5kWh-16S packs=1 bench=real chamber=yes" in proc.stderr and "site=lab2" in proc.stderr
    params = _read_as_labgrid_does(out)["bench-1"]["PackrigBench"]
    assert params["kind"] == "real" and params["can"] == "socketcand://192.168.10.2:29536/can0"
    assert params["rs485"] == "socket://192.168.10.2:3001" and "emulator_control" not in params
    assert json.loads(params["bench_json"])["instruments"]["dmm"]["resource"] == "TCPIP0::192.168.10.13::inst0::INSTR"


def _read_as_labgrid_does(path: Path) -> dict:
    """The exporter file through labgrid's own reader (Jinja2, then its YAML loader)."""
    pytest.importorskip("labgrid", reason="labgrid is not installed (the optional extra packrig[lab])")
    from labgrid.remote.common import ResourceEntry
    from labgrid.remote.config import ResourceConfig

    with contextlib.redirect_stdout(io.StringIO()):  # it prints what it read
        data = ResourceConfig(str(path)).data
    for group in data.values():
        for entry in group.values():  # every value must travel to the coordinator as labgrid sends it
            ResourceEntry({"cls": "PackrigBench", "params": dict(entry)}).as_pb2()
    return data


def test_the_exporter_file_reads_back_exactly_through_labgrid(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed (labgrid brings it: the optional extra packrig[lab])")
    from rig.lab.exporter_config import exporter_yaml
    loaded = load_bench(BENCHES / "emulated-wall.toml")
    params = bench_resource(loaded, ENDPOINTS)
    path = tmp_path / "exporter.yaml"
    path.write_text(exporter_yaml("place-1", params, place_tags(loaded)), encoding="utf-8")
    got = _read_as_labgrid_does(path)["place-1"]["PackrigBench"]
    assert dict(got) == params
    assert got["emulator_control"] == "127.0.0.1:5300" and got["rs485_console_1"] == "socket://127.0.0.1:5201"


def test_a_value_labgrids_jinja_pass_would_change_is_refused():
    pytest.importorskip("yaml", reason="PyYAML is not installed (labgrid brings it: the optional extra packrig[lab])")
    from rig.lab.exporter_config import exporter_yaml
    for bad in ("bench {{ name }}", "bench {% if %}", "a {# comment"):
        with pytest.raises(ConfigError, match="would be read by labgrid's Jinja2 pass"):
            exporter_yaml("place-1", {"bench": bad, "kind": "real"}, {})


def test_place_tags_come_from_the_features_and_the_pack_spec():
    loaded = load_bench(BENCHES / "emulated-wall.toml")
    tags = place_tags(loaded, {"site": "ci"})
    assert tags == {"pack": "6.5kWh-16S", "packs": "2", "bench": "emulated", "chamber": "yes", "cell_taps": "yes",
                    "light_sensors": "yes", "short_circuit": "yes", "wake_line": "yes", "psu_sink": "no",
                    "site": "ci"}
    assert place_tags(load_bench(BENCHES / "example-real.toml"))["packs"] == "1"


def test_the_clients_bench_file_uses_its_own_pack_spec_and_is_checked_like_any(tmp_path):
    params = bench_resource(load_bench(BENCHES / "emulated-wall.toml"), ENDPOINTS)
    path = write_place_bench(params, tmp_path / "a", SPEC)
    loaded = load_bench(path)
    assert not loaded.emulated and loaded.file.bench.clock == "wall" and loaded.pack_spec_path == SPEC
    assert loaded.recording_dir == (tmp_path / "a" / "recordings").resolve()
    looser = json.loads(params["bench_json"])
    looser["limits"]["psu_max_voltage_v"] = 130.0  # a place may not loosen this machine's envelope
    with pytest.raises(ConfigError, match="limits.psu_max_voltage_v: 130 V is looser than the pack's safety envelope"):
        write_place_bench({**params, "bench_json": json.dumps(looser)}, tmp_path / "b", SPEC)
    with pytest.raises(ConfigError, match="bench_json: missing"):
        write_place_bench({"bench": "x"}, tmp_path / "c", SPEC)


@pytest.mark.parametrize("args, said", [
    (["run", "--want", "packs=2"], "--want needs --lab HOST:PORT"),
    (["run", "--lab", "nowhere"], "--lab 'nowhere': expected HOST:PORT"),
    (["run", "--lab", "127.0.0.1:20408", "--want", "Packs=2"], "--want 'Packs=2'"),
    (["run", "--lab", "127.0.0.1:20408", "--bench", str(BENCHES / "emulated.toml")], "the place gives the bench"),
    (["run", "--lab", "127.0.0.1:20408", "--firmware", "x.toml"], "--firmware and --seed apply to an emulated"),
    (["run", "--lab", "127.0.0.1:20408", "-m", "preflight and"], "bad -m expression"),
    (["run", "--lab", "127.0.0.1:20408", "--lab-timeout", "0"], "--lab-timeout must be more than 0 s"),
    (["export", "--labgrid", str(BENCHES / "emulated.toml")], "an emulated bench is published with its running"),
    (["export", "--labgrid", str(BENCHES / "emulated.toml"), "--serve", "x"], "--lab 'x'"),
])
def test_bad_lab_input_is_one_line_and_exit_code_4_before_anything_is_asked(args, said):
    proc = _packrig(*args)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert said in proc.stderr and proc.stderr.count("\n") == 1


def test_no_coordinator_there_is_one_line_and_exit_code_4():
    pytest.importorskip("labgrid", reason="labgrid is not installed (the optional extra packrig[lab])")
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _packrig("run", "--lab", f"127.0.0.1:{port}", "--want", "packs=1", "-m", "preflight")
    assert proc.returncode == 4
    assert f"packrig run: no labgrid coordinator at 127.0.0.1:{port}" in proc.stderr
    # serving a place asks the coordinator first: no emulator is started for nobody
    proc = _packrig("export", "--labgrid", str(BENCHES / "emulated-wall.toml"), "--serve", f"127.0.0.1:{port}")
    assert proc.returncode == 4 and "emulator" not in proc.stdout + proc.stderr
    assert proc.stderr == (f"packrig export: no labgrid coordinator at 127.0.0.1:{port}: "
                           "Could not connect to coordinator\n")


class _FakeEngine(LabBackend):
    """Another engine behind the seam (as Jumpstarter's leases would be): three methods."""

    def __init__(self, params: dict):
        self.params, self.calls = params, []

    def reserve(self, want, timeout_s, progress=None):
        self.calls.append(("reserve", want))
        if progress:
            progress("waiting for a place: 1 matching, none busy; 0 s")
        return Lease("fake", "lab:1", "bench-7", "me/host", "T1", {"packs": "2"})

    def endpoints(self, lease):
        self.calls.append(("endpoints", lease.place))
        return self.params

    def release(self, lease):
        self.calls.append(("release", lease.place))


def _args(**kw):
    """``packrig run --lab lab:1 --want packs=2`` parsed with packrig run's own arguments."""
    import argparse

    from rig.lab.run_on_place import add_arguments as add_lab
    from rig.run_command import add_arguments
    p = argparse.ArgumentParser()
    add_arguments(p, "DEFAULT")
    add_lab(p)
    args = p.parse_args(["--lab", "lab:1", "--want", "packs=2", "--lab-timeout", "5"])
    args.bench = "DEFAULT"
    vars(args).update(kw)
    return args


@pytest.mark.parametrize("outcome", ["passed", "failed", "ctrl-c", "crash"])
def test_the_place_is_released_on_every_way_out_whatever_the_engine(outcome, monkeypatch, tmp_path):
    from rig.lab import run_on_place

    engine = _FakeEngine(bench_resource(load_bench(BENCHES / "emulated-wall.toml"), ENDPOINTS))
    seen = {}

    def run(args, argv):
        seen["bench"] = load_bench(args.bench)
        import os
        seen["place"] = json.loads(os.environ["PACKRIG_LAB_PLACE"])
        if outcome == "ctrl-c":
            raise KeyboardInterrupt
        if outcome == "crash":
            raise RuntimeError("packrig itself broke")
        return 0 if outcome == "passed" else 1

    def lab(args):
        return run_on_place.run_on_lab(args, [], run, backend_factory=lambda address: engine)

    if outcome in ("ctrl-c", "crash"):
        with pytest.raises((KeyboardInterrupt, RuntimeError)):
            lab(_args())
    else:
        assert lab(_args()) == (0 if outcome == "passed" else 1)
    assert engine.calls == [("reserve", {"packs": "2"}), ("endpoints", "bench-7"), ("release", "bench-7")]
    assert seen["bench"].file.instruments.psu.resource == ENDPOINTS["instruments"]["psu"]
    assert seen["place"]["place"] == "bench-7" and seen["place"]["engine"] == "fake"


def test_a_place_that_could_not_be_had_is_exit_code_4_and_nothing_runs():
    from rig.lab import run_on_place

    class Busy(_FakeEngine):
        def reserve(self, want, timeout_s, progress=None):
            raise LabError("no place with packs=2 became free in 5 s (1 matching, bench-7 held by x/y)")

    ran = []
    code = run_on_place.run_on_lab(_args(), [], lambda *a: ran.append(a), backend_factory=lambda address: Busy({}))
    assert code == 4 and ran == []
