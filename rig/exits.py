"""Safe state on every way out of the rig's process.

- a failing test, an exception anywhere: the ``bench`` fixture's teardown makes the bench safe;
- Ctrl-C: the plugin's ``pytest_keyboard_interrupt`` hook makes every live bench safe at once;
- SIGTERM: the handler installed here makes every live bench safe, then interrupts the run;
- normal or abnormal interpreter exit: an ``atexit`` hook does it once more (it is idempotent);
- SIGKILL: nothing in the process can act; the instruments' own watchdogs (programmed by
  :class:`~rig.bench.Bench` at start) switch the sources off and open the relays.
"""
from __future__ import annotations

import atexit
import signal
import threading
import weakref

_live: "weakref.WeakSet" = weakref.WeakSet()
_installed = False


def track(bench) -> None:
    """Make ``bench`` safe on any way out until :func:`untrack`."""
    _live.add(bench)


def untrack(bench) -> None:
    _live.discard(bench)


def make_all_safe() -> list[str]:
    """The safe state on every live bench; returns what could not be done."""
    problems = []
    for bench in list(_live):
        problems += bench.make_safe()
    return problems


def _on_sigterm(signum, frame) -> None:
    make_all_safe()
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}: bench made safe, run interrupted")


def install() -> None:
    """Install the SIGTERM handler (main thread only) and the exit hook, once."""
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(make_all_safe)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
