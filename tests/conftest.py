"""Shared fixtures of the framework's own tests."""
from __future__ import annotations

import pytest

from rig.errors import RigError


class Tripped(RigError):
    """What a tripped bench's interlock raises in the driver tests (a real bench raises
    :class:`~rig.errors.SafetyTrip`; these tests need only a refusal they can name)."""

    @classmethod
    def interlock(cls) -> None:
        """A tripped bench's interlock: every command not making the bench safe is refused."""
        raise cls("supervisor tripped")


@pytest.fixture
def tripped() -> type[Tripped]:
    """``interlock=tripped.interlock`` gives a driver a tripped bench; ``pytest.raises(tripped)``
    expects its refusal."""
    return Tripped


class ReplayResource:
    """A stand-in for a pyvisa resource that expects exact (command, reply) pairs, in order.

    Like PyMeasure's ``expected_protocol``: a write expects ``(command, None)``, a query
    ``(command, reply)``; an unexpected command fails the test, and so does a pair left unused.
    """

    def __init__(self, pairs):
        self.pairs = list(pairs)
        self.sent: list[str] = []
        self.closed = False

    def _next(self, command: str):
        assert self.pairs, f"unexpected command {command!r}: no more exchanges expected"
        expected, reply = self.pairs.pop(0)
        assert command == expected, f"sent {command!r}, expected {expected!r}"
        self.sent.append(command)
        return reply

    def write(self, command: str) -> None:
        reply = self._next(command)
        assert reply is None, f"{command!r} was written but the exchange expects a reply {reply!r}"

    def query(self, command: str) -> str:
        reply = self._next(command)
        assert reply is not None, f"{command!r} was queried but the exchange expects a write"
        return reply

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def expected_protocol():
    """``expected_protocol([(cmd, reply), ...])`` gives a resource; unused pairs fail the test at teardown."""
    made: list[ReplayResource] = []

    def make(pairs) -> ReplayResource:
        resource = ReplayResource(pairs)
        made.append(resource)
        return resource

    yield make
    for resource in made:
        assert not resource.pairs, f"exchanges never used: {resource.pairs}"


@pytest.fixture
def serve():
    """``serve(device) -> (server, connect)``: an emulated device behind a real SCPI server, and a
    function opening pyvisa-py sessions to it (``connect(timeout_ms)``); all closed at teardown."""
    import pyvisa

    from emulator.instruments.scpi_server import ScpiServer

    manager = pyvisa.ResourceManager("@py")
    servers, opened = [], []

    def start(device):
        server = ScpiServer(device).start()
        servers.append(server)

        def connect(timeout: int = 2000):
            res = manager.open_resource(server.resource, read_termination="\n", write_termination="\n",
                                        timeout=timeout)
            opened.append(res)
            return res

        return server, connect

    yield start
    for res in opened:
        try:
            res.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass
    for server in servers:
        server.stop()
