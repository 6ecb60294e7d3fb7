"""The backend seam: what stands behind a bench file's addresses is chosen by name, the rig reaches
the emulator only through that table, and the bench file's ``model`` picks the emulated
instrument as it picks the driver."""
from __future__ import annotations

import inspect
import subprocess
import sys

import can
import pytest

from emulator.emulated_bench import EmulatedBench
from emulator.firmware.profile import load_firmware_profile
from emulator.instruments import EMULATED, emulated_class
from emulator.pack.faults import Faults
from instruments import DRIVERS
from rig.backends import BACKENDS, Hardware, backend_class, backend_name, check_emulated_models, start_backend
from rig.clock import VirtualClock, WallClock
from rig.emulator_client.virtual_time_bus import EmulatorBus
from rig.errors import ConfigError
from rig.files.bench_file import BENCHES, EMULATED_BENCH, load_bench
from rig.protocol.control import FAULTS


@pytest.mark.parametrize("bench,backend", [("emulated.toml", "in_process"), ("emulated-wall.toml", "in_process"),
                                           ("emulated-subprocess.toml", "subprocess"),
                                           ("example-real.toml", "hardware")])
def test_each_bench_file_names_its_backend_and_the_name_resolves(bench, backend):
    loaded = load_bench(BENCHES / bench)
    assert backend_name(loaded) == backend
    cls = backend_class(backend)
    for method in ("start", "endpoints", "attach_bus", "died", "close"):
        assert callable(getattr(cls, method)), (backend, method)


def test_an_unknown_backend_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="no bench backend 'fpga'; known: hardware, in_process, subprocess"):
        backend_class("fpga")


def test_the_rig_imports_no_emulator_module_until_a_backend_is_started():
    """Bench, PCS stand-in, plugin and the emulator's client load without the emulator (numpy, the
    world, the servers): the rig names it only in the backend table."""
    code = ("import sys; import rig.bench, rig.pcs, rig.pytest_plugin, rig.fixtures, rig.equipped_bench, "
            "rig.emulator_client.remote_emulator; "
            "print(sorted(m for m in sys.modules if m == 'emulator' or m.startswith('emulator.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_hardware_backend_serves_nothing_and_leaves_the_bus_as_it_is():
    hardware = start_backend(load_bench(BENCHES / "example-real.toml"), WallClock())
    assert isinstance(hardware, Hardware) and hardware.faults is None and hardware.died(1.0) is None
    assert hardware.endpoints() == {"instruments": {}, "can": {}, "rs485": None}
    bus = can.Bus(interface="virtual", channel="test-backends-hardware")
    try:
        assert hardware.attach_bus(bus) is bus
    finally:
        bus.shutdown()
    hardware.close()


def test_in_process_backend_follows_the_virtual_clock_and_lets_go_of_it_on_close():
    clock = VirtualClock()
    emulated = start_backend(load_bench(EMULATED_BENCH), clock, packs=1, seed=4, initial_soc_pct=30.0)
    try:
        assert isinstance(emulated, EmulatedBench)
        assert emulated.world.bms[0].report.soc_pct == pytest.approx(30.0, abs=1.0)
        bus = emulated.attach_bus(can.Bus(**emulated.endpoints()["can"]))
        assert isinstance(bus, EmulatorBus)  # cyclic frames in the world's time
        clock.sleep(2.5)
        assert emulated.world.t_ns == 2_500_000_000
        bus.shutdown()
    finally:
        emulated.close()
    clock.sleep(1.0)  # detached: the closed bench is no longer advanced
    assert emulated.world.t_ns == 2_500_000_000


def test_in_process_backend_beside_a_wall_clock_runs_in_real_time_and_keeps_the_plain_bus():
    emulated = start_backend(load_bench(BENCHES / "emulated-wall.toml"), WallClock())
    try:
        bus = can.Bus(**emulated.endpoints()["can"])
        assert emulated.attach_bus(bus) is bus
        bus.shutdown()
    finally:
        emulated.close()


def test_the_bench_files_model_picks_each_emulated_instrument():
    loaded = load_bench(EMULATED_BENCH)
    emulated = EmulatedBench(loaded.file, load_firmware())
    try:
        for name, device in emulated.devices.items():
            assert type(device) is emulated_class(getattr(loaded.file.instruments, name).model), name
        assert set(emulated.devices) == {n for n, s in loaded.file.instruments if s is not None}
    finally:
        emulated.close()


def load_firmware():
    return load_firmware_profile()


def test_every_emulation_stands_in_for_a_driver_model_and_an_unknown_one_is_refused_by_name():
    assert set(EMULATED) <= set(DRIVERS)  # a driver without an emulation is allowed (refused at 'emulator')
    assert set(EMULATED) == {"keysight_n8900", "itech_it8900", "keysight_34465a", "keysight_daq970a",
                             "keysight_daq970a_io", "espec_sh"}
    with pytest.raises(ValueError, match="no emulated instrument for model 'acme'; emulated: espec_sh, "):
        emulated_class("acme")


def test_a_model_with_a_driver_but_no_emulation_at_an_emulator_address_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(DRIVERS, "acme_psu", DRIVERS["keysight_n8900"])  # a real driver, no emulation yet
    path = _bench_with_psu_model(tmp_path, "acme_psu")
    with pytest.raises(ConfigError) as info:
        load_bench(path)
    assert info.value.field == "instruments.psu.model"
    assert "'acme_psu' has no emulated instrument" in str(info.value) and "keysight_n8900" in str(info.value)
    loaded = load_bench(EMULATED_BENCH)
    check_emulated_models(loaded)  # the emulated bench's own models pass


def test_pytest_stops_on_that_bench_file_in_one_line_with_exit_code_4(tmp_path):
    path = _bench_with_psu_model(tmp_path, "acme_psu")
    (tmp_path / "test_nothing.py").write_text("def test_nothing(bench):\n    pass\n")
    code = ("import sys, instruments; instruments.DRIVERS['acme_psu'] = instruments.DRIVERS['keysight_n8900']; "
            "import pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--bench', sys.argv[1], "
            "'--run-dir', sys.argv[2], sys.argv[3]]))")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "run"), str(tmp_path / "test_nothing.py")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "acme_psu" in line]
    assert len(lines) == 1 and "instruments.psu.model" in lines[0] and str(path) in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def _bench_with_psu_model(tmp_path, model: str):
    """The emulated bench file, its PSU's model replaced, its paths made absolute."""
    text, loaded = EMULATED_BENCH.read_text(), load_bench(EMULATED_BENCH)
    old = 'model = "keysight_n8900"'
    assert text.count(old) == 1, "test setup: the emulated bench's PSU model"
    text = (text.replace(old, f'model = "{model}"')
            .replace('pack_spec = "../../testcases/pack_spec.toml"', f'pack_spec = "{loaded.pack_spec_path}"')
            .replace('firmware = "../../emulator/firmware/conforming.toml"', f'firmware = "{loaded.firmware_path}"'))
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_the_control_vocabulary_names_every_fault_of_the_emulator():
    """The rig's client checks fault names against rig.protocol.control.FAULTS without importing
    the emulator; the list must be the emulator's Faults calls, no more, no fewer."""
    public = {name for name, _ in inspect.getmembers(Faults, inspect.isfunction) if not name.startswith("_")}
    assert FAULTS == public


def test_the_backend_table_names_modules_and_classes():
    for name, target in BACKENDS.items():
        module, _, cls = target.partition(":")
        assert module and cls, name
