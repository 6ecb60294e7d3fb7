"""What a lab place holds: one packrig bench resource, and the tags a run asks for.

The exporter of a bench PC publishes one resource of class ``PackrigBench`` (flat parameters, as
labgrid carries them):

=====================  ====================================================================
``bench``              the bench's name
``kind``               ``real``, or ``emulated`` (an emulator serving the place)
``psu`` ... ``io``     each instrument's VISA resource (``TCPIP::host::port::SOCKET``)
``can``                ``socketcand://host:port/channel``
``rs485``              the RS485 line (``socket://host:port``, ser2net on a real bench PC)
``rs485_console_N``    pack N's own console line, where the bench has one
``emulator_control``   ``host:port`` of the emulator's control port (emulated places only)
``emulator_launcher``  ``host:port`` of the place's emulator launcher (emulated places served
                       with ``--serve``: :mod:`rig.lab.emulator_launcher`)
``emulated_bench_json``  the emulated bench file the launcher's emulators are built from (its
                       wiring, limits, supervisor), as one JSON line (:func:`write_launcher_bench`)
``bench_json``         the place's whole bench file in its lab form (below), as one JSON line
=====================  ====================================================================

The *lab form* of a bench file is what a client on another machine can build a bench from: a
bench of the real kind (no ``[emulator]`` section, wall clock), every address reachable over the
network (LAN instruments, socketcand, ``socket://`` RS485). An emulated bench is turned into it
from the endpoints its emulator printed; its fault insertion and storage ageing need the
emulator in the rig's process, so the place does not offer them (``features``). The client puts
its own pack spec and recording folder into it (:func:`write_place_bench`) and runs as on any
bench: first contact, the supervisor, the same test cases.

Tags (:func:`place_tags`) come from the bench's ``[features]`` and pack spec: ``pack=6.5kWh-16S``,
``packs=2``, ``chamber=yes``, ``bench=emulated`` ..., so ``packrig run --lab ... --want packs=2``
gets a bench that can run the two-pack tests.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import tomli_w

from rig.errors import ConfigError
from rig.files.bench_file import LoadedBench, load_bench
from rig.files.loader import read_toml

#: the labgrid resource class of a packrig bench
RESOURCE_CLASS = "PackrigBench"
INSTRUMENTS = ("psu", "eload", "dmm", "scanner", "chamber", "io")
#: features a bench of the real kind cannot have (they act through the emulator in the rig's process)
EMULATOR_ONLY_FEATURES = ("has_fault_insertion", "can_age_pack")
#: bench-file feature -> tag (yes/no), beside pack, packs and bench
FEATURE_TAGS = {"has_chamber": "chamber", "has_cell_taps": "cell_taps", "has_light_sensors": "light_sensors",
                "has_short_circuit_contactor": "short_circuit", "has_wake_line": "wake_line",
                "psu_can_sink": "psu_sink"}


def lab_form(loaded: LoadedBench, endpoints: dict | None = None) -> dict:
    """The bench file as a place publishes it (see the module docstring), as a TOML dict.

    :param loaded: the bench file.
    :param endpoints: for an emulated bench, what ``packrig emulate --endpoints-file`` wrote.
    :raises ConfigError: an emulated bench without endpoints; an address another machine cannot
        reach (a USB instrument, a local CAN adapter, a device path), naming the field.
    """
    data = copy.deepcopy(read_toml(loaded.path))
    path = loaded.path
    if loaded.emulated:
        if endpoints is None:
            raise ConfigError(path, "emulator", "an emulated bench is published with its running emulator's "
                                                "endpoints (packrig export --labgrid BENCH --serve HOST:PORT)")
        del data["emulator"]
        data["bench"]["clock"] = "wall"  # a place is shared in real time: its emulator runs on the wall clock
        for name in EMULATOR_ONLY_FEATURES:
            data["features"][name] = False
        data["features"]["parallel_packs"] = _packs(loaded)  # what its emulator serves
        for name, resource in endpoints["instruments"].items():
            if name in data["instruments"]:
                data["instruments"][name]["resource"] = resource
        can = endpoints["can"]
        data["can"] = {"interface": "socketcand", "channel": can["channel"], "bitrate": data["can"]["bitrate"],
                       "options": {"host": can["host"], "port": int(can["port"])}}
        if "rs485" in data:
            data["rs485"]["url"] = endpoints["rs485"]
    _check_reachable(path, data)
    return data


def _check_reachable(path: Path, data: dict) -> None:
    """Every address of a place must work from another machine: refuse the first that does not."""
    for name in INSTRUMENTS:
        spec = data["instruments"].get(name)
        if spec is not None and not spec["resource"].upper().startswith("TCPIP"):
            raise ConfigError(path, f"instruments.{name}.resource",
                              f"{spec['resource']!r} is not reachable from another machine: give the "
                              "instrument's LAN address (TCPIP::host::port::SOCKET or TCPIP::host::inst0::INSTR)")
    can = data["can"]
    options = can.get("options", {})
    if can["interface"] != "socketcand" or "host" not in options or "port" not in options:
        raise ConfigError(path, "can", f"interface {can['interface']!r} is local to the bench PC: serve it "
                                       "with socketcand there and write interface = \"socketcand\", the "
                                       "channel and options = {host = ..., port = ...}")
    rs485 = data.get("rs485")
    if rs485 is not None and not rs485["url"].startswith(("socket://", "rfc2217://")):
        raise ConfigError(path, "rs485.url", f"{rs485['url']!r} is local to the bench PC: serve it with "
                                             "ser2net there and write socket://host:port")


def place_tags(loaded: LoadedBench, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The place's tags: the pack (``6.5kWh-16S``), its packs, its kind, each feature yes/no."""
    ratings, features = loaded.spec.ratings, loaded.file.features
    tags = {"pack": f"{ratings.nominal_energy_kwh:g}kWh-{ratings.groups}S",
            "packs": str(_packs(loaded)),
            "bench": "emulated" if loaded.emulated else "real"}
    for feature, tag in FEATURE_TAGS.items():
        tags[tag] = "yes" if getattr(features, feature) else "no"
    return {**tags, **(extra or {})}


def _packs(loaded: LoadedBench) -> int:
    """Packs on the bench: an emulated one has as many as its emulator serves."""
    packs = loaded.file.features.parallel_packs
    return min(packs, loaded.file.emulator.packs) if loaded.emulated else packs


def bench_resource(loaded: LoadedBench, endpoints: dict | None = None,
                   launcher: str | None = None) -> dict[str, str | int]:
    """The flat parameters of the place's ``PackrigBench`` resource (module docstring);
    ``launcher``: the address of the place's emulator launcher, if it serves one."""
    data = lab_form(loaded, endpoints)
    params: dict[str, str | int] = {"bench": data["bench"]["name"],
                                    "kind": "emulated" if loaded.emulated else "real"}
    for name in INSTRUMENTS:
        if data["instruments"].get(name) is not None:
            params[name] = data["instruments"][name]["resource"]
    can = data["can"]
    params["can"] = f"socketcand://{can['options']['host']}:{can['options']['port']}/{can['channel']}"
    if "rs485" in data:
        params["rs485"] = data["rs485"]["url"]
    for n, url in enumerate((endpoints or {}).get("rs485_console", []), start=1):
        params[f"rs485_console_{n}"] = url
    if endpoints and endpoints.get("control"):
        params["emulator_control"] = f"127.0.0.1:{endpoints['control']}"
    if launcher:
        params["emulator_launcher"] = launcher
        params["emulated_bench_json"] = json.dumps(read_toml(loaded.path), separators=(",", ":"))
    params["bench_json"] = json.dumps(data, separators=(",", ":"))
    return params


def write_place_bench(params: dict, folder: Path, pack_spec: Path) -> Path:
    """The client's side: the place's bench file, with this machine's pack spec and a recording
    folder of its own, written into ``folder`` and validated as any bench file.

    :raises ConfigError: the place published no bench, or one that does not load here (a limit
        looser than this pack spec's safety envelope is refused, as for any bench file).
    """
    text = params.get("bench_json")
    where = f"place resource {RESOURCE_CLASS}"
    if not isinstance(text, str) or not text:
        raise ConfigError(where, "bench_json", "missing: the place publishes no packrig bench file "
                                               "(export it with packrig export --labgrid)")
    try:
        data = json.loads(text)
        data["bench"]["pack_spec"] = str(Path(pack_spec).resolve())
        data["recording"]["directory"] = str((folder / "recordings").resolve())
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(where, "bench_json", f"not a bench file: {exc}") from None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "place-bench.toml"
    path.write_text(f"# the bench of lab place {params.get('bench', '?')!s}, as published by its exporter\n"
                    + tomli_w.dumps(data), encoding="utf-8")
    load_bench(path)  # one line naming the field if the place's bench does not fit
    return path


def write_launcher_bench(params: dict, folder: Path, pack_spec: Path, firmware: Path) -> Path:
    """The client's side of a place's emulator launcher: the place's emulated bench file with
    ``[emulator] process = "launcher"`` at its launcher, in virtual time (the holder's), this
    machine's pack spec and firmware profile (the one a run gives with ``--firmware`` is sent to
    the launcher instead), its recordings here; validated as any bench file. The launched
    emulators use the place's own physics (the key is dropped: its path is the place's).

    :raises ConfigError: the place has no launcher, or its bench does not load here.
    """
    where = f"place resource {RESOURCE_CLASS}"
    text, launcher = params.get("emulated_bench_json"), params.get("emulator_launcher")
    if not isinstance(text, str) or not text or not launcher:
        raise ConfigError(where, "emulator_launcher", "missing: the place launches no emulators (an emulated "
                                                      "bench served with packrig export --labgrid ... --serve)")
    try:
        data = json.loads(text)
        data["bench"].update(clock="virtual", pack_spec=str(Path(pack_spec).resolve()))
        data["emulator"].pop("physics", None)
        data["emulator"].update(process="launcher", launcher=launcher, firmware=str(Path(firmware).resolve()))
        data["can"].update(interface="socketcand", channel="emulator")
        data["recording"]["directory"] = str((folder / "recordings").resolve())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(where, "emulated_bench_json", f"not an emulated bench file: {exc}") from None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "launcher-bench.toml"
    path.write_text(f"# the emulated bench of lab place {params.get('bench', '?')!s}, its emulators started by "
                    f"its launcher {launcher}\n" + tomli_w.dumps(data), encoding="utf-8")
    load_bench(path)
    return path
