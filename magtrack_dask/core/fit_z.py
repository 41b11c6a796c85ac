"""z by a weighted least-squares match of profiles to a Z-LUT refined along z by a cubic spline.

For a profile ``p`` and the LUT's profile ``L(z)`` the match fits an
intensity scale ``a > 0`` and offset ``b`` (illumination drifts between
calibration and measurement):

    chi2(z) = min_{a, b} sum_k w_k (p_k - a L_k(z) - b)^2 = S_pp - s(z)^2,
    s(z) = sum_k w_k p_k C_k(z) / sqrt(sum_k w_k C_k(z)^2),

with ``C(z) = L(z) - mean_w L(z)``. ``L(z)`` is a not-a-knot cubic spline of
each bin along the LUT's z (centring commutes with it), so on each LUT step
the numerator is a cubic and the squared norm a degree-6 polynomial in the
step fraction: the LUT's own plane spacing no longer sets the error,
interpolation does. The best plane by ``s`` starts a few safeguarded Newton
steps on ``log s(z)`` over the two steps around it.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module, to_numpy
from magtrack_dask.core._blocks import gemm_blocks
from magtrack_dask.core._checks import quiet
from magtrack_dask.core.z import check_zlut
from magtrack_dask.validation import InputError, InputTypeError

__all__ = ["fit_z", "default_weights", "NEWTON_STEPS"]

#: Newton steps on the spline after the best plane; the step is quadratic, the
#: first from the parabola through the best plane's neighbours.
NEWTON_STEPS = 4


def default_weights(zlut) -> np.ndarray:
    """Inverse-variance-like weights of the profile bins: ``k / |mean_k|``.

    A profile sample at radius ``k`` px averages about ``2 pi k`` pixels, so
    its Poisson variance is about ``mean_k / (2 pi k)``: the weight is ``k``
    over the LUT's mean profile value at that radius when the LUT's values are
    all positive (intensities), else ``k`` (profiles normalised to zero mean).
    Bin 0 (the central sample, a few pixels) gets 0.

    Parameters
    ----------
    zlut : (1 + n_bins, n_ref) array

    Returns
    -------
    weights : (n_bins,) float64 ndarray
    """
    table = np.asarray(to_numpy(zlut), dtype=np.float64)[1:]
    k = np.arange(table.shape[0], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        positive = bool(np.all(table[1:] > 0))
    if positive:
        return k / table.mean(axis=1)
    return k


def _spline_coefficients(z, table):
    """Not-a-knot cubic spline coefficients of ``table`` ``(n_ref, n_bins)`` along ``z``:
    ``(4, n_ref - 1, n_bins)`` in powers of the step fraction ``u in [0, 1]``."""
    from scipy.interpolate import CubicSpline  # on first use: the package imports fast

    n_ref = len(z)
    if n_ref < 4:  # not-a-knot needs four planes; fewer give the natural spline
        spline = CubicSpline(z, table, axis=0, bc_type="natural")
    else:
        spline = CubicSpline(z, table, axis=0)
    h = np.diff(z)[:, None]
    c = spline.c  # (4, n_ref - 1, n_bins), powers 3, 2, 1, 0 of (z - z_j)
    return np.stack([c[3], c[2] * h, c[1] * h**2, c[0] * h**3])


def _poly_mul(a, b):
    """Coefficients (ascending) of the product of polynomials along axis 0."""
    out = np.zeros((a.shape[0] + b.shape[0] - 1,) + a.shape[1:])
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i + j] += a[i] * b[j]
    return out


class _Table:
    """A Z-LUT prepared for matching: weighted, centred, splined (host arrays)."""

    def __init__(self, zlut, weights):
        lut = np.asarray(to_numpy(zlut), dtype=np.float64)
        z = lut[0]
        if z[0] > z[-1]:  # a decreasing LUT: the same planes in increasing order
            lut = lut[:, ::-1]
            z = lut[0]
        self.z = z
        n_bins = lut.shape[0] - 1
        w = default_weights(lut) if weights is None else weights
        use = w > 0
        use &= np.isfinite(lut[1:]).all(axis=1)
        self.use = np.flatnonzero(use)
        if self.use.size < 2:
            raise InputError(f"fit_z needs at least 2 profile bins with weight > 0 and a finite Z-LUT row; "
                             f"got {self.use.size} of {n_bins}")
        w = w[self.use]
        self.w = w / w.mean()  # scale-free: chi2 is only compared across z
        table = lut[1:][self.use].T  # (n_ref, n_used)
        centred = table - (table @ self.w / self.w.sum())[:, None]
        self.planes = centred * self.w  # w C_j: the scores are profile . (w C_j)
        self.norm2 = np.einsum("jk,jk->j", centred * self.w, centred)
        coef = _spline_coefficients(z, centred)  # (4, n_ref - 1, n_used)
        self.coef = coef * self.w  # numerator polynomials' coefficients per bin
        # sum_k w_k C_k(u)^2 on each step: a degree-6 polynomial, the same for every image
        self.den = np.einsum("pjk,k->pj", _poly_mul(coef, coef * self.w), np.ones_like(self.w))


def _check_weights(weights, n_bins: int):
    if weights is None:
        return None
    w = np.asarray(to_numpy(weights))
    if w.dtype.kind not in "fiu":
        raise InputTypeError(f"weights must be real numbers, got dtype {w.dtype}")
    if w.shape != (n_bins,):
        raise InputError(f"weights must have one value per profile bin, shape ({n_bins},); got {w.shape}")
    w = w.astype(np.float64)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise InputError("weights must be finite and >= 0")
    return w


def fit_z(profiles, zlut, weights=None):
    """z of each profile by a weighted least-squares match to a spline-refined Z-LUT.

    Parameters
    ----------
    profiles : (n_bins, n_images) float array
        Radial profiles (any real values, normalised or not), NumPy or CuPy.
    zlut : (1 + n_bins, n_ref) array
        The spec's Z-LUT: row 0 the reference z (strictly monotonic, any
        spacing), rows below the profiles at those z; at least 2 planes.
    weights : (n_bins,) array_like, optional
        Weight of each bin in the match (0 leaves a bin out). Default
        :func:`default_weights`: ``k / mean_k``, inverse Poisson variance of a
        ring average.

    Returns
    -------
    z : (n_images,) float64 array
        In the units of ``zlut[0]``, on the profiles' device; NaN where the
        best match lies at the LUT's first or last plane (the profile may lie
        beyond the LUT), for profiles with a non-finite used bin, or where
        no positive intensity scale matches.

    Raises
    ------
    InputError
        Bins of ``profiles``, ``zlut`` and ``weights`` that disagree (sizes
        named), a malformed LUT (:func:`~magtrack_dask.core.z.check_zlut`),
        weights that are negative or not finite.
    """
    xp = array_module(profiles, zlut)
    if getattr(profiles, "ndim", None) != 2:
        raise InputError(f"profiles must be 2-D (n_bins, n_images), got shape {getattr(profiles, 'shape', None)}")
    if getattr(profiles, "dtype", np.dtype(object)).kind not in "fiu":
        raise InputTypeError(f"profiles must be real numbers, got dtype {getattr(profiles, 'dtype', None)}")
    zlut = xp.asarray(zlut)
    check_zlut(zlut, profiles.shape[0])
    table = _Table(zlut, _check_weights(weights, profiles.shape[0]))
    return _match(xp, profiles, table)


def _match(xp, profiles, table: _Table):
    p = profiles[xp.asarray(table.use)].T.astype(np.float64)  # (n_images, n_used)
    n_images, n_ref = p.shape[0], len(table.z)
    planes = xp.asarray(table.planes)
    best = xp.empty(n_images, dtype=np.int64)
    for part in gemm_blocks(xp, n_images, p.shape[1], n_ref):
        scores = p[part] @ planes.T / xp.sqrt(xp.asarray(table.norm2))
        best[part] = xp.argmax(xp.where(xp.isnan(scores), -np.inf, scores), axis=1)
    return _newton(xp, p, best, table)


def _newton(xp, p, best, table: _Table):
    """Newton steps on ``log s`` over the steps either side of each best plane."""
    n_ref = len(table.z)
    # the two steps around the best plane (one at the ends): polynomials per image
    first = xp.clip(best - 1, 0, n_ref - 2)
    last = xp.clip(best, 0, n_ref - 2)
    coef = xp.asarray(table.coef)  # (4, n_ref - 1, n_used)
    den = xp.asarray(table.den)  # (7, n_ref - 1)
    num_first = xp.stack([(p * coef[q, first]).sum(axis=1) for q in range(4)], axis=1)
    num_last = xp.stack([(p * coef[q, last]).sum(axis=1) for q in range(4)], axis=1)
    den_first, den_last = den[:, first].T, den[:, last].T
    # start: the parabola through s at the best plane's neighbours, as a plane position t
    t = best.astype(np.float64) + _parabola_start(xp, num_first, num_last, den_first, den_last, best, n_ref)
    lo = first.astype(np.float64)
    hi = last.astype(np.float64) + 1.0
    with quiet(xp):
        for _ in range(NEWTON_STEPS):
            on_last = t >= last
            u = xp.where(on_last, t - last, t - first)
            num = xp.where(on_last[:, None], num_last, num_first)
            dn = xp.where(on_last[:, None], den_last, den_first)
            n0, n1, n2 = _poly_derivs(xp, num, u)
            d0, d1, d2 = _poly_derivs(xp, dn, u)
            # h = 2 log N - log D; Newton on h' = 0, uphill only
            g = 2.0 * n1 / n0 - d1 / d0
            curv = 2.0 * (n2 * n0 - n1 * n1) / (n0 * n0) - (d2 * d0 - d1 * d1) / (d0 * d0)
            step = xp.where(curv < 0, -g / curv, xp.sign(g) * 0.5)
            step = xp.clip(step, -0.5, 0.5)
            t = xp.clip(t + step, lo, hi)
        on_last = t >= last
        u = xp.where(on_last, t - last, t - first)
        num = xp.where(on_last[:, None], num_last, num_first)
        scale_ok = _poly_derivs(xp, num, u)[0] > 0
    z_grid = xp.asarray(table.z)
    finite = xp.isfinite(t)
    t = xp.where(xp.isfinite(t), t, 0.0)  # NaN profiles: NaN below, no invalid cast here
    j = xp.clip(xp.floor(t).astype(np.int64), 0, n_ref - 2)
    z = z_grid[j] + (t - j) * (z_grid[j + 1] - z_grid[j])
    at_end = (t <= 0.0) | (t >= n_ref - 1.0)
    bad = at_end | ~scale_ok | ~xp.isfinite(p).all(axis=1) | ~finite
    return xp.where(bad, np.nan, z)


def _parabola_start(xp, num_first, num_last, den_first, den_last, best, n_ref):
    """Offset from the best plane to the vertex of the parabola through ``s`` at planes best-1, best, best+1."""
    s_mid = num_last[:, 0] / xp.sqrt(den_last[:, 0])  # u = 0 on the step after the best plane
    s_prev = num_first[:, 0] / xp.sqrt(den_first[:, 0])  # u = 0 on the step before
    s_next = num_last.sum(axis=1) / xp.sqrt(den_last.sum(axis=1))  # u = 1 on the step after
    interior = (best > 0) & (best < n_ref - 1)
    with quiet(xp):
        curve = s_prev - 2.0 * s_mid + s_next
        offset = xp.where(interior & (curve < 0), 0.5 * (s_prev - s_next) / curve, 0.0)
    return xp.clip(xp.nan_to_num(offset), -0.5, 0.5)


def _poly_derivs(xp, c, u):
    """Value, first and second derivative of polynomials ``c`` ``(n, degree + 1)`` (ascending) at ``u``."""
    deg = c.shape[1] - 1
    v = c[:, deg].copy()
    d1 = xp.zeros_like(v)
    d2 = xp.zeros_like(v)
    for q in range(deg - 1, -1, -1):  # Horner for the value and its two derivatives
        d2 = d2 * u + 2.0 * d1
        d1 = d1 * u + v
        v = v * u + c[:, q]
    return v, d1, d2
