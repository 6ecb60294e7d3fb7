"""Time CAN frames end to end through the emulator's socketcand server into python-can's client.

50,000 classic frames (8 data bytes, standard and extended IDs alternating) are broadcast in
ticks of 100 frames, as the emulator does, and received with ``can.Bus(interface="socketcand")``:
once by a client in this process (a thread: it shares the GIL with the server) and once by a
client in another process, as the rig runs against ``packrig emulate``. The clock runs from the
first broadcast to the last frame received; every frame is checked for order and timestamp.

Run: ``python benchmarks/bench_socketcand.py`` (prints frames per second, best of 3 runs).
"""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import can

from emulator.transports.socketcand_server import SocketcandServer

FRAMES = 50_000
TICK = 100
REPEATS = 3

# python-can's client logs a warning for every read that ends mid-frame, i.e. most reads of a burst.
CLIENT_LOGGER = "can.interfaces.socketcand.socketcand"

_CHILD = f"""
import logging, sys, can
logging.getLogger({CLIENT_LOGGER!r}).setLevel(logging.ERROR)
bus = can.Bus(interface="socketcand", host="127.0.0.1", port=int(sys.argv[1]), channel="can0")
print("ready", flush=True)
for i in range(int(sys.argv[2])):
    msg = bus.recv(timeout=10.0)
    assert msg is not None and round(msg.timestamp * 1e6) == i * 1000, (i, msg)
print("done", flush=True)
bus.shutdown()
"""


def frames() -> list[can.Message]:
    """Frame i at virtual time i ms, so a receiver can check order and timestamp from i alone."""
    return [can.Message(timestamp=i / 1000, arbitration_id=0x18A00202 if i % 2 else 0x351,
                        is_extended_id=bool(i % 2), data=i.to_bytes(8, "little")) for i in range(FRAMES)]


def _send_all(server: SocketcandServer, sent: list[can.Message]) -> None:
    for start in range(0, len(sent), TICK):
        server.broadcast(sent[start:start + TICK])


def in_process(sent: list[can.Message]) -> float:
    """Seconds for all frames to a python-can client in a thread of this process."""
    server = SocketcandServer().start()
    bus = can.Bus(**server.bus_kwargs())
    try:
        server.wait_for_listeners(1)
        started = time.perf_counter()
        sender = threading.Thread(target=_send_all, args=(server, sent))
        sender.start()
        for i in range(FRAMES):
            msg = bus.recv(timeout=10.0)
            assert msg is not None and round(msg.timestamp * 1e6) == i * 1000, (i, msg)
        elapsed = time.perf_counter() - started
        sender.join()
        return elapsed
    finally:
        bus.shutdown()
        server.stop()


def other_process(sent: list[can.Message]) -> float:
    """Seconds for all frames to a python-can client in another process."""
    server = SocketcandServer().start()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(server.port), str(FRAMES)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        server.wait_for_listeners(1)
        started = time.perf_counter()
        _send_all(server, sent)
        assert child.stdout.readline().strip() == "done"
        elapsed = time.perf_counter() - started
        assert child.wait(timeout=30) == 0
        return elapsed
    finally:
        child.kill()
        server.stop()


def main() -> None:
    logging.getLogger(CLIENT_LOGGER).setLevel(logging.ERROR)
    sent = frames()
    for name, run in (("client in this process", in_process), ("client in another process", other_process)):
        best = min(run(sent) for _ in range(REPEATS))
        print(f"socketcand, {FRAMES} frames, {name}: {FRAMES / best:,.0f} frames/s ({best:.2f} s)")


if __name__ == "__main__":
    main()
