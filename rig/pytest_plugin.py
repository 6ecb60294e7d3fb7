"""The packrig pytest plugin, registered through the ``pytest11`` entry point.

Options (one ``packrig`` group): ``--bench FILE`` (default: the emulated bench),
``--pack-spec FILE`` (default: the one the bench file names), ``--firmware FILE`` (emulator
only: the firmware profile to emulate), ``--seed N`` (emulator only), ``--run-dir DIR`` (the run
folder: recordings, manifest; see :mod:`rig.run_session`).

Bad input stops the run before any test starts, in one line, as a usage error (exit code 4): a
bench file, pack spec or firmware profile that does not load, a run folder that holds a run or
cannot be written. On a real bench the run starts with first contact (:mod:`rig.first_contact`):
an instrument that does not answer stops it, named, before the first test.

What the plugin loads once per pytest process (the bench file, the pack spec, the firmware
profile) is kept in ``config.stash`` under :data:`BENCH_KEY`, :data:`SPEC_KEY` and
:data:`FIRMWARE_KEY`, as pytest's own plugins keep their state.

Feature flags: a test marked ``@pytest.mark.needs(parallel_packs=2, has_chamber=True)`` is
skipped on a bench whose ``[features]`` lack any of them, and the skip says which.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from rig import exits
from rig.backends import load_firmware
from rig.errors import ConfigError, SafetyTrip
from rig.files.bench_file import EMULATED_BENCH, LoadedBench, load_bench
from rig.files.envelope import check_bench_against
from rig.files.pack_spec import PackSpec, load_pack_spec

#: the bench file of this run, loaded and validated
BENCH_KEY = pytest.StashKey[LoadedBench]()
#: the pack spec the tests assert against, checked against the bench
SPEC_KEY = pytest.StashKey[PackSpec]()
#: the firmware profile the emulated pack runs (emulator.firmware.profile.FirmwareProfile)
FIRMWARE_KEY = pytest.StashKey[object]()

#: titles, failure messages first and no fixture noise in the Allure report (rig/report/allure_outcomes.py)
pytest_plugins = ["rig.report.allure_outcomes", "rig.shard"]  # shard: --shard i/N


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("packrig", "packrig battery-pack test rig")
    group.addoption("--bench", metavar="FILE", default=None,
                    help=f"bench file (TOML); default: the emulated bench {EMULATED_BENCH.name}")
    group.addoption("--pack-spec", metavar="FILE", default=None,
                    help="pack spec the tests assert against; default: the one the bench names")
    group.addoption("--firmware", metavar="FILE", default=None,
                    help="firmware profile for the emulated pack (emulated bench only)")
    group.addoption("--seed", metavar="N", type=int, default=None,
                    help="seed of the emulated pack (emulated bench only)")
    group.addoption("--run-dir", metavar="DIR", default=None,
                    help="the run folder: recordings, manifest.json (default: reports/runs/<UTC time>-<id>/ "
                         "under the rootdir, made only when tests use the bench)")
    group.addoption("--run-dir-overwrite", action="store_true",
                    help="reuse a --run-dir that already holds a run")
    group.addoption("--progress-feed", metavar="FILE", default=None,
                    help="append the run's progress to FILE as JSON lines (packrig run draws it)")
    group.addoption("--no-run-summary", action="store_true",
                    help="no summary by requirement at the end (packrig run prints its own)")
    group.addoption("--no-first-contact", action="store_true",
                    help="real bench: skip identifying every instrument before the first test")
    group.addoption("--plots", choices=("all", "failed", "none"), default="all",
                    help="plot of each test (recordings/<test>.png): all (default), only the failed ones, none; "
                         "the CAN log and CSV are attached either way")
    group.addoption("--no-plots", action="store_true", help="the same as --plots none")


MARKERS = {
    "needs(**features)": "skip unless the bench has these [features], e.g. needs(parallel_packs=2)",
    "preflight": "checks of the pack spec and bench file together, before any pack is touched",
    "protection": "a protection of PACK_SPEC.md 4",
    "certification": "a named IEC 62619 / UL 1973 procedure",
    "slow": "takes long on a real bench (hours of charge, long waits)",
    "physics": "its verdict depends on the pack's physics (tail current, rest voltage ...): "
               "what `packrig run --population` runs against packs drawn from the plausible spread",
    "characterisation": "measures the pack for `packrig fit` (hours to days); skipped unless -m characterisation",
    "pack_state(soc=..., temperature_c=...)": "the state the pack starts the test in (an emulator "
                                              "is set to it; a real pack is conditioned to it)",
    "requirement(id, manual=..., iec=..., ul=...)": "the requirement a test checks, for the report",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    exits.install()
    if not config.pluginmanager.has_plugin("packrig-fixtures"):
        from rig import fixtures  # the bench fixtures: imported only when pytest runs
        config.pluginmanager.register(fixtures, "packrig-fixtures")
    if not hasattr(config, "workerinput"):
        _check_expressions(config)
    # Files named on the command line are checked at once (on the xdist controller too): a bad
    # file stops the run before any test starts, as a usage error naming file and field.
    if any(config.getoption(o) is not None for o in ("--bench", "--firmware", "--seed", "--pack-spec", "--run-dir")):
        _loaded_bench(config)
        spec_for(config)
        _firmware_profile(config)
    if not config.pluginmanager.has_plugin("packrig-run"):
        from rig.run_session import RunSession, XdistHooks
        session = RunSession(config)
        session.check_folder()
        config.pluginmanager.register(session, "packrig-run")
        if config.pluginmanager.has_plugin("xdist"):
            config.pluginmanager.register(XdistHooks(session), "packrig-run-xdist")


def _check_expressions(config: pytest.Config) -> None:
    """``-m`` and ``-k`` parsed here, on the controller: under xdist pytest parses them only in the
    workers, where a bad one crashes every worker (INTERNALERROR) instead of one usage error."""
    try:
        from _pytest.mark.expression import Expression  # what pytest itself parses them with
    except ImportError:
        return
    for flag, option in (("-m", "markexpr"), ("-k", "keyword")):
        text = config.getoption(option, None)
        if not text:
            continue
        try:
            Expression.compile(text)
        except SyntaxError as exc:
            raise pytest.UsageError(f"Wrong expression passed to '{flag}': {text}: at column {exc.offset}: "
                                    f"{exc.msg}") from None


def run_session(config: pytest.Config):
    """The :class:`rig.run_session.RunSession` of this pytest process (its run folder)."""
    return config.pluginmanager.get_plugin("packrig-run")


def recordings_dir(config: pytest.Config) -> Path:
    """Where this run's recordings go: ``<run folder>/recordings`` (the run folder wins over the
    bench file's ``[recording].directory``, so runs never mix)."""
    return run_session(config).recordings


def _firmware_profile(config: pytest.Config):
    """The firmware profile the emulated pack runs (None on a real bench), validated once."""
    bench = _loaded_bench(config)
    if not bench.emulated:
        return None
    if FIRMWARE_KEY not in config.stash:
        path = config.getoption("--firmware") or bench.firmware_path
        try:
            config.stash[FIRMWARE_KEY] = load_firmware(path)
        except ConfigError as exc:
            raise pytest.UsageError(f"packrig: bad firmware profile: {exc}") from None
    return config.stash[FIRMWARE_KEY]


def run_facts(config: pytest.Config) -> dict:
    """The files and settings of this run, as the manifest states them."""
    from rig.report.manifest import file_facts
    bench = _loaded_bench(config)
    spec_path = config.getoption("--pack-spec") or bench.pack_spec_path
    spec = spec_for(config)
    firmware = _firmware_profile(config)
    seed = None
    if bench.emulated:
        seed = config.getoption("--seed")
        seed = bench.file.emulator.seed if seed is None else seed
    return {
        "bench": {**file_facts(bench.path, bench.file.bench.name), "clock": bench.file.bench.clock,
                  "emulated": bench.emulated},
        "pack_spec": file_facts(spec_path, spec.meta.name),
        "firmware": file_facts(config.getoption("--firmware") or bench.firmware_path, firmware.meta.name)
        if firmware is not None else None,
        "seed": seed,
        "markers": config.getoption("markexpr", None) or None,
        "keyword": config.getoption("keyword", None) or None,
        "shard": getattr(config.option, "shard", None),
    }


def pytest_collection_finish(session: pytest.Session) -> None:
    """First contact with a real bench before the first test that uses it (see rig.first_contact)."""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("--no-first-contact"):
        return
    from rig.run_session import uses_bench
    if not any(uses_bench(item) for item in session.items):
        return
    bench = _loaded_bench(config)
    if bench.emulated:
        return
    from rig.first_contact import first_contact, stop_message, table
    rows, identity = first_contact(bench)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n" + table(rows, bench.file.bench.name))
    stop = stop_message(rows, bench.path)
    if stop:
        run_session(config).interrupted = stop
        raise pytest.UsageError(f"packrig: {stop}")
    run_session(config).set_pack_identity(identity)


def _loaded_bench(config: pytest.Config) -> LoadedBench:
    """The bench file of this run, loaded and validated once (a bad one: a usage error)."""
    if BENCH_KEY not in config.stash:
        path = config.getoption("--bench") or EMULATED_BENCH
        try:
            loaded = load_bench(path)
        except ConfigError as exc:
            raise pytest.UsageError(f"packrig: bad bench file: {exc}") from None
        if not loaded.emulated and (config.getoption("--firmware") or config.getoption("--seed") is not None):
            raise pytest.UsageError(f"packrig: --firmware and --seed apply to an emulated bench only; "
                                    f"{path} is the real bench {loaded.file.bench.name!r}")
        config.stash[BENCH_KEY] = loaded
    return config.stash[BENCH_KEY]


def missing_features(bench: LoadedBench, needs: dict[str, object]) -> list[str]:
    """The needed features this bench lacks, as 'name (needs X, bench has Y)' texts."""
    features = bench.file.features
    missing = []
    for name, wanted in needs.items():
        if not hasattr(features, name):
            raise pytest.UsageError(f"needs({name}=...): unknown bench feature; known: "
                                    f"{', '.join(type(features).model_fields)}")
        have = getattr(features, name)
        ok = have >= wanted if isinstance(wanted, int) and not isinstance(wanted, bool) else have == wanted
        if not ok:
            missing.append(f"{name} (test needs {wanted!r}, bench has {have!r})")
    return missing


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs: dict[str, object] = {}
    for mark in item.iter_markers("needs"):
        needs.update(mark.kwargs)
    if needs:
        bench = _loaded_bench(item.config)
        missing = missing_features(bench, needs)
        if missing:
            pytest.skip(f"bench {bench.file.bench.name!r} lacks: {'; '.join(missing)}")


@pytest.fixture(scope="session")
def bench_file(pytestconfig: pytest.Config) -> LoadedBench:
    """The bench file in use, validated, its paths resolved."""
    return _loaded_bench(pytestconfig)


@pytest.fixture(scope="session")
def spec(pytestconfig: pytest.Config, bench_file: LoadedBench) -> PackSpec:
    """The pack spec (requirements) the tests assert against."""
    return spec_for(pytestconfig)


@pytest.fixture(scope="session")
def firmware(pytestconfig: pytest.Config, bench_file: LoadedBench):
    """The firmware profile the emulated pack runs (skips on a real bench: there is none)."""
    if not bench_file.emulated:
        pytest.skip(f"bench {bench_file.file.bench.name!r} is real: it has no firmware profile")
    return _firmware_profile(pytestconfig)


def pytest_keyboard_interrupt(excinfo) -> None:
    """Ctrl-C (or SIGTERM): the safe state before anything else."""
    exits.make_all_safe()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A safety trip fails the test and aborts the session: the bench is not to be trusted."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(SafetyTrip):
        item.session.shouldstop = f"safety trip: {call.excinfo.value}"
        report.longrepr = str(call.excinfo.value) if report.longrepr is None else report.longrepr


def requirement_of(item: pytest.Item) -> tuple[str, dict] | None:
    """The requirement a test declares with ``@pytest.mark.requirement("protections.cell_over_voltage",
    manual="2.2", iec="...")``: a dotted path into the pack spec (its ``id`` is looked up there, so
    ids live in one place) or a literal ``REQ-...`` id."""
    mark = item.get_closest_marker("requirement")
    if mark is None or not mark.args:
        return None
    ref = mark.args[0]
    if not ref.startswith("REQ-"):
        spec = spec_for(item.config)
        node = spec
        for part in ref.split("."):
            node = getattr(node, part, None)
            if node is None:
                raise pytest.UsageError(f"{item.nodeid}: requirement {ref!r} is not a section of the pack spec")
        ref = getattr(node, "id", ref)
    return ref, dict(mark.kwargs)


def spec_for(config: pytest.Config) -> PackSpec:
    """The pack spec of this run, loaded once and checked against the bench (a usage error if not)."""
    if SPEC_KEY not in config.stash:
        path = config.getoption("--pack-spec") or _loaded_bench(config).pack_spec_path
        try:
            spec = load_pack_spec(Path(path))
        except ConfigError as exc:
            raise pytest.UsageError(f"packrig: bad pack spec: {exc}") from None
        try:  # the bench must fit the safety envelope of the spec in force, not only of its own
            check_bench_against(spec, _loaded_bench(config), path)
        except ConfigError as exc:
            raise pytest.UsageError(f"packrig: bad bench file: {exc}") from None
        config.stash[SPEC_KEY] = spec
    return config.stash[SPEC_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Allure labels and links from the ``requirement`` marker."""
    bench = _loaded_bench(item.config)
    item.user_properties.append(("bench", f"{bench.file.bench.name} ({bench.path})"))
    firmware = item.config.getoption("--firmware") or (bench.firmware_path if bench.emulated else None)
    if firmware:
        item.user_properties.append(("firmware", str(firmware)))
    found = requirement_of(item)
    if found is None:
        return
    req, refs = found
    item.user_properties.append(("requirement", req))
    try:
        import allure
    except ImportError:
        return
    allure.dynamic.label("requirement", req)
    allure.dynamic.tag(req)
    for key, label in (("manual", "manual section"), ("iec", "IEC 62619"), ("ul", "UL 1973")):
        if key in refs:
            allure.dynamic.label(label, str(refs[key]))
