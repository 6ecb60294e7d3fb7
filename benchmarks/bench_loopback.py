"""The floor under a lockstep advance across processes: one TCP round trip on 127.0.0.1.

An emulated bench in another process is advanced once per rig periodic task (the PCS heartbeat
every virtual second), and each advance is at least one request and one reply between two
Python processes. This prints what such an exchange costs on this machine with nothing else in
it (an echo of one line, Nagle off on both ends), so the figure of
``bench_emulated_bench.py`` can be read against it: 3,600 exchanges per virtual hour.

Run: ``python benchmarks/bench_loopback.py``
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

ROUND_TRIPS = 5000
_ECHO = """
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
srv.settimeout(30)
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for line in conn.makefile("rb"):
    conn.sendall(line)
"""


def main() -> None:
    echo = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    try:
        port = int(echo.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            replies = sock.makefile("rb")
            request = b'{"op": "advance", "t_ns": 3600000000000, "rig_frames": 3600}\n'
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(ROUND_TRIPS):
                    sock.sendall(request)
                    replies.readline()
                best = min(best, (time.perf_counter() - started) / ROUND_TRIPS)
        print(f"one request/reply between two Python processes on 127.0.0.1: {best * 1e6:.0f} us "
              f"(best of 3 x {ROUND_TRIPS}); 3,600 of them (one virtual hour at 1 s): {3600 * best:.2f} s")
    finally:
        echo.kill()
        echo.wait()


if __name__ == "__main__":
    main()
