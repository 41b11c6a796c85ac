"""Small array helpers shared by the tracking stages.

All functions run on NumPy or CuPy arrays; the result lives where the first
array argument lives.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._blocks import blocks, for_each_block
from magtrack_dask.core._checks import check_odd_int, quiet
from magtrack_dask.validation import InputError, InputTypeError

__all__ = [
    "binmean",
    "pearson",
    "gaussian",
    "gaussian_2d",
    "crop_stack_to_rois",
    "parabolic_vertex",
]


def binmean(x, weights, n_bins: int):
    """Mean of ``weights`` per integer bin, column by column.

    Parameters
    ----------
    x : (n_values, n_datasets) int array
        Bin of each value, ``0 <= x``. Clipped **in place** to ``n_bins``;
        values that land on ``n_bins`` are dropped from the result.
    weights : (n_values, n_datasets) float array
        Values to average.
    n_bins : int
        Number of bins returned.

    Returns
    -------
    bin_means : (n_bins, n_datasets) array of ``weights.dtype``
        Mean per bin; NaN where a bin is empty.

    Notes
    -----
    One ``bincount`` over a combined (bin, column) index replaces the scatter
    ``add.at`` of the reference, which is much slower.
    """
    xp = array_module(x, weights)
    if x.ndim != 2 or weights.shape != x.shape:
        raise InputError(
            f"x and weights must be 2-D arrays of the same shape (n_values, n_datasets), "
            f"got {x.shape} and {weights.shape}"
        )
    if x.dtype.kind not in "iu":
        raise InputTypeError(f"x must be an integer array, got dtype {x.dtype}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise InputError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if x.size and x.dtype.kind == "i" and int(x.min()) < 0:
        raise InputError("x must be >= 0: bins are the integers 0 .. n_bins - 1")
    n_bins = int(n_bins)
    xp.minimum(x, n_bins, out=x)

    n_datasets = x.shape[1]
    stride = n_bins + 1
    index = (x.astype(np.intp) * n_datasets + xp.arange(n_datasets)).ravel()
    sums = xp.bincount(index, weights=weights.ravel(), minlength=stride * n_datasets)
    counts = xp.bincount(index, minlength=stride * n_datasets)
    with quiet(xp):
        means = sums.reshape(stride, n_datasets) / counts.reshape(stride, n_datasets)
    return means[:n_bins].astype(weights.dtype, copy=False)


def _centred(xp, a):
    """Columns minus their NaN-ignoring mean, NaN entries set to zero."""
    mean = a.mean(axis=0, keepdims=True)
    # A NaN entry makes its column's mean NaN: the common case tests the means
    # only and skips the NaN machinery.
    if not (bool(xp.isnan(mean).any()) and bool(xp.isnan(a).any())):
        return a - mean
    with warnings.catch_warnings():  # an all-NaN column is a lost bead, not news
        warnings.simplefilter("ignore", RuntimeWarning)
        return xp.nan_to_num(a - xp.nanmean(a, axis=0, keepdims=True))


def pearson(x, y):
    """Pearson correlation of every column of ``y`` with every column of ``x``.

    Parameters
    ----------
    x : (n, m) array
    y : (n, k) array
        NaN entries are ignored in the means and contribute nothing to the sums.

    Returns
    -------
    r : (k, m) array
        ``r[i, j]`` correlates ``y[:, i]`` with ``x[:, j]``.
    """
    xp = array_module(x, y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InputError(
            f"x and y must be 2-D with the same number of rows, got shapes {x.shape} and {y.shape}"
        )
    with quiet(xp):
        xc, yc = _centred(xp, x), _centred(xp, y)  # fresh arrays: scaled in place
        # Unit columns first: r is then one GEMM, with no outer product of the
        # norms and no division pass over the (k, m) result. Mixed float32
        # and float64 inputs are scaled in float64, as the reference divides.
        dtype = xp.result_type(xc, yc)
        xc, yc = xc.astype(dtype, copy=False), yc.astype(dtype, copy=False)
        xc /= xp.sqrt(xp.einsum("ij,ij->j", xc, xc))
        yc /= xp.sqrt(xp.einsum("ij,ij->j", yc, yc))
        return yc.T @ xc


_GAUSS_MIN_SIZE = 8192  # outer products from this many values take the GEMM path (where it pays)
_GAUSS_MAX_SPAN = 860.0  # bound on (max|x~| + max|mu~|)**2 there (base 2): see gaussian's Notes
_EPS = float(np.finfo(np.float64).eps)


def gaussian(x, mu, sigma):
    """Un-normalised 1-D Gaussian ``exp(-(x - mu)**2 / (2 sigma**2))``.

    Parameters
    ----------
    x : array_like
        Positions.
    mu : float or array_like
        Centre, broadcast against ``x``.
    sigma : float
        Standard deviation, in the units of ``x``.

    Returns
    -------
    array_like
        Values in ``(0, 1]``, shaped like ``x - mu``.

    Notes
    -----
    An outer product with a float64 result -- ``x`` an ``(n, 1)`` column and
    ``mu`` a ``(1, m)`` row, as :func:`gaussian_2d` and the pipeline pass them
    -- is computed on NumPy by one matrix product and one ``exp2`` instead of
    three full-size passes before the exponential. With ``x~ = (x - x0) s``
    and ``mu~ = (mu - x0) s``, ``s = sqrt(log2(e) / 2) / sigma`` and ``x0``
    the middle of ``x``, the result is ``2**E`` for
    ``E = -(x~ - mu~)**2 - beta = [2 x~, -1, -x~**2 - beta] @ [mu~, mu~**2, 1]``.
    Expanding the square costs cancellation: the product's rounding moves
    ``E`` by at most ``2 eps U**2`` (``U = max|x~| + max|mu~|``), so the
    path is taken only where ``U**2 <= 860``. There the relative error is
    below 2e-12 (a few 1e-15 for a bead window, ``U**2 ~ 10``), about what
    the direct formula's own rounding gives in the tails, and every value is
    above ``2**-860``, far from float64's subnormals; the far tails (where
    the direct formula underflows) take the direct formula. The bias
    ``beta = 4 eps U**2`` exceeds that rounding, so values stay <= 1; the
    value at ``x == mu`` is ``1 - beta ln 2`` (a few 1e-15) instead of
    exactly 1. Elsewhere -- fewer than 8192 values, other shapes, float32
    results (the reference's float32 rounding), CuPy (the direct formula is
    one memory-bound pass there) -- the direct formula is evaluated.
    """
    xp = array_module(x, mu)
    if not isinstance(sigma, (int, float)):
        return xp.exp(-((x - mu) ** 2) / (2 * sigma**2))
    if xp is np:
        out = _gaussian_outer(x, mu, float(sigma))
        if out is not None:
            return out
    # One temporary, updated in place: three passes fewer than the formula.
    d = xp.asarray(xp.subtract(x, mu))
    if d.dtype.kind not in "fc":
        d = d.astype(np.float64)
    d *= d
    d /= -2 * sigma**2
    return xp.exp(d, out=d) if d.ndim else xp.exp(d)


def _gaussian_outer(x, mu, sigma: float):
    """:func:`gaussian` of a column ``x`` and a row ``mu`` through one GEMM
    (see its Notes); None where that path does not apply."""
    if not (type(x) is np.ndarray and type(mu) is np.ndarray and x.ndim == 2 and x.shape[1] == 1):
        return None
    if mu.ndim not in (1, 2) or (mu.ndim == 2 and mu.shape[0] != 1):
        return None
    n, m = x.shape[0], mu.shape[-1]
    if n * m < _GAUSS_MIN_SIZE or np.result_type(x, mu) != np.float64 or x.dtype.kind not in "fiu":
        return None
    if sigma == 0:  # the direct formula's inf / NaN
        return None
    # In base 2 (exp2 is the faster of the two): exponent * log2(e).
    scale = math.sqrt(0.5 / math.log(2.0)) / sigma  # NaN sigma: the span test below fails
    col = x[:, 0]
    centre = 0.5 * (float(col[0]) + float(col[-1]))
    lhs = np.empty((n, 3))  # [2 x~, -1, -x~**2 - beta]
    rhs = np.empty((3, m))  # [mu~, mu~**2, 1]
    xs, ms = lhs[:, 0], rhs[0]
    np.subtract(col, centre, out=xs)
    xs *= scale
    np.subtract(mu.reshape(m), centre, out=ms)
    ms *= scale
    span = float(np.abs(xs).max()) + float(np.abs(ms).max())
    span *= span
    if not span <= _GAUSS_MAX_SPAN:  # NaN or inf anywhere fails here too
        return None
    np.multiply(ms, ms, out=rhs[1])
    rhs[2] = 1.0
    np.multiply(xs, xs, out=lhs[:, 2])
    np.subtract(-4 * _EPS * span, lhs[:, 2], out=lhs[:, 2])
    lhs[:, 1] = -1.0
    xs *= 2.0
    out = lhs @ rhs
    return np.exp2(out, out=out)


def gaussian_2d(x, y, mu_x, mu_y, sigma):
    """Stack of 2-D Gaussians, one per centre, on the grid ``x`` by ``y``.

    Parameters
    ----------
    x, y : 1-D arrays
        Grid coordinates along the first and second output axes.
    mu_x, mu_y : (n_images,) arrays
        Centre of each image along ``x`` (first axis) and ``y`` (second axis).
    sigma : float
        Standard deviation along both axes.

    Returns
    -------
    (len(x), len(y), n_images) array
    """
    # exp(a + b) = exp(a) exp(b): two small 1-D evaluations instead of a full 3-D exp.
    gx = gaussian(x[:, None], mu_x[None, :], sigma)
    gy = gaussian(y[:, None], mu_y[None, :], sigma)
    xp = array_module(gx)
    out = xp.empty((gx.shape[0], gy.shape[0], gx.shape[1]), dtype=xp.result_type(gx, gy))

    def work(part, _):  # rows in blocks on the core's threads: the output's writes bound the time
        xp.multiply(gx[part, None, :], gy[None, :, :], out=out[part])

    for_each_block(xp, blocks(xp, gx.shape[0], out[:1].nbytes), work)
    return out


def crop_stack_to_rois(stack, rois):
    """Crop square regions of interest out of every frame.

    Parameters
    ----------
    stack : (n_rows, n_cols, n_images) array of any dtype
        Full frames, frame axis last. Frames need not be square.
    rois : (n_roi, 4) int array
        ``[top, bottom, left, right]`` of each ROI, bottom/right exclusive. All
        ROIs must be squares of one size and lie inside the frame.

    Returns
    -------
    cropped_stack : (width, width, n_images, n_roi) array, same dtype as ``stack``
    """
    xp = array_module(stack)
    if getattr(stack, "ndim", None) != 3:
        raise InputError(
            f"stack must be a 3-D array (n_rows, n_cols, n_images), got shape {getattr(stack, 'shape', None)}"
        )
    rois_host = np.asarray(rois.get() if hasattr(rois, "get") else rois)
    if rois_host.ndim != 2 or rois_host.shape[1] != 4 or rois_host.shape[0] == 0:
        raise InputError(f"rois must have shape (n_roi, 4) with n_roi >= 1, got {rois_host.shape}")
    if rois_host.dtype.kind not in "iu":
        raise InputTypeError(f"rois must be integers [top, bottom, left, right], got dtype {rois_host.dtype}")
    heights = rois_host[:, 1] - rois_host[:, 0]
    widths = rois_host[:, 3] - rois_host[:, 2]
    if (heights != widths).any() or (heights != heights[0]).any() or heights[0] < 1:
        raise InputError(
            "rois must all be squares of the same positive size; got heights "
            f"{heights.tolist()} and widths {widths.tolist()}"
        )
    inside = (rois_host[:, 0] >= 0) & (rois_host[:, 1] <= stack.shape[0])
    inside &= (rois_host[:, 2] >= 0) & (rois_host[:, 3] <= stack.shape[1])
    if not inside.all():
        bad = np.flatnonzero(~inside).tolist()
        raise InputError(
            f"rois {bad} extend outside the frame of {stack.shape[0]} x {stack.shape[1]} pixels"
        )
    width = int(heights[0])
    # Stored ROI-major, returned as a (width, width, n_images, n_roi) view:
    # each ROI is then one contiguous block, filled by a copy of whole rows
    # of frames, instead of a write every n_roi elements. The rows of all
    # ROIs are copied in blocks on the core's threads (a copy this size is
    # bound by memory and page faults, which several threads take faster).
    out = xp.empty((len(rois_host), width, width, stack.shape[2]), dtype=stack.dtype)
    corners = rois_host[:, [0, 2]].tolist()

    def work(part, _):
        start = part.start
        while start < part.stop:  # the block's rows, ROI by ROI
            roi, row = divmod(start, width)
            n_rows = min(part.stop, (roi + 1) * width) - start
            top, left = corners[roi]
            out[roi, row : row + n_rows] = stack[top + row : top + row + n_rows, left : left + width]
            start += n_rows

    row_bytes = width * stack.shape[2] * stack.dtype.itemsize
    for_each_block(xp, blocks(xp, len(corners) * width, row_bytes), work)
    return out.transpose(1, 2, 3, 0)


@functools.lru_cache(maxsize=16)
def _parabola_kernels(n_local: int, weighted: bool):
    """Dot-product kernels giving the slope ``b`` and curvature ``a`` of a
    least-squares parabola through ``n_local`` equally spaced points.

    With positions ``u`` centred on zero and symmetric weights, the odd moments
    vanish, so the normal equations split into a 1x1 system for ``b`` and a
    2x2 system for ``a`` and ``c``: a closed form instead of ``polyfit``.
    """
    half = n_local // 2
    u = np.arange(-half, half + 1, dtype=np.float64)
    # polyfit weights multiply the residuals, so the least-squares weights are w**2.
    w = (half - np.abs(u) + 1) if weighted else np.ones_like(u)
    w2 = w * w
    s0, s2, s4 = w2.sum(), (w2 * u**2).sum(), (w2 * u**4).sum()
    k_b = w2 * u / s2
    k_a = w2 * (s0 * u**2 - s2) / (s0 * s4 - s2**2)
    k_a.flags.writeable = k_b.flags.writeable = False  # cached: shared by every call
    return k_a, k_b


@functools.lru_cache(maxsize=16)
def _parabola_kernel_matrix(n_local: int, weighted: bool):
    """``[k_b, k_a]`` of :func:`_parabola_kernels` as the columns of one
    ``(n_local, 2)`` matrix."""
    k_a, k_b = _parabola_kernels(n_local, weighted)
    matrix = np.stack([k_b, k_a], axis=1)
    matrix.flags.writeable = False
    return matrix


def parabolic_vertex(data, vertex_est, n_local: int, weighted=True):
    """Refine the position of a local extremum with a parabola fit.

    Parameters
    ----------
    data : (n_datasets, n_datapoints) float array
        One curve per row.
    vertex_est : (n_datasets,) float array
        Estimated index of the extremum in each row.
    n_local : int
        Number of points around the estimate to fit; odd, >= 3.
    weighted : bool, optional
        Weight the points by ``n_local // 2 + 1 - |offset|`` (on the residuals),
        emphasising the central points. Default True.

    Returns
    -------
    vertex : (n_datasets,) float64 array
        Sub-sample vertex position; NaN where the fit window would touch the
        ends of the row or the estimate is not finite.
    """
    xp = array_module(data, vertex_est)
    n_local = check_odd_int(n_local, "n_local")
    if data.ndim != 2:
        raise InputError(f"data must be 2-D (n_datasets, n_datapoints), got shape {data.shape}")
    n_sets, n_points = data.shape
    if n_local > n_points:
        raise InputError(f"n_local ({n_local}) must not exceed the number of data points ({n_points})")
    est = xp.asarray(vertex_est, dtype=np.float64)
    if est.shape != (n_sets,):
        raise InputError(f"vertex_est must have shape ({n_sets},), got {est.shape}")
    half = n_local // 2
    lo, hi = half, n_points - half - 1
    # fmax sends NaN to lo and fmin sends inf to hi: estimates that are not
    # finite end on an edge, NaN below like the edges themselves.
    centre = xp.rint(xp.fmin(xp.fmax(est, lo), hi))
    index = centre.astype(np.intp)
    if xp is np and data.flags.c_contiguous:  # flat indices: no index grids
        index += np.arange(0, n_sets * n_points, n_points)
        window = data.reshape(-1)[index[:, None] + np.arange(-half, half + 1)]
    else:
        window = xp.take_along_axis(data, index[:, None] + xp.arange(-half, half + 1), axis=1)
    return _window_vertex(xp, window, centre, n_local, weighted, lo, hi)


def _window_vertex(xp, window, centre, n_local: int, weighted: bool, lo: int, hi: int):
    """Vertex of the least-squares parabola through each row of ``window``
    ``(n, n_local)``, the values about index ``centre`` ``(n,)``; NaN where the
    centre is at or beyond ``lo`` or ``hi`` (the window touches an end)."""
    # Slope and curvature sums in one product: b / (2 a) is 0.5 (b / a) exactly.
    sums = window @ xp.asarray(_parabola_kernel_matrix(n_local, bool(weighted)))
    with quiet(xp):
        vertex = xp.divide(sums[:, 0], sums[:, 1])
    vertex *= -0.5
    vertex += centre
    vertex[(centre <= lo) | (centre >= hi)] = np.nan
    return vertex
