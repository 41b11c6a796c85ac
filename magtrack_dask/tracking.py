"""The Dask layer: one task per frame chunk -> a lazy ``xarray.Dataset``.

:func:`track` maps one function over the frame chunks of an archive (or any
NumPy/Dask array). Each task gets one chunk of frames, read once, crops every
ROI, converts camera integers to float, stacks all beads of those frames along
the image axis and runs the core once, shape ``(roi, roi, n_beads * n_frames)``.
It returns one float64 array ``(bead, frame, 4 + n_bins)`` holding x, y, z,
flags and the profiles; the Dataset's variables are lazy slices of it, so
computing or writing them together runs each task once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
import zlib
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from magtrack_dask.storage import (
    LAYOUTS,
    TARGET_ROIS_PER_CHUNK,
    _check_count,
    _check_positive,
    _is_scalar,
    check_layout,
    check_rois,
    frame_axis,
    open_archive,
    read_frames,
    remove_unfinished_writes,
)

__all__ = ["track", "write_results", "require_gpu", "FLAG_BITS"]

log = logging.getLogger(__name__)

#: Flag bits of the ``flags`` variable.
FLAG_BITS = {
    "xy_not_found": 1,  # x or y is NaN: blank frame, or no radially symmetric bead (min_symmetry)
    "z_at_lut_edge_or_nan": 2,  # only when a Z-LUT was given
    "saturated": 4,  # a pixel in the ROI equals the integer dtype's maximum
    "near_roi_edge": 8,  # centre closer than edge_margin_px to the ROI border
    "input_unreadable": 16,  # the frames' input chunk could not be read or decoded; all values NaN
}
_N_FIELDS = 4  # x, y, z, flags; the profiles follow
#: Default of ``track(min_symmetry=)``: simulated beads score >= 0.9 even with
#: 300 photons/px, an empty or half-left ROI <= 0.25 (measured), so 0.5 sits between.
MIN_SYMMETRY = 0.5
#: What reading a stored chunk raises when its bytes are damaged or the disk
#: fails (Blosc/Zstd: RuntimeError; gzip/zlib: OSError, zlib.error; a decoded
#: size that does not fit: ValueError). Only the read is guarded: a bug in
#: the tracking itself still fails the task.
READ_ERRORS = (RuntimeError, ValueError, OSError, EOFError, zlib.error)


def _core():
    # Imported late: magtrack_dask/__init__ imports this module.
    from magtrack_dask import core

    return core


# -- the per-chunk kernel --------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tune_worker() -> None:
    """Undo two Dask-worker defaults that slow this workload (once per process).

    * Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
      also fixes glibc's mmap threshold at 128 KiB: every temporary of the core
      is then mmapped and page-faulted afresh, and a task runs 2.5-3x slower
      than in a plain process (measured here). A 256 MiB mmap threshold (the
      decoded chunk and the float stack are ~100 MB each) and a 1 GiB trim
      threshold let the worker reuse its memory: reading a 1000-frame chunk
      then costs half the CPU of glibc's defaults. A worker may keep up to
      ~1 GiB of freed memory for reuse.
    * Blosc decodes with one thread per core by default; with one worker per
      core the extra threads only contend (a 2000-frame chunk cost 0.33 s of
      CPU to read instead of 0.15 s).

    Only in distributed workers, never in the user's own process.
    """
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2**30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass
    try:
        from numcodecs import blosc

        blosc.set_nthreads(1)
    except ImportError:
        pass


def _roi_major(block: np.ndarray, layout: str, rois: np.ndarray | None, dtype, step: int = 1) -> np.ndarray:
    """Every ROI of a ``tyx`` or ``tbyx`` chunk, image-major ``(n_beads * n_frames, w, w)``,
    bead by bead, on every ``step``-th row and column (each ROI row one contiguous copy)."""
    if layout == "tbyx":
        nt, nb, r, _ = block.shape
        w = -(-r // step)
        out = np.empty((nb, nt, w, w), dtype=dtype)
        out[...] = block[:, :, ::step, ::step].transpose(1, 0, 2, 3)
        return out.reshape(nb * nt, w, w)
    nt = block.shape[0]
    w = -(-int(rois[0, 1] - rois[0, 0]) // step)
    out = np.empty((len(rois) * nt, w, w), dtype=dtype)
    for b, (top, bottom, left, right) in enumerate(rois):
        out[b * nt : (b + 1) * nt] = block[:, top:bottom:step, left:right:step]
    return out


def _crop(block: np.ndarray, layout: str, rois: np.ndarray | None, dtype) -> np.ndarray:
    """Crop one chunk to a float stack ``(roi, roi, n_beads * n_frames)``, bead-major.

    ``tyx`` and ``tbyx`` chunks are cropped into a frame-major buffer (see
    :func:`_roi_major`) and returned as its ``(roi, roi, n)`` view: the core
    accepts any memory order and runs faster on frame-major images. Per
    1000-frame task (4 beads x 64 px, uint16): crop 51 -> 22 ms, core -6 %,
    same results to the bit.
    """
    if layout == "yxt":
        return block.astype(dtype, copy=True)
    return np.moveaxis(_roi_major(block, layout, rois, dtype), 0, 2)


def _saturated(block: np.ndarray, layout: str, rois: np.ndarray | None) -> np.ndarray:
    """(bead, frame) bool: a pixel of the ROI at the integer dtype's maximum."""
    nb = 1 if layout == "yxt" else (block.shape[1] if layout == "tbyx" else len(rois))
    nt = block.shape[-1] if layout == "yxt" else block.shape[0]
    if not np.issubdtype(block.dtype, np.integer):
        return np.zeros((nb, nt), dtype=bool)
    top = np.iinfo(block.dtype).max
    if layout == "yxt":
        return (block.max(axis=(0, 1)) == top)[None, :]
    if layout == "tbyx":
        return (block.max(axis=(2, 3)) == top).T
    # Each frame's maximum over the rows the ROIs span (contiguous, ~2x faster
    # than per-ROI maxima); only frames that reach the top are checked per ROI.
    rows = block[:, rois[:, 0].min() : rois[:, 1].max()]
    hot = np.flatnonzero(rows.reshape(nt, -1).max(axis=1) == top)
    out = np.zeros((nb, nt), dtype=bool)
    if hot.size:
        hit = block[hot]
        out[:, hot] = np.stack([hit[:, t:b, l:r].max(axis=(1, 2)) == top for t, b, l, r in rois])
    return out


#: The lost-bead check's coarse screen scores every ``_SCREEN_STEP``-th row and
#: column of ROIs of ``_SCREEN_MIN_ROI`` px and more (see :func:`_lost_beads`).
_SCREEN_STEP, _SCREEN_MIN_ROI = 4, 48


def _radial_symmetry(xp, stack, x, y, step: int = 2, images=None):
    """Fraction of each image's variance that rings about ``(x, y)`` explain.

    ``1 - (sum of squares within 1 px rings) / (sum of squares about the
    mean)``, over the disc of radius ``roi // 2``: near 1 for a bead centred at
    ``(x, y)``, near 0 for noise, a blank frame or rings of a bead that has left
    the ROI (the core then still returns some position). Scored on every
    ``step``-th row and column: every second is enough for that distinction.
    ``images`` (optional indices) scores only those images of the stack;
    ``x`` and ``y`` are then theirs.

    Returns
    -------
    score : (n_images,) float64 array on the stack's device
        NaN where ``x`` or ``y`` is NaN or the image is constant.
    """
    by_image = xp.moveaxis(stack, 2, 0)
    # The sample, copied once image by image (contiguous rows for the blocks of _ring_scores).
    sample = by_image[:, ::step, ::step] if images is None else by_image[images, ::step, ::step]
    return _ring_scores(xp, xp.ascontiguousarray(sample), x, y, stack.shape[0], step)


def _screen_sample(block: np.ndarray, layout: str, rois: np.ndarray | None):
    """The coarse screen's sample of every ROI, ``(n_beads * n_frames, w, w)``, taken
    from an integer chunk (the crop's order, camera integers: a third cheaper
    to gather than from the float stack, and exact sums in :func:`_ring_scores`);
    None for float chunks and the ``yxt`` layout."""
    if layout == "yxt" or not np.issubdtype(block.dtype, np.integer):
        return None
    return _roi_major(block, layout, rois, block.dtype, _SCREEN_STEP)


def _ring_scores(xp, sample, x, y, full: int, step: int):
    """:func:`_radial_symmetry` of images from their sample ``(n, w, w)``, C-contiguous,
    taken on every ``step``-th row and column of ``full`` px images.

    Per image, one ``bincount`` gives each ring's count and sum, one masked dot
    product the sum of squares over the disc (the score needs no per-ring sum of
    squares). Integer samples (camera counts, |value| < 2**32) are counted in the
    same ``bincount`` as the sums: each value is shifted by K, a power of 2 above
    twice any ring's sum, and each sum of ``count * K + sum`` integers is exact
    in float64, so the two come apart exactly. Float samples take a second
    ``bincount`` for the counts.
    """
    from magtrack_dask.core._blocks import blocks
    from magtrack_dask.core._checks import quiet
    from magtrack_dask.core.profiles import ring_index

    n, width = sample.shape[0], sample.shape[1]
    n_rings = full // 2
    ok = xp.isfinite(x) & xp.isfinite(y)
    grid = xp.arange(width, dtype=np.float64) * step
    # Centres far outside the ROI are clipped (bounding the slots below); they score low either way.
    dx2 = (xp.clip(xp.where(ok, x, 0.0), -full, 2 * full)[:, None] - grid) ** 2  # (image, column)
    dy2 = (xp.clip(xp.where(ok, y, 0.0), -full, 2 * full)[:, None] - grid) ** 2  # (image, row)
    # Slots per image: room for the farthest sample from any centre, so no clipping pass.
    slots = max(int(np.sqrt(float(dx2.max() + dy2.max()))) + 2, n_rings)
    level = sample[:, 0, :].mean(axis=1, dtype=np.float64)  # cancels most of the mean before squaring
    shift = 0.0
    if np.issubdtype(sample.dtype, np.integer):
        span = float(np.iinfo(sample.dtype).max) - float(np.iinfo(sample.dtype).min)
        shift = 2.0 ** int(np.ceil(np.log2(2 * width * width * span + 1)))
        if span >= 2**32 or width * width * (shift + span) >= 2**53:  # not exact: count apart
            shift = 0.0
        else:
            level = xp.rint(level)  # integer values: every sum below is exact
    sums, s2 = xp.empty((n, slots)), xp.empty(n)
    counts = sums if shift else xp.empty((n, slots))
    buffer = mask = None
    for part in blocks(xp, n, 8 * width * width):  # cache-sized blocks of images
        m = part.stop - part.start
        if buffer is None:  # one allocation, reused by every block
            buffer, mask = xp.empty((2, m, width, width)), xp.empty((m, width * width), dtype=bool)
        dist, value = buffer[0, :m], buffer[1, :m]
        xp.add(dy2[part, :, None], dx2[part, None, :], out=dist)
        first = xp.arange(m, dtype=np.int64) * slots
        index = ring_index(xp, dist, first[:, None, None])
        xp.subtract(sample[part], (level[part] - shift)[:, None, None], out=value)
        size = m * slots
        sums[part] = xp.bincount(index, weights=value.ravel(), minlength=size).reshape(m, slots)
        if shift:
            value -= shift
        else:
            counts[part] = xp.bincount(index, minlength=size).reshape(m, slots)
        # Sum of squares over the disc: rings 0 .. n_rings - 1 of each image.
        inside = mask[:m]
        xp.less(index.reshape(m, -1), (first + n_rings)[:, None], out=inside)
        value = value.reshape(m, -1)
        with quiet(xp):  # inf pixels (inf * 0): that image's score is NaN, not news
            value *= inside
            s2[part] = xp.einsum("ij,ij->i", value, value)
    sums = sums[:, :n_rings]
    if shift:
        counts = xp.rint(sums / shift)
        sums = sums - counts * shift
    else:
        counts = counts[:, :n_rings]
    with np.errstate(divide="ignore", invalid="ignore"):
        within = s2 - (sums * sums / xp.maximum(counts, 1.0)).sum(axis=1)  # an empty ring has sum 0
        total = s2 - sums.sum(axis=1) ** 2 / counts.sum(axis=1)
        score = 1.0 - within / total
    return xp.where(ok & (total > 0), score, np.nan)


def _lost_beads(xp, stack, x, y, min_symmetry: float, coarse=None):
    """(n_images,) bool: the radial symmetry about ``(x, y)`` is below ``min_symmetry``.

    A NaN score (no centre, constant image) is not "lost": x and y are NaN
    already. ROIs of 48 px and more are screened first on every fourth row
    and column, a quarter of the cost: sparser rings overstate the score. In
    simulated beads leaving the ROI and empty ROIs (64 px, 100 photons/px to
    noise-free) no image scoring below 0.5 on the full sample scored above 0.67
    on the coarse one (0.72 below 0.6, 0.85 below 0.8), so an image whose
    coarse ``1 - score`` is at most ``min(0.2, 0.4 * (1 - min_symmetry))`` keeps
    its bead; only the rest (~8 % of beads) are scored on every second row and
    column. ``coarse`` (optional) is that screen's sample, from
    :func:`_screen_sample`.
    """
    n, full = stack.shape[2], stack.shape[0]
    if full < _SCREEN_MIN_ROI:
        return _radial_symmetry(xp, stack, x, y) < min_symmetry  # NaN compares False
    if coarse is None:
        coarse = _radial_symmetry(xp, stack, x, y, step=_SCREEN_STEP)
    else:
        coarse = _ring_scores(xp, coarse, x, y, full, _SCREEN_STEP)
    unsure = xp.flatnonzero(1.0 - coarse > min(0.2, 0.4 * (1.0 - min_symmetry)))  # NaN compares False
    lost = xp.zeros(n, dtype=bool)
    if unsure.size:
        lost[unsure] = _radial_symmetry(xp, stack, x[unsure], y[unsure], images=unsure) < min_symmetry
    return lost


def _unreadable_block(n_beads: int, n_frames: int, n_bins: int, has_lut: bool) -> np.ndarray:
    """The kernel's output for frames whose input could not be read: NaN, flagged."""
    out = np.full((n_beads, n_frames, _N_FIELDS + n_bins), np.nan)
    bits = FLAG_BITS["input_unreadable"] | FLAG_BITS["xy_not_found"]
    out[..., 3] = bits | (FLAG_BITS["z_at_lut_edge_or_nan"] if has_lut else 0)
    return out


def _track_block(
    block: np.ndarray,
    zlut,
    *,
    layout: str,
    rois: np.ndarray | None,
    offsets: np.ndarray,
    n_bins: int,
    stage_options: dict,
    device: str,
    edge_margin_px: float,
    min_symmetry: float = MIN_SYMMETRY,
) -> np.ndarray:
    """Track every bead of one frame chunk.

    Images whose :func:`_radial_symmetry` about the found centre is below
    ``min_symmetry`` hold no bead the core can have found: their x, y, z and
    profiles become NaN (flag 1).

    Returns
    -------
    out : (n_beads, n_frames, 4 + n_bins) float64 ndarray
        ``[..., 0]`` x and ``[..., 1]`` y (full-frame px), ``[..., 2]`` z,
        ``[..., 3]`` flags, ``[..., 4:]`` the profiles.
    """
    _tune_worker()
    core = _core()
    float_dtype = block.dtype if block.dtype in (np.float32, np.float64) else np.float64
    stack = _crop(block, layout, rois, float_dtype)
    roi = stack.shape[0]
    nb = len(offsets)
    nt = stack.shape[2] // nb
    per_bead = zlut is not None and zlut.ndim == 3
    shared_lut = None if (zlut is None or per_bead) else zlut

    xp = np
    if device == "gpu":  # only this task's crop goes to the GPU; small results come back
        try:
            import cupy as xp
        except ImportError as err:
            raise RuntimeError("device='gpu': CuPy is not installed on this worker (pip install "
                               "'magtrack-dask[gpu]')") from err

        # Sent in the crop's memory order (one contiguous copy), then made C-ordered
        # frames-last on the GPU: the layout the GPU path has always been given.
        by_frame = np.moveaxis(stack, 2, 0)
        if by_frame.flags.c_contiguous:
            stack = xp.ascontiguousarray(xp.moveaxis(xp.asarray(by_frame), 0, 2))
        else:
            stack = xp.asarray(np.ascontiguousarray(stack))
        shared_lut = None if shared_lut is None else xp.asarray(shared_lut)
    with core.core_threads(1):  # Dask runs one task per thread already: more would contend
        if stage_options:
            x, y, z, prof = core.stack_to_xyzp_advanced(stack, shared_lut, **stage_options)
        else:
            x, y, z, prof = core.stack_to_xyzp(stack, shared_lut)
    if per_bead:  # one lookup per bead, on the device that holds the profiles
        lut_opts = stage_options.get("lookup_z", {})
        z = xp.concatenate([
            core.lookup_z(prof[:, b * nt : (b + 1) * nt], xp.asarray(zlut[b]), **lut_opts) for b in range(nb)
        ])
    if min_symmetry > 0:  # the core returns a position for any image, even one without a bead
        # the screen's sample from the camera integers, on the CPU (the GPU takes it from the stack)
        coarse = _screen_sample(block, layout, rois) if xp is np and roi >= _SCREEN_MIN_ROI else None
        lost = _lost_beads(xp, stack, x, y, min_symmetry, coarse)
        x, y, z = (xp.where(lost, np.nan, a) for a in (x, y, z))
        prof = xp.where(lost[None, :], np.nan, prof)
    if xp is not np:
        x, y, z, prof = (xp.asnumpy(a) for a in (x, y, z, prof))
    if prof.shape[0] != n_bins:
        raise RuntimeError(f"the core returned {prof.shape[0]} profile bins; expected {n_bins}")

    out = np.empty((nb, nt, _N_FIELDS + n_bins), dtype=np.float64)
    x, y, z = (np.asarray(a, dtype=np.float64).reshape(nb, nt) for a in (x, y, z))
    flags = np.zeros((nb, nt), dtype=np.uint8)
    flags[np.isnan(x) | np.isnan(y)] |= FLAG_BITS["xy_not_found"]
    if zlut is not None:
        zref = zlut[:, 0, :] if per_bead else zlut[None, 0, :]
        zs = np.sort(zref, axis=1)
        lo, hi = zs[:, 1:2], zs[:, -2:-1]  # within one LUT step of either end
        with np.errstate(invalid="ignore"):
            flags[np.isnan(z) | (z <= lo) | (z >= hi)] |= FLAG_BITS["z_at_lut_edge_or_nan"]
    flags[_saturated(block, layout, rois)] |= FLAG_BITS["saturated"]
    with np.errstate(invalid="ignore"):
        near = (
            (x < edge_margin_px) | (y < edge_margin_px)
            | (x > roi - 1 - edge_margin_px) | (y > roi - 1 - edge_margin_px)
        )
    flags[near] |= FLAG_BITS["near_roi_edge"]
    out[..., 0] = x + offsets[:, 2:3]
    out[..., 1] = y + offsets[:, 0:1]
    out[..., 2] = z
    out[..., 3] = flags
    out[..., _N_FIELDS:] = np.asarray(prof, dtype=np.float64).reshape(n_bins, nb, nt).transpose(1, 2, 0)
    return out


def _track_zarr_block(frame_numbers: np.ndarray, zlut, *, frames: zarr.Array, frame_axis: int, **kwargs):
    """Read frames ``frame_numbers[0] .. frame_numbers[-1]`` of a Zarr array and track them.

    A chunk that cannot be read or decoded (:data:`READ_ERRORS`) gives NaN
    results with flag 16 instead of failing the task: the other chunks of a
    job go on, and the job reports these frames as unreadable.
    """
    _tune_worker()  # before the read: it sets Blosc's threads
    start, stop = int(frame_numbers[0]), int(frame_numbers[-1]) + 1
    try:
        # read_frames names the chunk when its decoded size disagrees with the metadata
        block = read_frames(frames, start, stop, frame_axis)
    except READ_ERRORS as err:
        log.warning("frames %d-%d of %s are unreadable: %s: %s", start, stop - 1, frames.store, type(err).__name__,
                    err)
        return _unreadable_block(len(kwargs["offsets"]), stop - start, kwargs["n_bins"], zlut is not None)
    return _track_block(block, zlut, **kwargs)


def require_gpu(client=None) -> None:
    """Raise unless CuPy and a CUDA GPU work where the tracking tasks will run.

    Parameters
    ----------
    client : distributed.Client, optional
        Check on this client's workers. Default: the current default client's
        workers when there is one (so a GPU-less login node may drive a GPU
        cluster), else this process (the local scheduler runs tasks here).

    Raises
    ------
    RuntimeError
        Naming the workers (or this process) without a usable GPU.
    """
    from magtrack_dask._backend import check_cupy

    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):  # no distributed, or no client
            client = None
    if client is None:
        if not check_cupy():
            raise RuntimeError("device='gpu' needs CuPy and a working CUDA GPU in this process; none found "
                               "(install magtrack-dask[gpu], connect to a GPU cluster first, or use device='cpu')")
        return
    # No workers yet (an adaptive cluster): each task then fails with its own clear error.
    missing = sorted(w for w, ok in client.run(check_cupy).items() if not ok)
    if missing:
        raise RuntimeError(f"device='gpu' needs CuPy and a working CUDA GPU on every worker; none on "
                           f"{', '.join(missing)} (use dask-cuda workers, or device='cpu')")


# -- inputs ----------------------------------------------------------------------


def _infer_layout(ndim: int, rois) -> str:
    if ndim == 4:
        return "tbyx"
    if ndim == 3:
        return "tyx" if rois is not None else "yxt"
    raise ValueError(f"source must be 3-D or 4-D to infer layout; got {ndim}-D. Pass layout=")


def _open_source(source, layout, rois, frames_per_task):
    """Return (dask array, layout, rois, Archive or None, zarr.Array or None)."""
    if _is_scalar(source):
        raise TypeError(f"source must be an archive (a path, zarr.Group or Zarr store) or an image array; "
                        f"got {type(source).__name__}")
    if isinstance(source, (str, os.PathLike, zarr.Group)) or (
        not hasattr(source, "ndim") and not isinstance(source, (list, tuple))
    ):
        arch = open_archive(source, frames_per_task=frames_per_task)
        if layout is not None and check_layout(layout) != arch.layout:
            raise ValueError(f"layout={layout!r} does not match the archive's layout {arch.layout!r}")
        return arch.data, arch.layout, arch.rois if rois is None else rois, arch, arch.group["frames"]
    layout = check_layout(layout) if layout is not None else _infer_layout(np.ndim(source), rois)
    if len(LAYOUTS[layout]) != np.ndim(source):
        raise ValueError(f"layout {layout!r} needs a {len(LAYOUTS[layout])}-D source; got {np.ndim(source)}-D")
    ax = frame_axis(layout)
    if isinstance(source, zarr.Array):
        unit = (source.shards or source.chunks)[ax]
        step = unit * max(1, -(-(frames_per_task or unit) // unit))
        data = da.from_zarr(source, chunks=tuple(step if i == ax else -1 for i in range(source.ndim)))
    elif isinstance(source, da.Array):
        data = source
        if frames_per_task:
            data = data.rechunk({ax: frames_per_task})
    else:
        n_beads = source.shape[1] if layout == "tbyx" else (len(rois) if layout == "tyx" and rois is not None else 1)
        step = frames_per_task or max(1, TARGET_ROIS_PER_CHUNK // max(1, n_beads))
        data = da.from_array(np.asarray(source), chunks=tuple(step if i == ax else -1 for i in range(np.ndim(source))))
    # Chunked along frames only: a task must see whole frames (and all beads).
    data = data.rechunk({i: -1 for i in range(data.ndim) if i != ax})
    return data, layout, rois, None, source if isinstance(source, zarr.Array) else None


# -- the public entry point --------------------------------------------------------


def track(
    source,
    zlut=None,
    *,
    rois=None,
    layout: str | None = None,
    device: str = "cpu",
    frames_per_task: int | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    edge_margin_px: float | None = None,
    min_symmetry: float = MIN_SYMMETRY,
    **stage_options: Any,
) -> xr.Dataset:
    """Track every bead of every frame, lazily.

    Parameters
    ----------
    source : str, os.PathLike, zarr Store, zarr.Group, zarr.Array, dask or numpy array
        An archive (see :mod:`magtrack_dask.storage`) or an image array. For
        arrays without ``layout``: 4-D is ``'tbyx'``; 3-D is ``'tyx'`` when
        ``rois`` is given, else ``'yxt'``.
    zlut : array_like or str, optional
        One Z-LUT ``(1 + n_bins, n_ref)`` for all beads, or one per bead
        ``(n_beads, 1 + n_bins, n_ref)``, or a ``.npy``/Zarr path to one.
        Row 0 holds the reference z (nm, normally). Without it z is NaN.
    rois : array_like of int, shape (n_beads, 4), optional
        ``[top, bottom, left, right]``; overrides the archive's table. Required
        for ``'tyx'``; for ``'tbyx'`` it only supplies full-frame offsets.
    layout : {'tyx', 'tbyx', 'yxt'}, optional
        Axis order of an array source; checked against an archive's.
    device : {'cpu', 'gpu'}
        ``'gpu'`` runs the core on CuPy inside each task; Dask arrays stay
        NumPy-typed.
    frames_per_task : int, optional
        Frames per task. For archives it is rounded up to whole Zarr chunks
        (default: one chunk per task); for NumPy arrays the default is
        ``4096 // n_beads`` (about 0.3 s of work for 64 px ROIs).
    pixel_size_nm, frame_rate_hz : float, optional
        Override the archive's attributes; enable ``x_nm``, ``y_nm`` and ``time``.
    edge_margin_px : float, optional
        Flag 8 is set when the centre lies closer than this to the ROI border;
        default ``roi / 8`` (8 px for 64 px ROIs: the first rings are cut).
    min_symmetry : float, optional
        A bead is "not found" (x, y, z and profiles NaN, flag 1) where rings
        about the found centre explain less than this fraction of the ROI's
        variance: a blank or noise-only frame, a bead that has left its ROI.
        Default 0.5 (beads score ~0.9-1, empty ROIs ~0-0.25); 0 turns the
        check off (it costs ~6 % of the tracking time).
    **stage_options
        Keyword dictionaries of :func:`magtrack_dask.stack_to_xyzp_advanced`
        (``center_of_mass={...}``, ``radial_profile={...}``,
        ``**{'n auto_conv_multiline_sub_pixel': 3}``, ...). When any is given
        the advanced pipeline runs, else :func:`magtrack_dask.stack_to_xyzp`.

    Returns
    -------
    ds : xarray.Dataset
        Lazy, dims ``bead``, ``frame``, ``radius``; variables ``x``, ``y``
        (full-frame px), ``x_nm``, ``y_nm`` (with a pixel size), ``z``,
        ``profiles`` ``(bead, frame, radius)``, ``flags`` (uint8 bit mask, see
        :data:`FLAG_BITS` and ``ds.flags.attrs``). Chunked along frames like the
        tasks. Compute or write all variables together (``ds.compute()``,
        :func:`write_results`): computing them one by one reruns the tasks.

    Raises
    ------
    ValueError
        Unknown ``layout`` or ``device``, bad ``rois``, a ``zlut`` whose shape or
        per-bead count does not fit or whose values are malformed (see
        :func:`magtrack_dask.core.z.check_zlut`), an option out of range, a
        source without frames, an archive whose metadata lies
        (:class:`magtrack_dask.storage.ArchiveError`). All raised before any
        task runs.
    TypeError
        Bool or complex pixels or Z-LUT.
    FileNotFoundError
        A missing archive or Z-LUT path.
    RuntimeError
        ``device='gpu'`` without a usable CuPy/CUDA.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu'; got {device!r}")
    if device == "gpu":
        require_gpu()
    if layout is not None:
        check_layout(layout)
    # Options first: a bad value fails here, before any archive is opened or output made.
    if frames_per_task is not None:
        frames_per_task = _check_count(frames_per_task, "frames_per_task")
    if pixel_size_nm is not None:
        pixel_size_nm = _check_positive(pixel_size_nm, "pixel_size_nm", "nm per pixel")
    if frame_rate_hz is not None:
        frame_rate_hz = _check_positive(frame_rate_hz, "frame_rate_hz", "frames per second")
    if edge_margin_px is not None and not (isinstance(edge_margin_px, (int, float, np.number))
                                           and np.isfinite(edge_margin_px) and edge_margin_px >= 0):
        raise ValueError(f"edge_margin_px must be a finite number >= 0 (px), got {edge_margin_px!r}")
    layout_given = layout is not None
    data, layout, rois, arch, zarr_frames = _open_source(source, layout, rois, frames_per_task)
    if data.dtype.kind not in "uif":
        raise TypeError(f"source must hold integer or float pixels; got dtype {data.dtype}")
    if data.shape[frame_axis(layout)] == 0:
        raise ValueError(f"source has no frames: shape {tuple(data.shape)} (layout {layout!r}, "
                         f"frame axis {frame_axis(layout)})")

    # ROI table and per-bead offsets.
    if layout == "tyx":
        if rois is None:
            raise ValueError("rois is required for layout 'tyx' (an (n_beads, 4) [top, bottom, left, right] table)")
        rois = check_rois(rois, data.shape[1:3])
        roi = int(rois[0, 1] - rois[0, 0])
        offsets = rois
    else:
        roi = int(data.shape[-1] if layout == "tbyx" else data.shape[0])
        ny = data.shape[2] if layout == "tbyx" else data.shape[1]
        if ny != roi:
            hint = "" if layout_given or arch is not None else (
                f" (layout {layout!r} was inferred from a {data.ndim}-D array"
                + (" without rois; (frame, y, x) frames need layout='tyx' and rois)" if layout == "yxt" else ")"))
            raise ValueError(f"layout {layout!r} needs square images; got {ny} x {roi} px{hint}")
        nb = data.shape[1] if layout == "tbyx" else 1
        if nb == 0:
            raise ValueError(f"source has no beads: shape {tuple(data.shape)} (layout 'tbyx', bead axis 1)")
        if rois is not None:
            rois = check_rois(rois)
            if rois.shape[0] != nb or rois[0, 1] - rois[0, 0] != roi:
                raise ValueError(f"rois has {rois.shape[0]} ROIs of {rois[0, 1] - rois[0, 0]} px; "
                                 f"the source has {nb} beads of {roi} px")
        else:
            rois = np.tile(np.array([[0, roi, 0, roi]], dtype=np.int64), (nb, 1))
        offsets = rois
    n_beads = len(rois)

    from magtrack_dask.core.pipeline import min_image_pixels

    need = min_image_pixels(**stage_options)  # also checks the stage options
    if roi < need:
        what = "rois are" if layout == "tyx" else "source images are"
        raise ValueError(f"{what} {roi} x {roi} px; tracking needs at least {need} x {need} px (the sub-pixel "
                         f"fit's n_local)")

    from magtrack_dask.zlut import load_zlut

    zlut_arr, zlut_source = (None, "none") if zlut is None else (
        load_zlut(zlut)[0], os.fspath(zlut) if isinstance(zlut, (str, os.PathLike)) else "array")
    n_bins, radius, radius_units = _profile_bins(roi, stage_options)
    if zlut_arr is not None:
        if zlut_arr.ndim not in (2, 3):
            raise ValueError(f"zlut must be 2-D (1 + n_bins, n_ref) or 3-D per bead; got shape {zlut_arr.shape}")
        if zlut_arr.ndim == 3 and zlut_arr.shape[0] != n_beads:
            raise ValueError(f"zlut holds {zlut_arr.shape[0]} per-bead tables but the source has {n_beads} beads")
        if zlut_arr.shape[-2] - 1 != n_bins:
            raise ValueError(f"zlut has {zlut_arr.shape[-2] - 1} profile bins but the profiles of "
                             f"{roi} px ROIs have {n_bins}")
        # The values too (monotonic finite z, finite profiles): here, not in every task.
        from magtrack_dask.core.z import check_zlut

        for b, table in enumerate(zlut_arr if zlut_arr.ndim == 3 else [zlut_arr]):
            check_zlut(table, n_bins, name=f"zlut[{b}]" if zlut_arr.ndim == 3 else "zlut")
    margin = roi / 8 if edge_margin_px is None else float(edge_margin_px)
    min_symmetry = float(min_symmetry)
    if not 0 <= min_symmetry <= 1:
        raise ValueError(f"min_symmetry must lie in [0, 1]; got {min_symmetry}")

    # One task per frame chunk.
    ax = frame_axis(layout)
    lut_key = None if zlut_arr is None else dask.delayed(zlut_arr, pure=True)  # one graph key, not one copy per task
    kernel_kwargs = dict(
        layout=layout, rois=rois if layout == "tyx" else None, offsets=offsets, n_bins=n_bins,
        stage_options=stage_options, device=device, edge_margin_px=margin, min_symmetry=min_symmetry,
    )
    common = dict(
        new_axes={"b": n_beads, "k": _N_FIELDS + n_bins}, concatenate=True, dtype=np.float64,
        meta=np.empty((0, 0, 0), dtype=np.float64),
        name="track-" + dask.base.tokenize(data, zlut_arr, layout, rois, stage_options, device, margin,
                                           min_symmetry),
    )
    if zarr_frames is not None:
        # Zarr input is read inside the task: each chunk is decoded where it is
        # tracked, once, and never held in worker memory between tasks.
        idx = da.arange(data.shape[ax], chunks=(data.chunks[ax],))
        stacked = da.blockwise(_track_zarr_block, "btk", idx, "t", lut_key, None, frames=zarr_frames,
                               frame_axis=ax, **kernel_kwargs, **common)
    else:  # all non-frame axes are contracted into the task
        in_ind = "".join("t" if i == ax else "pqr"[i - (i > ax)] for i in range(data.ndim))
        stacked = da.blockwise(_track_block, "btk", data, in_ind, lut_key, None, **kernel_kwargs, **common)

    px_nm = pixel_size_nm if pixel_size_nm is not None else (arch.pixel_size_nm if arch else None)
    rate = frame_rate_hz if frame_rate_hz is not None else (arch.frame_rate_hz if arch else None)
    time = None
    if frame_rate_hz is None and arch is not None:
        time = arch.time()
    elif rate:
        time = da.arange(data.shape[ax], chunks=(data.chunks[ax],)) / float(rate)
    is_int = data.dtype.kind in "ui"
    z_units = "nm"  # Z-LUTs from magtrack_dask.zlut and make_zlut are in nm
    params = {
        "layout": layout, "device": device, "frames_per_task": int(data.chunks[ax][0]),
        "roi_size_px": roi, "n_beads": n_beads, "n_bins": n_bins, "edge_margin_px": margin,
        "min_symmetry": min_symmetry,
        "pipeline": "stack_to_xyzp_advanced" if stage_options else "stack_to_xyzp",
        "stage_options": stage_options, "zlut_kind": "none" if zlut_arr is None else
        ("per-bead" if zlut_arr.ndim == 3 else "shared"), "pixel_size_nm": px_nm, "frame_rate_hz": rate,
    }
    if arch is not None:
        source_desc = arch.path or f"zarr group in {arch.group.store}"
    elif zarr_frames is not None:
        source_desc = f"zarr array {zarr_frames.path!r} in {zarr_frames.store}"
    else:
        source_desc = f"in-memory {type(source).__module__.split('.')[0]}.{type(source).__name__}"
    return _build_dataset(stacked, n_bins, rois, radius, radius_units, time, px_nm, is_int, z_units,
                          params, source_desc, zlut_source)


def _profile_bins(roi: int, stage_options: dict) -> tuple[int, np.ndarray, str]:
    """Profile length, the radius of each bin and its units, from a one-image run."""
    core = _core()
    yy, xx = np.indices((roi, roi), dtype=np.float64)
    c = (roi - 1) / 2
    img = (1000.0 + 100 * np.cos(np.hypot(yy - c, xx - c)))[:, :, None]
    # Cheap (one image) and exact whatever the profile options; runs on the client.
    prof = (core.stack_to_xyzp_advanced(img, None, **stage_options) if stage_options
            else core.stack_to_xyzp(img, None))[3]
    n_bins = int(np.shape(prof)[0])
    if stage_options.get("use fft_profile", False):
        return n_bins, np.arange(n_bins, dtype=np.float64), "1"
    oversample = stage_options.get("radial_profile", {}).get("oversample", 1)
    return n_bins, np.arange(n_bins, dtype=np.float64) / oversample, "px"


def _build_dataset(stacked, n_bins, rois, radius, radius_units, time, px_nm, is_int, z_units,
                   params, source_desc, zlut_source) -> xr.Dataset:
    from magtrack_dask import __version__

    n_beads, n_frames = stacked.shape[:2]
    bf = ("bead", "frame")
    inten = "counts" if is_int else "1"
    data_vars = {
        "x": (bf, stacked[:, :, 0], {"units": "px", "long_name": "bead x position (column), full-frame pixels"}),
        "y": (bf, stacked[:, :, 1], {"units": "px", "long_name": "bead y position (row), full-frame pixels"}),
        "z": (bf, stacked[:, :, 2], {"units": z_units, "long_name": "bead z position from the Z-LUT"}),
        "profiles": (("bead", "frame", "radius"), stacked[:, :, _N_FIELDS:],
                     {"units": inten, "long_name": "radial intensity profile about the bead centre"}),
        "flags": (bf, stacked[:, :, 3].astype(np.uint8), {
            "units": "1", "long_name": "quality flags (bit mask)",
            "flag_masks": list(FLAG_BITS.values()), "flag_meanings": " ".join(FLAG_BITS),
            "flag_descriptions": (
                "1: x or y is NaN (blank frame, or radial symmetry about the found centre below "
                f"{params['min_symmetry']:g}: no bead in the ROI); 2: z is NaN or within one reference step "
                "of either end of the Z-LUT (only with a Z-LUT); 4: a pixel of the ROI equals the integer "
                f"dtype's maximum; 8: centre within {params['edge_margin_px']:g} px of the ROI border; "
                "16: the input chunk of these frames could not be read (x, y, z, profiles NaN)"),
        }),
    }
    if px_nm:
        data_vars["x_nm"] = (bf, stacked[:, :, 0] * px_nm, {"units": "nm", "long_name": "bead x position, full frame"})
        data_vars["y_nm"] = (bf, stacked[:, :, 1] * px_nm, {"units": "nm", "long_name": "bead y position, full frame"})
    coords = {
        "bead": ("bead", np.arange(n_beads), {"units": "1", "long_name": "bead index (row of the ROI table)"}),
        "frame": ("frame", np.arange(n_frames), {"units": "1", "long_name": "frame number"}),
        "radius": ("radius", radius, {"units": radius_units, "long_name": "radial profile bin"}),
    }
    for i, edge in enumerate(("top", "bottom", "left", "right")):
        coords[f"roi_{edge}"] = ("bead", rois[:, i], {"units": "px", "long_name": f"ROI {edge} edge (exclusive"
                                                      f" end)" if edge in ("bottom", "right") else f"ROI {edge} edge"})
    if time is not None:
        coords["time"] = ("frame", time, {"units": "s", "long_name": "frame time"})
    clean = {k: v for k, v in params.items() if v is not None}
    attrs = {
        "title": "magtrack-dask bead tracking results",
        "Conventions": "CF-1.10",
        "magtrack_dask_version": __version__,
        "source": source_desc,
        "zlut_source": zlut_source,
        "parameters": json.dumps(params, sort_keys=True),
        "flag_bits": json.dumps(FLAG_BITS),
        **{k: v for k, v in clean.items() if isinstance(v, (str, int, float))},
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


# -- outputs and clusters -----------------------------------------------------------


def write_results(ds: xr.Dataset, path, *, overwrite: bool = False) -> str:
    """Compute a :func:`track` Dataset and write it to a Zarr v3 store.

    Every variable is written in one pass (each task runs once), chunked
    along frames like the Dataset; metadata is consolidated at the end.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`track`.
    path : str or os.PathLike
        Output store.
    overwrite : bool, optional
        Replace an existing store; default False raises FileExistsError.

    Returns
    -------
    path : str

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        ``overwrite`` would replace something that is not a Zarr store.
    TypeError
        ``ds`` is not a Dataset.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds must be an xarray.Dataset from track(), got {type(ds).__name__}")
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"path: {path} exists; pass overwrite=True to replace it")
    # to_zarr(mode='w') empties whatever folder it is given: only ever replace a Zarr store.
    if os.path.lexists(path) and not os.path.isfile(os.path.join(path, "zarr.json")):
        raise ValueError(f"path: refusing to overwrite {path}: it is "
                         f"{'a folder' if os.path.isdir(path) else 'a file'}, not a Zarr store")
    ds.to_zarr(path, mode="w", consolidated=False, zarr_format=3)
    remove_unfinished_writes(path)  # of a worker killed mid-write (its task was retried)
    with warnings.catch_warnings():  # "not part of the v3 spec": xarray reads it, others ignore it
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(path)
    return path
