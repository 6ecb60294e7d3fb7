"""The test author's kit drives a protected quantity through the FaultInsertion role.

``Pack.drive`` (testcases/kit) reaches the BMS's sense lines through whatever unit plays
:class:`instruments.roles.FaultInsertion`: the emulator's ``Faults``, or a real bench's cell
simulator. Without one, a voltage or a timed temperature skips, naming what the bench lacks.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from emulator.pack.faults import Faults
from instruments.roles import FaultInsertion
from rig.files.pack_spec import load_pack_spec
from testcases.kit import rules, stimulus
from tests.model_harness import PackModel


class CellSimulator(FaultInsertion):
    """A real bench's fault-insertion unit as the kit sees it: the role, nothing else."""

    def __init__(self):
        self.calls = []

    def force_voltage(self, device, channel, volts):
        self.calls.append(("V", device, channel, volts))

    def force_temperature(self, device, channel, celsius):
        self.calls.append(("C", device, channel, celsius))

    def offset_current(self, device, amps):
        self.calls.append(("A", device, amps))

    def clear(self):
        self.calls.append(("clear",))


def _pack(faults, *, chamber=None, number=1):
    spec = load_pack_spec()
    bench = SimpleNamespace(chamber=chamber, measurements=None,
                            file=SimpleNamespace(bench=SimpleNamespace(name="lab-1")),
                            limits=SimpleNamespace(psu_max_current_a=80.0, eload_max_current_a=160.0))
    charged = []
    return SimpleNamespace(bench=bench, spec=spec, number=number, faults=faults, charged=charged,
                           charge=charged.append, discharge=lambda a: charged.append(-a))


def test_the_emulators_faults_play_the_role():
    assert issubclass(Faults, FaultInsertion)
    model = PackModel()
    model.faults.force_voltage(0, 5, 3.7)
    assert model.world.sense_forced_v[0, 5] == 3.7
    model.faults.force_voltage(0, 5, None)
    assert math.isnan(model.world.sense_forced_v[0, 5])
    model.faults.force_temperature(0, 1, 57.0)
    assert model.world.temp_forced_c[0, 1] == 57.0
    model.faults.clear()
    assert np.isnan(model.world.temp_forced_c).all()


def test_a_cell_voltage_goes_on_the_sense_lines_of_a_real_benchs_cell_simulator():
    unit = CellSimulator()
    pack = _pack(unit, number=2)
    row = pack.spec.protections.cell_over_voltage
    value = rules.unsafe(pack.spec, row, row.l2.threshold)
    assert stimulus.drive(pack, row.quantity, value) == stimulus.FAULT_INSERTION
    groups = pack.spec.ratings.groups
    assert [c[:3] for c in unit.calls] == [("V", 1, g) for g in range(groups)]  # pack 2 is device 1
    assert unit.calls[-1][3] == value  # the last group is the one driven out
    assert all(c[3] < value for c in unit.calls[:-1])


def test_a_charge_current_beyond_the_psu_limit_adds_the_rest_on_the_current_sense():
    unit = CellSimulator()
    pack = _pack(unit)
    stimulus.drive(pack, "charge_current", 90.0)
    assert pack.charged == [80.0]
    assert unit.calls == [("A", 0, 10.0)]


def test_without_a_unit_a_voltage_skips_naming_what_the_bench_lacks():
    pack = _pack(None)
    with pytest.raises(pytest.skip.Exception, match="needs a fault-insertion unit"):
        stimulus.drive(pack, "max_group_voltage", 3.7)
    with pytest.raises(pytest.skip.Exception, match="beyond the rig's hard limit psu_max_current_a = 80 A"):
        stimulus.drive(pack, "charge_current", 90.0)


def test_without_a_unit_a_temperature_is_a_chamber_soak_that_cannot_time_a_trip():
    pack = _pack(None, chamber=object())
    assert stimulus.means(pack, "max_temperature") == stimulus.CHAMBER
    assert not stimulus.can_step(pack, "max_temperature")
    assert stimulus.can_step(_pack(CellSimulator()), "max_temperature")
