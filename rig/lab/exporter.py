"""``python -m rig.lab.exporter``: labgrid's own exporter, knowing what a packrig bench is.

labgrid has no hook a client can run on release, and a client that died runs nothing. The
exporter, though, is told of every acquire and release of its resources (the coordinator's
``set_acquired_request``), and a resource class of its own (a ``ResourceExport``, as labgrid's
serial ports start and stop ser2net that way) is started when its place is acquired and stopped
when it is released, however the release came. ``PackrigBenchExport`` uses that stop: the bench is
made safe (:func:`rig.lab.safe_state.make_bench_safe`) every time its place is freed.

If the safe state cannot be confirmed (an instrument does not answer, an output still reads on),
the resource is marked broken: the place cannot be acquired again until a person has looked at
the bench and restarted the exporter. The instruments' own watchdogs still act in every case.

The command line is ``labgrid-exporter``'s (``-c COORDINATOR:PORT -n NAME CONFIG.yaml``); plain
``labgrid-exporter`` serves the same file too (the resource then is a plain entry, without the
safe state on release: the watchdogs alone act).
"""
from __future__ import annotations

import logging

import attr
from labgrid.remote import exporter as lg_exporter

from rig.lab.place_bench import RESOURCE_CLASS
from rig.lab.safe_state import make_bench_safe

log = logging.getLogger("packrig.exporter")


class _Present:
    """The local side of a bench resource: its addresses are always there (no USB to appear)."""

    avail = True

    def poll(self) -> None:
        """Nothing to look for."""


@attr.s(eq=False)
class PackrigBenchExport(lg_exporter.ResourceExport):
    """A packrig bench on this exporter: safe state on every release of its place."""

    def __attrs_post_init__(self):
        super().__attrs_post_init__()
        self.data["cls"] = RESOURCE_CLASS
        self.local = _Present()
        self.unsafe: str | None = None

    def _get_params(self):
        return dict(self.local_params)

    def _get_start_params(self):
        return {"bench": self.local_params.get("bench")}

    def _start(self, start_params):
        log.info("bench %s: place acquired by %s", start_params.get("bench"), self.acquired)

    def _stop(self, start_params):
        """The place was released: nobody drives the bench any more; make it safe now."""
        ok, said = make_bench_safe(self.local_params["bench_json"])
        (log.info if ok else log.error)("bench %s: place released; safe state: %s", start_params.get("bench"), said)
        print(f"packrig exporter: place released; safe state: {said}", flush=True)
        if not ok:
            self.unsafe = said  # not raised: an exception here would end the exporter's message pump

    def poll(self):
        dirty = super().poll()
        if self.unsafe and not self.broken:
            self.broken = f"bench not safe after release: {self.unsafe}"  # nobody may acquire it
            dirty = True
        return dirty


def main() -> None:
    """labgrid-exporter, with :class:`PackrigBenchExport` serving ``PackrigBench`` resources."""
    lg_exporter.exports[RESOURCE_CLASS] = PackrigBenchExport
    lg_exporter.main()


if __name__ == "__main__":
    main()
