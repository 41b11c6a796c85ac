"""After tracking: what a magnetic-tweezers user computes from the tracked traces.

Force calibration from a bead's lateral fluctuations (:mod:`.force`, built on the
trap model :mod:`.trap`, the power spectrum :mod:`.psd` and the Allan variance
:mod:`.allan`). Results in, numbers with uncertainties out; no Dask, no I/O.
"""
