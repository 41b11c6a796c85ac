"""After tracking: what a magnetic-tweezers user computes from the tracked traces.

Force calibration from a bead's lateral fluctuations (:mod:`.force`, built on the
trap model :mod:`.trap`, the power spectrum :mod:`.psd` and the Allan variance
:mod:`.allan`). Results in, numbers with uncertainties out; no Dask, no I/O.

Whole results: reference-bead drift (:mod:`.drift`), the extension above the surface
(:mod:`.extension`), magnet plateaus from a magnet log (:mod:`.magnet`), and
:func:`~.analyze.analyze`, which runs them and the calibration per bead and plateau
(Dask tasks, a Zarr store out); exports (:mod:`.export`) and plots (:mod:`.plots`).
"""
