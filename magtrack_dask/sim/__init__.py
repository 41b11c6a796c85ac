"""Synthetic data with known truth: bead images (:mod:`.beads`) and whole archives (:mod:`.archives`).

Used by the tests, the demo and the benchmarks; nothing in :mod:`magtrack_dask.io`
or the tracking layers imports it.
"""
