"""Lumped thermal model of a pack: one heat-capacity node, its air exchange and its sensors.

The pack is one node of heat capacity ``C`` (cells, case, busbars and BMS together,
PACK_MODEL_FACTS 3: about 53 kJ/K) exchanging heat with the chamber air through a conductance
``UA`` (about 8 W/K), so ``tau = C / UA`` is about 1.8 h::

    C dT/dt = P_cells + P_path - UA (T - T_air)

``P_cells`` is the heat of the cell resistances and ``P_path = R_path I^2`` that of the relays,
shunt, fuse and cables; both heat the node. The sensors are not extra heat capacities but
first-order lags of what they would read in steady state, which depends on where they sit::

    target_j = T + w_j (T_air - T) + r_j P_cells + p_j P_path + offset_j
    lag_j dS_j/dt = target_j - S_j

``w_j`` places a sensor between the cell stack (0) and the air (1) - the case is 15 % of the way
out - and ``r_j``/``p_j`` are the local hot-spot rises of a cell deep in the stack or of the
power-stage board that carries the path resistance. Channels, in this order: four cell sensors
(T1-T4), the power stage (T5), the case (what the rig's thermocouples read).

Time stepping is exact for heat and air temperature held constant over a step of any length: the
network is linear, so the state moves as ``x' = Phi x + Gamma u`` with ``Phi = exp(A dt)`` and
``Gamma = (I - Phi) M`` (``M u`` is the equilibrium for the inputs ``u``). ``A`` is lower
triangular (sensors depend on the pack node, not the reverse), so ``Phi`` has a closed form; it is
computed once per distinct ``dt`` and cached. A step is then one matrix product: the caller keeps
the inputs as rows right under the state, ``z = [x; u]``, and ``x' = [Phi Gamma] z``.
"""
from __future__ import annotations

import numpy as np

from emulator.pack.physics_params import Thermal

#: State rows (a state array is ``(7, packs)``): the pack node, then the sensor channels.
PACK, CELL_SENSORS, POWER_STAGE, CASE = 0, slice(1, 5), 5, 6
N_STATES = 7
#: Input rows (``(4, packs)``): cell heat (W), current squared (A^2, heats the path), air
#: temperature (C), constant 1 (for the offsets).
N_INPUTS = 4
_CACHE_LIMIT = 256


class ThermalNetwork:
    """The pack node and its six sensor channels; advances ``(7, packs)`` state arrays in place.

    :param params: the ``[thermal]`` section of the physics parameters.
    :param path_ohm: resistance of the pack's current path (relays, shunt, fuse, cable), ohm.
    """

    def __init__(self, params: Thermal, path_ohm: float):
        sensors = [*params.cell_sensors, params.power_stage, params.case]
        self.tau_s = params.heat_capacity_j_per_k / params.ua_w_per_k   #: pack time constant, s
        lags = np.array([s.lag_s for s in sensors])
        w = np.array([s.ambient_weight for s in sensors])
        self._neg_inv_tau = -1.0 / np.concatenate([[self.tau_s], lags])
        # Sensor j driven by the pack node's exponential: Phi[j, 0] = c_j (e_pack - e_j).
        self._coupling = (1.0 - w) * self.tau_s / (self.tau_s - lags)
        # Equilibrium map M: state = M @ inputs, inputs [P_cells W, I^2, T_air, 1].
        pack_row = np.array([1.0 / params.ua_w_per_k, 1.0 / params.ua_w_per_k, 1.0, 0.0])
        own = np.array([[s.cell_heat_k_per_w, s.path_heat_k_per_w, s.ambient_weight, s.offset_c]
                        for s in sensors])
        self._m = np.vstack([pack_row, (1.0 - w)[:, None] * pack_row + own])
        self._m[:, 1] *= path_ohm      # the input is I^2; the path turns it into watts
        self._cache: dict[float, np.ndarray] = {}

    def equilibrium(self, packs: int, ambient_c: float) -> np.ndarray:
        """The ``(7, packs)`` state of packs at rest in air at ``ambient_c`` for a long time."""
        x = self._m @ np.array([0.0, 0.0, ambient_c, 1.0])
        return np.repeat(x[:, None], packs, axis=1)

    def transition(self, dt_s: float) -> np.ndarray:
        """``[Phi Gamma]`` (7 x 11) for a step of ``dt_s`` seconds, exact for constant inputs."""
        cached = self._cache.get(dt_s)
        if cached is not None:
            return cached
        # expm1 keeps the millisecond steps accurate: e_pack - e_j is a difference of near-ones.
        m = np.expm1(dt_s * self._neg_inv_tau)       # e - 1 for the pack node and each sensor
        i_minus_phi = np.diag(-m)
        i_minus_phi[1:, 0] = self._coupling * (m[1:] - m[0])
        # [Phi Gamma], Gamma = (I - Phi) M taken from I - Phi itself (no cancellation at small dt).
        result = np.hstack([np.eye(N_STATES) - i_minus_phi, i_minus_phi @ self._m])
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[dt_s] = result
        return result

    @staticmethod
    def advance(z: np.ndarray, transition: np.ndarray, scratch: np.ndarray) -> None:
        """Move the state on by one step with the inputs held.

        :param z: ``(11, packs)``: the state rows (pack, T1-T4, T5, case), updated in place, then
            the input rows ``P_cells W, I^2 A^2, T_air C, 1``.
        :param transition: :meth:`transition` of the step's length.
        :param scratch: a ``(7, packs)`` work array (avoids an allocation per call).
        """
        np.dot(transition, z, out=scratch)
        z[:N_STATES] = scratch
