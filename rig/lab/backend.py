"""The seam between packrig and a lab engine: reserve a place, read its endpoints, release it.

A *place* is one bench in a shared lab: the instruments, the CAN and RS485 endpoints and (for an
emulated bench) the emulator that a coordinator hands to one holder at a time. packrig needs three
things of a lab engine, and nothing else touches the engine::

    lease = backend.reserve({"packs": "2"}, timeout_s=600, progress=print)   # waits, then holds it
    params = backend.endpoints(lease)     # the place's packrig bench resource (flat dict)
    backend.release(lease)                # always, also after a failure or Ctrl-C

:class:`~rig.lab.labgrid_backend.LabgridBackend` is the labgrid one (a reservation with tags, then
the place acquired). Another engine (Jumpstarter, with its leases) is a subclass writing the same
three methods; the test cases and ``packrig run`` do not change. :meth:`LabBackend.held` is an
optional hook (as python-can's optional ones, it raises ``NotImplementedError`` and the caller
copes): whether the place is still ours, so a run can stop when someone releases it under us.
"""
from __future__ import annotations

import abc
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rig.errors import RigError

#: a tag key as labgrid accepts it (``labgrid.remote.common.TAG_KEY``)
TAG_KEY = re.compile(r"[a-z][a-z0-9_]+\Z")
#: a tag value packrig writes and asks for: no spaces, no '=' (labgrid itself accepts any text)
TAG_VALUE = re.compile(r"[A-Za-z0-9_.+-]+\Z")


class LabError(RigError):
    """The lab refused or failed: no coordinator there, no place with those tags, a place that
    could not be acquired. One line for the user; ``packrig run`` exits 4 before any test."""


class LabTimeout(LabError):
    """No matching place became free within the time the user allowed (``--lab-timeout``)."""


@dataclass
class Lease:
    """A place held by this process: what to release, and what the run's manifest records."""

    engine: str                 #: "labgrid"
    address: str                #: the coordinator, HOST:PORT
    place: str                  #: the place's name
    owner: str                  #: who holds it, as the engine names holders ("host/user")
    token: str = ""             #: the reservation's token (labgrid), the lease id (Jumpstarter)
    tags: dict[str, str] = field(default_factory=dict)   #: the place's tags
    waited_s: float = 0.0       #: from asking to holding

    def as_dict(self) -> dict:
        """For the manifest (``lab_place``)."""
        return {"engine": self.engine, "coordinator": self.address, "place": self.place,
                "owner": self.owner, "reservation": self.token, "tags": dict(self.tags),
                "waited_s": round(self.waited_s, 1)}


class LabBackend(abc.ABC):
    """A lab engine, seen from packrig. Subclasses write :meth:`reserve`, :meth:`endpoints` and
    :meth:`release`; :meth:`held` and :meth:`close` are optional."""

    @abc.abstractmethod
    def reserve(self, want: dict[str, str], timeout_s: float,
                progress: Callable[[str], None] | None = None) -> Lease:
        """Wait for a free place whose tags include ``want`` and hold it for this process alone.

        :param want: tag -> value, all of which the place must have.
        :param timeout_s: give up after this long (the reservation is cancelled).
        :param progress: called with a one-line status while waiting (about once a second).
        :raises LabTimeout: nothing matching became free in time.
        :raises LabError: the engine refused (unknown tags, no coordinator ...).
        :return: the lease; the caller must :meth:`release` it.
        """
        raise NotImplementedError

    @abc.abstractmethod
    def endpoints(self, lease: Lease) -> dict:
        """The place's packrig bench resource: flat ``name -> value`` (see
        :mod:`rig.lab.place_bench`). :raises LabError: the place holds no packrig bench."""
        raise NotImplementedError

    @abc.abstractmethod
    def release(self, lease: Lease) -> None:
        """Give the place back (and drop the reservation). Safe to call twice, and for a place
        someone else already released; never raises for a place that is already gone."""
        raise NotImplementedError

    def held(self, lease: Lease) -> bool:
        """Whether the place is still held by this lease (optional hook)."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the connection to the engine (after :meth:`release`)."""


def parse_wants(pairs: list[str]) -> dict[str, str]:
    """``["packs=2", "chamber=yes"]`` -> a dict; :raises ValueError: one line naming the pair."""
    want: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not TAG_KEY.match(key) or not TAG_VALUE.match(value):
            raise ValueError(f"--want {pair!r}: expected TAG=VALUE, the tag a lower-case name of 2 or "
                             "more letters, digits or '_' starting with a letter (e.g. packs=2)")
        if key in want and want[key] != value:
            raise ValueError(f"--want {key}: asked for both {want[key]!r} and {value!r}")
        want[key] = value
    return want


def parse_address(text: str) -> str:
    """``HOST:PORT`` of a coordinator; :raises ValueError: one line."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--lab {text!r}: expected HOST:PORT of the coordinator, e.g. 127.0.0.1:20408")
    return text
