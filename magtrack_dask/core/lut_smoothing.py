"""Calibration noise out of a Z-LUT: each bin smoothed along z to the noise the frames show.

A LUT plane averages a few noisy calibration frames; matching against that
noise adds to every tracked z. Each profile bin is replaced by a cubic
smoothing spline along z whose weighted residuals match the scatter of the
plane means (FITPACK's ``s = n_planes`` with weights ``1 / standard error``,
the chi-square criterion): noise is removed, the rings' change with z, many
times larger, is kept. Without at least two frames in some plane the scatter is
unknown and the bin is left as it is.
"""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_planes"]


def smooth_planes(z, mean, sem) -> np.ndarray:
    """Each row of ``mean`` smoothed along ``z`` to its standard error.

    Parameters
    ----------
    z : (n_ref,) float array
        Plane z, strictly increasing.
    mean : (n_bins, n_ref) float array
        Mean profile of each plane.
    sem : (n_bins, n_ref) float array
        Standard error of each mean (NaN where a plane has one frame); each bin
        uses its median over the planes.

    Returns
    -------
    (n_bins, n_ref) float64 ndarray
        The smoothing spline at ``z``; rows without a usable standard error,
        and LUTs of fewer than 4 planes, unchanged.
    """
    from scipy.interpolate import UnivariateSpline  # on first use: the package imports fast

    z = np.asarray(z, dtype=np.float64)
    out = np.array(mean, dtype=np.float64)
    if z.size < 4:
        return out
    with np.errstate(all="ignore"):
        scale = np.nanmedian(np.where(np.isfinite(sem), sem, np.nan), axis=1) if np.isfinite(sem).any() else None
    if scale is None:
        return out
    for k, s in enumerate(scale):
        if np.isfinite(s) and s > 0 and np.isfinite(out[k]).all():
            out[k] = UnivariateSpline(z, out[k], w=np.full(z.size, 1.0 / s), k=3, s=float(z.size))(z)
    return out
