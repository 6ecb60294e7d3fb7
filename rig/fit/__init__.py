"""``packrig fit``: the emulated pack's physics fitted to a real pack's characterisation runs.

:mod:`rig.fit.series` reads run folders into time series, :mod:`rig.fit.pack_fit` fits the
equivalent circuit, capacity, spread and thermal node to them, :mod:`rig.fit.fit_report` writes
the physics file, the residuals and the measured-vs-model plots, :mod:`rig.fit.command` is the
command line.
"""
