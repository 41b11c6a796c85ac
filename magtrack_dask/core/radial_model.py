"""A radially symmetric bead image model I(r, z) on cubic B-splines.

The intensity at radius ``r`` (px) from the bead centre and focus ``z`` is a
uniform cubic B-spline in ``r`` (knots every ``spacing`` px) whose
coefficients follow ``z`` through an interpolating cubic spline over the
calibration planes. The spline is even in ``r`` (its slope at ``r = 0`` is
zero), so the image and its derivatives are smooth at the centre. An image is

    mu(pixel) = amplitude * I(|pixel - (x, y)|, z) + background.

The model is fitted by linear least squares to samples ``(r, value)`` of each
plane (:func:`fit_planes`): pixels of calibration frames about their centres,
or the bins of a radial profile. Array code is written once for NumPy and
CuPy (``xp``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.validation import InputError

__all__ = ["RadialModel", "fit_planes", "bspline_weights"]

# Second-difference penalty, relative to the mean diagonal of the normal
# equations: it only decides coefficients that the samples leave free
# (radii no pixel reaches, gaps between sampled radii).
_SMOOTH = 1e-4


def bspline_weights(xp, s):
    """Uniform cubic B-spline weights and their derivatives at ``s`` (in knot units).

    Returns
    -------
    i : int array like ``s``
        ``floor(s)``: the four non-zero basis functions are those centred on
        knots ``i - 1 .. i + 2``.
    w, dw : lists of four arrays like ``s``
        Their values and derivatives with respect to ``s``.
    """
    i = xp.floor(s)
    u = s - i
    v = 1.0 - u
    u2 = u * u
    w = [v * v * v / 6, (3 * u2 * u - 6 * u2 + 4) / 6, (-3 * u2 * u + 3 * u2 + 3 * u + 1) / 6, u2 * u / 6]
    dw = [-v * v / 2, (3 * u2 - 4 * u) / 2, (-3 * u2 + 2 * u + 1) / 2, u2 / 2]
    return i.astype(np.int64), w, dw


@dataclasses.dataclass
class RadialModel:
    """Image model ``I(r, z)``: B-spline coefficients in ``r`` per focus plane.

    Attributes
    ----------
    z : (n_planes,) float64 array
        Focus positions of the planes, strictly increasing (the model's z units).
    coef : (n_planes, n_knots + 3) float64 array
        Coefficient of the B-spline centred on knot ``j`` (radius ``j * spacing``)
        at index ``j + 1``, ``j = -1 .. n_knots + 1``; index 0 mirrors index 2
        (even in ``r``).
    spacing : float
        Knot spacing in ``r``, px.
    z_smoothing : float, optional
        Weight of a third-difference penalty along the planes (Whittaker
        smoother) applied to ``coef`` before the cubic spline in z; 0 keeps
        the planes as they are. Noise in calibration planes would otherwise
        reach the z derivative, which a fit weighs most.
    n_pixels : int, optional
        Side of the images the model was learned from (None: any).
    """

    z: np.ndarray
    coef: np.ndarray
    spacing: float
    z_smoothing: float = 0.0
    n_pixels: int | None = None

    def __post_init__(self):
        from scipy.interpolate import CubicSpline

        self.z = np.asarray(self.z, np.float64)
        self.coef = np.asarray(self.coef, np.float64)
        if self.z.ndim != 1 or self.z.size < 2 or not np.all(np.diff(self.z) > 0):
            raise InputError("the model's planes z must be at least 2 strictly increasing values")
        if not np.isfinite(self.z_smoothing) or self.z_smoothing < 0:
            raise InputError(f"z_smoothing must be >= 0, got {self.z_smoothing!r}")
        coef = self.coef
        if self.z_smoothing > 0 and self.z.size > 3:
            d3 = np.diff(np.eye(self.z.size), 3, axis=0)
            coef = np.linalg.solve(np.eye(self.z.size) + self.z_smoothing * d3.T @ d3, coef)
        # Piecewise cubic in z on each interval: c(z) = sum_p pp[p] t**(3 - p), t = z - z[k].
        self.pp = CubicSpline(self.z, coef, axis=0).c
        self.r_max = (self.coef.shape[1] - 3) * self.spacing

    @property
    def z_range(self) -> tuple[float, float]:
        return float(self.z[0]), float(self.z[-1])

    def coefficients(self, z, xp=np):
        """``c(z)`` and ``dc/dz``, each ``(n, n_coef)``, for ``z`` of shape ``(n,)`` (clamped to the planes)."""
        z = xp.clip(xp.asarray(z, dtype=np.float64), self.z[0], self.z[-1])
        zp = xp.asarray(self.z)
        k = xp.clip(xp.searchsorted(zp, z, side="right") - 1, 0, self.z.size - 2)
        t = (z - zp[k])[:, None]
        pp = xp.asarray(self.pp)[:, k]
        c = ((pp[0] * t + pp[1]) * t + pp[2]) * t + pp[3]
        dc = (3 * pp[0] * t + 2 * pp[1]) * t + pp[2]
        return c, dc

    def intensity(self, r, c, dc=None, xp=np):
        """``I``, ``dI/dr`` (and ``dI/dz`` with ``dc``), each ``(n, m)``, at radii ``r`` ``(n, m)`` px
        for coefficient rows ``c``, ``dc`` ``(n, n_coef)``; ``dI/dr`` is 0 beyond ``r_max``."""
        s = xp.minimum(r, self.r_max * (1 - 1e-12)) / self.spacing
        i, w, dw = bspline_weights(xp, s)
        outside = r >= self.r_max
        vals = [xp.take_along_axis(c, i + k, axis=1) for k in range(4)]
        value = sum(wk * vk for wk, vk in zip(w, vals))
        slope = sum(wk * vk for wk, vk in zip(dw, vals)) / self.spacing
        slope = xp.where(outside, 0.0, slope)
        if dc is None:
            return value, slope
        dz = sum(wk * xp.take_along_axis(dc, i + k, axis=1) for k, wk in enumerate(w))
        return value, slope, dz

    def profile(self, radii, z=None) -> np.ndarray:
        """``I(radii, z)``, ``(n_radii, n_z)``; ``z`` defaults to the planes."""
        z = self.z if z is None else np.atleast_1d(np.asarray(z, np.float64))
        c, _ = self.coefficients(z)
        r = np.broadcast_to(np.asarray(radii, np.float64)[None, :], (z.size, len(radii)))
        return self.intensity(np.ascontiguousarray(r), c)[0].T

    def render(self, x, y, z, n_pixels: int, amplitude=1.0, background=0.0):
        """Expected images, ``(n_pixels, n_pixels, n)`` (core layout), of beads at ``x, y`` px and ``z``."""
        x, y, z = (np.atleast_1d(np.asarray(v, np.float64)) for v in (x, y, z))
        x, y, z = np.broadcast_arrays(x, y, z)
        grid = np.arange(n_pixels, dtype=np.float64)
        dx = grid[None, None, :] - x[:, None, None]
        dy = grid[None, :, None] - y[:, None, None]
        r = np.sqrt(dx * dx + dy * dy).reshape(x.size, -1)
        c, _ = self.coefficients(z)
        value = self.intensity(r, c)[0] * amplitude + background
        return np.ascontiguousarray(value.reshape(x.size, n_pixels, n_pixels).transpose(1, 2, 0))


def fit_planes(r, values, plane, n_planes: int, r_max: float, spacing: float, weights=None) -> np.ndarray:
    """Least-squares B-spline coefficients of each plane from samples ``(r, value)``.

    Parameters
    ----------
    r, values : (n_samples,) arrays
        Radius (px) and value of each sample.
    plane : (n_samples,) int array
        Plane of each sample, ``0 .. n_planes - 1``.
    n_planes : int
    r_max : float
        Largest radius the model covers, px.
    spacing : float
        Knot spacing, px.
    weights : (n_samples,) array, optional
        Sample weights (inverse variances); equal by default.

    Returns
    -------
    coef : (n_planes, n_knots + 3) float64 array
        See :class:`RadialModel`.
    """
    xp = array_module(values)
    n_knots = int(np.ceil(r_max / spacing)) + 1
    n_coef = n_knots + 3
    s = xp.minimum(xp.asarray(r, dtype=np.float64), (n_knots * spacing) * (1 - 1e-12)) / spacing
    i, w, _ = bspline_weights(xp, s)
    cols = [i + k for k in range(4)]
    cols[0] = xp.where(cols[0] == 0, 2, cols[0])  # the mirrored spline at knot -1 is knot 1's
    wt = xp.ones_like(s) if weights is None else xp.asarray(weights, dtype=np.float64)
    values = xp.asarray(values, dtype=np.float64)
    plane = xp.asarray(plane)
    size = n_planes * n_coef * n_coef
    ata = xp.zeros(size)
    aty = xp.zeros(n_planes * n_coef)
    for a in range(4):
        aty += xp.bincount(plane * n_coef + cols[a], weights=wt * w[a] * values, minlength=n_planes * n_coef)
        for b in range(4):
            flat = (plane * n_coef + cols[a]) * n_coef + cols[b]
            ata += xp.bincount(flat, weights=wt * w[a] * w[b], minlength=size)
    ata = ata.reshape(n_planes, n_coef, n_coef)[:, 1:, 1:]
    aty = aty.reshape(n_planes, n_coef)[:, 1:]
    d2 = np.diff(np.eye(n_coef - 1), 2, axis=0)
    scale = xp.maximum(xp.trace(ata, axis1=1, axis2=2) / (n_coef - 1), 1e-300)
    penalty = xp.asarray(d2.T @ d2)[None] * (_SMOOTH * scale)[:, None, None]
    penalty = penalty + xp.asarray(np.eye(n_coef - 1))[None] * (1e-12 * scale)[:, None, None]
    coef = _solve_banded(xp, ata + penalty, aty)
    coef = xp.concatenate([coef[:, 1:2], coef], axis=1)
    return coef


def _solve_banded(xp, matrices, rhs):
    """Solve the symmetric positive definite systems ``(n, m, m) x = (n, m)``: they are banded
    (the cubic splines overlap 4 knots, the penalty 3), so on the CPU a banded Cholesky
    factorisation per plane costs O(m) instead of O(m**3)."""
    if xp is not np:
        return xp.linalg.solve(matrices, rhs[..., None])[..., 0]
    from scipy.linalg import solveh_banded

    bands = 4  # super-diagonals: 3 from the splines' overlap, 2 from the second differences
    m = matrices.shape[1]
    out = np.empty_like(rhs)
    for k in range(matrices.shape[0]):
        ab = np.zeros((bands, m))
        for d in range(bands):
            ab[bands - 1 - d, d:] = np.diagonal(matrices[k], d)
        out[k] = solveh_banded(ab, rhs[k], lower=False)
    return out
