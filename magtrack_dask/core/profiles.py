"""Radial profiles: real-space about a centre, and of the Fourier magnitude.

Profiles keep the stack's float type (float32 in, float32 out); binning
accumulates in float64.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._blocks import block_size, blocks, for_each_block, frame_block, frame_run
from magtrack_dask.core._checks import (
    check_centres,
    check_stack,
    pixel_index,
    quiet,
)
from magtrack_dask.core.helpers import gaussian_2d
from magtrack_dask.validation import InputError, check_count

__all__ = [
    "radial_profile",
    "fft_profile",
    "fft_profile_with_center",
    "radial_bins",
    "fourier_bins",
    "ring_index",
]


# Adding 1.5 * 2**52 rounds a double in [0, 2**51) to an integer, half to even
# (the FPU's rounding), and leaves that integer in the low mantissa bits: the
# bits minus _ROUND_BITS are rint(value) as int64, with no separate rint or
# float -> int cast pass.
_ROUND = 1.5 * 2.0**52
_ROUND_BITS = int(np.array(_ROUND).view(np.int64))


def radial_bins(width: int, oversample: int = 1) -> int:
    """Length of :func:`radial_profile`'s profiles: ``(width // 2) * oversample``.

    Parameters
    ----------
    width : int
        Image side, px.
    oversample : int, optional
        Bins per pixel of radius (already checked to be >= 1).

    Returns
    -------
    int
        Bin ``k`` holds the pixels at ``k / oversample`` px from the centre.
    """
    return (int(width) // 2) * int(oversample)


def fourier_bins(width: int, oversample: int = 4, rmin: float = 0.0, rmax: float = 0.5) -> tuple[int, int]:
    """The bins :func:`fft_profile` keeps: ``range(start, stop)`` of the Fourier rings.

    Parameters
    ----------
    width : int
        Image side, px.
    oversample : int, optional
        Bins per frequency step ``1 / width`` (already checked to be >= 1).
    rmin, rmax : float, optional
        Fractions of the Nyquist radius ``width / 2``, ``0 <= rmin <= rmax``.

    Returns
    -------
    start, stop : int
        ``round(width // 2 * r * oversample)`` for ``rmin`` and ``rmax``; the
        profiles have ``stop - start`` bins, bin ``k`` the frequencies of
        radius ``(start + k) / oversample`` steps.

    Raises
    ------
    ValueError
        ``rmin`` and ``rmax`` out of order or negative.
    """
    if not (0.0 <= rmin <= rmax):
        raise InputError(f"rmin and rmax must satisfy 0 <= rmin <= rmax, got rmin={rmin!r}, rmax={rmax!r}")
    centre = int(width) // 2
    return int(round(centre * rmin * oversample)), int(round(centre * rmax * oversample))


def ring_index(xp, dist, first, oversample: int = 1):
    """Flat (image, ring) slot of every pixel: ``first + round(oversample * distance)``.

    Parameters
    ----------
    xp : module
        NumPy or CuPy.
    dist : float64 array
        Squared distances (px^2) of the pixels from their image's centre;
        overwritten, and returned viewed as int64.
    first : int64 array
        Each image's first slot, broadcast against ``dist``.
    oversample : int, optional
        Rings per pixel of radius.

    Returns
    -------
    index : (dist.size,) int64 array
        Raveled slots; rounding is half to even, like ``rint``.
    """
    xp.sqrt(dist, out=dist)
    if oversample != 1:
        dist *= oversample
    dist += _ROUND
    index = dist.view(np.int64)
    index += first - _ROUND_BITS  # the rounding offset folded into the small per-image array
    return index.ravel()


def _ring_sums(xp, weights, dist, offset, size: int, oversample: int):
    """Sum and count of ``weights`` per (frame, ring) slot for one block (see :func:`ring_index`)."""
    index = ring_index(xp, dist, offset, oversample)
    sums = xp.bincount(index, weights=weights.ravel(), minlength=size)
    return sums, xp.bincount(index, minlength=size)


def radial_profile(stack, x, y, oversample=1):
    """Mean intensity in rings about each image's centre.

    Each pixel goes to bin ``round(oversample * distance)`` (half to even);
    pixels beyond the last bin are ignored.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x, y : (n_images,) float arrays
        Centres in pixels.
    oversample : int, optional
        Bins per pixel of radius, >= 1. Default 1.

    Returns
    -------
    profiles : (n_bins, n_images) array, ``n_bins = (n_pixels // 2) * oversample``
        Same float type as ``stack``; NaN for empty bins and for images whose
        centre is NaN or outside the frame.

    Notes
    -----
    One ``bincount`` over a combined (frame, ring) index bins every pixel.
    The stack is walked in blocks along its outermost memory axis (rows of a
    C-ordered stack, frames of a frame-major one), so pixels are read in place
    and the float64 distance temporaries stay in cache.
    """
    xp = array_module(stack)
    check_stack(stack)
    oversample = check_count(oversample, "oversample", integral_floats=True)
    width, n_images = stack.shape[0], stack.shape[2]
    x, y = check_centres(xp, n_images, x=x, y=y)
    valid = pixel_index(xp, x, width)[1] & pixel_index(xp, y, width)[1]
    grid = xp.arange(width, dtype=np.float64)
    dx2 = (grid[:, None] - xp.where(valid, x, 0.0)) ** 2  # (x, frame)
    dy2 = (grid[:, None] - xp.where(valid, y, 0.0)) ** 2  # (y, frame)
    n_bins = radial_bins(width, oversample)
    # Slots per frame: enough for the farthest pixel from any valid centre,
    # so no clipping pass is needed; the slots past n_bins are dropped.
    slots = int(np.ceil(np.sqrt(2.0) * width * oversample)) + 2
    sums = xp.empty((n_images, slots))
    counts = xp.empty((n_images, slots), dtype=np.int64)
    frame_major = xp.moveaxis(stack, 2, 0)
    by_frame = bool(frame_major.flags.c_contiguous)
    # Blocks of frames, each binned in the stack's own memory order (a stack
    # with frames last: frames innermost, so neighbouring pixels land in
    # different slots); one small bincount per block. bincount wants
    # contiguous float64 weights: other blocks are copied into a buffer.
    parts = blocks(xp, n_images, width * width * 8, frame_run(stack))
    size = width * width * block_size(parts)

    def work(part, buffer):
        n_part = part.stop - part.start
        first = xp.arange(n_part, dtype=np.int64) * slots
        if by_frame:
            block, source = (n_part, width, width), frame_major[part]
            dy, dx, first = dy2.T[part, :, None], dx2.T[part, None, :], first[:, None, None]
        else:
            block, source = (width, width, n_part), stack[:, :, part]
            dy, dx = dy2[:, None, part], dx2[None, :, part]
        dist = buffer[1, : width * width * n_part].reshape(block)
        xp.add(dy, dx, out=dist)
        if by_frame and stack.dtype == np.float64:
            weights = source
        else:
            weights = buffer[0, : width * width * n_part].reshape(block)
            weights[...] = source
        s_part, c_part = _ring_sums(xp, weights, dist, first, n_part * slots, oversample)
        sums[part] = s_part.reshape(n_part, slots)
        counts[part] = c_part.reshape(n_part, slots)

    # One buffer per thread, reused by each of its blocks.
    for_each_block(xp, parts, work, lambda: xp.empty((2, size)))
    with quiet(xp):
        profiles = (sums[:, :n_bins] / counts[:, :n_bins]).T
    profiles = profiles.astype(stack.dtype)
    profiles[:, ~valid] = np.nan
    return profiles


def _fourier_ring_matrix(xp, width: int, oversample: int, rmin: float, rmax: float):
    """Averaging matrix from the un-shifted ``rfft2`` grid to radial bins.

    Row ``k`` averages the magnitudes whose frequency radius, in units of
    ``1 / (oversample * width)``, rounds to ``k``, for the bins selected by
    ``rmin`` and ``rmax`` (fractions of ``width / 2``). Empty bins give NaN.
    """
    n_start, n_bins = fourier_bins(width, oversample, rmin, rmax)
    fy = np.fft.fftfreq(width, 1.0 / width)  # signed integer frequencies of the rows
    fx = np.arange(width // 2 + 1)
    radius = np.rint(np.hypot(fx[None, :], fy[:, None]) * oversample).ravel()
    keep = radius < n_bins
    bins = radius[keep].astype(np.intp)
    matrix = np.zeros((max(n_bins, 0), radius.size))
    matrix[bins, np.flatnonzero(keep)] = 1.0
    counts = matrix.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = matrix / counts
    empty = counts[:, 0] == 0
    return xp.asarray(matrix[n_start:]), xp.asarray(empty[n_start:])


def _fourier_profile(xp, stack, oversample, rmin, rmax):
    oversample = check_count(oversample, "oversample", integral_floats=True)
    n_images = stack.shape[2]
    matrix, empty = _fourier_ring_matrix(xp, stack.shape[0], oversample, rmin, rmax)
    if xp is np:
        profile = _fourier_profile_blocks(stack, matrix)
    else:
        magnitude = xp.abs(xp.fft.rfft2(stack, axes=(0, 1))).reshape(matrix.shape[1], n_images)
        profile = (matrix @ magnitude).astype(stack.dtype, copy=False)
    profile[empty] = np.nan
    return profile


def _fourier_profile_blocks(stack, matrix):
    """:func:`_fourier_profile` on NumPy, in blocks of images on the core's threads.

    Each block is copied frame-major and transformed while it is in cache
    (numpy.fft on a whole frames-last stack is much slower). Each
    frequency belongs to one ring, so the ring means are one ``bincount``
    over (image, ring) slots (in float64) times ``1 / count``, not a product
    with the mostly-zero ``matrix``. float64 stacks use scipy.fft (SIMD over
    lines, faster than numpy.fft); float32 stays on numpy.fft, the reference's own:
    another single-precision FFT moves the weak high-frequency bins by up to
    1e-5 relative.
    """
    if stack.dtype == np.float64:
        import scipy.fft as fft  # imported on first use: the package imports fast
    else:
        fft = np.fft
    n_rings, n_freq = matrix.shape
    rings, freqs = np.nonzero(matrix > 0)  # the rows of empty rings are NaN
    ring_of = np.full(n_freq, n_rings, dtype=np.int64)  # slot n_rings: a frequency in no ring
    ring_of[freqs] = rings
    inv_count = np.zeros(n_rings)
    inv_count[rings] = matrix[rings, freqs]  # the matrix holds 1 / count in each ring's row
    width, n_images = stack.shape[0], stack.shape[2]
    flat = stack.reshape(width * width, n_images)
    frame_major = np.moveaxis(stack, 2, 0)
    by_frame = bool(frame_major.flags.c_contiguous)  # blocks are transformed where they lie
    profile = np.empty((n_rings, n_images), dtype=stack.dtype)
    parts = blocks(np, n_images, 2 * 16 * n_freq, frame_run(stack))
    size = block_size(parts)
    slots = (ring_of + (n_rings + 1) * np.arange(size)[:, None]).ravel()  # (image, ring) of each frequency

    def work(part, frames):
        n_part = part.stop - part.start
        if by_frame:
            images = frame_major[part]
        else:
            frame_block(flat, part, frames[:n_part])
            images = frames[:n_part].reshape(n_part, width, width)
        magnitude = np.abs(fft.rfft2(images)).ravel()
        sums = np.bincount(slots[: magnitude.size], weights=magnitude, minlength=n_part * (n_rings + 1))
        profile[:, part] = (sums.reshape(n_part, n_rings + 1)[:, :n_rings] * inv_count).T

    scratch = None if by_frame else (lambda: np.empty((size, width * width), dtype=stack.dtype))
    for_each_block(np, parts, work, scratch)
    return profile


def fft_profile(stack, oversample=4, rmin=0.0, rmax=0.5):
    """Radial profile of each image's Fourier magnitude.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
        Square images of even width.
    oversample : int, optional
        Bins per frequency step ``1 / n_pixels``, >= 1. Default 4.
    rmin, rmax : float, optional
        Radial range kept, as fractions of the Nyquist radius ``n_pixels / 2``
        (in frequency steps of ``1 / n_pixels`` cycles per pixel). Defaults
        0.0 and 0.5, i.e. up to a quarter of the sampling frequency.

    Returns
    -------
    profile : (n_selected_bins, n_images) array
        ``n_selected_bins = round(n/2 * rmax * oversample) - round(n/2 * rmin * oversample)``;
        NaN for bins that no frequency falls into. Bin ``k`` holds the
        frequencies of radius ``k / oversample`` steps.
    """
    xp = array_module(stack)
    check_stack(stack, even=True)
    return _fourier_profile(xp, stack, oversample, rmin, rmax)


def fft_profile_with_center(stack, x, y, oversample=4, rmin=0.0, rmax=0.5, gaus_factor=6.0):
    """Fourier radial profile of each image after a Gaussian window at its centre.

    The window, of sigma ``n_pixels / gaus_factor``, is centred at row ``y``
    and column ``x`` (the reference swaps them) and is applied **in place**:
    ``stack`` is modified.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
        Square images of even width; weighted in place.
    x, y : (n_images,) float arrays
        Window centres in pixels.
    oversample, rmin, rmax
        As :func:`fft_profile`.
    gaus_factor : float, optional
        Window sigma is ``n_pixels / gaus_factor``. Default 6.

    Returns
    -------
    profile : (n_selected_bins, n_images) array
        As :func:`fft_profile`; NaN for images whose centre is NaN or outside
        the frame (those images are left unweighted).
    """
    xp = array_module(stack)
    check_stack(stack, even=True)
    width, n_images = stack.shape[0], stack.shape[2]
    x, y = check_centres(xp, n_images, x=x, y=y)
    if not gaus_factor > 0:
        raise InputError(f"gaus_factor must be > 0, got {gaus_factor!r}")
    valid = pixel_index(xp, x, width)[1] & pixel_index(xp, y, width)[1]
    grid = xp.arange(width, dtype=np.float64)
    window = gaussian_2d(grid, grid, xp.where(valid, y, 0.0), xp.where(valid, x, 0.0), width / gaus_factor)
    window[:, :, ~valid] = 1.0
    stack *= window
    profile = _fourier_profile(xp, stack, oversample, rmin, rmax)
    profile[:, ~valid] = np.nan
    return profile
