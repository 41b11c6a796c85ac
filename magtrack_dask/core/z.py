"""Axial (z) position from radial profiles and a Z look-up table."""

from __future__ import annotations

import warnings

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._checks import check_odd_int
from magtrack_dask.core.helpers import parabolic_vertex, pearson

__all__ = ["lookup_z", "check_zlut"]


def check_zlut(zlut, n_bins: int | None = None, *, name: str = "zlut") -> None:
    """Validate a Z-LUT of shape ``(1 + n_bins, n_ref)``.

    Row 0 must be finite and strictly monotonic (the z positions), the profile
    rows used for matching (2 onwards) finite, and, when ``n_bins`` is given, the bin counts must agree.
    """
    xp = array_module(zlut)
    if getattr(zlut, "ndim", None) != 2:
        raise ValueError(
            f"{name} must be 2-D, shape (1 + n_bins, n_ref), got shape {getattr(zlut, 'shape', None)}"
        )
    if zlut.shape[0] < 3 or zlut.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 profile bins and 2 reference z positions, got shape {zlut.shape}")
    if n_bins is not None and zlut.shape[0] - 1 != n_bins:
        raise ValueError(
            f"profiles have {n_bins} radial bins but {name} has {zlut.shape[0] - 1} "
            f"(shape {zlut.shape}; expected (1 + {n_bins}, n_ref))"
        )
    if zlut.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be real numbers, got dtype {zlut.dtype}")
    # Row 1 (the central bin) is never correlated and may be NaN when a
    # reference centre sat between pixels, so it is not checked.
    if not (bool(xp.isfinite(zlut[0]).all()) and bool(xp.isfinite(zlut[2:]).all())):
        bad = ~xp.isfinite(zlut)
        bad[1] = False
        row, col = (int(i[0]) for i in xp.nonzero(bad))
        raise ValueError(f"{name} contains NaN or inf (at row {row}, column {col}); z positions and "
                         "profile bins 1.. must be finite")
    z = zlut[0].astype(np.float64)
    step = xp.diff(z)
    if not (bool((step > 0).all()) or bool((step < 0).all())):
        i = int(xp.argmax(step == 0)) if bool((step == 0).any()) else int(xp.argmax(step * step[0] <= 0))
        what = "repeats" if float(step[i]) == 0 else "reverses the order"
        raise ValueError(f"{name}[0] (the z positions) must be strictly increasing or decreasing, without "
                         f"duplicates; z[{i + 1}] = {float(z[i + 1]):g} {what} after z[{i}] = {float(z[i]):g}")


def lookup_z(profiles, zlut, n_local=7):
    """z of each profile by correlation with a Z-LUT and a parabola fit.

    Parameters
    ----------
    profiles : (n_bins, n_images) float array
        Radial profiles, e.g. from :func:`radial_profile`.
    zlut : (1 + n_bins, n_ref) float array
        Row 0 holds the reference z positions (strictly monotonic), rows below
        the reference profiles. The first profile bin (the central pixel) is
        left out of the correlation.
    n_local : int, optional
        Correlation values fitted around the best match; odd, >= 3. Default 7.
        With fewer than ``n_local`` references the best match is returned
        unrefined, with a warning.

    Returns
    -------
    z : (n_images,) float64 array
        In the units of ``zlut[0]``; NaN where the best match lies within
        ``n_local // 2`` references of either end of the LUT.

    Raises
    ------
    ValueError
        When the bin counts of ``profiles`` and ``zlut`` differ (both sizes are
        named) or the LUT is malformed.
    """
    xp = array_module(profiles, zlut)
    n_local = check_odd_int(n_local, "n_local")
    if getattr(profiles, "ndim", None) != 2:
        raise ValueError(f"profiles must be 2-D (n_bins, n_images), got shape {getattr(profiles, 'shape', None)}")
    zlut = xp.asarray(zlut)
    check_zlut(zlut, profiles.shape[0])
    ref_z = zlut[0].astype(np.float64)
    n_ref = zlut.shape[1]
    # Correlate in float64: profiles are small and float32 rounding in r would
    # be amplified by the parabola fit.
    r = pearson(zlut[2:].astype(np.float64), profiles[1:].astype(np.float64))
    # argmax would pick NaN: make it the worst match (copy only when present)
    scores = xp.nan_to_num(r, nan=-np.inf) if bool(xp.isnan(r).any()) else r
    best = xp.argmax(scores, axis=1).astype(np.float64)
    if n_ref < n_local:
        warnings.warn(
            f"lookup_z: zlut has {n_ref} reference profiles, fewer than n_local={n_local}; "
            "returning the best match without sub-step refinement",
            UserWarning,
            stacklevel=2,
        )
        index = best
    else:
        index = parabolic_vertex(r, best, n_local)
    return xp.interp(index, xp.arange(n_ref, dtype=np.float64), ref_z, left=np.nan, right=np.nan)
