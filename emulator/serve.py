"""``packrig emulate``: the emulated bench as a process of its own, and a well-behaved one.

It serves the emulated bench (SCPI instruments, socketcand CAN, RS485 over TCP, the control
port, :mod:`emulator.transports.control_port`) until it is asked to stop, and on every way out it first puts
the emulated bench in its safe state, as the operator at a bench would (PSU output off, e-load
input and short off, every relay open, chamber in standby), then says what the outputs read
(stderr, and ``--exit-file`` as JSON for the rig that started it).

Started by hand it runs until Ctrl-C, SIGTERM, SIGHUP (its terminal closed) or a control
client's ``shutdown``; control clients come and go. Started by a rig
(:class:`~rig.emulator_client.remote_emulator.RemoteEmulator` passes ``--owner-pid``) it belongs to that rig and
also stops when the rig's control connection closes, or when the rig process is gone: a
SIGKILLed rig closes nothing itself, so the emulator looks at its parent every
:data:`OWNER_CHECK_S` (an orphan is re-parented), which works however the rig died. Either way
it exits well within 5 s.

Its instruments' outputs do not follow a client's connection: the emulated PSU and e-load keep
their outputs when a client goes away, as the real ones do, and their output watchdogs are what
switch them off behind a killed rig on a bench the emulator outlives.

Exit codes: 0 stopped as asked (or its rig gone), 3 internal error (after the safe state),
4 usage error (a bad file or argument, one line, before anything is served).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from rig.errors import ConfigError
from rig.files.bench_file import load_bench
from emulator.firmware.profile import load_firmware_profile

#: s between two looks at whether the owning rig process is still there
OWNER_CHECK_S = 0.1

log = logging.getLogger("packrig.emulate")


def serve(args: argparse.Namespace) -> int:
    """Run ``packrig emulate`` with its parsed arguments; returns the exit code."""
    _log_to_stderr(quiet=args.quiet)
    try:
        emulated, profile, virtual = _build(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    from emulator.transports.control_port import ControlServer

    control = ControlServer(emulated, virtual=virtual, owned=args.owner_pid is not None).start()
    code = 0
    try:
        if not virtual:
            emulated.run_in_real_time()
        info = {**emulated.endpoints(), "control": control.port, "clock": "virtual" if virtual else "wall"}
        if args.endpoints_file:
            try:
                _write_whole(Path(args.endpoints_file), info)
            except OSError as exc:
                print(f"error: --endpoints-file {args.endpoints_file}: {exc.strerror or exc}", file=sys.stderr)
                control.stop_for("its endpoints file could not be written")
                return 4  # the finally below still makes the bench safe and stops the servers
        if not args.quiet:
            _print_banner(info, len(emulated.world.bms), profile.meta.name)
        _wait_until_stopped(control, args.owner_pid)
    except KeyboardInterrupt:
        control.stop_for("Ctrl-C")
    except Exception:  # noqa: BLE001 - the bench is made safe and the failure logged, then exit 3
        log.exception("internal error")
        control.stop_for("internal error")
        code = 3
    finally:
        try:
            ok, outcome = safe_state(emulated)
        except Exception as exc:  # noqa: BLE001 - say so, and still stop the servers
            ok, outcome = False, f"NOT REACHED ({type(exc).__name__}: {exc})"
        (log.info if ok else log.warning)("stopped (%s); safe state: %s", control.reason, outcome)
        if args.exit_file:
            try:
                _write_whole(Path(args.exit_file), {"reason": control.reason, "safe": ok, "safe_state": outcome})
            except OSError as exc:
                log.warning("--exit-file %s: %s", args.exit_file, exc.strerror or exc)
        control.stop()
        emulated.close()
    return code


def _build(args: argparse.Namespace):
    """The emulated bench the arguments ask for; raises :class:`ConfigError` for a bad file or
    argument (before any port is opened)."""
    bench = load_bench(args.bench)
    if not bench.emulated:
        raise ConfigError(args.bench, "emulator", "missing: not an emulated bench (it has no [emulator] "
                                                  "section)")
    if args.owner_pid is not None and args.owner_pid != os.getppid():
        raise ConfigError("--owner-pid", "", f"{args.owner_pid} is not this process's parent "
                                             f"({os.getppid()}); it is the pid of the rig that starts it")
    e = bench.file.emulator
    profile = load_firmware_profile(args.firmware or bench.firmware_path)
    from emulator.emulated_bench import EmulatedBench  # numpy and the world: only once the files are good

    emulated = EmulatedBench(bench.file, profile, packs=args.packs or e.packs,
                             seed=e.seed if args.seed is None else args.seed,
                             initial_soc_pct=e.initial_soc_pct if args.soc is None else args.soc,
                             ambient_c=e.ambient_c if args.temperature is None else args.temperature,
                             can_transport="socketcand", physics=bench.physics_path)
    return emulated, profile, (args.clock or bench.file.bench.clock) == "virtual"


def _wait_until_stopped(control, owner_pid: int | None) -> None:
    """Until a shutdown request, a signal, or (owned) the rig's connection or process gone."""
    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")):
        signal.signal(sig, lambda *_, name=name: control.stop_for(name))
    while not control.stopped.wait(OWNER_CHECK_S):
        if owner_pid is not None and os.getppid() != owner_pid:
            control.stop_for(f"its rig, pid {owner_pid}, is gone")


def safe_state(emulated) -> tuple[bool, str]:
    """Switch the emulated sources off and open every relay, through the instruments' own
    commands as a person at the bench would; returns whether it held and what the outputs read."""
    devices = emulated.devices
    devices["psu"].handle_line("OUTP OFF")
    devices["eload"].handle_line("INP:SHOR OFF;:INP OFF")  # ';:' back to the root (SCPI-99 6.2.4)
    devices["io"].open_all()
    if "chamber" in devices:  # a bench file without a chamber has none emulated
        devices["chamber"].handle_line("MODE,STANDBY")
    plant = emulated.world.plant
    with plant.lock:
        psu_on, load_on, short = plant.psu.on, plant.eload.on, plant.eload.short
        closed = sorted(name for name, on in plant.io.outputs.items() if on)
        running = plant.chamber.running
    parts = ["PSU output " + ("STILL ON" if psu_on else "off"),
             "e-load input " + ("STILL ON" if load_on else "off"),
             "e-load short " + ("STILL ON" if short else "off"),
             f"relays STILL CLOSED: {', '.join(closed)}" if closed else "every relay open",
             "chamber " + ("STILL RUNNING" if running else "standby")]
    return not (psu_on or load_on or short or closed or running), ", ".join(parts)


def _write_whole(path: Path, data: dict) -> None:
    """Write JSON so that a reader never sees half a file (write aside, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _print_banner(info: dict, packs: int, firmware: str) -> None:
    can_info = info["can"]
    print(f"packrig emulator: {packs} pack(s), firmware {firmware!r}, {info['clock']} time")
    for name, resource in info["instruments"].items():
        print(f"  {name:8} {resource}")
    print(f"  CAN      python-can: interface='socketcand', host='{can_info['host']}', "
          f"port={can_info['port']}, channel='{can_info['channel']}'")
    print(f"  RS485    {info['rs485']}  (pyserial serial_for_url)")
    for adr, url in enumerate(info.get("rs485_console", []), start=2):
        print(f"  console  {url}  (pack ADR {adr}: its own RS485 console line)")
    print(f"  control  127.0.0.1:{info['control']}  (JSON lines: advance, fault, cyclic, status, shutdown)")
    print("Ctrl-C to stop.", flush=True)


def _log_to_stderr(quiet: bool) -> None:
    """One line per event on stderr; quiet: warnings only (a rig's child says only what went wrong)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("packrig emulate: %(message)s"))
        root.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
