"""One exception tree for the whole rig, and the emulator beside it.

Every error the rig or the emulator raises on purpose is a :class:`RigError`; each leaf is
drawn here, with the module it lives in when that is not this one::

    RigError                 (instruments.errors: the root sits in the lowest layer)
     +-- ConfigError         a bench / pack-spec / firmware-profile file is wrong (file, field, allowed)
     +-- InstrumentError     an instrument answered with an error or not at all (instrument, command, reply)
     +-- LimitRefused        a set-point beyond the bench's hard limit; nothing was sent
     |    +-- SetpointTypeError   a set-point of the wrong type (also a TypeError)     instruments.errors
     +-- SafetyTrip          the supervisor saw an excursion and put the bench in its safe state
     +-- WaitTimeout         a wait ran out of time (what was awaited, the last value seen)
     +-- ClockMisuse         a periodic task slept on the virtual clock (also a RuntimeError)
     +-- RequirementFailed   measurements outside their requirement (also an AssertionError)  rig.measure
     +-- CanCheckFailed      the pack's CAN traffic failed a check (also an AssertionError)    rig.pcs
     +-- ProtocolError       bytes on a wire that do not follow the protocol
     |    +-- FrameError     a malformed RS485 frame; carries the protocol's RTN code
     +-- EmulatorError       the emulated bench, or the rig's link to it, failed
     |    +-- EmulatorDied   the emulator process the rig started died (exit code or signal, safe state)
     |    +-- EmulatorRefused  the emulator refused a request (control port, fault insertion)
     |    +-- EmulatorNotRunning  a port of the emulator used before start or after stop,
     |    |                  or started twice (also a RuntimeError)
     |    +-- SyncTimeout    frames one side said it sent did not arrive in time (also a TimeoutError)
     +-- RunFolderRefused    a run folder that holds a run or cannot be written               rig.run_folder
     +-- RunFolderError     a run folder that cannot be read (compare, merge, trend)           rig.report.runs
     +-- LabError            a lab place could not be reached or used                          rig.lab.backend
          +-- LabTimeout     a lab place did not answer in time

Leaves that are also an ``AssertionError`` are the pack failing (pytest reports a failure, not a
crash); those that are also a builtin (``TimeoutError``, ``RuntimeError``, ``TypeError``) are
caught by code that expects that builtin. ``ValueError`` stays for programming mistakes (a wrong
argument in code), as in python-can. Not in the tree: the emulated instruments' own
``ScpiError`` and the chamber's ``Refused``, which never leave the emulator: they become the
instrument's reply on the wire (an SCPI error queue entry, an ``NG`` line).
"""
from __future__ import annotations

import signal

from instruments.errors import InstrumentError, LimitRefused, RigError

__all__ = ["RigError", "ConfigError", "InstrumentError", "LimitRefused", "SafetyTrip", "WaitTimeout",
           "ClockMisuse", "EmulatorError", "EmulatorDied", "EmulatorRefused", "EmulatorNotRunning",
           "SyncTimeout", "ProtocolError", "FrameError"]


class ConfigError(RigError):
    """A user-written file has a bad value, an unknown key or bad syntax.

    :param file: path of the file as the user named it.
    :param field: dotted path of the field (``limits.psu.max_voltage_v``), or ``""`` for the file.
    :param problem: what is wrong, including the allowed range or choices.
    """

    #: the longest message: a runaway value or path in a file must not flood the terminal
    MAX_CHARS = 1000

    def __init__(self, file: str, field: str, problem: str):
        self.file, self.field, self.problem = str(file), _one_line(field), _one_line(problem)
        where = _one_line(self.file) + (f": {self.field}" if self.field else "")
        text = f"{where}: {self.problem}"
        if len(text) > self.MAX_CHARS:
            text = text[:self.MAX_CHARS - 3] + "..."
        super().__init__(text)


def _one_line(text: object) -> str:
    """``text`` as one printable line: a key or value from a file may hold newlines or control
    characters, which are shown escaped (as repr shows them) instead of breaking the line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SafetyTrip(RigError):
    """The safety supervisor saw an excursion and made the bench safe."""

    def __init__(self, condition: str, reading: float, limit: str, at: float):
        self.condition, self.reading, self.limit, self.at = condition, reading, limit, at
        super().__init__(
            f"SAFETY TRIP at t={at:.3f} s: {condition} = {reading:g} beyond {limit}; "
            "bench put in its safe state (outputs off, breaker open, chamber standby)")


class WaitTimeout(RigError):
    """A wait did not see its condition come true in time."""

    def __init__(self, what: str, timeout: float, last: object, at: float):
        self.what, self.timeout, self.last, self.at = what, timeout, last, at
        super().__init__(
            f"timed out after {timeout:g} s waiting for {what} (last value seen: {last!r}, t={at:.3f} s)")


class ClockMisuse(RigError, RuntimeError):
    """The clock used in a way that cannot work: a periodic task that sleeps on the virtual
    clock would re-enter its schedule (a programming mistake)."""


class EmulatorError(RigError):
    """The emulated bench, or the rig's link to it, failed (see the leaves below)."""


class EmulatorRefused(EmulatorError):
    """The emulator refused a request: a control-port request it cannot do (its error reply),
    a fault that cannot be inserted in the pack's present state."""


class EmulatorNotRunning(EmulatorError, RuntimeError):
    """A port of the emulator (RS485 line, console port, control port) used before it was
    started or after it stopped, or started twice."""


class SyncTimeout(EmulatorError, TimeoutError):
    """Frames one side of the emulator link said it sent did not arrive in time (the rig's CAN
    frames at the emulator before an advance, the emulator's at the rig after it), or the
    emulator neither replied nor sent a frame for that long."""


class EmulatorDied(EmulatorError):
    """The emulator process the rig started died under it: the real cause behind the timeout or
    transport error an instrument, the CAN port or the control port would otherwise report.

    :param pid: the emulator's process id.
    :param returncode: as :attr:`subprocess.Popen.returncode` (negative: killed by that signal).
    :param safe_state: what became of its outputs, as the emulator reported it or why it could not.
    """

    def __init__(self, pid: int, returncode: int, safe_state: str):
        self.pid, self.returncode, self.safe_state = pid, returncode, safe_state
        if returncode < 0:
            try:
                how = f"signal {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"signal {-returncode}"
        else:
            how = f"exit code {returncode}"
        super().__init__(f"emulator process died ({how}, pid {pid}); safe state: {safe_state}")


class ProtocolError(RigError):
    """Bytes on a wire that break the protocol."""


class FrameError(ProtocolError):
    """A malformed RS485 frame.

    :param rtn: the RS485 return code that names the fault (PACK_SPEC.md 7: 0x01 VER, 0x02 CHKSUM,
        0x03 LCHKSUM, 0x04 CID2, 0x05 format, 0x06 data, 0x90 ADR).
    """

    def __init__(self, rtn: int, problem: str):
        self.rtn = rtn
        super().__init__(f"RS485 frame error (RTN 0x{rtn:02X}): {problem}")
