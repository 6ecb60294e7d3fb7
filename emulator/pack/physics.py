"""Physical model of the emulated LiFePO4 pack(s): 16 series groups of 2 parallel 64 Ah cells.

What a real pack does electrically and thermally, for the emulator's BMS and DC-bus solver; the
relays, pre-charge and the bus belong to the caller. All numbers are data in ``physics.toml``
(sources in PACK_MODEL_FACTS.md); this module is the model. Public arrays are
``(packs, groups)`` or ``(packs,)``; inside, the groups of all packs form one row per quantity and
nothing loops over groups or packs in Python (a step is ~35 numpy calls, about 18 us).

Per series group (two cells in parallel act as one cell of twice the capacity and half the
resistance)::

    V_group = OCV(SOC, h) + v1 + v2 + R0 I          (I > 0 charges)
    dv_k/dt = (R_k I - v_k) / tau_k                 k = 1 (15 s), 2 (600 s)     [FACTS 2]
    dSOC/dt = I / (3600 C_group)                    C_group = 128 Ah x (1 + spread)
    dh/dz   = (sign(I) - h) / z_t                   z = |charge throughput| / C_group

* **OCV** per cell from the Libre Solar LFP table [S1] (discharge/rest branch) and a charge branch
  20 mV above it on the plateau [A] (FACTS 1); ``h`` in [-1, 1] blends them:
  ``OCV = (dis + chg)/2 + h (chg - dis)/2``. Outside 0-100 % the curve continues steeply
  ([A], in physics.toml) so over-charge to 3.9 V and over-discharge to a 0 V cell are reachable.
  SOC is each group's charge relative to its own capacity; it is not clipped.
* **Resistances** R0, R1, R2 scale with the pack temperature (factor tables, FACTS 2) and rise
  at the SOC extremes [A]. The pack adds the path resistance (relays, shunt, fuse, cable).
* **Thermal**: one lumped node per pack, heated by I^2 x (R0 + R1 + R2 of all groups + path),
  with lagged sensors (:mod:`emulator.pack.thermal`).
* **Self-discharge** only through :meth:`PackPhysics.age` (1 %/month at 25 C, x2 per +10 C,
  FACTS 4): over the hours of a test it is below 0.04 %/day and is left out of :meth:`step`.
  The BMS draw is a current the caller applies.

Time stepping: :meth:`PackPhysics.step` holds the current and the air temperature constant over
``dt`` (1 ms to hours) and is exact for that, with no internal sub-steps: SOC integrates the
charge, RC voltages and ``h`` follow their exponential solutions, the thermal network its exact
discretisation. Resistances and the heat are the state-dependent parts: the heat is taken at the
step's start state; the RC targets ``R_k I`` use the resistances at the
step's end state, so one long step lands on the same polarisation as many short ones.

Per-group spread (capacity, initial SOC, self-discharge rate) comes from ``numpy`` ``PCG64(seed)``:
the same seed gives bit-identical packs. A pack starts top-balanced [A]: every group is the same Ah
short of full (plus a small SOC scatter), so the capacity spread shows at the bottom of a
discharge, as on a real pack. Each spread is centred per pack: ``initial_soc`` is exactly each
pack's mean SOC and 128 Ah its mean group capacity.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emulator.pack.physics_params import PhysicsParams
from emulator.pack.thermal import CASE, N_INPUTS, N_STATES, PACK, ThermalNetwork

try:
    # np.interp's compiled kernels, without its per-call argument checks (about 1 us of a
    # 1.5 us call on 32 points); the tables are checked once, on load. Same arguments.
    from numpy._core.multiarray import interp as _interp, interp_complex as _interp_complex
except ImportError:  # numpy < 2 names the module differently; np.interp is the safe fallback
    _interp = _interp_complex = np.interp

_CACHE_LIMIT = 256


@dataclass(frozen=True)
class PhysicsSnapshot:
    """All mutable state of one :class:`PackPhysics` at an instant (opaque; see ``restore``)."""

    state: np.ndarray
    owner: int


class PackPhysics:
    """The cells, resistances and heat of ``packs`` emulated packs.

    :param params: physical parameters (:func:`~emulator.pack.physics_params.load_physics`).
    :param packs: number of packs (the rig uses 1 or 2).
    :param seed: seed of the per-group spread; the same seed gives identical packs.
    :param initial_soc: mean SOC of each pack, fraction (scalar or one per pack).
    :param capacity_spread: relative sigma of group capacity (default ``params.spread``, 0.5 %).
    :param soc_spread: absolute sigma of the initial group SOC (default ``params.spread``, 0.1 %).
    :param ambient_c: air temperature the packs start in equilibrium with, C.
    :raises ValueError: an argument out of range (a programming mistake).
    """

    def __init__(self, params: PhysicsParams, packs: int = 1, seed: int = 1,
                 initial_soc: float | Sequence[float] = 0.5, capacity_spread: float | None = None,
                 soc_spread: float | None = None, ambient_c: float = 25.0):
        if packs < 1:
            raise ValueError(f"packs must be at least 1, got {packs}")
        capacity_spread = params.spread.capacity_rel if capacity_spread is None else capacity_spread
        soc_spread = params.spread.soc_abs if soc_spread is None else soc_spread
        if not 0.0 <= capacity_spread <= 0.2:
            raise ValueError(f"capacity_spread must be in [0, 0.2], got {capacity_spread}")
        if not 0.0 <= soc_spread <= 0.2:
            raise ValueError(f"soc_spread must be in [0, 0.2], got {soc_spread}")
        soc0 = np.broadcast_to(np.asarray(initial_soc, dtype=np.float64), (packs,))
        self.params = params
        self.packs: int = packs                    #: number of packs
        self.groups: int = params.pack.groups      #: series groups per pack
        shape = (packs, self.groups)
        self._pshape = (packs,)
        self._tables(params)
        self.thermal = ThermalNetwork(params.thermal, path_ohm=params.resistance.path_mohm * 1e-3)

        # All mutable state in one flat buffer (a snapshot is one copy, a restore one copyto):
        #   soc | ocv | h | v1 | v2 | thermal state (7 x packs) | its inputs (4 x packs) | energy
        # (the thermal inputs are rewritten every step; they sit under the state for one product)
        # Per-group rows are packs*groups long. The OCV is derived (recomputed on restore); it sits
        # before h, v1, v2 so that one dot product sums OCV + v1 + v2, and h, v1, v2 are adjacent so
        # that one multiply-add advances all three.
        n, p = packs * self.groups, packs
        nt = (N_STATES + N_INPUTS) * p
        self._state = np.zeros(5 * n + nt + p)
        rows = self._state[:5 * n].reshape(5, n)
        self._soc_f, self._ocv_f, self._h_f = rows[0], rows[1], rows[2]
        self._hv = rows[2:5]                    # h, v1, v2: advanced together
        self._ov = rows[1:5]                    # ocv, h, v1, v2: summed (h weighted 0)
        self._soc, self._h = rows[0].reshape(shape), rows[2].reshape(shape)
        self._v1, self._v2 = rows[3].reshape(shape), rows[4].reshape(shape)
        self._z = self._state[5 * n:5 * n + nt].reshape(N_STATES + N_INPUTS, p)
        self._x, self._u = self._z[:N_STATES], self._z[N_STATES:]    # thermal state and inputs
        self._u[3] = 1.0
        self._energy_ws = self._state[5 * n + nt:]

        # Seeded spread, each draw centred per pack. A pack starts top-balanced: every group the
        # same Ah short of full, then scattered by soc_spread, then shifted to mean initial_soc.
        rng = np.random.Generator(np.random.PCG64(seed))
        z_cap, z_soc, z_sd = (z - z.mean(axis=1, keepdims=True)
                              for z in (rng.standard_normal(shape) for _ in range(3)))
        group_ah = params.pack.cell_capacity_ah * params.pack.cells_per_group
        self._capacity = group_ah * (1.0 + capacity_spread * z_cap)
        self._sd_factor = np.maximum(0.0, 1.0 + params.self_discharge.spread_rel * z_sd)
        soc = 1.0 - (1.0 - soc0[:, None]) * group_ah / self._capacity + soc_spread * z_soc
        self._soc[...] = soc + (soc0 - soc.mean(axis=1))[:, None]
        self._h[...] = params.hysteresis.initial
        self._x[...] = self.thermal.equilibrium(packs, ambient_c)

        #: (packs, groups) SOC fraction; read-only (use set_group_soc / set_pack_soc: the derived
        #: voltages and resistances must follow a forced change)
        self.soc: np.ndarray = self._soc.view()
        self.soc.flags.writeable = False
        self.capacity_ah: np.ndarray = self._capacity.view()  #: (packs, groups) capacity, Ah
        self.capacity_ah.flags.writeable = False
        #: (packs, groups) V added to each group's voltage reading: a sense fault (not the terminals)
        self.group_offset_v: np.ndarray = np.zeros(shape)

        # Work arrays, so that a step allocates little. expand (packs, packs*groups) copies a
        # per-pack value to that pack's groups with one dot product (and sums them back).
        self._expand = np.kron(np.eye(p), np.ones(self.groups))
        inv_cap_as = (1.0 / (3600.0 * self._capacity)).reshape(n)
        self._charge_scale = np.stack([inv_cap_as, -self._k_hyst * inv_cap_as])
        self._i = np.zeros(p)                     # the step's current, A
        self._per_pack = np.zeros((3, p))         # I dt, |I dt|, R_rc(T) I
        self._per_group = np.empty((3, n))        # the same, one value per group
        self._charge_rows = self._per_group[:2]
        self._mul = np.empty((3, n))              # exp(-k|dz|), e1, e2: factors of h, v1, v2
        self._add = np.empty((3, n))              # s (1 - exp(-k|dz|)), RC increments
        self._tmp = np.empty(n)
        self._xs = np.empty((N_STATES, p))
        self._sum_ov = np.array([1.0, 0.0, 1.0, 1.0])
        # Per pack: source voltage at the step's start and end, and R_series I (energy counter).
        self._volts = np.zeros((3, p))
        self._vs = self._volts[1]
        # Rows of the arrays above as views made once (a view costs as much as a small ufunc call)
        self._heat_w, self._i_squared, self._air_c = self._u[0], self._u[1], self._u[2]
        self._pack_c = self._x[PACK]
        self._i_dt, self._abs_i_dt, self._rrc_i = self._per_pack
        self._dz, self._k_abs_dz, self._rrc_i_groups = self._per_group
        self._mul_h, self._add_h, self._add_rc = self._mul[0], self._add[0], self._add[1:]
        self._volts_start, self._volts_series = self._volts[0], self._volts[2]
        self._dt_cache: dict[float, tuple] = {}
        self._dt = None                           # the step length the constants below are for
        self._derive()

    def _tables(self, params: PhysicsParams) -> None:
        """The parameter tables in the form the step uses (group values, fractions, ohm)."""
        ocv, res, n = params.ocv, params.resistance, params.pack.cells_per_group
        # OCV extended beyond 0-100 % by the abuse branches, kept as the two branches' mean and
        # half their gap, OCV = mean + h * half: one complex table (real = mean, imaginary = half)
        # so that one interpolation gives both.
        dis, chg = np.array(ocv.discharge_v), np.array(ocv.charge_v)
        no_gap = np.zeros(len(ocv.overdischarge_v)), np.zeros(len(ocv.overcharge_v))
        self._ocv_soc = np.concatenate([ocv.overdischarge_soc_pct, ocv.soc_pct,
                                        ocv.overcharge_soc_pct]) / 100.0
        self._ocv_table = (np.concatenate([ocv.overdischarge_v, (dis + chg) / 2, ocv.overcharge_v])
                           + 1j * np.concatenate([no_gap[0], (chg - dis) / 2, no_gap[1]]))
        self._k_hyst = 1.0 / params.hysteresis.transition_soc
        # Group resistances (2 cells in parallel: half a cell's), ohm; tables vs T and SOC.
        self._rkg = np.array([res.r1_cell_mohm, res.r2_cell_mohm]) * 1e-3 / n
        self._taus = (res.tau1_s, res.tau2_s)
        self._rc_share = (self._rkg / self._rkg.sum()).tolist()   # R1, R2 shares of R1 + R2
        self._rt_temp = np.array(res.temperature_c, dtype=np.float64)
        # Complex so one np.interp gives both: real = R0 at T, imaginary = R1 + R2 at T.
        self._rt_table = (res.r0_cell_mohm * 1e-3 / n * np.array(res.r0_factor)
                          + 1j * self._rkg.sum() * np.array(res.rc_factor))
        self._rsoc_soc = np.array(res.soc_pct) / 100.0
        self._rsoc_factor = np.array(res.soc_factor)
        # Scalars as 0-d arrays: numpy multiplies by those faster than by Python floats.
        self._rpath = np.array(res.path_mohm * 1e-3)

    # ---------------------------------------------------------------- time stepping
    def step(self, dt_s: float, current_a: np.ndarray, ambient_c: float) -> None:
        """Advance by ``dt_s`` seconds with each pack's current and the air temperature held.

        :param dt_s: step length, s (0 does nothing).
        :param current_a: ``(packs,)`` current through each pack's cells, A (+ charges).
        :param ambient_c: chamber air temperature, C.
        :raises ValueError: a negative ``dt_s`` or a current of the wrong shape.
        """
        if not dt_s > 0.0:
            if dt_s == 0.0:
                return
            raise ValueError(f"dt_s must not be negative, got {dt_s}")
        i = self._i
        i[...] = current_a                       # also checks the shape
        if dt_s != self._dt:
            self._set_dt(dt_s)
        # Heat over the step from the start state (I^2 x the cells' DC resistance; I^2 for the
        # path, whose resistance is a gain inside the thermal network), then the exact update.
        np.multiply(i, i, out=self._i_squared)
        np.multiply(self._i_squared, self._rcell, out=self._heat_w)
        self._air_c[...] = ambient_c
        self.thermal.advance(self._z, self._transition, self._xs)
        self._temperature_factors()

        # What each group needs from its pack's current, copied to the groups by one product:
        # dz = I dt / (3600 C) and -k |dz| (scaled per group), and R_rc(T) I.
        np.multiply(i, self._dt_array, out=self._i_dt)
        np.abs(self._i_dt, out=self._abs_i_dt)
        np.multiply(self._rrc, i, out=self._rrc_i)
        np.dot(self._per_pack, self._expand, out=self._per_group)
        self._charge_rows *= self._charge_scale
        dz = self._dz

        # SOC by integration. h, v1, v2 by their exact solutions, x <- x mul + add:
        # h -> s + (h - s) exp(-k |dz|), s = sign(I), so add = sign(dz) (1 - exp(-k |dz|)), 0 at
        # rest; the RC pairs toward R_k I with the end-of-step resistances: v e + fs R_k I (1 - e).
        self._soc_f += dz
        np.exp(self._k_abs_dz, out=self._mul_h)
        np.expm1(self._k_abs_dz, out=self._add_h)
        np.copysign(self._add_h, dz, out=self._add_h)
        self._soc_factors()
        np.multiply(self._fs, self._rrc_i_groups, out=self._tmp)
        np.multiply(self._tmp, self._gains, out=self._add_rc)     # gain1, gain2 as a column
        self._hv *= self._mul
        self._hv += self._add

        # Terminal energy: I dt x (source voltage by the trapezoid rule + R_series I).
        self._volts_start[...] = self._vs
        self._voltages()
        np.multiply(self._rser, i, out=self._volts_series)
        e = np.dot(self._energy_weights, self._volts)
        e *= i
        self._energy_ws += e

    def _set_dt(self, dt_s: float) -> None:
        """Load the constants of a step of ``dt_s`` (cached per distinct dt): the thermal
        transition; e_k = exp(-dt/tau_k) and gain_k = R_k / (R1 + R2) x (1 - e_k) of the RC pairs
        (a column: one product scales both RC rows); the weights of the energy step. Scalars are
        0-d arrays (numpy's fastest operand)."""
        c = self._dt_cache.get(dt_s)
        if c is None:
            m1, m2 = math.expm1(-dt_s / self._taus[0]), math.expm1(-dt_s / self._taus[1])
            share1, share2 = self._rc_share
            c = (self.thermal.transition(dt_s), np.array(dt_s), 1.0 + m1, 1.0 + m2,
                 np.array([[-share1 * m1], [-share2 * m2]]), np.array([0.5 * dt_s, 0.5 * dt_s, dt_s]))
            if len(self._dt_cache) >= _CACHE_LIMIT:
                self._dt_cache.clear()
            self._dt_cache[dt_s] = c
        (self._transition, self._dt_array, self._mul[1], self._mul[2], self._gains,
         self._energy_weights) = c
        self._dt = dt_s

    def _temperature_factors(self) -> None:
        """Group R0 and R1 + R2 at the present pack temperature, ohm."""
        rt = self._rt = _interp_complex(self._pack_c, self._rt_temp, self._rt_table, None, None)
        self._r0t, self._rrc = rt.real, rt.imag

    def _soc_factors(self) -> None:
        """Per-group SOC factor of the resistances, and the pack's series and heat resistance."""
        fs = self._fs = _interp(self._soc_f, self._rsoc_soc, self._rsoc_factor, None, None)
        r = self._rt * np.dot(self._expand, fs)           # sum_g fs R0 + 1j sum_g fs (R1 + R2)
        self._rser = r.real + self._rpath
        self._rcell = r.real + r.imag                      # heat: sum_g fs (R0 + R1 + R2)

    def _voltages(self) -> None:
        """OCV with hysteresis, per-group source voltage (OCV + RC) and its sum per pack."""
        table = _interp_complex(self._soc_f, self._ocv_soc, self._ocv_table, None, None)
        ocv = self._ocv_f
        np.multiply(table.imag, self._h_f, out=ocv)
        ocv += table.real
        vsrc = self._vsrc = np.dot(self._sum_ov, self._ov)        # OCV + v1 + v2 per group
        np.dot(self._expand, vsrc, out=self._vs)

    def _derive(self) -> None:
        """Everything derived from the state (after construction, restore, age, forced SOC)."""
        self._temperature_factors()
        self._soc_factors()
        self._voltages()

    # ---------------------------------------------------------------- what a solver reads
    def ocv(self) -> np.ndarray:
        """``(packs, groups)`` open-circuit voltage of each group incl. hysteresis (+ sense offset), V."""
        return self._ocv_f.reshape(self.packs, self.groups) + self.group_offset_v

    def group_voltages(self, current_a: np.ndarray) -> np.ndarray:
        """``(packs, groups)`` group voltages with ``current_a`` flowing now: OCV + RC + R0 I, V.

        Includes :attr:`group_offset_v` (what a cell-voltage reading sees).
        """
        i = np.asarray(current_a, dtype=np.float64)
        if i.shape != self._pshape:
            i = np.broadcast_to(i, self._pshape)
        out = np.dot(self._r0t * i, self._expand)
        out *= self._fs
        out += self._vsrc
        out = out.reshape(self.packs, self.groups)
        out += self.group_offset_v
        return out

    def thevenin(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pack ``(source V, series ohm)``: terminal voltage = source + series x current.

        The source is the sum of the groups' OCV and RC voltages; the series resistance is the
        instantaneous one (16 R0 + path). Sense offsets are not included: they fault a reading,
        not the cells.
        """
        return self._vs.copy(), self._rser.copy()

    def temperatures(self) -> np.ndarray:
        """``(packs, 5)`` sensor temperatures: T1-T4 on cells, T5 on the power stage, C."""
        return self._x[1:6].T.copy()

    def case_temperature(self) -> np.ndarray:
        """``(packs,)`` case temperature, what the rig's thermocouples read, C."""
        return self._x[CASE].copy()

    def pack_temperature(self) -> np.ndarray:
        """``(packs,)`` lumped pack (cell) temperature the resistances depend on, C."""
        return self._x[PACK].copy()

    def energy_wh(self) -> np.ndarray:
        """``(packs,)`` energy through the terminals since creation, Wh (+ = charged into the pack)."""
        return self._energy_ws / 3600.0

    # ---------------------------------------------------------------- storage, faults, rollback
    def age(self, months: float, ambient_c: float) -> None:
        """Store the packs open-circuit for ``months`` at ``ambient_c``.

        Each group loses its intrinsic self-discharge, 1 %/month of its capacity at 25 C, doubling
        every +10 C (FACTS 4), times its own seeded rate spread; the loss is a discharge, so ``h``
        moves toward the discharge branch. The RC voltages relax and the packs settle at the air
        temperature. The BMS draw is not included (apply it as a current).

        :raises ValueError: negative ``months``.
        """
        if months < 0:
            raise ValueError(f"months must not be negative, got {months}")
        sd = self.params.self_discharge
        rate = sd.pct_per_month_25c / 100.0 * 2.0 ** ((ambient_c - 25.0) / sd.doubling_c)
        loss = rate * months * self._sd_factor
        self._soc -= loss
        self._h[...] = -1.0 + (self._h + 1.0) * np.exp(-self._k_hyst * loss)
        self._v1[...] = 0.0
        self._v2[...] = 0.0
        self._x[...] = self.thermal.equilibrium(self.packs, ambient_c)
        self._derive()

    def set_group_soc(self, pack: int, group: int, soc: float) -> None:
        """Force one group's charge to ``soc`` (fraction; e.g. a weak or 0 V cell: soc <= -0.05)."""
        self._soc[pack, group] = soc
        self._derive()

    def set_pack_soc(self, pack: int, soc: float) -> None:
        """Bring a pack's mean SOC to ``soc`` (fraction) at once, as charging it would: every group
        gets the same Ah, so the spread between groups stays. ``h`` is left as it was."""
        row = self._soc[pack]
        inv_cap = 1.0 / self._capacity[pack]
        row += (soc - row.mean()) / inv_cap.mean() * inv_cap
        self._derive()

    def snapshot(self) -> PhysicsSnapshot:
        """A copy of all mutable state (not :attr:`group_offset_v`, a fault setting)."""
        return PhysicsSnapshot(self._state.copy(), id(self))

    def restore(self, snap: PhysicsSnapshot) -> None:
        """Return to the state of ``snap``, taken from this same model.

        :raises ValueError: ``snap`` came from another model.
        """
        if snap.owner != id(self) or snap.state.shape != self._state.shape:
            raise ValueError("snapshot belongs to another PackPhysics")
        np.copyto(self._state, snap.state)
        self._derive()
