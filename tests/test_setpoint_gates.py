"""Every way to make an instrument source or sink energy is gated before a byte is sent.

The drivers against exact (command, reply) exchanges (``expected_protocol`` fails on any command
not listed): e-load modes beyond the current they imply over the bench's voltage range, outputs
on with a set-point or watchdog read back beyond the limits, watchdogs too long or off with an
output on, short circuits outside the supervisor's step, raw SCPI that sets anything, and
set-points of the wrong type, the last two also as hundreds of generated cases. Each refusal
must be a ``LimitRefused`` (a ``SetpointTypeError`` for a wrong type, which is also a
``TypeError``) naming instrument, quantity and value; never another exception, never a byte of
a setting sent.
"""
from __future__ import annotations

import math
import random

import pytest

from instruments.errors import InstrumentError, LimitRefused, SetpointTypeError
from instruments.espec_sh import EspecSh
from instruments.itech_it8900 import ItechIT8900
from instruments.keysight_daq970a_io import KeysightDaq970AIo
from instruments.keysight_n8900 import KeysightN8900

# the emulated bench's limits, as rig/bench.py passes them
PSU_LIMITS = {"voltage": (0.0, 64.5), "current": (0.0, 80.0), "watchdog": (0.0, 5.0)}
LOAD_LIMITS = {"current": (0.0, 160.0), "voltage": (38.0, 64.5), "watchdog": (0.0, 5.0)}
IO_LIMITS = {"watchdog": (0.0, 5.0)}
OK = ("SYST:ERR?", '+0,"No error"')
PSU_STATE = "VOLT?;:CURR?;:VOLT:PROT?;:OUTP:PROT:WDOG?;:OUTP:PROT:WDOG:DEL?"
LOAD_STATE = ("FUNC?;:FUNC:MODE?;:INP:SHOR?;:CURR?;:RES?;:POW?;:LIST:RANG?;:CURR:PROT:STAT?;:CURR:PROT?;"
              ":INP:PROT:WDOG?;:INP:PROT:WDOG:DEL?")
LOAD_OK = dict(func="CURR", mode="FIX", short="0", curr="0", res="7500", pow="0", rang="160", ocp="1",
               ocp_a="160", wdog="1", delay="5")


def load_state(**changed) -> tuple[str, str]:
    return LOAD_STATE, ";".join({**LOAD_OK, **changed}.values())


def psu_state(volts="55", amps="20", ovp="64.5", wdog="1", delay="5") -> tuple[str, str]:
    return PSU_STATE, ";".join((volts, amps, ovp, wdog, delay))


@pytest.fixture
def make(expected_protocol):
    """``make(kind, pairs, **kw)``: a driver on an exact exchange list."""
    def build(kind, pairs=(), **kw):
        resource = expected_protocol(list(pairs))
        if kind == "psu":
            return KeysightN8900(resource, "psu", PSU_LIMITS, **kw)
        if kind == "eload":
            return ItechIT8900(resource, "eload", LOAD_LIMITS, **kw)
        if kind == "io":
            return KeysightDaq970AIo(resource, "io", kw.pop("limits", IO_LIMITS), **kw)
        return EspecSh(resource, "chamber", {"temperature": (-25.0, 70.0)}, **kw)
    return build


def refused(call, instrument: str, *, cls=LimitRefused):
    """``call()`` raises ``cls`` naming ``instrument``, and its message formats (no crash)."""
    with pytest.raises(cls) as err:
        call()
    assert err.value.instrument == instrument and err.value.quantity
    assert "nothing was sent" in str(err.value)
    return err.value


# --- e-load: every mode by the current it implies over the bench's voltage range -----------------
@pytest.mark.parametrize("call, quantity, why", [
    (lambda e: e.set_mode("CC", 160.01), "current_setpoint [A]", "[0, 160]"),
    (lambda e: e.set_mode("CR", 64.5 / 160 * 0.999), "resistance_setpoint [ohm]", "bench current limit 160 A"),
    (lambda e: e.set_mode("CR", 0.01), "resistance_setpoint [ohm]", "6450 A at 64.5 V"),
    (lambda e: e.set_mode("CP", 160 * 38 * 1.001), "power_setpoint [W]", "at 38 V"),
    (lambda e: e.set_mode("CP", 12000.0), "power_setpoint [W]", "315.8 A"),  # ~235 A at 51 V, as the issue says
    (lambda e: setattr(e, "power_setpoint", 7000.0), "power_setpoint [W]", "184.2 A"),
    (lambda e: setattr(e, "resistance_setpoint", 0.2), "resistance_setpoint [ohm]", "322.5 A"),
    (lambda e: e.pulse([(96.0, 3.0), (160.5, 0.01)]), "list_level [A]", "[0, 160]"),
    (lambda e: e.list_level.__setitem__(1, 200.0), "list_level [A]", "[0, 160]"),
    (lambda e: setattr(e, "list_range", 240.0), "list_range [A]", "[0, 160]"),
    (lambda e: setattr(e, "ocp_level", 161.0), "ocp_level [A]", "[0, 160]"),
    (lambda e: setattr(e, "ocp_enabled", False), "ocp_enabled", "stays on"),
])
def test_every_eload_mode_beyond_the_limits_sends_nothing(make, call, quantity, why):
    load = make("eload")
    err = refused(lambda: call(load), "eload")
    assert err.quantity == quantity and why in str(err)
    assert load.resource.sent == []


def test_the_limits_themselves_pass(make):
    """At the edge, not beyond: 160 A CC, 64.5/160 ohm CR, 160 x 38 W CP."""
    load = make("eload", [("RES 0.403125", None), OK, ("RES?", "0.403125"),
                          ("POW 6080", None), OK, ("POW?", "6080")])
    load.resistance_setpoint = 64.5 / 160
    load.power_setpoint = 160 * 38.0


def test_cr_and_cp_without_the_benchs_voltage_range_are_refused(expected_protocol):
    load = ItechIT8900(expected_protocol([]), "eload", {"current": (0.0, 160.0)})
    for mode, value in (("CR", 100.0), ("CP", 1.0)):
        assert "no hard limit configured" in str(refused(lambda: load.set_mode(mode, value), "eload"))


@pytest.mark.parametrize("ocp_reply, why", [("0;160", "must be on"), ("1;200", "bench current limit 160 A")])
def test_cv_only_with_the_loads_ocp_at_the_current_limit(make, ocp_reply, why):
    """CV sinks whatever pulls the voltage down: it is bounded by the load's OCP, read back first."""
    load = make("eload", [("CURR:PROT:STAT?;:CURR:PROT?", ocp_reply), ("CURR:PROT:STAT?;:CURR:PROT?", ocp_reply)])
    assert why in str(refused(lambda: load.set_mode("CV", 45.0), "eload"))
    assert why in str(refused(lambda: setattr(load, "function", "VOLT"), "eload"))
    assert load.resource.sent == ["CURR:PROT:STAT?;:CURR:PROT?"] * 2  # read, nothing set


@pytest.mark.parametrize("changed, quantity", [
    ({"func": "POW", "pow": "12000"}, "power_setpoint [W] (read back)"),   # left by the front panel
    ({"func": "RES", "res": "0.1"}, "resistance_setpoint [ohm] (read back)"),
    ({"func": "CURR", "curr": "200"}, "current_setpoint [A] (read back)"),
    ({"mode": "LIST", "rang": "240"}, "list_range [A] (read back)"),
    ({"ocp": "0"}, "ocp_enabled (read back)"),
    ({"ocp_a": "240"}, "ocp_level [A] (read back)"),
    ({"short": "1"}, "short_enabled (read back)"),
    ({"wdog": "0"}, "watchdog_enabled (read back)"),
    ({"delay": "60"}, "watchdog_delay [s] (read back)"),
])
def test_input_on_only_with_the_state_read_back_within_the_limits(make, changed, quantity):
    load = make("eload", [load_state(**changed)])
    assert refused(load.input_on, "eload").quantity == quantity
    assert load.resource.sent == [LOAD_STATE]  # read, never INP ON


def test_a_pulse_beyond_the_limits_sends_nothing(make):
    load = make("eload")
    for steps in ([(96.0, 3.0)] * 85, [(96.0, 3600.5)], [(-1.0, 1.0)], [(96.0, 0.0)]):
        refused(lambda: load.pulse(steps), "eload")
    with pytest.raises(TypeError):
        load.pulse([96.0, 3.0])  # not (current, dwell) pairs
    assert load.resource.sent == []


# --- short circuit: only inside the supervisor's step (the driver's permit) ------------------------
def test_eload_short_only_with_the_permit(make):
    permit = [False]
    load = make("eload", [("INP:SHOR ON", None), OK, ("INP:SHOR?", "1")], short_permit=lambda: permit[0])
    for attempt in (lambda: load.short(True), lambda: setattr(load, "short_enabled", True)):
        assert "short-circuit step" in str(refused(attempt, "eload"))
    assert load.resource.sent == []
    permit[0] = True
    load.short(True)


def test_short_circuit_relay_only_with_the_permit(make):
    permit = [False]
    io = make("io", [("SYST:COMM:WDOG?", "2"), ("ROUT:CLOS (@104)", None), OK, ("ROUT:CLOS? (@104)", "1")],
              permits={4: lambda: permit[0]})
    err = refused(lambda: io.set_output(4, True), "io")
    assert (err.quantity, err.value) == ("relay 4 closed", True) and "short-circuit step" in str(err)
    assert io.resource.sent == []
    permit[0] = True
    io.set_output(4, True)


# --- watchdogs: never longer than the bench's value, never off with an output on ------------------
def test_psu_watchdog_longer_or_off_with_the_output_on_is_refused(make):
    psu = make("psu", [("OUTP?", "1"), ("OUTP?", "1")])
    refused(lambda: psu.protect(64.5, False, 6.0), "psu")
    refused(lambda: setattr(psu, "watchdog_delay", 3600.0), "psu")
    assert "not while the output is on" in str(refused(lambda: psu.protect(64.5, False, None), "psu"))
    refused(lambda: setattr(psu, "watchdog_enabled", False), "psu")
    assert psu.resource.sent == ["OUTP?", "OUTP?"]  # read, nothing set


def test_eload_watchdog_longer_or_off_with_the_input_on_is_refused(make):
    load = make("eload", [("INP?;:INP:SHOR?", "1;0"), ("INP?;:INP:SHOR?", "0;1")])
    refused(lambda: load.protect(6.0), "eload")
    refused(lambda: load.protect(None), "eload")
    refused(lambda: setattr(load, "watchdog_enabled", False), "eload")
    assert load.resource.sent == ["INP?;:INP:SHOR?"] * 2


def test_io_watchdog_longer_or_off_with_a_relay_closed_is_refused(make):
    io = make("io", [("ROUT:CLOS? (@101:120)", "0,1" + ",0" * 18)])
    refused(lambda: io.protect(6.0), "io")
    refused(lambda: io.protect(0), "io")
    assert "relays [102] are closed" in str(refused(lambda: io.protect(None), "io"))
    assert io.resource.sent == ["ROUT:CLOS? (@101:120)"]


@pytest.mark.parametrize("armed, why", [("0", "must be on"), ("10", "bench hard limit [0, 5]")])
def test_io_relay_closes_only_with_the_watchdog_armed(make, armed, why):
    io = make("io", [("SYST:COMM:WDOG?", armed)])
    assert why in str(refused(lambda: io.set_output(2, True), "io"))
    assert io.resource.sent == ["SYST:COMM:WDOG?"]


# --- PSU output on: set-points and watchdog read back within the limits -----------------------------
@pytest.mark.parametrize("state, quantity", [
    (psu_state(volts="70"), "voltage_setpoint [V] (read back)"),
    (psu_state(amps="120"), "current_setpoint [A] (read back)"),
    (psu_state(ovp="88"), "ovp_level [V] (read back)"),  # the *RST OVP: never programmed
    (psu_state(wdog="0"), "watchdog_enabled (read back)"),
    (psu_state(delay="60"), "watchdog_delay [s] (read back)"),
])
def test_psu_output_on_only_with_the_state_within_the_limits(make, state, quantity):
    for turn_on in ("output_on", "clear_protection"):  # clearing returns the output to its programmed state
        psu = make("psu", [state])
        assert refused(getattr(psu, turn_on), "psu").quantity == quantity
        assert psu.resource.sent == [PSU_STATE]


# --- raw SCPI: only queries and commands that set nothing -------------------------------------------
@pytest.mark.parametrize("line", [
    "VOLT 100", "OUTP ON", ":SOUR:VOLT 5", "INP ON", "INP:SHOR ON", "CURR:PROT:STAT OFF", "*RST",
    "ROUT:CLOS (@104)", "SYST:COMM:WDOG 0", "OUTP:PROT:WDOG OFF", "MEAS:VOLT?;:VOLT 100", "*CLS;OUTP ON",
    "", " ", ";", "volt 100", "*SAV 1", "MEAS:VOLT?\nOUTP ON", "*OPC?\rINP ON", "*CLS\x00OUTP ON",
])
def test_raw_writes_that_set_anything_are_refused(make, line):
    for kind in ("psu", "eload", "io"):
        inst = make(kind)
        err = refused(lambda: inst.write(line), kind)
        assert err.quantity == "raw command" and err.value == line
        if line.strip(" ;"):
            refused(lambda: inst.query(line), kind)
        assert inst.resource.sent == []


def test_raw_queries_and_commands_that_set_nothing_pass(make):
    psu = make("psu", [("*CLS", None), ("*OPC?", "1"), ("MEAS:VOLT?;:MEAS:CURR?", "52;1"), ("*IDN?", "x")])
    psu.write("*CLS")
    assert psu.query("*OPC?") == "1"
    assert psu.query_numbers("MEAS:VOLT?;:MEAS:CURR?", 2) == (52.0, 1.0)
    assert psu.query("*IDN?") == "x"
    chamber = make("chamber", [("TEMP?", "25.0,25.0,150,-40")])
    assert chamber.query("TEMP?").startswith("25.0")
    for line in ("TEMP, S90.0", "MODE,CONSTANT", "RUN PRGM, TEMP25.0 TIME1:0 GOTEMP90.0", "*CLS"):
        refused(lambda: chamber.write(line), "chamber")
    assert chamber.resource.sent == ["TEMP?"]


def test_raw_write_of_a_non_str_is_refused(make):
    psu = make("psu")
    for line in (b"OUTP ON", None, 1, ["OUTP ON"]):
        refused(lambda: psu.write(line), "psu", cls=SetpointTypeError)
    assert psu.resource.sent == []


# --- wrong types: refused cleanly, naming instrument, quantity and value ----------------------------
NOT_NUMBERS = ["55", "", "5 V", None, True, False, [1.0], (1.0,), {"v": 1}, b"55", 1 + 2j, object(), {1.0}]
NOT_FINITE = [math.nan, math.inf, -math.inf, float("nan")]

NUMERIC = [  # (kind, how to set, quantity); protect(None) means "watchdog off", tested above
    ("psu", lambda i, v: setattr(i, "voltage_setpoint", v), "voltage_setpoint [V]"),
    ("psu", lambda i, v: setattr(i, "current_setpoint", v), "current_setpoint [A]"),
    ("psu", lambda i, v: i.apply(v, 10.0), "voltage_setpoint [V]"),
    ("psu", lambda i, v: i.apply(50.0, v), "current_setpoint [A]"),
    ("psu", lambda i, v: i.protect(v, False, 1.0), "ovp_level [V]"),
    ("psu", lambda i, v: i.protect(60.0, False, v if v is not None else "None"), "watchdog_delay [s]"),
    ("eload", lambda i, v: i.set_mode("CC", v), "current_setpoint [A]"),
    ("eload", lambda i, v: i.set_mode("CV", v), "voltage_setpoint [V]"),
    ("eload", lambda i, v: i.set_mode("CR", v), "resistance_setpoint [ohm]"),
    ("eload", lambda i, v: i.set_mode("CP", v), "power_setpoint [W]"),
    ("eload", lambda i, v: i.pulse([(v, 1.0)]), "list_level [A]"),
    ("eload", lambda i, v: i.pulse([(10.0, v)]), "list_width [s]"),
    ("eload", lambda i, v: i.list_level.__setitem__(1, v), "list_level [A]"),
    ("eload", lambda i, v: setattr(i, "list_count", v), "list_count"),
    ("eload", lambda i, v: i.protect(v if v is not None else "None"), "watchdog_delay [s]"),
    ("io", lambda i, v: setattr(i, "watchdog_s", v), "watchdog_s [s]"),
    ("chamber", lambda i, v: i.run(v), "temperature_setpoint [C]"),
    ("chamber", lambda i, v: i.run(25.0, v if v is not None else "None"), "ramp [C/min]"),  # None: no ramp
]
SWITCHES = [
    ("psu", lambda i, v: setattr(i, "output_enabled", v), "output_enabled"),
    ("psu", lambda i, v: i.protect(60.0, v, 1.0), "ocp_enabled"),
    ("eload", lambda i, v: setattr(i, "input_enabled", v), "input_enabled"),
    ("eload", lambda i, v: i.short(v), "short_enabled"),
    ("io", lambda i, v: i.set_output(2, v), "relay 2 closed"),
]


@pytest.mark.parametrize("kind, setter, quantity", NUMERIC, ids=[f"{k}-{q}-{n}" for n, (k, _, q) in enumerate(NUMERIC)])
@pytest.mark.parametrize("value", NOT_NUMBERS + NOT_FINITE,  # ids stable across xdist workers (no addresses)
                         ids=[f"{n}-{type(v).__name__}" for n, v in enumerate(NOT_NUMBERS + NOT_FINITE)])
def test_a_numeric_setpoint_of_the_wrong_kind_is_refused_cleanly(make, kind, setter, quantity, value):
    inst = make(kind)
    err = refused(lambda: setter(inst, value), kind)
    assert err.quantity == quantity
    assert isinstance(err, SetpointTypeError) or isinstance(value, float)  # NaN and inf: beyond a limit
    assert isinstance(err, TypeError) or not math.isfinite(err.value)
    assert inst.resource.sent == []


@pytest.mark.parametrize("kind, setter, quantity", SWITCHES, ids=[q for _, _, q in SWITCHES])
@pytest.mark.parametrize("value", ["yes", "ON", 1, 0, 1.0, None, [True], math.nan], ids=repr)
def test_a_switch_takes_a_bool_only(make, kind, setter, quantity, value):
    inst = make(kind)
    err = refused(lambda: setter(inst, value), kind, cls=SetpointTypeError)
    assert err.quantity == quantity and isinstance(err, TypeError)
    assert inst.resource.sent == []


def test_io_output_yes_is_refused_and_a_closed_relay_is_read_back(make):
    """The issue's case: set_output(2, 'yes') closed the relay and reported it open."""
    io = make("io", [("SYST:COMM:WDOG?", "2"), ("ROUT:CLOS (@102)", None), OK, ("ROUT:CLOS? (@102)", "0"),
                     ("ROUT:OPEN (@103)", None), OK, ("ROUT:CLOS? (@103)", "1")])
    refused(lambda: io.set_output(2, "yes"), "io", cls=SetpointTypeError)
    refused(lambda: io.set_output(True, True), "io", cls=SetpointTypeError)
    with pytest.raises(InstrumentError, match="relay 102 reads back open"):
        io.set_output(2, True)
    with pytest.raises(InstrumentError, match="relay 103 reads back closed"):
        io.set_output(3, False)


def test_a_keyword_of_the_wrong_type(make):
    load = make("eload")
    refused(lambda: setattr(load, "function", 1), "eload", cls=SetpointTypeError)
    refused(lambda: setattr(load, "function_mode", None), "eload", cls=SetpointTypeError)
    with pytest.raises(ValueError, match="not one of"):
        load.set_mode(["CC"], 1.0)
    assert load.resource.sent == []


# --- hundreds of generated bad set-points -------------------------------------------------------------
def bad_values(rng: random.Random, lo: float, hi: float, n: int) -> list:
    """``n`` values no gate may pass: beyond either end by a little or a lot, non-finite, or not
    numbers at all."""
    makers = [
        lambda: hi + rng.choice([1e-6, 1e-3, 0.01, 1.0]) * (1 + rng.random()) * max(1.0, abs(hi)),
        lambda: hi * rng.uniform(1.001, 1e6) + 1e-3,
        lambda: lo - rng.choice([1e-6, 1e-3, 1.0, 1e3]) * (1 + rng.random()),
        lambda: rng.choice([math.nan, math.inf, -math.inf]),
        lambda: rng.choice([str(rng.uniform(lo, hi)), None, True, False, [hi / 2], b"1", {}, 1j]),
        lambda: int(hi) + rng.randint(1, 10 ** rng.randint(1, 30)),
    ]
    return [rng.choice(makers)() for _ in range(n)]


GENERATED = [  # (kind, how to set, lowest and highest value allowed on the bench)
    ("psu", lambda i, v: i.apply(v, 10.0), 0.0, 64.5),
    ("psu", lambda i, v: i.apply(50.0, v), 0.0, 80.0),
    ("psu", lambda i, v: i.protect(v, False, 1.0), 0.0, 64.5),
    ("psu", lambda i, v: i.protect(60.0, False, v if v is not None else "None"), 1.0, 5.0),
    ("eload", lambda i, v: i.set_mode("CC", v), 0.0, 160.0),
    ("eload", lambda i, v: i.set_mode("CP", v), 0.0, 160.0 * 38.0),
    ("eload", lambda i, v: i.pulse([(10.0, 1.0), (v, 1.0)]), 0.0, 160.0),
    ("eload", lambda i, v: i.protect(v if v is not None else "None"), 1.0, 5.0),
    ("chamber", lambda i, v: i.run(v), -25.0, 70.0),
]


@pytest.mark.parametrize("kind, setter, lo, hi", GENERATED, ids=[f"{g[0]}-{n}" for n, g in enumerate(GENERATED)])
def test_hundreds_of_generated_bad_setpoints_are_all_refused_cleanly(make, kind, setter, lo, hi):
    rng = random.Random(f"issue12-{kind}-{lo}-{hi}")
    values = bad_values(rng, lo, hi, 60)
    inst = make(kind)
    for value in values:
        with pytest.raises(LimitRefused) as err:  # SetpointTypeError is one too
            setter(inst, value)
        assert err.value.instrument == kind and "nothing was sent" in str(err.value), value
    assert inst.resource.sent == []
    assert len(values) * len(GENERATED) >= 500  # in all, over this parametrization


def test_generated_cr_values_below_the_implied_minimum_are_refused(make):
    """CR: any R below 64.5 V / 160 A = 0.403 ohm draws too much at the bench's highest voltage."""
    rng, load = random.Random(12), make("eload")
    for _ in range(200):
        r = rng.uniform(0.01, 64.5 / 160 * 0.9999)
        assert "bench current limit 160 A" in str(refused(lambda: load.set_mode("CR", r), "eload"))
    assert load.resource.sent == []


def test_a_load_the_bench_gives_no_watchdog_gets_its_ocp_and_no_watchdog_command(expected_protocol):
    """A real IT8900 has no watchdog (it answers -113): with none on the bench, ask it for none."""
    resource = expected_protocol([("CURR:PROT 160", None), OK, ("CURR:PROT?", "160"),
                                  ("CURR:PROT:STAT ON", None), OK, ("CURR:PROT:STAT?", "1")])
    load = ItechIT8900(resource, "eload", {"current": (0.0, 160.0), "voltage": (38.0, 64.5)})
    load.protect(None)
    assert "no hard limit configured" in str(refused(lambda: load.protect(1.0), "eload"))
