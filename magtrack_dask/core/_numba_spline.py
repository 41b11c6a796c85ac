"""Compiled CPU kernel (numba) of the accurate method's x, y and profiles.

The arithmetic of :mod:`magtrack_dask.core.spline_profile`'s NumPy/CuPy
formulation (seed, Gauss-Newton rounds with the cubic Hermite model,
moment-corrected tent profiles), one image at a time: each pass over an
image stays in the L1 cache, pixels outside the fitted disc are skipped
row by row, and the step pass reuses the distances of the profile pass at
the same centre. Results agree with the NumPy path to rounding (summation
order). Imported only when needed (numba is slow to import).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# as spline_profile's (a test checks they agree)
TAPER_PX = 4.0
CLIP = 6.0
SAMPLE_STEP = 4
# Reassociation lets LLVM vectorise the sums; no nnan/ninf: NaN checks must stay.
_FAST = {"nsz", "arcp", "contract", "reassoc"}


@numba.njit(nogil=True, cache=True)
def _symmetric_peak(proj, conv):  # pragma: no cover - compiled
    """Half the self-convolution peak of ``proj`` (spline_profile._symmetric_peak)."""
    w = proj.shape[0]
    mean = 0.0
    for j in range(w):
        mean += proj[j]
    mean /= w
    for j in range(w):
        proj[j] -= mean
    for s in range(1, 2 * w - 2):
        acc = 0.0
        for j in range(max(0, s - w + 1), min(w, s + 1)):
            acc += proj[j] * proj[s - j]
        conv[s] = acc
    best = 2
    top = conv[2]
    for s in range(3, 2 * w - 3):
        if conv[s] > top:
            top = conv[s]
            best = s
    left, mid, right = conv[best - 1], conv[best], conv[best + 1]
    curve = left - 2.0 * mid + right
    shift = 0.5 * (left - right) / curve if curve < 0 else 0.0
    return 0.5 * (best + shift)


@numba.njit(nogil=True, cache=True)
def _robust_scale(im, sample):  # pragma: no cover - compiled
    """Median and 1.4826 MAD of every SAMPLE_STEP-th pixel (spline_profile._robust_scale)."""
    w = im.shape[0]
    m = 0
    for r in range(0, w, SAMPLE_STEP):
        for j in range(0, w, SAMPLE_STEP):
            sample[m] = np.float64(im[r, j])
            m += 1
    level = np.median(sample)
    for q in range(m):
        sample[q] = abs(sample[q] - level)
    scale = 1.4826 * np.median(sample)
    if not scale > 0:
        scale = np.inf
    return level, scale


@numba.njit(nogil=True, cache=True)
def _columns(w, cx, dy, rmax):  # pragma: no cover - compiled
    """Columns of one row that may lie inside the disc (one pixel of margin)."""
    h2 = rmax * rmax - dy * dy
    if h2 <= 0:
        return 0, 0
    h = math.sqrt(h2)
    return max(0, int(math.floor(cx - h)) - 1), min(w, int(math.ceil(cx + h)) + 2)


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _profile_pass(im, cx, cy, nb, radius, sums, weights, m1, m2):  # pragma: no cover - compiled
    """Tent sums, weights and moments about (cx, cy); each pixel's distance into ``radius`` (-1 outside)."""
    w = im.shape[0]
    for k in range(nb + 1):
        sums[k] = 0.0
        weights[k] = 0.0
        m1[k] = 0.0
        m2[k] = 0.0
    rmax = nb - 1.0
    for i in range(w):
        dy = i - cy
        lo, hi = _columns(w, cx, dy, rmax)
        for j in range(w):
            radius[i, j] = -1.0
        for j in range(lo, hi):
            dx = j - cx
            r = math.sqrt(dx * dx + dy * dy)
            if r < rmax:
                radius[i, j] = r
                k = int(r)
                f = r - k
                g = 1.0 - f
                val = np.float64(im[i, j])
                off = f * g
                sums[k] += g * val
                sums[k + 1] += f * val
                weights[k] += g
                weights[k + 1] += f
                m1[k] += off
                m1[k + 1] -= off
                m2[k] += off * f
                m2[k + 1] += off * g


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _step(im, cx, cy, nb, radius, prof, slope, limit):  # pragma: no cover - compiled
    """The Gauss-Newton centre step (spline_profile._newton_step) from the distances of ``radius``."""
    w = im.shape[0]
    rmax = nb - 1.0
    a = 0.0
    b = 0.0
    c = 0.0
    u = 0.0
    v = 0.0
    for i in range(w):
        dy = i - cy
        lo_j, hi_j = _columns(w, cx, dy, rmax)
        for j in range(lo_j, hi_j):
            r = radius[i, j]
            if r >= 0.0:
                dx = j - cx
                k = int(r)
                t = r - k
                lo, hi = prof[k], prof[k + 1]
                d_lo, d_hi = slope[k], slope[k + 1]
                t2 = t * t
                h01 = t2 * (3.0 - 2.0 * t)
                model = lo + h01 * (hi - lo) + (t - 2.0 * t2 + t2 * t) * d_lo + (t2 * t - t2) * d_hi
                grad = 6.0 * (t - t2) * (hi - lo) + (1.0 - 4.0 * t + 3.0 * t2) * d_lo + (3.0 * t2 - 2.0 * t) * d_hi
                resid = min(max(np.float64(im[i, j]) - model, -limit), limit)
                grad = grad / r if r > 0.0 else 0.0
                q = (rmax - r) / TAPER_PX
                if q < 1.0:
                    grad *= q * q * (3.0 - 2.0 * q)
                gx = grad * dx
                gy = grad * dy
                a += gx * gx
                b += gx * gy
                c += gy * gy
                u += gx * resid
                v += gy * resid
    det = a * c - b * b
    return -(c * u - b * v) / det, -(a * v - b * u) / det


@numba.njit(nogil=True, cache=True)
def _corrected(nb, sums, weights, m1, m2, prof, slope, out):  # pragma: no cover - compiled
    """Plain profile and slope (for the step) and the moment-corrected profile ``out``
    (spline_profile._corrected_profiles)."""
    for k in range(nb):
        prof[k] = sums[k] / weights[k]
    prof[nb] = 0.0
    for k in range(nb + 1):
        slope[k] = 0.0
    for k in range(1, nb - 1):
        slope[k] = 0.5 * (prof[k + 1] - prof[k - 1])
    for k in range(nb):
        if k == 0:
            d = 0.0
            cv = 2.0 * (prof[1] - prof[0])
        elif k == nb - 1:
            d = 0.0
            cv = 0.0
        else:
            d = slope[k]
            cv = prof[k + 1] - 2.0 * prof[k] + prof[k - 1]
        out[k] = prof[k] - d * (m1[k] / weights[k]) - 0.5 * cv * (m2[k] / weights[k])
    slope[nb - 1] = prof[nb - 1] - prof[nb - 2]  # one-sided at the last sample, for the step only


@numba.njit(nogil=True, cache=True)
def track_images(images, n_rounds, x_out, y_out, prof_out):  # pragma: no cover - compiled
    """Seed and ``n_rounds`` (>= 1) Gauss-Newton rounds of each image, and its profile.

    Parameters
    ----------
    images : (n, w, w) float32 or float64 array, C order
        Frame-major images.
    n_rounds : int
    x_out, y_out : (n,) float64 arrays
        Written: the centres, px (NaN where the fit leaves the image).
    prof_out : (n, w // 2) float64 array
        Written: the last round's corrected profile (NaN with the centre).
    """
    n, w = images.shape[0], images.shape[1]
    nb = w // 2
    proj = np.empty(w)
    conv = np.empty(2 * w)
    sums = np.empty(nb + 1)
    weights = np.empty(nb + 1)
    m1 = np.empty(nb + 1)
    m2 = np.empty(nb + 1)
    prof = np.empty(nb + 1)
    slope = np.empty(nb + 1)
    radius = np.empty((w, w))
    n_sample = (w + SAMPLE_STEP - 1) // SAMPLE_STEP
    sample = np.empty(n_sample * n_sample)
    for i in range(n):
        im = images[i]
        level, scale = _robust_scale(im, sample)
        low, high = level - CLIP * scale, level + CLIP * scale
        for j in range(w):
            proj[j] = 0.0
        for r in range(w):
            for j in range(w):
                proj[j] += min(max(np.float64(im[r, j]), low), high)
        cx = _symmetric_peak(proj, conv)
        for r in range(w):
            acc = 0.0
            for j in range(w):
                acc += min(max(np.float64(im[r, j]), low), high)
            proj[r] = acc
        cy = _symmetric_peak(proj, conv)
        lowest = highest = np.float64(im[0, 0])
        total = 0.0
        for r in range(w):
            for j in range(w):
                value = np.float64(im[r, j])
                lowest = min(lowest, value)
                highest = max(highest, value)
                total += value
        # a constant image has no centre, one with NaN or inf pixels no trustworthy one
        if not (highest > lowest and math.isfinite(total)):
            x_out[i] = y_out[i] = np.nan
            prof_out[i, :] = np.nan
            continue
        for attempt in range(2):
            if attempt == 1:  # the seeded fit left the image: again from the image's centre
                cx = cy = 0.5 * (w - 1)
            for _ in range(n_rounds):
                if not (cx >= 0.0 and cx <= w - 1.0 and cy >= 0.0 and cy <= w - 1.0):
                    break
                _profile_pass(im, cx, cy, nb, radius, sums, weights, m1, m2)
                _corrected(nb, sums, weights, m1, m2, prof, slope, prof_out[i])
                top = bottom = prof[0]
                for k in range(1, nb):
                    top = max(top, prof[k])
                    bottom = min(bottom, prof[k])
                limit = top - bottom  # a residual beyond the ring contrast is no part of the bead
                sx, sy = _step(im, cx, cy, nb, radius, prof, slope, limit)
                cx += sx
                cy += sy
            if cx >= 0.0 and cx <= w - 1.0 and cy >= 0.0 and cy <= w - 1.0:
                break
        if not (cx >= 0.0 and cx <= w - 1.0 and cy >= 0.0 and cy <= w - 1.0):
            x_out[i] = np.nan
            y_out[i] = np.nan
            prof_out[i, :] = np.nan
            continue
        x_out[i] = cx
        y_out[i] = cy
