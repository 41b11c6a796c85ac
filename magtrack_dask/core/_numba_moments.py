"""Compiled CPU kernel (numba) for the raw moments of a C-ordered stack.

NumPy cannot sum float32 pixels into float64 without first casting them, a
pass over memory as long as the reference's whole ``center_of_mass``; this
kernel reads each pixel once and adds it into float64. Imported only when a
C-ordered NumPy stack needs it (numba is slow to import);
:mod:`magtrack_dask.core.xy` falls back to NumPy when numba is missing.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def raw_moments(stack, rows_start, rows_stop, start, stop, out):  # pragma: no cover - compiled
    """Mass and x, y moments of image rows ``rows_start:rows_stop`` of images
    ``start:stop``, in float64.

    Parameters
    ----------
    stack : (n_y, n_x, n_images) float32 or float64 array, C order
        Frames last: each pixel's frames are contiguous.
    rows_start, rows_stop, start, stop : int
        The image rows and the images done.
    out : (3, n_images) float64 array
        ``out[:, start:stop]`` is written: the sum of the rows' pixels of
        each image, and of those pixels times their column (x) and row (y)
        index.

    Notes
    -----
    The pixels are read once, in memory order: each pixel's run of frames
    is added into the accumulators of its image row (``2 * (stop - start)``
    float64 values, which the caller keeps small enough for the cache), and
    each finished row into the image's moments. Each image row is summed in
    the same order whatever the ranges.
    """
    n_x = stack.shape[1]
    mass, moment_x, moment_y = out[0, start:stop], out[1, start:stop], out[2, start:stop]
    mass[:] = 0.0
    moment_x[:] = 0.0
    moment_y[:] = 0.0
    sums = np.empty(stop - start)
    moments = np.empty(stop - start)
    for y in range(rows_start, rows_stop):
        sums[:] = 0.0
        moments[:] = 0.0
        x = 0
        # Four columns at a time: a quarter of the accumulator loads and
        # stores per pixel. The additions keep their order (column after column).
        while x + 4 <= n_x:
            p0, p1 = stack[y, x, start:stop], stack[y, x + 1, start:stop]
            p2, p3 = stack[y, x + 2, start:stop], stack[y, x + 3, start:stop]
            w0 = np.float64(x)
            w1, w2, w3 = w0 + 1.0, w0 + 2.0, w0 + 3.0
            for i in range(stop - start):
                v0, v1 = np.float64(p0[i]), np.float64(p1[i])
                v2, v3 = np.float64(p2[i]), np.float64(p3[i])
                sums[i] = (((sums[i] + v0) + v1) + v2) + v3
                moments[i] = (((moments[i] + v0 * w0) + v1 * w1) + v2 * w2) + v3 * w3
            x += 4
        for x in range(x, n_x):
            pixels = stack[y, x, start:stop]
            weight = np.float64(x)
            for i in range(stop - start):
                value = np.float64(pixels[i])
                sums[i] += value
                moments[i] += value * weight
        weight = np.float64(y)
        for i in range(stop - start):
            mass[i] += sums[i]
            moment_x[i] += moments[i]
            moment_y[i] += sums[i] * weight
