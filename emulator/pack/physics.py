"""Physical model of the emulated LiFePO4 pack(s): 16 series groups of 2 parallel 64 Ah cells.

What a real pack does electrically and thermally, for the emulator's BMS and DC-bus solver; the
relays, pre-charge and the bus belong to the caller. All numbers are data in ``physics.toml``
(sources there and in PACK_MODEL_FACTS.md); this module is the model. Public arrays are
``(packs, groups)`` or ``(packs,)``; inside, the groups of all packs form one row per quantity, so
nothing loops over groups or packs in Python.

Per series group (two cells in parallel act as one cell of twice the capacity and half the
resistance)::

    V_group = OCV(SOC, h) + sum_k v_k + R0 I          (I > 0 charges)
    dv_k/dt = (R_k I - v_k) / tau_k                   k = fast .. slow (15 s, 10 min, 2 h)
    dSOC/dt = I / (3600 C_group)                      C_group = 128 Ah x (1 + spread)
    dh/dz   = (sign(I) - h) / z_t                     z = |charge throughput| / C_group

* **OCV** per cell on two branches (discharge/rest and charge) blended by ``h`` in [-1, 1]:
  ``OCV = (dis + chg)/2 + h (chg - dis)/2``. Outside 0-100 % the curve continues steeply, so
  over-charge to 3.9 V and over-discharge to a 0 V cell are reachable. SOC is each group's charge
  relative to its own capacity; it is not clipped.
* **Resistances** R0 and each R_k are tables over SOC, one column per current direction, times a
  factor over the pack temperature. While charging the charge column applies, while discharging
  the discharge column; at rest (no target to relax to) the series R0 the solver sees is the mean
  of the two. A real LFP cell's charge resistance climbs steeply in the last percent before full,
  which is what ends a CV charge with polarisation that relaxes for hours after it.
* **Thermal**: one lumped node per pack, heated by the irreversible heat of the same resistances,
  ``I (V_group - OCV)`` summed over the groups (= I^2 R0 + I sum_k v_k), plus I^2 R_path, with
  lagged sensors (:mod:`emulator.pack.thermal`).
* **Self-discharge** only through :meth:`PackPhysics.age` (1 %/month at 25 C, x2 per +10 C): over
  the hours of a test it is below 0.04 %/day and is left out of :meth:`step`. The BMS draw is a
  current the caller applies.

Time stepping: :meth:`PackPhysics.step` holds the current and the air temperature constant over
``dt`` (1 ms to hours) and is exact for that, with no internal sub-steps: SOC integrates the
charge, the RC voltages and ``h`` follow their exponential solutions, the thermal network its exact
discretisation. The resistances are the state-dependent parts: the heat is taken from the step's
start state (with each RC voltage's exact mean over the step), the RC targets ``R_k I`` from the
step's end state, so one long step lands on the same polarisation as many short ones. At rest
nothing but the RC voltages and the temperatures moves, and a rest step touches only those.

Per-group spread (capacity, initial SOC, self-discharge rate) comes from ``numpy`` ``PCG64(seed)``:
the same seed gives bit-identical packs. A pack starts top-balanced [A]: every group is the same Ah
short of full (plus a small SOC scatter), so the capacity spread shows at the bottom of a
discharge, as on a real pack. Each spread is centred per pack: ``initial_soc`` is exactly each
pack's mean SOC and the nominal group capacity its mean.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emulator.pack.physics_params import PhysicsParams
from emulator.pack.thermal import CASE, N_INPUTS, N_STATES, PACK, ThermalNetwork

_CACHE_LIMIT = 256


class Table:
    """Rows of values tabulated over one grid, read by linear interpolation at many points at
    once, the end values beyond the grid (as :func:`numpy.interp`, for several rows).

    Each segment's line (intercept and slope) is worked out once, so a read is: clamp, find the
    segment, one multiply-add.
    """

    def __init__(self, grid: np.ndarray, rows: np.ndarray):
        self.grid = np.asarray(grid, dtype=np.float64)
        self.rows = np.asarray(rows, dtype=np.float64)
        self.slopes = np.diff(self.rows, axis=1) / np.diff(self.grid)
        self.intercepts = self.rows[:, :-1] - self.slopes * self.grid[:-1]
        self._starts = self.grid[1:-1]  # where segments 1.. start (the last point is in the last)
        self._lo, self._hi = self.grid[0], self.grid[-1]

    def at(self, x: np.ndarray) -> np.ndarray:
        """``(rows, *x.shape)``: every row at each ``x``."""
        x = x.clip(self._lo, self._hi)
        i = self._starts.searchsorted(x, side="right")
        return self.intercepts.take(i, axis=1) + self.slopes.take(i, axis=1) * x


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
    :param capacity_spread: relative sigma of group capacity (default ``params.spread``).
    :param soc_spread: absolute sigma of the initial group SOC (default ``params.spread``).
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
        self._tables(params)
        self.thermal = ThermalNetwork(params.thermal, path_ohm=self._rpath)

        # All mutable state in one buffer, so that a snapshot is one copy and a restore one copyto:
        #   soc | h | v_1 .. v_K (groups of all packs each) | thermal state and inputs | energy |
        #   direction of the last step's current (-1, 0, +1 per pack)
        n, p, k = packs * self.groups, packs, self._pairs
        nt = (N_STATES + N_INPUTS) * p
        self._state = np.zeros((2 + k) * n + nt + 2 * p)
        rows = self._state[:(2 + k) * n].reshape(2 + k, packs, self.groups)
        self._soc, self._h, self._v = rows[0], rows[1], rows[2:]
        # thermal state x and its inputs u as one (11, packs) block (ThermalNetwork.advance)
        self._z = self._state[(2 + k) * n:(2 + k) * n + nt].reshape(N_STATES + N_INPUTS, p)
        self._x, self._u = self._z[:N_STATES], self._z[N_STATES:]
        self._u[3] = 1.0
        self._energy_ws = self._state[(2 + k) * n + nt:(2 + k) * n + nt + p]
        self._dir = self._state[(2 + k) * n + nt + p:]

        # Seeded spread, each draw centred per pack. A pack starts top-balanced: every group the
        # same Ah short of full, then scattered by soc_spread, then shifted to mean initial_soc.
        rng = np.random.Generator(np.random.PCG64(seed))
        z_cap, z_soc, z_sd = (z - z.mean(axis=1, keepdims=True)
                              for z in (rng.standard_normal(shape) for _ in range(3)))
        group_ah = params.pack.cell_capacity_ah * params.pack.cells_per_group
        own = params.spread.group_capacity_rel
        if own is not None:       # a fitted pack's own groups (the same in every pack)
            if len(own) != self.groups:
                raise ValueError(f"spread.group_capacity_rel has {len(own)} values, not one per group ({self.groups})")
            z = np.asarray(own)
            self._capacity = np.broadcast_to(group_ah * (1.0 + z - z.mean()), shape).copy()
        else:
            self._capacity = group_ah * (1.0 + capacity_spread * z_cap)
        self._sd_factor = np.maximum(0.0, 1.0 + params.self_discharge.spread_rel * z_sd)
        soc = 1.0 - (1.0 - soc0[:, None]) * group_ah / self._capacity + soc_spread * z_soc
        self._soc[...] = soc + (soc0 - soc.mean(axis=1))[:, None]
        self._h[...] = params.hysteresis.initial
        self._x[...] = self.thermal.equilibrium(packs, ambient_c)
        self._inv_capacity_as = 1.0 / (3600.0 * self._capacity)

        #: (packs, groups) SOC fraction; read-only (use set_group_soc / set_pack_soc: the derived
        #: voltages and resistances must follow a forced change)
        self.soc: np.ndarray = self._soc.view()
        self.soc.flags.writeable = False
        self.capacity_ah: np.ndarray = self._capacity.view()  #: (packs, groups) capacity, Ah
        self.capacity_ah.flags.writeable = False
        #: (packs, groups) V added to each group's voltage reading: a sense fault (not the terminals)
        self.group_offset_v: np.ndarray = np.zeros(shape)
        self._dt_cache: dict[float, tuple] = {}
        self._derive()

    def _tables(self, params: PhysicsParams) -> None:
        """The parameter tables in the form the step uses (group values, fractions, ohm)."""
        ocv, res, cells = params.ocv, params.resistance, params.pack.cells_per_group
        # OCV extended beyond 0-100 % by the abuse branches (shared by both branches), kept as the
        # branches' mean and half their gap: OCV = mean + h * half.
        dis, chg = np.array(ocv.discharge_v), np.array(ocv.charge_v)
        ocv_soc = np.concatenate([ocv.overdischarge_soc_pct, ocv.soc_pct, ocv.overcharge_soc_pct]) / 100.0
        mean = np.concatenate([ocv.overdischarge_v, (dis + chg) / 2, ocv.overcharge_v])
        half = np.concatenate([np.zeros(len(ocv.overdischarge_v)), (chg - dis) / 2,
                               np.zeros(len(ocv.overcharge_v))])
        self._k_hyst = 1.0 / params.hysteresis.transition_soc
        # Group resistances (cells in parallel: a cell's / cells), ohm: R0, R_1 .. R_K, discharge
        # columns then charge columns.
        tables = [res.r0, *res.rc]
        self._pairs = len(res.rc)
        self._taus = np.array([pair.tau_s for pair in res.rc])
        r_soc = np.array(res.soc_pct) / 100.0
        r_rows = np.array([t.discharge_mohm for t in tables] + [t.charge_mohm for t in tables]) * 1e-3 / cells
        # Every SOC table on one grid, the union of both grids' points: piecewise linear on the
        # union is the same function, and one interpolation then gives them all. Rows: OCV mean,
        # OCV half gap, then the resistances.
        grid = np.union1d(ocv_soc, r_soc)
        on_grid = [np.interp(grid, ocv_soc, mean), np.interp(grid, ocv_soc, half)]
        # the resistances as the discharge columns and the charge columns' excess over them
        m = 1 + self._pairs
        on_grid += [np.interp(grid, r_soc, row) for row in np.vstack([r_rows[:m], r_rows[m:] - r_rows[:m]])]
        self._soc_table = Table(grid, np.array(on_grid))
        self._t_table = Table(res.temperature_c, [t.temperature_factor for t in tables])
        self._rpath = res.path_mohm * 1e-3

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
        i = np.zeros(self.packs)
        i[...] = current_a                       # also checks the shape
        transition, decay, mean_share = self._constants(dt_s)
        self._u[2] = ambient_c
        if not i.any():
            self._rest(transition, decay)
            return
        np.sign(i, out=self._dir)
        ic = i[:, None]                          # a pack's current, for each of its groups

        # Heat over the step from the start state's resistances: I^2 R0 + I x each RC voltage's
        # exact mean over the step, then the thermal network's exact update.
        r = self._r
        targets = r[1:] * ic
        mean_v = targets + (self._v - targets) * mean_share
        self._u[0] = i * (r[0] * ic + mean_v.sum(axis=0)).sum(axis=1)
        self._u[1] = i * i
        self._x[...] = transition @ self._z

        # SOC by integration; h by its exact solution h -> s + (h - s) exp(-k |dz|), s = sign(I).
        dz = ic * dt_s * self._inv_capacity_as
        self._soc += dz
        s = np.sign(dz)
        self._h[...] = s + (self._h - s) * np.exp(-self._k_hyst * np.abs(dz))
        # The RC pairs toward R_k I with the end-of-step resistances (this step's direction).
        self._derive_soc()
        self._derive_temperature()
        targets = self._r[1:] * ic
        self._v[...] = targets + (self._v - targets) * decay
        self._after_step(i, dt_s)

    def _rest(self, transition: np.ndarray, decay: np.ndarray) -> None:
        """A step with no current: only the RC voltages relax and the temperatures move."""
        if self._dir.any():
            self._dir[...] = 0.0
        self._u[0] = 0.0
        self._u[1] = 0.0
        self._x[...] = transition @ self._z
        self._v *= decay
        self._derive_temperature()
        self._vsrc = self._ocv + self._v.sum(axis=0)
        self._vs = self._vsrc.sum(axis=1)

    def _after_step(self, i: np.ndarray, dt_s: float) -> None:
        """Derived voltages at the step's end, and the terminal energy of the step: I dt x (the
        source voltage by the trapezoid rule + R_series I)."""
        start_v = self._vs
        self._source_voltages()
        self._energy_ws += i * dt_s * (0.5 * (start_v + self._vs) + self._rser * i)

    def _constants(self, dt_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a step of ``dt_s`` (cached per distinct dt): the thermal transition, each RC pair's
        decay exp(-dt/tau) and the weight of its start value in its mean over the step."""
        c = self._dt_cache.get(dt_s)
        if c is None:
            m = np.expm1(-dt_s / self._taus)               # decay - 1, accurate at small dt
            mean_share = -m * self._taus / dt_s            # (1 - decay) tau / dt
            c = (self.thermal.transition(dt_s), (1.0 + m)[:, None, None], mean_share[:, None, None])
            if len(self._dt_cache) >= _CACHE_LIMIT:
                self._dt_cache.clear()
            self._dt_cache[dt_s] = c
        return c

    # ---------------------------------------------------------------- derived values
    def _derive_soc(self) -> None:
        """OCV (with hysteresis) and the resistances of both directions at the present SOC."""
        tables = self._soc_table.at(self._soc)
        self._ocv = tables[0] + tables[1] * self._h
        self._r_dis, self._r_excess = tables[2:3 + self._pairs], tables[3 + self._pairs:]

    def _derive_temperature(self) -> None:
        """Temperature factors at the pack temperature; the resistances of the present direction
        (charge column, discharge column, or their mean at rest) and the pack's series R."""
        self._factors = self._t_table.at(self._x[PACK])[:, :, None]
        charging = 0.5 * (self._dir + 1.0)[:, None]          # 1 charge, 0 discharge, 1/2 rest
        self._r = (self._r_dis + self._r_excess * charging) * self._factors
        self._rser = self._r[0].sum(axis=1) + self._rpath

    def _source_voltages(self) -> None:
        """Per-group source voltage (OCV + RC) and its sum per pack."""
        self._vsrc = self._ocv + self._v.sum(axis=0)
        self._vs = self._vsrc.sum(axis=1)

    def _derive(self) -> None:
        """Everything derived from the state (after construction, restore, age, forced SOC)."""
        self._derive_soc()
        self._derive_temperature()
        self._source_voltages()

    # ---------------------------------------------------------------- what a solver reads
    def ocv(self) -> np.ndarray:
        """``(packs, groups)`` open-circuit voltage of each group incl. hysteresis (+ sense offset), V."""
        return self._ocv + self.group_offset_v

    def rc_voltages(self) -> np.ndarray:
        """``(pairs, packs, groups)`` voltage of each RC pair of each group, fast to slow, V."""
        return self._v.copy()

    def group_voltages(self, current_a: np.ndarray) -> np.ndarray:
        """``(packs, groups)`` group voltages with ``current_a`` flowing now: OCV + RC + R0 I, V
        (R0 of that current's direction).

        Includes :attr:`group_offset_v` (what a cell-voltage reading sees).
        """
        i = np.asarray(current_a, dtype=np.float64)
        if i.shape != (self.packs,):
            i = np.broadcast_to(i, (self.packs,))
        i = i[:, None]
        charging = 0.5 * (np.sign(i) + 1.0)
        r0 = (self._r_dis[0] + self._r_excess[0] * charging) * self._factors[0]
        return self._vsrc + r0 * i + self.group_offset_v

    def thevenin(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pack ``(source V, series ohm)``: terminal voltage = source + series x current.

        The source is the sum of the groups' OCV and RC voltages; the series resistance is the
        instantaneous one (16 R0 + path), for the direction of the last step's current (at rest the
        mean of both). Sense offsets are not included: they fault a reading, not the cells.
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
        self._v[...] = 0.0
        self._dir[...] = 0.0
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
