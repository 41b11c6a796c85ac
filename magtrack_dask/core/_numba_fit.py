"""Compiled CPU kernel (numba) of :func:`magtrack_dask.core.fit.fit_stack`'s Fisher scoring.

The same arithmetic as the NumPy formulation in :mod:`magtrack_dask.core.fit`
(``_scoring``), one frame at a time: each pixel's model value, Jacobian and
Poisson weight are made and summed into the 5 x 5 Fisher matrix and the score
in registers, instead of five ``(frames, pixels)`` arrays per step. Frames
are shared between the core's threads in blocks (the kernel releases the GIL).
Imported only when used (numba is slow to import).
"""

from __future__ import annotations

import numba
import numpy as np

from magtrack_dask.core._blocks import _even_slices, for_each_block, get_core_threads
from magtrack_dask.core.fit import _MU_FLOOR, _MU_FLOOR_FRACTION, TOL_XY, TOL_Z



# fastmath lets the pixel loop's sums be reordered into SIMD lanes (several times faster);
# the results differ from the NumPy formulation only by rounding.
@numba.njit(nogil=True, cache=True, fastmath=True, error_model="numpy")
def _fit_range(data, n, pp, zp, spacing, r_max, x, y, z, a, b, iterations, fit_z, tol_xy, tol_z, floor_fraction, start,
               stop):  # pragma: no cover
    n_coef = pp.shape[2]
    n_int = zp.shape[0] - 1
    z_lo, z_hi = zp[0], zp[n_int]
    z_step = np.min(zp[1:] - zp[:-1])
    c = np.empty(n_coef)
    dc = np.empty(n_coef)
    info = np.empty((5, 5))
    score = np.empty(5)
    s_max = r_max * (1 - 1e-12) / spacing
    tol_z *= z_step
    for f in range(start, stop):
        xf, yf, zf, af, bf = x[f], y[f], z[f], a[f], b[f]
        total = 0.0
        for p in range(n * n):
            total += data[f, p]
        floor = max(floor_fraction * total / (n * n), _MU_FLOOR)
        for _ in range(iterations):
            zc = min(max(zf, z_lo), z_hi)
            k = 0
            while k < n_int - 1 and zp[k + 1] <= zc:
                k += 1
            t = zc - zp[k]
            for j in range(n_coef):
                c[j] = ((pp[0, k, j] * t + pp[1, k, j]) * t + pp[2, k, j]) * t + pp[3, k, j]
                dc[j] = (3 * pp[0, k, j] * t + 2 * pp[1, k, j]) * t + pp[2, k, j]
            # The 15 entries of the symmetric Fisher matrix and the score, in registers.
            f00 = f01 = f02 = f03 = f04 = f11 = f12 = f13 = f14 = f22 = f23 = f24 = 0.0
            f33 = f34 = f44 = s0 = s1 = s2 = s3 = s4 = 0.0
            for row in range(n):
                dy = row - yf
                base = row * n
                for col in range(n):
                    dx = col - xf
                    r = np.sqrt(dx * dx + dy * dy)
                    s = min(r / spacing, s_max)
                    i = int(s)
                    u = s - i
                    v = 1.0 - u
                    u2 = u * u
                    w0, w1 = v * v * v / 6, (3 * u2 * u - 6 * u2 + 4) / 6
                    w2, w3 = (-3 * u2 * u + 3 * u2 + 3 * u + 1) / 6, u2 * u / 6
                    c0, c1, c2, c3 = c[i], c[i + 1], c[i + 2], c[i + 3]
                    value = w0 * c0 + w1 * c1 + w2 * c2 + w3 * c3
                    if r >= r_max:
                        slope = 0.0
                    else:
                        slope = (-v * v / 2 * c0 + (3 * u2 - 4 * u) / 2 * c1 + (-3 * u2 + 2 * u + 1) / 2 * c2
                                 + u2 / 2 * c3) / spacing
                    dz = w0 * dc[i] + w1 * dc[i + 1] + w2 * dc[i + 2] + w3 * dc[i + 3]
                    mu = max(af * value + bf, floor)
                    g = af * slope / max(r, 1e-9)
                    j0, j1, j2, j3 = -g * dx, -g * dy, af * dz, value
                    weight = 1.0 / mu
                    residual = (data[f, base + col] - mu) * weight
                    s0 += j0 * residual
                    s1 += j1 * residual
                    s2 += j2 * residual
                    s3 += j3 * residual
                    s4 += residual
                    k0, k1, k2, k3 = j0 * weight, j1 * weight, j2 * weight, j3 * weight
                    f00 += k0 * j0
                    f01 += k0 * j1
                    f02 += k0 * j2
                    f03 += k0 * j3
                    f04 += k0
                    f11 += k1 * j1
                    f12 += k1 * j2
                    f13 += k1 * j3
                    f14 += k1
                    f22 += k2 * j2
                    f23 += k2 * j3
                    f24 += k2
                    f33 += k3 * j3
                    f34 += k3
                    f44 += weight
            info[0, 0], info[0, 1], info[0, 2], info[0, 3], info[0, 4] = f00, f01, f02, f03, f04
            info[1, 1], info[1, 2], info[1, 3], info[1, 4] = f11, f12, f13, f14
            info[2, 2], info[2, 3], info[2, 4] = f22, f23, f24
            info[3, 3], info[3, 4], info[4, 4] = f33, f34, f44
            score[0], score[1], score[2], score[3], score[4] = s0, s1, s2, s3, s4
            for p in range(5):
                for q in range(p):
                    info[p, q] = info[q, p]
            if not fit_z:
                info[2, :] = 0.0
                info[:, 2] = 0.0
                info[2, 2] = 1.0
                score[2] = 0.0
            trace = info[0, 0] + info[1, 1] + info[2, 2] + info[3, 3] + info[4, 4]
            for p in range(5):
                info[p, p] += 1e-12 * trace
            step = np.linalg.solve(info, score)
            xf += min(max(step[0], -1.0), 1.0)
            yf += min(max(step[1], -1.0), 1.0)
            zf = min(max(zf + min(max(step[2], -z_step), z_step), z_lo), z_hi)
            af = max(af + step[3], 1e-3 * abs(af))
            bf += step[4]
            if abs(step[0]) < tol_xy and abs(step[1]) < tol_xy and abs(step[2]) < tol_z:
                break  # converged: further steps change nothing that matters
        x[f], y[f], z[f], a[f], b[f] = xf, yf, zf, af, bf


def fit_frames(data, model, x, y, z, a, b, iterations, fit_z=True):
    """Fisher scoring of every frame; arguments and results as ``fit._scoring`` (NumPy only).

    ``data`` is ``(n_images, n_pixels**2)`` float64, row-major images; the
    seeds ``x, y, z, a, b`` are ``(n_images,)`` float64 and are copied.
    """
    n = int(round(data.shape[1] ** 0.5))
    out = [np.array(p, dtype=np.float64, copy=True) for p in (x, y, z, a, b)]
    pp = np.ascontiguousarray(model.pp)
    n_images = data.shape[0]
    parts = _even_slices(n_images, min(n_images, 4 * get_core_threads())) if n_images else []

    def work(part, _):
        _fit_range(data, n, pp, model.z, float(model.spacing), float(model.r_max), *out, int(iterations),
                   bool(fit_z), TOL_XY, TOL_Z, _MU_FLOOR_FRACTION,
                   part.start, part.stop)

    for_each_block(np, parts, work)
    return tuple(out)
