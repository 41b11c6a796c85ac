"""Lateral (x, y) localisation: centre of mass, auto-convolution and QI.

Stacks are ``(n_pixels, n_pixels, n_images)``: axis 0 is y (rows), axis 1 is x
(columns), pixel centres sit at integer coordinates. Positions are returned as
float64 whatever the stack's float type. A centre estimate that is NaN or
rounds outside the frame gives NaN for that image.
"""

from __future__ import annotations

import functools

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core import _blocks
from magtrack_dask.core._blocks import block_size, blocks, for_each_block, frame_block, frame_run
from magtrack_dask.core._checks import (
    check_centres,
    check_odd_int,
    check_stack,
    pixel_index,
    quiet,
)
from magtrack_dask.core.helpers import parabolic_vertex
from magtrack_dask.validation import InputError

__all__ = [
    "center_of_mass",
    "auto_conv",
    "auto_conv_sub_pixel",
    "auto_conv_multiline",
    "auto_conv_multiline_sub_pixel",
    "qi",
    "_qi_sample_axis_profiles",
    "_qi_quadratic_offsets",
]

def _frame_median(xp, frames, scratch):
    """Exact median of each row of ``frames`` ``(n_frames, n_pixels)``, as float64.

    A single-``kth`` partition (of ``scratch``, a copy: ``frames`` is kept) is
    many times faster than ``median``, which partitions for two order
    statistics; the lower middle element is then the maximum of the left part.
    """
    scratch[...] = frames
    n_px = frames.shape[1]
    k = n_px // 2
    scratch.partition(k, axis=1)
    level = scratch[:, k].astype(np.float64)
    if n_px % 2 == 0:
        level += scratch[:, :k].max(axis=1)
        level /= 2
    return level


def center_of_mass(stack, background="none"):
    """Centre of mass of each image.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
        Square images, float32 or float64.
    background : {'none', 'mean', 'median'}, optional
        ``'none'`` (default) uses the raw pixels; ``'mean'`` and ``'median'``
        use ``|pixel - per-image mean/median|``, which makes the dark and bright
        rings of a bead count alike and removes the background's pull towards
        the frame centre.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        Centre in pixels (column, row); NaN where the total mass is zero.
        Sums are taken in float64 whatever the stack's type, so float32 stacks
        give the centres of their exact float64 conversion.
    """
    xp = array_module(stack)
    check_stack(stack)
    if background not in ("none", "mean", "median"):
        raise InputError(f"background must be 'none', 'mean' or 'median', got {background!r}")
    if background != "none":
        moments = _deviation_moments(xp, stack, background)
    elif xp is np and stack.flags.c_contiguous and stack.shape[2]:
        kernel = _moments_kernel()
        moments = _raw_moments_by_rows(stack) if kernel is None else _raw_moments_compiled(stack, kernel)
    else:
        moments = _raw_moments(xp, stack)
    total = xp.where(moments[0] == 0, np.nan, moments[0])
    with quiet(xp):  # inf pixels give inf / inf: NaN for that image, not news
        return moments[1] / total, moments[2] / total


def _raw_moments(xp, stack):
    """Mass and x, y moments ``(3, n_images)`` of the raw pixels from the
    column and row sums of the whole stack (CuPy, and NumPy stacks in other
    memory orders)."""
    n_y, n_x = stack.shape[:2]
    col_sum = stack.sum(axis=0, dtype=np.float64)  # (n_x, n_images)
    row_sum = stack.sum(axis=1, dtype=np.float64)  # (n_y, n_images)
    return xp.stack([col_sum.sum(axis=0), xp.arange(n_x, dtype=np.float64) @ col_sum,
                     xp.arange(n_y, dtype=np.float64) @ row_sum])


@functools.cache
def _moments_kernel():
    """The compiled kernel :func:`._numba_moments.raw_moments`, or None when
    numba is not installed; imported on first use (numba is slow to import)."""
    try:
        from magtrack_dask.core._numba_moments import raw_moments
    # RuntimeError: numba finds no writable place for its cache (``cache=True``)
    except (ImportError, RuntimeError):
        return None
    return raw_moments


_KERNEL_ROW_GROUPS = 16  # parts of image rows the compiled kernel's calls share out between threads
_KERNEL_FRAMES = 4096  # at most, per call: its five float64 accumulator rows stay in L2


def _raw_moments_compiled(stack, kernel):
    """:func:`_raw_moments` of a C-ordered NumPy stack by the compiled
    ``kernel``, which reads each pixel once.

    The threads share groups of image rows, each with all frames (or
    ``_KERNEL_FRAMES`` of them), so each pixel's run of frames stays long: a
    split into ranges of frames was markedly slower. The groups depend on the
    shape only and their partial moments are added in order, so the results
    do not depend on the thread count.
    """
    n_y, _, n_images = stack.shape
    rows = _blocks._even_slices(n_y, min(n_y, _KERNEL_ROW_GROUPS))
    frames = _blocks._even_slices(n_images, -(-n_images // _KERNEL_FRAMES))
    parts = [(g, f) for f in frames for g in range(len(rows))]
    partial = np.empty((len(rows), 3, n_images))

    def work(index, _):
        group, part = parts[index.start]
        kernel(stack, rows[group].start, rows[group].stop, part.start, part.stop, partial[group])

    for_each_block(np, [slice(i, i + 1) for i in range(len(parts))], work)
    return partial.sum(axis=0)


def _row_parts(n_y: int, n_x: int, n_images: int) -> list[tuple[slice, slice]]:
    """(rows, frames) parts of a frames-last stack: a few image rows of all
    frames (contiguous memory), or of a range of frames when one row is
    larger than the budget. The parts depend on the shape only, so every part
    is computed the same way whichever thread takes it."""
    budget = 2 * _blocks._CPU_BLOCK_BYTES  # of float64 pixels
    row_bytes = n_x * 8
    frames = n_images if row_bytes * n_images <= budget else max(512, budget // row_bytes)
    rows = max(1, budget // (row_bytes * frames))
    return [(slice(y, min(y + rows, n_y)), slice(f, min(f + frames, n_images)))
            for f in range(0, n_images, frames) for y in range(0, n_y, rows)]


def _raw_moments_by_rows(stack):
    """:func:`_raw_moments` of a C-ordered NumPy stack, in one pass over memory
    (without numba).

    Each image row of each frame gives its sum and its x moment, two
    matrix-vector products over a part of contiguous rows (float32 parts are
    first copied to float64); the mass and the y moment are then sums over the
    ``n_y`` row sums. The reductions of a stack read twice (once per axis)
    cost two passes over memory.
    """
    n_y, n_x, n_images = stack.shape
    ones, col_x = np.ones(n_x), np.arange(n_x, dtype=np.float64)
    row_sums, row_x = np.empty((n_y, n_images)), np.empty((n_y, n_images))
    parts = _row_parts(n_y, n_x, n_images)
    convert = stack.dtype != np.float64
    size = max((r.stop - r.start) * (f.stop - f.start) for r, f in parts) * n_x

    def work(index, buffer):
        rows, frames = parts[index.start]
        pixels = stack[rows, :, frames]
        if convert:  # exact: float64 holds every float32 value
            as_float64 = buffer[: pixels.size].reshape(pixels.shape)
            np.copyto(as_float64, pixels)
            pixels = as_float64
        np.matmul(ones, pixels, out=row_sums[rows, frames])
        np.matmul(col_x, pixels, out=row_x[rows, frames])

    scratch = (lambda: np.empty(size)) if convert else None
    for_each_block(np, [slice(i, i + 1) for i in range(len(parts))], work, scratch)
    return np.stack([row_sums.sum(axis=0), row_x.sum(axis=0), np.arange(n_y, dtype=np.float64) @ row_sums])


def _deviation_moments(xp, stack, background: str):
    """Mass and x, y moments ``(3, n_images)`` of ``|pixel - level|``, the
    level being each image's mean or median (float64 whatever the stack's
    type, so float32 stacks give the centres of their exact float64
    conversion).

    Frames are handled in blocks, each copied frame-major once (the partition
    and the deviations then run over contiguous, cache-resident rows); the
    moments come from row and column sums of each block, not a GEMM (many
    small multi-threaded BLAS calls are slower, more so on a busy machine).
    """
    n_y, n_x, n_images = stack.shape
    n_px = n_y * n_x
    flat = stack.reshape(n_px, n_images)
    col_x = xp.arange(n_x, dtype=np.float64)
    row_y = xp.arange(n_y, dtype=np.float64)
    moments = xp.empty((3, n_images))
    parts = blocks(xp, n_images, n_px * 8, frame_run(stack))
    size = block_size(parts)

    # float64 frames become their deviations in place: one buffer fewer
    # in cache. float32 ones take a float64 buffer (the level is float64).
    in_place = stack.dtype == np.float64

    def scratch():  # each thread's buffers, reused block after block
        frames = xp.empty((size, n_px), dtype=stack.dtype)
        partitioned = xp.empty_like(frames) if background == "median" else None
        return frames, partitioned, (frames if in_place else xp.empty((size, n_px)))

    def work(part, buffers):
        n_part = part.stop - part.start
        frames, partitioned, dev = (None if b is None else b[:n_part] for b in buffers)
        frame_block(flat, part, frames)
        if background == "mean":
            level = frames.mean(axis=1, dtype=np.float64)
        else:
            level = _frame_median(xp, frames, partitioned)
        xp.subtract(frames, level[:, None], out=dev)
        xp.abs(dev, out=dev)
        by_pixel = dev.reshape(n_part, n_y, n_x)
        rows, cols = by_pixel.sum(axis=2), by_pixel.sum(axis=1)
        moments[0, part] = rows.sum(axis=1)
        moments[1, part] = (cols * col_x).sum(axis=1)
        moments[2, part] = (rows * row_y).sum(axis=1)

    for_each_block(xp, parts, work, scratch)
    return moments


# ---------------------------------------------------------------- auto-convolution


def _gathered_line_means(xp, stack, idx, half_lines: int, axis: int, frames=None):
    """Mean of the lines around ``idx`` by gathering them, ``(n_images, n_pixels)``;
    ``frames`` (optional) names the images ``idx`` belongs to. float64, or the
    stack's own type for single lines (the pixels themselves).
    """
    width, n_images = stack.shape[0], stack.shape[2]
    frames = xp.arange(n_images) if frames is None else frames
    lines = idx + xp.arange(-half_lines, half_lines + 1)[:, None]  # (lines, n_images)
    inside = (lines >= 0) & (lines < width)
    lines = xp.clip(lines, 0, width - 1)
    if axis == 1:  # columns: (pixels along the line, lines, n_images)
        values, line_axis = _gathered_columns(xp, stack, lines, frames), 1
    else:  # rows: (lines, n_images, pixels along the line); NumPy gathers
        # that faster by index arrays for the line and the image and a
        # slice along the line than by three index arrays or flat offsets.
        values, line_axis = stack[lines, :, frames], 0
    if half_lines == 0:
        means = values[:, 0] if axis == 1 else values[0]
    elif bool(inside.all()):
        means = values.mean(axis=line_axis, dtype=np.float64)
    else:
        counts = inside.sum(axis=0)
        if axis == 0:
            inside, counts = inside[:, :, None], counts[:, None]
        with quiet(xp):
            means = (values * inside).sum(axis=line_axis, dtype=np.float64) / counts
    return means.T if axis == 1 else means


def _columns_by_take(xp, stack) -> bool:
    """Whether :func:`_gathered_columns` takes whole matrix columns: a
    C-ordered frames-last NumPy stack is a ``(y, x * n_images + frame)``
    matrix, from which ``np.take`` copies columns faster than the fancy
    index works out each element's address."""
    return xp is np and stack.flags.c_contiguous


def _gathered_columns(xp, stack, lines, frames):
    """``stack[:, lines, frames]``: the columns ``lines`` ``(n_lines, n)`` of
    the images ``frames`` ``(n,)``, ``(n_pixels, n_lines, n)``."""
    if _columns_by_take(xp, stack):
        flat = stack.reshape(stack.shape[0], -1)
        return np.take(flat, lines * stack.shape[2] + frames, axis=1, mode="clip")
    return stack[:, lines, frames]


def _line_means(xp, stack, idx, half_lines: int, axis: int, out):
    """Mean of the ``2*half_lines + 1`` lines around ``idx`` of each image,
    written to ``out`` ``(n_images, n_pixels)``: columns (``axis=1``, lines
    are x = idx + offset) or rows (``axis=0``).

    Lines that fall outside the frame are left out of the mean (the reference
    wraps them around to the other edge or raises IndexError).

    When the estimates cluster (the usual case), the band of lines that any
    image uses is one slab of the stack; a 0/1 mask of (line, image) and one
    ``einsum`` over the slab read it in memory order. A gather of the lines
    themselves costs a cache miss per pixel (frames are the stack's innermost
    axis), several times a slab line, so it is used when the band is wide.
    """
    width = stack.shape[0]
    n_lines = 2 * half_lines + 1
    if idx.size == 0:
        return
    lo = max(int(idx.min()) - half_lines, 0)
    hi = min(int(idx.max()) + half_lines + 1, width)
    # Single columns are taken rather than read from the slab; several per
    # image are not (at 128 px the slab reads them faster).
    if hi - lo > 6 * n_lines or (n_lines == 1 and axis == 1 and _columns_by_take(xp, stack)):
        out[...] = _gathered_line_means(xp, stack, idx, half_lines, axis)
        return
    mask = xp.abs(xp.arange(lo, hi)[:, None] - idx[None, :]) <= half_lines  # (line, image)
    slab = stack[:, lo:hi] if axis == 1 else stack[lo:hi]
    rule = "ylf,lf->yf" if axis == 1 else "lxf,lf->xf"  # the slab's order: much faster than "->fy"
    # In the output's type: float32 lines (at most a few dozen) are summed in
    # float32, which keeps einsum on one type (mixed types are much slower).
    mask = mask.astype(out.dtype)
    sums = xp.empty((width, idx.size), dtype=out.dtype)

    def work(part, _):
        sums[:, part] = xp.einsum(rule, slab[..., part], mask[:, part])

    # The slab streams through the einsum once; what stays in cache is
    # small, so blocks of a quarter of the cache budget's worth of slab
    # (fewer, longer einsum calls) suffice.
    for_each_block(xp, blocks(xp, idx.size, width * (hi - lo) * 2), work)
    if n_lines > 1:
        xp.divide(sums.T, mask.sum(axis=0)[:, None], out=out)
    else:
        out[...] = sums.T
    # 0 * NaN is NaN: an image whose sum is not finite may have picked up a
    # NaN/inf pixel from a line it does not use; gather its own lines instead.
    bad = ~xp.isfinite(out).all(axis=1)
    if bool(bad.any()):
        frames = xp.flatnonzero(bad)
        out[frames] = _gathered_line_means(xp, stack, idx[frames], half_lines, axis, frames)


def _moved_line_means(xp, stack, idx, half_lines: int, axis: int, out, previous):
    """:func:`_line_means`, reusing ``previous`` ``(idx, means)`` of an earlier
    round for the images whose rounded estimate has not moved; returns the
    new ``(idx, means)``.

    Refinement rounds move few estimates across a pixel boundary, so after
    the first round only those images' lines are read again.
    """
    if previous is not None:
        moved = xp.flatnonzero(idx != previous[0])
        if 4 * moved.size < idx.size:
            out[...] = previous[1]
            if moved.size:
                out[moved] = _gathered_line_means(xp, stack, idx[moved], half_lines, axis, moved)
            return idx, out
    _line_means(xp, stack, idx, half_lines, axis, out)
    return idx, out  # the caller leaves the means as they are


def _fast_length(n: int) -> int:
    """Smallest even 2-3-5-smooth integer >= n (cheap FFT sizes)."""
    m = n + (n % 2)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


def _same_autoconvolution(xp, signals):
    """``fftconvolve(s, s, 'same')`` along the last axis, batched over the rest,
    in the signals' float type.

    The 'same' window of the full (2n - 1) convolution starts at (n - 1) // 2;
    a circular convolution of length >= start + n (and >= 2n - 1 - start)
    leaves that window free of wrap-around, so a shorter FFT suffices.
    """
    n = signals.shape[-1]
    start = (n - 1) // 2
    # scipy.fft transforms float32 in single precision, several rows at a
    # time (faster than numpy.fft at these lengths); float64 stays on numpy.fft.
    if xp is np and signals.dtype == np.float32:
        import scipy.fft as fft  # imported on first use: the package imports fast
    else:
        fft = xp.fft
    spectrum = fft.rfft(signals, _autoconv_fft_length(n), axis=-1)
    spectrum *= spectrum
    return fft.irfft(spectrum, _autoconv_fft_length(n), axis=-1)[..., start : start + n]


def _autoconv_fft_length(n: int) -> int:
    start = (n - 1) // 2
    return _fast_length(max(start + n, 2 * n - 1 - start))


def _autoconv_stage(stack, x_old, y_old, half_lines: int, lines=None, keep_conv=True):
    """Shared body of the auto-convolution functions.

    Returns ``(conv, valid, peak)``: ``conv`` ``(2, n_images, n_pixels)`` holds
    the column (``[0]``, along y) and row (``[1]``, along x) convolutions, NaN
    where the centre estimate is invalid or the line holds NaN (None unless
    ``keep_conv``: the whole-pixel centres need only the peaks); ``valid``
    ``(2, n_images)`` says which of the y and x results stand; ``peak``
    ``(2, n_images)`` is ``argmax`` of ``conv`` (0 where not valid). ``lines``, a
    dict kept by the caller across rounds on the same stack, carries the line
    means from one round to the next.
    """
    xp = array_module(stack)
    check_stack(stack)
    x_old, y_old = check_centres(xp, stack.shape[2], x_old=x_old, y_old=y_old)
    width, n_images = stack.shape[0], stack.shape[2]
    x_idx, x_ok = pixel_index(xp, x_old, width)
    y_idx, y_ok = pixel_index(xp, y_old, width)
    valid = x_ok & y_ok
    if not bool(valid.all()) and bool(valid.any()):
        # Invalid images are NaN in the end: give them a valid image's lines
        # so they do not widen the band of lines read.
        first = xp.argmax(valid)
        x_idx = xp.where(valid, x_idx, x_idx[first])
        y_idx = xp.where(valid, y_idx, y_idx[first])
    # float32 stacks are convolved in float32 ("float32 kept float32", as the
    # reference does): centres within ~6e-7 px of the float64 computation.
    ftype = np.float32 if stack.dtype == np.float32 else np.float64
    signals = xp.empty((2, n_images, width), dtype=ftype)
    if lines is None:
        _line_means(xp, stack, x_idx, half_lines, 1, signals[0])  # columns: along y
        _line_means(xp, stack, y_idx, half_lines, 0, signals[1])  # rows: along x
    else:
        lines[1] = _moved_line_means(xp, stack, x_idx, half_lines, 1, signals[0], lines.get(1))
        lines[0] = _moved_line_means(xp, stack, y_idx, half_lines, 0, signals[1], lines.get(0))
    centre = xp.stack((xp.where(valid, y_old, 0.0), xp.where(valid, x_old, 0.0)))[:, :, None]
    conv = xp.empty((2, n_images, width), dtype=ftype) if keep_conv else None
    peak = xp.empty((2, n_images), dtype=np.intp)
    finite = xp.empty((2, n_images), dtype=bool)

    def work(part, _):
        # In blocks of images: the spectra and other temporaries stay small,
        # and their memory is reused block after block instead of freshly
        # mapped (page faults cost as much as the transforms on large arrays).
        with quiet(xp):  # inf pixels make NaN lines (inf - inf): found below, not news
            block = signals[:, part] - signals[:, part].mean(axis=2, keepdims=True)
            # Gaussian weights about the estimates (columns: y, rows: x), as
            # gaussian(). Offsets in float64 (a float32 centre would move by
            # ~2e-6 px); float32 stacks then take the exponential in float32.
            offset = xp.arange(width, dtype=np.float64) - centre[:, part]
            offset *= offset
            if ftype == np.float64:
                offset /= -2 * (width / 6.0) ** 2
                weight = xp.exp(offset, out=offset)
            else:
                weight = xp.multiply(offset, -0.5 / (width / 6.0) ** 2, dtype=ftype)
                xp.exp(weight, out=weight)
            block *= weight
            block = _same_autoconvolution(xp, block)
            if keep_conv:
                conv[:, part] = block
            # While the block is in cache: a NaN pixel on a sampled line
            # poisons that line's convolution (the other axis is unaffected).
            finite[:, part] = xp.isfinite(block).all(axis=2)
            peak[:, part] = block.argmax(axis=2)

    for_each_block(xp, blocks(xp, n_images, 2 * 16 * _autoconv_fft_length(width)), work)
    valid = valid & finite  # (2, n_images): columns -> y, rows -> x
    if not bool(valid.all()):
        if keep_conv:
            conv = xp.where(valid[:, :, None], conv, np.nan)
        peak = xp.where(valid, peak, 0)  # argmax of an all-NaN line
    return conv, valid, peak


def _peak_to_centre(width: int, index):
    """Map the auto-convolution peak index to the object's centre (pixels)."""
    radius = (width - 1) // 2
    return radius - (radius - index) / 2


def _conv_result(stack, x_old, y_old, half_lines, return_conv):
    conv, valid, (col_max, row_max) = _autoconv_stage(stack, x_old, y_old, half_lines, keep_conv=return_conv)
    xp = array_module(valid)
    if return_conv:
        return col_max, row_max, conv[0].T, conv[1]
    width = stack.shape[0]
    x = xp.where(valid[1], _peak_to_centre(width, row_max), np.nan)
    y = xp.where(valid[0], _peak_to_centre(width, col_max), np.nan)
    return x, y


def _conv_sub_pixel(stack, x_old, y_old, half_lines, n_local, lines=None):
    n_local = check_odd_int(n_local, "n_local")
    conv, _, peak = _autoconv_stage(stack, x_old, y_old, half_lines, lines)
    x = parabolic_vertex(conv[1], peak[1], n_local)
    y = parabolic_vertex(conv[0], peak[0], n_local)
    width = conv.shape[2]
    return _peak_to_centre(width, x), _peak_to_centre(width, y)


def _half_lines(width: int, line_ratio) -> int:
    if not (0 <= line_ratio <= 1):
        raise InputError(f"line_ratio must be between 0 and 1, got {line_ratio!r}")
    return int(width * line_ratio // 2)


def auto_conv(stack, x_old, y_old, return_conv=False):
    """Whole-pixel centre from the auto-convolution of the central row and column.

    The row and column through the rounded estimate are mean-subtracted,
    weighted by a Gaussian (sigma = width / 6) about the estimate and convolved
    with themselves; a symmetric object at ``c`` gives a peak at ``2 c``.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x_old, y_old : (n_images,) float arrays
        Estimates near the true centres, in pixels.
    return_conv : bool, optional
        Return the convolutions instead of the centres. Default False.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        Centres on a half-pixel grid; NaN where the estimate is invalid.
    col_max, row_max, col_con, row_con
        When ``return_conv``: peak indices ``(n_images,)``, column convolutions
        ``(n_pixels, n_images)`` and row convolutions ``(n_images, n_pixels)``,
        in the stack's float type (float32 stacks are convolved in float32).
    """
    return _conv_result(stack, x_old, y_old, 0, return_conv)


def auto_conv_sub_pixel(stack, x_old, y_old, n_local=5):
    """Sub-pixel centre: parabola fit around the auto-convolution peak.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x_old, y_old : (n_images,) float arrays
        Estimates near the true centres, in pixels.
    n_local : int, optional
        Points fitted around the peak; odd, >= 3. Default 5.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        NaN where the estimate is invalid or the peak touches the profile's end.
    """
    return _conv_sub_pixel(stack, x_old, y_old, 0, n_local)


def auto_conv_multiline(stack, x_old, y_old, line_ratio=0.05, return_conv=False):
    """Like :func:`auto_conv`, averaging several rows and columns first.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x_old, y_old : (n_images,) float arrays
    line_ratio : float, optional
        ``2 * int(n_pixels * line_ratio // 2) + 1`` lines are averaged. Lines
        outside the frame are left out of the average. Default 0.05.
    return_conv : bool, optional
        Return the convolutions instead of the centres. Default False.

    Returns
    -------
    As :func:`auto_conv`.
    """
    return _conv_result(stack, x_old, y_old, _half_lines(stack.shape[0], line_ratio), return_conv)


def auto_conv_multiline_sub_pixel(stack, x_old, y_old, line_ratio=0.1, n_local=5):
    """Multi-line auto-convolution with a parabola fit around the peak.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x_old, y_old : (n_images,) float arrays
    line_ratio : float, optional
        Fraction of the width averaged as lines. Default 0.1.
    n_local : int, optional
        Points fitted around the peak; odd, >= 3. Default 5.

    Returns
    -------
    x, y : (n_images,) float64 arrays
    """
    return _conv_sub_pixel(stack, x_old, y_old, _half_lines(stack.shape[0], line_ratio), n_local)


def refine_rounds(stack, x, y, n_rounds: int, line_ratio=0.1, n_local=5):
    """``n_rounds`` of :func:`auto_conv_multiline_sub_pixel`, each starting
    from the last one's result.

    The same centres as the calls one by one, but an image's line means are
    read again only when its rounded estimate has moved.
    """
    half_lines = _half_lines(stack.shape[0], line_ratio)
    lines = {}
    for _ in range(n_rounds):
        x, y = _conv_sub_pixel(stack, x, y, half_lines, n_local, lines)
    return x, y


# ---------------------------------------------------------------- QI

_SPLINE_TAPS = 12  # |z|**13 < 1e-10 for the quadratic B-spline pole z = 2*sqrt(2) - 3


@functools.lru_cache(maxsize=1)
def _spline_prefilter_taps() -> np.ndarray:
    """Taps of the (infinite, symmetric) quadratic B-spline prefilter, truncated.

    The prefilter inverts sampling of the quadratic B-spline, [1, 6, 1] / 8;
    its impulse response decays as ``z**|k|`` with ``z ~ -0.17``.
    """
    n = 128
    kernel = np.zeros(n)
    kernel[[0, 1, -1]] = [6 / 8, 1 / 8, 1 / 8]
    inverse = np.fft.irfft(1 / np.fft.rfft(kernel), n)
    return np.concatenate([inverse[-_SPLINE_TAPS:], inverse[: _SPLINE_TAPS + 1]])


def _quadratic_bspline_weights(xp, t):
    """Weights of nodes -1, 0, +1 for a quadratic B-spline at offset ``t`` in [-0.5, 0.5)."""
    return xp.stack((0.5 * (0.5 - t) ** 2, 0.75 - t * t, 0.5 * (0.5 + t) ** 2), axis=-1)


def _qi_sample_axis_profiles(stack, x, y, axis):
    """Three samples through each centre along one axis, by quadratic spline.

    Equivalent to ``scipy.ndimage.map_coordinates(order=2, mode='nearest')`` at
    ``(y + o, x)`` (axis 0) or ``(y, x + o)`` (axis 1), ``o`` in ``(-1, 0, 1)``,
    but only the spline coefficients near each centre are computed: the
    prefilter is applied as a truncated FIR on a small edge-padded patch.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x, y : (n_images,) float arrays
        Centres in pixels.
    axis : {0, 1}
        0 samples along y (the column through the centre), 1 along x.

    Returns
    -------
    (n_images, 3) float64 array
        Samples at offsets -1, 0, +1; NaN rows where the centre is invalid.
    """
    xp = array_module(stack)
    check_stack(stack)
    if axis not in (0, 1):
        raise InputError(f"axis must be 0 (column, varying y) or 1 (row, varying x), got {axis!r}")
    x, y = check_centres(xp, stack.shape[2], x=x, y=y)
    width, n_images = stack.shape[0], stack.shape[2]
    _, x_ok = pixel_index(xp, x, width)
    _, y_ok = pixel_index(xp, y, width)
    valid = x_ok & y_ok
    x = xp.where(valid, x, 0.0)
    y = xp.where(valid, y, 0.0)
    # Nearest spline node of the centre and the fractional offset from it.
    node_x, node_y = xp.floor(x + 0.5), xp.floor(y + 0.5)
    tx, ty = x - node_x, y - node_y
    # Coefficients are needed at nodes -2..+2 around the centre; each one
    # draws on data within _SPLINE_TAPS pixels, replicated past the edges.
    reach = 2 + _SPLINE_TAPS
    span = xp.arange(-reach, reach + 1)
    rows = xp.clip(node_y.astype(np.int64)[:, None] + span, 0, width - 1)
    cols = xp.clip(node_x.astype(np.int64)[:, None] + span, 0, width - 1)
    frame_major = xp.moveaxis(stack, 2, 0)
    frames = xp.arange(n_images)[:, None, None]
    patch = frame_major[frames, rows[:, :, None], cols[:, None, :]].astype(np.float64)
    taps = _spline_prefilter_taps()
    n_out, n_in = 5, 2 * reach + 1
    fir = np.zeros((n_out, n_in))
    for i in range(n_out):
        fir[i, i : i + taps.size] = taps
    fir = xp.asarray(fir)
    coeffs = fir @ patch @ fir.T  # (n_images, 5, 5): nodes -2..+2 in y and x
    w_along = _quadratic_bspline_weights(xp, ty if axis == 0 else tx)  # (n_images, 3)
    w_across = _quadratic_bspline_weights(xp, tx if axis == 0 else ty)
    if axis == 1:
        coeffs = coeffs.transpose(0, 2, 1)  # make axis 1 of coeffs the sampled axis
    # Collapse the cross axis (centre nodes -1..+1), then evaluate the three
    # sample points, whose node windows shift by the offset o.
    line = xp.einsum("nab,nb->na", coeffs[:, :, 1:4], w_across)  # (n_images, 5)
    samples = xp.stack(
        [(line[:, o : o + 3] * w_along).sum(axis=1) for o in range(3)], axis=1
    )
    return xp.where(valid[:, None], samples, np.nan)


_QI_CURVATURE2 = np.array([2.0, -4.0, 2.0])  # weights of 2 (left - 2 centre + right)
_QI_FLAT = 2 * float(np.finfo(np.float64).eps)  # |2 curvature| at or below: flat


def _qi_quadratic_offsets(samples):
    """Vertex offset of the parabola through three equally spaced samples.

    Parameters
    ----------
    samples : (n, 3) array
        Values at offsets -1, 0, +1.

    Returns
    -------
    (n,) float64 array
        ``0.5 (left - right) / (left - 2 centre + right)``; NaN where the
        curvature is zero to machine precision.
    """
    xp = np if type(samples) is np.ndarray else array_module(samples)  # skips its module-name test
    values = xp.asarray(samples, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 3:
        raise InputError(f"samples must have shape (n, 3), got {values.shape}")
    if xp is not np:  # CuPy ufuncs take no where=; the GPU does not warn either
        left, centre, right = values[:, 0], values[:, 1], values[:, 2]
        curvature = left - 2.0 * centre + right
        return xp.where(xp.abs(curvature) > np.finfo(np.float64).eps, 0.5 * (left - right) / curvature, np.nan)
    # Twice the curvature by one matrix-vector product: the products with 2,
    # -4, 2 are exact and the sums run in the reference's order, so this is
    # exactly 2 (left - 2 centre + right); and (left - right) / (2 curvature)
    # is exactly 0.5 (left - right) / curvature. Fewer calls than five
    # ufuncs; no zero weight, so an infinite centre sample gives no 0 * inf.
    # Flat samples get a NaN divisor: no division by zero, no warning.
    curvature2 = np.dot(values, _QI_CURVATURE2)
    curvature2[np.abs(curvature2) <= _QI_FLAT] = np.nan
    offset = values[:, 0] - values[:, 2]
    return np.divide(offset, curvature2, out=offset)


def qi(stack, x_old, y_old):
    """Refine centres by quadratic interpolation along x and y.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x_old, y_old : (n_images,) float arrays
        Estimates of the centres, in pixels.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        ``x_old`` and ``y_old`` plus the vertex offsets of the parabolas
        through the spline-interpolated samples at -1, 0, +1 pixels.
    """
    xp = array_module(stack)
    check_stack(stack)
    x_old, y_old = check_centres(xp, stack.shape[2], x_old=x_old, y_old=y_old)
    dx = _qi_quadratic_offsets(_qi_sample_axis_profiles(stack, x_old, y_old, axis=1))
    dy = _qi_quadratic_offsets(_qi_sample_axis_profiles(stack, x_old, y_old, axis=0))
    return x_old + dx, y_old + dy
