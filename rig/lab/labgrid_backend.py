"""The labgrid lab engine (labgrid 26, gRPC coordinator): :class:`~rig.lab.backend.LabBackend`.

A reservation with tags, then the place acquired, exactly as ``labgrid-client`` does it
(``reserve --wait TAG=VALUE``, ``-p +TOKEN acquire``, ``-p +TOKEN release``), through labgrid's
own :class:`labgrid.remote.client.ClientSession` (its connection to the coordinator, its live view
of places and resources) and the coordinator's RPCs. The session's asyncio loop runs in a thread
of its own, so the rest of packrig stays synchronous and the live view keeps updating while a
run goes on (:meth:`LabgridBackend.held`).

Lifetimes, as the coordinator keeps them (``labgrid/remote/coordinator.py``):

- a reservation lives 60 s past its last poll: waiting, we poll every second; one whose holder
  vanished before acquiring expires within a minute and its place goes to the next in line;
- an acquired place has no lifetime: it stays acquired by ``host/user`` until released. packrig
  releases it on every way out of a run, and a guard process (:mod:`rig.lab.guard`) releases it
  when the run's process is gone (SIGKILL, a crash). Past both, ``labgrid-client -p PLACE release
  --kick`` frees it; the bench itself is safe without a holder (instrument watchdogs, and the
  exporter's safe state on release, :mod:`rig.lab.exporter`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

from rig.lab.backend import LabBackend, LabError, LabTimeout, Lease
from rig.lab.place_bench import RESOURCE_CLASS

#: s between two polls of a waiting reservation (labgrid-client's own pace)
POLL_S = 1.0


def _pb2():
    from labgrid.remote.generated import labgrid_coordinator_pb2
    return labgrid_coordinator_pb2


class LabgridBackend(LabBackend):
    """A connection to one labgrid coordinator.

    :param address: ``HOST:PORT`` of the coordinator.
    :param connect_timeout_s: how long to try to reach it.
    :raises LabError: the coordinator did not answer.
    """

    engine = "labgrid"

    def __init__(self, address: str, *, connect_timeout_s: float = 15.0):
        try:
            from labgrid.remote.client import ClientSession  # noqa: F401 - the optional extra packrig[lab]
        except ImportError as exc:
            raise LabError(f"labgrid is not installed ({exc}): pip install 'packrig[lab]'") from None
        self.address = address
        _quiet_client_log()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="labgrid-session", daemon=True)
        self._thread.start()
        try:
            self.session = self._call(self._start(), connect_timeout_s)
        except Exception as exc:
            self._stop_loop()
            raise LabError(f"no labgrid coordinator at {address}: {_said(exc)}") from None
        self.owner = f"{self.session.gethostname()}/{self.session.getuser()}"

    # --- the session's loop ------------------------------------------------------------------
    async def _start(self):
        from labgrid.remote.client import ClientSession
        from labgrid.util.proxy import proxymanager

        address = proxymanager.get_grpc_address(self.address, default_port=20408)
        session = ClientSession(address, asyncio.get_running_loop())
        await session.start()
        return session

    def _call(self, coro, timeout_s: float | None = 30.0):
        """Run ``coro`` on the session's loop and wait for it (a gRPC error becomes a LabError)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise LabError(f"labgrid coordinator at {self.address} did not answer in {timeout_s} s") from None

    async def _rpc(self, name: str, request, *, sync: bool = True):
        import grpc
        try:
            reply = await getattr(self.session.stub, name)(request)
        except grpc.aio.AioRpcError as exc:
            raise LabError(f"labgrid coordinator {self.address}: {name}: {exc.details()}") from None
        if sync:  # the place and resource updates the call caused are in the live view
            await self.session.sync_with_coordinator()
        return reply

    def _look(self, fn: Callable[[], object]):
        """``fn()`` on the session's loop: the live view of places is changed only there."""
        async def call():
            return fn()
        return self._call(call())

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)

    # --- the seam ----------------------------------------------------------------------------
    def reserve(self, want: dict[str, str], timeout_s: float,
                progress: Callable[[str], None] | None = None) -> Lease:
        from labgrid.remote.common import Reservation, ReservationState

        pb2 = _pb2()
        self._look(lambda: self._refuse_unknown(want))
        started = time.monotonic()
        request = pb2.CreateReservationRequest(filters={"main": pb2.Reservation.Filter(filter=want)}, prio=0.0)
        token = self._call(self._rpc("CreateReservation", request)).reservation.token
        place = None  # acquired, not yet handed over as a lease
        try:
            while True:
                res = Reservation.from_pb2(self._call(self._rpc(
                    "PollReservation", pb2.PollReservationRequest(token=token), sync=False)).reservation)
                waited = time.monotonic() - started
                if res.state is ReservationState.allocated:
                    allocated = res.allocations["main"][0]
                    self._call(self._rpc("AcquirePlace", pb2.AcquirePlaceRequest(placename=allocated)))
                    place = allocated
                    tags = self._look(lambda: dict(self.session.places[place].tags))
                    lease = Lease(self.engine, self.address, place, self.owner, token, tags,
                                  time.monotonic() - started)
                    place = None
                    return lease
                if res.state is not ReservationState.waiting:
                    raise LabError(f"reservation {token} for {_tags(want)} is {res.state.name}")
                if waited >= timeout_s:
                    raise LabTimeout(f"no place with {_tags(want)} became free in {timeout_s:g} s "
                                     f"({self._look(lambda: self._who_holds(want))})")
                if progress:
                    progress(f"waiting for a place with {_tags(want)}: "
                             f"{self._look(lambda: self._who_holds(want))}; "
                             f"{waited:.0f} s of {timeout_s:g} s")
                time.sleep(POLL_S)
        except BaseException:
            if place is not None:  # interrupted between acquiring and handing over: give it back
                self.release(Lease(self.engine, self.address, place, self.owner, token))
            self._cancel(token)  # also on Ctrl-C while waiting: the queue forgets us at once
            raise

    def endpoints(self, lease: Lease) -> dict:
        return self._call(self._endpoints(lease))

    async def _endpoints(self, lease: Lease) -> dict:
        place = self.session.places.get(lease.place)
        for path in (place.acquired_resources if place else []):
            exporter, group, cls, name = path
            if cls != RESOURCE_CLASS:
                continue
            entry = self.session.resources.get(exporter, {}).get(group, {}).get(name)
            if entry is None or not entry.avail:
                raise LabError(f"place {lease.place}: its {RESOURCE_CLASS} resource ({'/'.join(path)}) is "
                               "not available (its exporter gone?)")
            return dict(entry.args)
        raise LabError(f"place {lease.place} holds no {RESOURCE_CLASS} resource (is its exporter running? "
                       f"labgrid-client -p {lease.place} show)")

    def release(self, lease: Lease) -> None:
        pb2 = _pb2()
        try:  # fromuser: only if it is still ours; a place already released is no error
            if self._look(lambda: self._ours(lease)):
                self._call(self._rpc("ReleasePlace", pb2.ReleasePlaceRequest(placename=lease.place,
                                                                             fromuser=lease.owner)))
        except LabError as exc:
            if "does not exist" not in str(exc):
                raise
        finally:
            self._cancel(lease.token)

    def held(self, lease: Lease) -> bool:
        return self._look(lambda: self._ours(lease))

    def _ours(self, lease: Lease) -> bool:
        """The place is acquired by this holder through this reservation: another run of the same
        user on the same host (the same ``host/user``) holds it through a reservation of its own."""
        place = self.session.places.get(lease.place)
        if place is None or place.acquired != lease.owner:
            return False
        return not lease.token or place.reservation == lease.token

    def close(self) -> None:
        async def stop() -> None:
            await self.session.stop()
            await self.session.close()
        try:
            self._call(stop(), 10.0)
        except Exception:  # noqa: BLE001 - closing a connection that already broke
            pass
        self._stop_loop()

    # --- serving a place (the exporter's side) ---------------------------------------------------
    def ensure_place(self, name: str, match: str, tags: dict[str, str], comment: str = "") -> None:
        """Create the place if it is missing, with this match, these tags and this comment (as
        ``labgrid-client -p NAME create``, ``add-match``, ``set-tags``, ``set-comment``)."""
        from labgrid.remote.common import ResourceMatch

        pb2 = _pb2()
        if not self._look(lambda: name in self.session.places):
            self._call(self._rpc("AddPlace", pb2.AddPlaceRequest(name=name)))
        if not self._look(lambda: ResourceMatch(*match.split("/")) in self.session.places[name].matches):
            self._call(self._rpc("AddPlaceMatch", pb2.AddPlaceMatchRequest(placename=name, pattern=match)))
        old = self._look(lambda: dict(self.session.places[name].tags))
        stale = {k: "" for k in old if k not in tags}  # an empty value deletes a tag
        self._call(self._rpc("SetPlaceTags", pb2.SetPlaceTagsRequest(placename=name, tags={**stale, **tags})))
        if comment:
            self._call(self._rpc("SetPlaceComment", pb2.SetPlaceCommentRequest(placename=name, comment=comment)))

    # --- helpers ---------------------------------------------------------------------------------
    def _refuse_unknown(self, want: dict[str, str]) -> None:
        """A reservation no place could ever match waits forever in labgrid: say so at once."""
        places = self.session.places
        if any(_matches(_tags_of(p), want) for p in places.values()):
            return
        known = "; ".join(f"{n}: {_tags(p.tags) or 'no tags'}" for n, p in sorted(places.items())) or "none"
        raise LabError(f"no place at {self.address} has {_tags(want)} (places: {known})")

    def _who_holds(self, want: dict[str, str]) -> str:
        matching = [p for p in self.session.places.values() if _matches(_tags_of(p), want)]
        busy = [f"{p.name} held by {p.acquired}" if p.acquired else f"{p.name} reserved"
                for p in sorted(matching, key=lambda p: p.name) if p.acquired or p.reservation]
        return f"{len(matching)} matching, " + (", ".join(busy) if busy else "none busy")

    def _cancel(self, token: str) -> None:
        if not token:
            return
        try:
            self._call(self._rpc("CancelReservation", _pb2().CancelReservationRequest(token=token), sync=False))
        except LabError:
            pass  # expired and removed already


class _NotFromLabgridClient(logging.Filter):
    """labgrid's client logs on the root logger what packrig then says itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.endswith(os.path.join("labgrid", "remote", "client.py"))


def _quiet_client_log() -> None:
    """Warnings still reach stderr (as Python's last-resort handler would show them), except the
    labgrid client's own about the coordinator, which :class:`LabError` says."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.addFilter(_NotFromLabgridClient())
        root.addHandler(handler)


def _tags_of(place) -> dict[str, str]:
    """A place's tags as the coordinator's scheduler matches them: its own, and ``name``."""
    return {**place.tags, "name": place.name}


def _matches(tags: dict[str, str], want: dict[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in want.items())


def _tags(tags: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _said(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].removeprefix("Error: ")  # labgrid's client errors say "Error: ..."
