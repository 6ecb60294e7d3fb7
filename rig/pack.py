"""The pack under test, in the manual's own terms, through the rig's instruments.

What a battery test engineer does to a pack (press POWER, wake it, apply the activation
voltage, charge, discharge, rest, short it) and what the rig reads back with its *own*
instruments (terminal voltage on the DMM, current on the PSU/e-load read-backs, group
voltages on the cell taps, lights on the light sensors). What the BMS *says* is read through
the PCS stand-in (:attr:`Pack.pcs`); test cases compare the two.

Every wait has a timeout from the pack spec and says what it waited for. Every stimulus is
noted on the test's measurements (:func:`rig.measure.note_stimulus`): a failure message names
the stimulus the rig applied last, and the test's plot marks it.
"""
from __future__ import annotations

from rig.bench import Bench
from rig.errors import RigError
from rig.files.pack_spec import PackSpec
from rig.light_reader import LightReader
from rig.measure import note_mark, note_stimulus
from rig.pcs import PcsStandIn


class Pack:
    """One pack on the bench (``number`` 1, or 2 on a parallel bench)."""

    def __init__(self, bench: Bench, spec: PackSpec, pcs: PcsStandIn, lights: LightReader, number: int = 1):
        self.bench, self.spec, self.pcs, self.lights, self.number = bench, spec, pcs, lights, number
        self.clock = bench.clock
        self._prefix = "" if number == 1 else "pack2_"
        self._who = "" if number == 1 else f"pack {number}: "

    def _stimulus(self, text: str) -> None:
        note_stimulus(self.bench, self._who + text)

    # --- what the engineer does ---------------------------------------------------------------
    def press_power(self, seconds: float) -> None:
        """Hold the POWER button for ``seconds`` (manual 6.2, 6.3)."""
        self._stimulus(f"POWER held {seconds:g} s")
        self.bench.output(self._prefix + "power_button", True)
        try:
            self.clock.sleep(seconds)
        finally:
            self.bench.output(self._prefix + "power_button", False)

    def wake(self, active: bool = True) -> None:
        """Drive the PCS wake signal (WAKE+/WAKE-)."""
        self._stimulus("WAKE driven" if active else "WAKE released")
        self.bench.output(self._prefix + "wake", active)

    def close_breaker(self) -> None:
        self.bench.output("breaker", True)
        note_mark(self.bench, "breaker closed")

    def open_breaker(self) -> None:
        self.bench.output("breaker", False)
        self._stimulus("breaker opened")

    def power_on(self) -> float:
        """Breaker closed, POWER held for the spec's time; returns the terminal voltage once the
        pack has connected: the rig's DMM sees it and the pack reports relay 1 and relay 2 closed
        (the DMM alone would already see it through the pre-charge resistor)."""
        self.close_breaker()
        self.press_power(self.spec.power_on.button_hold_s)
        volts = self.wait_terminals_live()
        self.wait_relays_closed()
        return volts

    def wait_relays_closed(self) -> None:
        """Wait until the pack reports its main relays closed (pre-charge over)."""
        address = 2 if self.number == 1 else 3
        for relay in ("Relay2Closed", "Relay1Closed"):
            self.pcs.wait_until(relay, 1, within=self.spec.power_on.relays_closed_within_s,
                                frame="DetailStatus", pack_address=address,
                                what="closed (pre-charge over, manual 6.2)")

    def power_off(self) -> None:
        """POWER held for the spec's time; waits for 0 V at the terminals."""
        self.press_power(self.spec.power_off.button_hold_s)
        self.wait_terminals_dead()

    def apply_voltage(self, volts: float, current_limit_a: float = 1.0) -> None:
        """The PSU on P+/P- at ``volts`` (activation, manual 2.2), breaker closed."""
        self.close_breaker()
        self.bench.psu.apply(volts, current_limit_a)
        self.bench.psu.output_on()
        self._stimulus(f"PSU at {volts:g} V ({current_limit_a:g} A limit) on P+/P-")

    def charge(self, current_a: float, voltage_v: float | None = None) -> None:
        """Charge at ``current_a`` (CC) up to ``voltage_v`` (CV; default: the CAN charge voltage limit)."""
        self.bench.eload.input_off()
        self.close_breaker()
        volts = voltage_v if voltage_v is not None else self.spec.can.charge_voltage_limit_v
        self.bench.psu.apply(volts, current_a)
        self.bench.psu.output_on()
        self._stimulus(f"charge at {current_a:g} A up to {volts:g} V (PSU)")

    def discharge(self, current_a: float) -> None:
        """Discharge at ``current_a`` (e-load CC)."""
        self.bench.psu.output_off()
        self.close_breaker()
        self.bench.eload.set_mode("CC", current_a)
        self.bench.eload.input_on()
        self._stimulus(f"discharge at {current_a:g} A (e-load)")

    def pulse(self, current_a: float, seconds: float) -> None:
        """One discharge pulse (e-load list mode), e.g. 96 A for 3 s."""
        self.bench.psu.output_off()
        self.close_breaker()
        # the load holds a list's last step: end it at 0 A
        self.bench.eload.pulse([(current_a, seconds), (0.0, 0.1)])
        self._stimulus(f"discharge pulse of {current_a:g} A for {seconds:g} s (e-load)")

    def short_circuit(self, seconds: float) -> None:
        """Short the terminals for ``seconds`` through the bench's short-circuit contactor, inside
        the supervisor's short-circuit window (the bench's limits refuse a longer one)."""
        self._stimulus(f"terminals shorted {seconds * 1000:g} ms (short-circuit contactor)")
        with self.bench.supervisor.short_circuit_step():
            self.bench.output("short_circuit", True)
            try:
                self.clock.sleep(seconds)
            finally:
                self.bench.output("short_circuit", False)

    def stop(self) -> None:
        """No current: PSU and e-load off (the breaker stays closed)."""
        self.bench.psu.output_off()
        self.bench.eload.input_off()
        self._stimulus("current stopped (PSU and e-load off)")

    def rest(self, seconds: float) -> None:
        """No current for ``seconds``."""
        self.stop()
        self.clock.sleep(seconds)

    # --- what the rig measures ---------------------------------------------------------------------
    def terminal_voltage(self) -> float:
        """P+/P- as the rig's DMM reads it, V."""
        return self.bench.dmm.voltage()

    def current(self) -> float:
        """Pack current from the rig's read-backs, A, + = charge (PSU out minus e-load in)."""
        return self.bench.psu.measure()[1] - self.bench.eload.measure()[1]

    def group_voltages(self) -> list[float]:
        """The 16 group voltages on the rig's cell taps, V."""
        scanner = self.bench.scanner
        if scanner is None:
            raise RigError(f"bench {self.bench.file.bench.name!r} has no cell-tap scanner")
        return scanner.voltages(self.bench.file.instruments.scanner.group_channels[self.number - 1])

    def case_temperatures(self) -> list[float]:
        scanner = self.bench.scanner
        return scanner.temperatures(self.bench.file.instruments.scanner.thermocouple_channels[self.number - 1])

    def light(self, name: str) -> str:
        """The sensor input name of one of this pack's lights: run, alm, led1..led4."""
        return self._prefix + name

    def observe_lights(self, window_s: float) -> dict:
        """Every light of this pack over ``window_s``: on, off or flickering with its period."""
        seen = self.lights.observe(window_s)
        mine = (lambda n: n.startswith("pack2_")) if self.number == 2 else (lambda n: not n.startswith("pack2_"))
        return {name.removeprefix(self._prefix): state for name, state in seen.items() if mine(name)}

    # --- waits -----------------------------------------------------------------------------------------
    def wait_terminals_live(self) -> float:
        """Wait for the relays to close (the DMM sees the pack); returns the voltage."""
        return self.clock.wait_for(self.terminal_voltage, timeout=self.spec.power_on.relays_closed_within_s,
                                   poll=0.1, until=lambda v: v > self.spec.power_off.terminals_off_max_v,
                                   what="the pack's voltage at the terminals (relays closed)")

    def wait_terminals_dead(self, timeout_s: float | None = None) -> float:
        """Wait for 0 V at the terminals (relays open, pack off)."""
        po = self.spec.power_off
        timeout = timeout_s if timeout_s is not None else po.flicker_count * po.flicker_period_s + 5.0
        return self.clock.wait_for(self.terminal_voltage, timeout=timeout, poll=0.1,
                                   until=lambda v: v <= po.terminals_off_max_v,
                                   what=f"0 V (<= {po.terminals_off_max_v} V) at the terminals")

    def soc(self) -> float:
        """SOC as the pack reports it on CAN (0x355), %."""
        return self.pcs.signal("SOC", frame="StateOfCharge")
