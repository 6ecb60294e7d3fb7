"""A reply that comes after its query gave up is not taken for the next query's.

On a loaded bench an instrument can answer later than the resource's timeout. The reply then
sits in the socket, and without a clear the next query reads it: the scanner's cell-tap scan
got the thermocouples' four readings (a safety trip, "4 readings for 16 channels", seen on the
emulated bench under a load of 6 on 2 cores), and a PSU's ``MEAS:CURR?`` would get the volts of
a ``MEAS:VOLT?`` that timed out, with nothing to tell them apart. Real transport here: pyvisa-py
over TCP to a small server that answers one query late.
"""
from __future__ import annotations

import socket
import threading
import time

import pyvisa
import pytest

from instruments.errors import InstrumentError
from instruments.keysight_daq970a import KeysightDaq970A
from instruments.scpi import ScpiInstrument

TIMEOUT_MS = 200
LATE_S = 0.4   # the late answer comes this long after its query: twice the timeout
COMMON = {"*OPC?": "1", "SYST:ERR?": '+0,"No error"'}  # IEEE 488.2 / SCPI-99, as any instrument


def _serve(replies: dict[str, str], late: str):
    """A line server on 127.0.0.1 answering ``replies`` and :data:`COMMON`; the query ``late`` is
    answered LATE_S late, once. Returns (port, stop)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5.0)
    done = threading.Event()

    def run():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(0.1)
        buffer, answered_late = b"", False
        with conn:
            while not done.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    command = line.decode().strip()
                    if command == late and not answered_late:
                        answered_late = True
                        time.sleep(LATE_S)
                    reply = {**COMMON, **replies}.get(command, '-113,"Undefined header"')
                    conn.sendall((reply + "\n").encode())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop():
        done.set()
        listener.close()
        thread.join(timeout=2.0)

    return listener.getsockname()[1], stop


@pytest.fixture
def connect():
    stops, resources = [], []

    def make(replies: dict[str, str], late: str):
        port, stop = _serve(replies, late)
        stops.append(stop)
        resource = pyvisa.ResourceManager("@py").open_resource(
            f"TCPIP0::127.0.0.1::{port}::SOCKET", read_termination="\n", write_termination="\n",
            timeout=TIMEOUT_MS)
        resources.append(resource)
        return resource

    yield make
    for resource in resources:
        resource.close()
    for stop in stops:
        stop()


def test_a_late_volts_reply_is_not_read_as_the_current(connect):
    psu = ScpiInstrument(connect({"MEAS:VOLT?": "51.20", "MEAS:CURR?": "3.50"}, late="MEAS:VOLT?"), "psu")
    with pytest.raises(InstrumentError, match="no answer"):
        psu.query("MEAS:VOLT?")
    time.sleep(LATE_S)  # the volts arrive now, after the query gave up
    assert psu.query("MEAS:CURR?") == "3.50"
    assert psu.query("MEAS:VOLT?") == "51.20"  # and the exchange stays in step


def test_a_late_temperature_scan_is_not_read_as_the_cell_taps(connect):
    taps = ",".join(["+3.30000000E+00"] * 16)
    temps = ",".join(["+2.50000000E+01"] * 4)
    scanner = KeysightDaq970A(connect({"MEAS:VOLT:DC? 10,DEF,(@101:116)": taps,
                                       "MEAS:TEMP? TC,K,(@201:204)": temps},
                                      late="MEAS:TEMP? TC,K,(@201:204)"), "scanner")
    scanner._celsius_set.update({201, 202, 203, 204})  # UNIT:TEMP C was sent before
    with pytest.raises(InstrumentError, match="no answer"):
        scanner.temperatures([201, 202, 203, 204])
    time.sleep(LATE_S)
    assert scanner.voltages(list(range(101, 117))) == [3.3] * 16
    assert scanner.temperatures([201, 202, 203, 204]) == [25.0] * 4
