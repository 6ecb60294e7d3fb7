"""``packrig fit``: the emulated pack's physics fitted to a real pack's characterisation runs.

:mod:`rig.fit.series` reads run folders into time series; :mod:`rig.fit.pack_fit` fits the
equivalent circuit, capacity, spread and thermal node to them, through :mod:`rig.fit.circuit`
(the model, linear in its tables), :mod:`rig.fit.separable` (the outer least squares),
:mod:`rig.fit.group_fit` (each group's capacity) and :mod:`rig.fit.thermal_fit` (heat capacity and
conductance); :mod:`rig.fit.fit_report` writes the physics file, the residuals and the
measured-vs-model plots (:mod:`rig.fit.replay`); :mod:`rig.fit.command` is the command line.
"""
