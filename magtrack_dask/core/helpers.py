"""Small array helpers shared by the tracking stages.

All functions run on NumPy or CuPy arrays; the result lives where the first
array argument lives.
"""

from __future__ import annotations

import warnings

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._checks import check_odd_int, quiet

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
    ``add.at`` of the reference, which is an order of magnitude slower.
    """
    xp = array_module(x, weights)
    if x.ndim != 2 or weights.shape != x.shape:
        raise ValueError(
            f"x and weights must be 2-D arrays of the same shape (n_values, n_datasets), "
            f"got {x.shape} and {weights.shape}"
        )
    if x.dtype.kind not in "iu":
        raise TypeError(f"x must be an integer array, got dtype {x.dtype}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if x.size and x.dtype.kind == "i" and int(x.min()) < 0:
        raise ValueError("x must be >= 0: bins are the integers 0 .. n_bins - 1")
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
    if not bool(xp.isnan(a).any()):  # the common case skips the NaN machinery
        return a - a.mean(axis=0, keepdims=True)
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
        raise ValueError(
            f"x and y must be 2-D with the same number of rows, got shapes {x.shape} and {y.shape}"
        )
    with quiet(xp):
        xc, yc = _centred(xp, x), _centred(xp, y)  # fresh arrays: scaled in place
        sx = xp.sqrt((xc * xc).sum(axis=0))
        sy = xp.sqrt((yc * yc).sum(axis=0))
        if xc.dtype != np.float64 or yc.dtype != np.float64:
            # float32: the reference's order of rounding (small r differ otherwise)
            r = yc.T @ xc
            r /= sy[:, None] * sx[None, :]
            return r
        # Unit columns first: the (k, m) result is then one GEMM, with no
        # outer product of the norms and no division pass over it.
        xc /= sx
        yc /= sy
        return yc.T @ xc


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
    """
    xp = array_module(x, mu)
    if not isinstance(sigma, (int, float)):
        return xp.exp(-((x - mu) ** 2) / (2 * sigma**2))
    # One temporary, updated in place: three passes fewer than the formula.
    d = xp.asarray(xp.subtract(x, mu))
    if d.dtype.kind not in "fc":
        d = d.astype(np.float64)
    d *= d
    d /= -2 * sigma**2
    return xp.exp(d, out=d) if d.ndim else xp.exp(d)


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
    return gx[:, None, :] * gy[None, :, :]


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
        raise ValueError(
            f"stack must be a 3-D array (n_rows, n_cols, n_images), got shape {getattr(stack, 'shape', None)}"
        )
    rois_host = np.asarray(rois.get() if hasattr(rois, "get") else rois)
    if rois_host.ndim != 2 or rois_host.shape[1] != 4 or rois_host.shape[0] == 0:
        raise ValueError(f"rois must have shape (n_roi, 4) with n_roi >= 1, got {rois_host.shape}")
    if rois_host.dtype.kind not in "iu":
        raise TypeError(f"rois must be integers [top, bottom, left, right], got dtype {rois_host.dtype}")
    heights = rois_host[:, 1] - rois_host[:, 0]
    widths = rois_host[:, 3] - rois_host[:, 2]
    if (heights != widths).any() or (heights != heights[0]).any() or heights[0] < 1:
        raise ValueError(
            "rois must all be squares of the same positive size; got heights "
            f"{heights.tolist()} and widths {widths.tolist()}"
        )
    inside = (rois_host[:, 0] >= 0) & (rois_host[:, 1] <= stack.shape[0])
    inside &= (rois_host[:, 2] >= 0) & (rois_host[:, 3] <= stack.shape[1])
    if not inside.all():
        bad = np.flatnonzero(~inside).tolist()
        raise ValueError(
            f"rois {bad} extend outside the frame of {stack.shape[0]} x {stack.shape[1]} pixels"
        )
    width = int(heights[0])
    # Stored ROI-major, returned as a (width, width, n_images, n_roi) view:
    # each ROI is then one contiguous block, filled by a copy of whole rows
    # of frames, instead of a write every n_roi elements.
    out = xp.empty((len(rois_host), width, width, stack.shape[2]), dtype=stack.dtype)
    for i, (top, bottom, left, right) in enumerate(rois_host.tolist()):
        out[i] = stack[top:bottom, left:right, :]
    return out.transpose(1, 2, 3, 0)


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
    return k_a, k_b


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
        raise ValueError(f"data must be 2-D (n_datasets, n_datapoints), got shape {data.shape}")
    n_sets, n_points = data.shape
    if n_local > n_points:
        raise ValueError(f"n_local ({n_local}) must not exceed the number of data points ({n_points})")
    est = xp.asarray(vertex_est, dtype=np.float64)
    if est.shape != (n_sets,):
        raise ValueError(f"vertex_est must have shape ({n_sets},), got {est.shape}")
    half = n_local // 2
    lo, hi = half, n_points - half - 1
    finite = xp.isfinite(est)
    centre = xp.rint(xp.clip(xp.where(finite, est, lo), lo, hi)).astype(np.int64)
    window = xp.take_along_axis(data, centre[:, None] + xp.arange(-half, half + 1), axis=1)
    k_a, k_b = (xp.asarray(k) for k in _parabola_kernels(n_local, bool(weighted)))
    with quiet(xp):
        vertex = centre - (window @ k_b) / (2.0 * (window @ k_a))
    return xp.where(finite & (centre != lo) & (centre != hi), vertex, np.nan)
