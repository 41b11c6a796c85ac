"""Axial (z) position from radial profiles and a Z look-up table."""

from __future__ import annotations

import math
import warnings

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._blocks import block_size, blocks, for_each_block, gemm_blocks
from magtrack_dask.core._checks import check_odd_int, quiet
from magtrack_dask.core.helpers import parabolic_vertex, pearson, _window_vertex
from magtrack_dask.validation import InputError, InputTypeError

__all__ = ["lookup_z", "check_zlut"]


def check_zlut(zlut, n_bins: int | None = None, *, name: str = "zlut") -> None:
    """Validate a Z-LUT of shape ``(1 + n_bins, n_ref)``.

    Row 0 must be finite and strictly monotonic (the z positions), the profile
    rows used for matching (2 onwards) finite, and, when ``n_bins`` is given, the bin counts must agree.
    """
    xp = array_module(zlut)
    if getattr(zlut, "ndim", None) != 2:
        raise InputError(
            f"{name} must be 2-D, shape (1 + n_bins, n_ref), got shape {getattr(zlut, 'shape', None)}"
        )
    if zlut.shape[0] < 3 or zlut.shape[1] < 2:
        raise InputError(f"{name} needs at least 2 profile bins and 2 reference z positions, got shape {zlut.shape}")
    if n_bins is not None and zlut.shape[0] - 1 != n_bins:
        raise InputError(
            f"profiles have {n_bins} radial bins but {name} has {zlut.shape[0] - 1} "
            f"(shape {zlut.shape}; expected (1 + {n_bins}, n_ref))"
        )
    if zlut.dtype.kind not in "fiu":
        raise InputTypeError(f"{name} must be real numbers, got dtype {zlut.dtype}")
    # Row 1 (the central bin) is never correlated and may be NaN when a
    # reference centre sat between pixels, so it is not checked.
    # One sum per part: NaN and inf propagate (an overflowing sum only sends
    # a finite LUT through the exact test).
    if not (math.isfinite(float(zlut[0].sum()) + float(zlut[2:].sum()))
            or (bool(xp.isfinite(zlut[0]).all()) and bool(xp.isfinite(zlut[2:]).all()))):
        bad = ~xp.isfinite(zlut)
        bad[1] = False
        row, col = (int(i[0]) for i in xp.nonzero(bad))
        raise InputError(f"{name} contains NaN or inf (at row {row}, column {col}); z positions and "
                         "profile bins 1.. must be finite")
    z = zlut[0].astype(np.float64)
    step = z[1:] - z[:-1]
    if not (float(step.min()) > 0 or float(step.max()) < 0):
        i = int(xp.argmax(step == 0)) if bool((step == 0).any()) else int(xp.argmax(step * step[0] <= 0))
        what = "repeats" if float(step[i]) == 0 else "reverses the order"
        raise InputError(f"{name}[0] (the z positions) must be strictly increasing or decreasing, without "
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
        raise InputError(f"profiles must be 2-D (n_bins, n_images), got shape {getattr(profiles, 'shape', None)}")
    zlut = xp.asarray(zlut)
    check_zlut(zlut, profiles.shape[0])
    n_ref = zlut.shape[1]
    if xp is np and n_ref >= n_local:
        z = _lookup_z_blocks(profiles, zlut, n_local)
        if z is not None:
            return z
    return _lookup_z_direct(xp, profiles, zlut, n_local)


def _lookup_z_direct(xp, profiles, zlut, n_local):
    """:func:`lookup_z` as the reference computes it: the full correlation
    matrix, its row maxima and :func:`parabolic_vertex`."""
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
            stacklevel=3,
        )
        index = best
    else:
        index = parabolic_vertex(r, best, n_local)
    return xp.interp(index, xp.arange(n_ref, dtype=np.float64), ref_z, left=np.nan, right=np.nan)


def _lookup_z_blocks(profiles, zlut, n_local):
    """:func:`lookup_z` on NumPy without the ``(n_images, n_ref)`` correlation
    matrix; None where the direct computation is needed (a constant
    reference profile).

    Three shortcuts, each giving the direct computation's z to rounding:

    * Scores ``s[i, j] = profile_i . u_j`` with ``u_j`` the centred,
      unit-norm reference profile: the Pearson ``r`` times the norm of the
      centred profile ``i`` (its mean drops out: ``u_j`` sums to zero).
      Per image a positive factor, which moves neither the best match nor
      the parabola's vertex (both sums of the fit scale alike).
    * Blocks of images on the core threads (:func:`for_each_block`), each
      filled in its thread's reused scratch by GEMMs small enough for the
      BLAS to run in the calling thread (:func:`gemm_blocks`): a block of
      scores goes from the GEMMs to ``argmax`` and to the ``n_local`` values
      around its maximum; no ``(n_images, n_ref)`` result is allocated, kept
      or checked for NaN.
    * The z grid ``zlut[0]`` is indexed ``0 .. n_ref - 1``: ``np.interp``'s
      formula without its binary search.

    Images with a non-finite value in their fit window (a NaN or infinite
    profile bin; a NaN is the maximum ``argmax`` returns) are recomputed by
    the direct method, which ignores NaN bins.
    """
    refs = zlut[2:]
    n_ref = refs.shape[1]
    units = refs.astype(np.float64)
    units -= units.mean(axis=0)
    norms = np.sqrt(np.einsum("ij,ij->j", units, units))
    if not norms.min() > 0:  # a constant reference: NaN correlations
        return None
    units /= norms
    rows = profiles[1:].T  # (n_images, n_bins)
    if rows.dtype != np.float64:
        rows = rows.astype(np.float64)
    n_images = rows.shape[0]
    half = n_local // 2
    lo, hi = half, n_ref - half - 1
    # A thread's scratch of scores holds several serial GEMMs' rows (steps);
    # argmax and the window take run once per scratch-full (fewer calls).
    step = block_size(gemm_blocks(np, n_images, rows.shape[1], n_ref))
    parts = blocks(np, n_images, 8 * n_ref, min_items=step)
    block = block_size(parts)
    window = np.empty((n_images, n_local))
    best = np.empty(n_images, dtype=np.intp)
    offsets = np.arange(-half, half + 1)
    row_starts = np.arange(0, block * n_ref, n_ref)

    def scratch():
        # One spare row: the windows of edge maxima (NaN below) may run past the block.
        buf = np.empty((block + 1, n_ref))
        buf[block] = 0.0
        return buf

    def work(part, buf):
        n = part.stop - part.start
        scores = buf[:n]
        for start in range(0, n, step):
            stop = min(start + step, n)
            np.matmul(rows[part.start + start : part.start + stop], units, out=scores[start:stop])
        top = scores.argmax(axis=1)
        best[part] = top
        top += row_starts[:n]
        np.take(buf.ravel(), top[:, None] + offsets, out=window[part], mode="wrap")

    with quiet(np):  # inf bins: inf - inf in the products, redone below
        for_each_block(np, parts, work, scratch)
        index = _window_vertex(np, window, best, n_local, True, lo, hi)  # as parabolic_vertex
    z = _interp_unit_grid(index, zlut[0].astype(np.float64))
    if not np.isfinite(window).all():  # one pass in the usual case; rows only when needed
        redo = np.flatnonzero(~np.isfinite(window).all(axis=1))
        z[redo] = _lookup_z_direct(np, profiles[:, redo], zlut, n_local)
    return z


def _interp_unit_grid(x, fp):
    """``np.interp(x, arange(len(fp)), fp, left=nan, right=nan)`` (the same
    formula, ``(fp[j + 1] - fp[j]) * (x - j) + fp[j]``), by index instead of
    a binary search per value."""
    last = len(fp) - 1
    j = np.floor(np.fmin(np.fmax(x, 0.0), last - 1))  # fmax: NaN -> 0, NaN again below
    at = j.astype(np.intp)
    z = x - j
    z *= (fp[1:] - fp[:-1])[at]
    z += fp[at]
    z[(x < 0) | (x > last)] = np.nan
    return z
