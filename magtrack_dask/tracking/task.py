"""One task: every bead of one chunk of frames, read once, tracked in one call of the core.

A task crops every ROI of its frames into one image-major stack (camera
integers become float64; float32 stays float32), runs the pipeline once on all
of them, blanks the images without a bead (:func:`~magtrack_dask.core.symmetry.lost_beads`),
packs the flags and returns one float64 array ``(bead, frame, field)``: x, y
(full-frame px), z, flags, then the profile bins (:mod:`~magtrack_dask.tracking.schema`).
The layouts are told apart here; the kernels of :mod:`magtrack_dask.core` know none.
"""

from __future__ import annotations

import functools
import logging
import zlib
from dataclasses import dataclass

import numpy as np
import zarr

from magtrack_dask import core
from magtrack_dask.core.flags import Flag, pack_flags
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.radial_model import RadialModel
from magtrack_dask.core.rois import crop_beads, crop_rois, saturated_beads, saturated_rois, saturated_stack
from magtrack_dask.core.symmetry import SCREEN_MIN_ROI, SCREEN_STEP, lost_beads
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.chunk_read import read_frames
from magtrack_dask.tracking.schema import FIELDS, N_FIELDS

__all__ = ["ChunkSpec", "READ_ERRORS", "track_chunk", "track_zarr_chunk", "crop_chunk"]

log = logging.getLogger(__name__)

#: What reading a stored chunk raises when its bytes are damaged or the disk
#: fails (Blosc/Zstd: RuntimeError; gzip/zlib: OSError, zlib.error; a decoded
#: size that does not fit: ValueError). Only the read is guarded: a bug in
#: the tracking itself still fails the task.
READ_ERRORS = (RuntimeError, ValueError, OSError, EOFError, zlib.error)

_FLAGS_AT = FIELDS.index("flags")


@dataclass(frozen=True, eq=False)
class ChunkSpec:
    """What every task of one :func:`~magtrack_dask.tracking.track` call does, besides its frames.

    Attributes
    ----------
    layout : Layout
        Of the chunks.
    rois : (n_beads, 4) int64 ndarray or None
        The crop table of full frames (``tyx``), else None.
    offsets : (n_beads, 4) int64 ndarray
        ``[top, bottom, left, right]`` per bead: x and y are shifted by left and top.
    n_bins : int
        Profile bins.
    pipeline : PipelineOptions
    device : {'cpu', 'gpu'}
    edge_margin_px : float
    min_symmetry : float
        0 turns the lost-bead check off.
    method : {'magtrack', 'accurate', 'fit'}
        The core's tracking method (:mod:`magtrack_dask.core.methods`);
        ``pipeline`` applies to 'magtrack' only; 'fit' takes image models
        instead of a table.
    """

    layout: Layout
    rois: np.ndarray | None
    offsets: np.ndarray
    n_bins: int
    pipeline: PipelineOptions
    device: str
    edge_margin_px: float
    min_symmetry: float
    method: str = "magtrack"


@functools.lru_cache(maxsize=1)
def _tune_worker() -> None:
    """Undo two Dask-worker defaults that slow this workload (once per process).

    * Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
      also fixes glibc's mmap threshold at 128 KiB: every temporary of the core
      is then mmapped and page-faulted afresh, and a task runs much slower
      than in a plain process. A 256 MiB mmap threshold (the decoded
      chunk and the float stack are ~100 MB each) and a 1 GiB trim threshold
      let the worker reuse its memory; a worker may keep up to ~1 GiB of freed
      memory for reuse.
    * Blosc decodes with one thread per core by default; with one worker per
      core the extra threads only contend.

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


# -- the layouts, dispatched to the core's kernels ------------------------------------


def _images(block: np.ndarray, layout: Layout, rois: np.ndarray | None, dtype, step: int = 1) -> np.ndarray:
    """Every ROI of a ``tyx`` or ``tbyx`` chunk, image-major ``(n_beads * n_frames, w, w)``."""
    if layout is Layout.TBYX:
        return crop_beads(block, dtype=dtype, step=step)
    return crop_rois(block, rois, dtype=dtype, step=step)


def crop_chunk(block: np.ndarray, layout: Layout, rois: np.ndarray | None, dtype) -> np.ndarray:
    """One chunk as the core's float stack ``(roi, roi, n_beads * n_frames)``, bead-major.

    ``tyx`` and ``tbyx`` chunks are cropped frame-major and returned as a
    ``(roi, roi, n)`` view (the core runs faster on frame-major images).
    """
    if layout is Layout.YXT:
        return block.astype(dtype, copy=True)
    return np.moveaxis(_images(block, layout, rois, dtype), 0, 2)


def _screen_sample(block: np.ndarray, layout: Layout, rois: np.ndarray | None) -> np.ndarray | None:
    """The lost-bead screen's sample from the camera integers (cheaper to gather
    than from the float stack, and exact sums); None for float chunks and ``yxt``."""
    if layout is Layout.YXT or not np.issubdtype(block.dtype, np.integer):
        return None
    return _images(block, layout, rois, block.dtype, SCREEN_STEP)


def _saturated(block: np.ndarray, layout: Layout, rois: np.ndarray | None) -> np.ndarray:
    """(bead, frame) bool: a pixel of the ROI at the integer dtype's maximum."""
    if layout is Layout.YXT:
        return saturated_stack(block)[None, :]
    if layout is Layout.TBYX:
        return saturated_beads(block)
    return saturated_rois(block, rois)


# -- the task ----------------------------------------------------------------------------


def track_chunk(block: np.ndarray, zlut, *, spec: ChunkSpec) -> np.ndarray:
    """Track every bead of one frame chunk.

    Parameters
    ----------
    block : ndarray
        The chunk in ``spec.layout``.
    zlut : float64 ndarray, RadialModel, tuple of RadialModel or None
        ``(1 + n_bins, n_ref)``, or ``(n_beads, 1 + n_bins, n_ref)`` per bead;
        for method 'fit' one image model, or one per bead. Checked already
        (:func:`~magtrack_dask.tracking.lut.resolve_zlut`).
    spec : ChunkSpec

    Returns
    -------
    out : (n_beads, n_frames, 4 + n_bins) float64 ndarray
        ``[..., 0]`` x and ``[..., 1]`` y (full-frame px), ``[..., 2]`` z,
        ``[..., 3]`` flags, ``[..., 4:]`` the profiles. Images whose radial
        symmetry about the found centre is below ``spec.min_symmetry`` hold
        no bead: their x, y, z and profiles are NaN (flag 1).
    """
    _tune_worker()
    float_dtype = block.dtype if block.dtype in (np.float32, np.float64) else np.float64
    stack = crop_chunk(block, spec.layout, spec.rois, float_dtype)
    roi, n_beads = stack.shape[0], len(spec.offsets)
    xp, stack = _to_device(stack, spec.device)
    x, y, z, prof = _run_core(xp, stack, zlut, spec, n_beads)
    if spec.min_symmetry > 0:  # the core returns a position for any image, even one without a bead
        # the screen's sample from the camera integers, on the CPU (the GPU takes it from the stack)
        coarse = _screen_sample(block, spec.layout, spec.rois) if xp is np and roi >= SCREEN_MIN_ROI else None
        lost = lost_beads(stack, x, y, spec.min_symmetry, coarse)
        x, y, z = (xp.where(lost, np.nan, a) for a in (x, y, z))
        prof = xp.where(lost[None, :], np.nan, prof)
    if xp is not np:
        x, y, z, prof = (xp.asnumpy(a) for a in (x, y, z, prof))
    if prof.shape[0] != spec.n_bins:
        raise RuntimeError(f"the core returned {prof.shape[0]} profile bins; expected {spec.n_bins}")
    x, y, z = (np.asarray(a, dtype=np.float64).reshape(n_beads, -1) for a in (x, y, z))
    flags = pack_flags(
        x, y, z, roi_size=roi, edge_margin_px=spec.edge_margin_px, saturated=_saturated(block, spec.layout, spec.rois),
        z_ref=_z_ref(zlut),
    )
    return _fields(x + spec.offsets[:, 2:3], y + spec.offsets[:, 0:1], z, flags, prof)


def _z_ref(zlut):
    """The reference z :func:`~magtrack_dask.core.flags.pack_flags` flags the ends of: a table's row 0;
    of a model its planes' first two and last two, which is all it looks at (models may differ in planes)."""
    if zlut is None:
        return None
    if isinstance(zlut, RadialModel):
        return zlut.z[[0, min(1, zlut.z.size - 1), max(zlut.z.size - 2, 0), -1]]
    if isinstance(zlut, tuple):
        return np.stack([_z_ref(model) for model in zlut])
    return zlut[..., 0, :]


def _to_device(stack: np.ndarray, device: str):
    """``(xp, stack)``: NumPy as it is, or the stack moved to the GPU (only this task's crop goes there)."""
    if device != "gpu":
        return np, stack
    try:
        import cupy as xp
    except ImportError as err:
        raise RuntimeError("device='gpu': CuPy is not installed on this worker (pip install "
                           "'magtrack-dask[gpu]')") from err
    # Sent in the crop's memory order (one contiguous copy), then made C-ordered
    # frames-last on the GPU: the layout the GPU path has always been given.
    by_frame = np.moveaxis(stack, 2, 0)
    if by_frame.flags.c_contiguous:
        return xp, xp.ascontiguousarray(xp.moveaxis(xp.asarray(by_frame), 0, 2))
    return xp, xp.asarray(np.ascontiguousarray(stack))


def _run_core(xp, stack, zlut, spec: ChunkSpec, n_beads: int):
    """x, y, z, profiles of every image, on the stack's device: one call of the
    core for every bead, then one z match per bead for per-bead Z-LUTs."""
    with core.core_threads(1):  # Dask runs one task per thread already: more would contend
        if spec.method == "fit":  # the model is per bead or shared: one fit call per bead
            return _fit_per_bead(xp, stack, zlut, n_beads)
        per_bead = zlut is not None and zlut.ndim == 3
        shared = None if (zlut is None or per_bead) else xp.asarray(zlut)
        pipeline = spec.pipeline
        if spec.method == "accurate":
            x, y, z, prof = core.track_stack(stack, shared, method="accurate")
        elif pipeline.is_default:
            x, y, z, prof = core.stack_to_xyzp(stack, shared)
        else:
            x, y, z, prof = core.stack_to_xyzp_advanced(stack, shared, **pipeline.stage_options())
        if per_bead:  # one match per bead, on the device that holds the profiles
            n_frames = stack.shape[2] // n_beads
            beads = [(prof[:, b * n_frames : (b + 1) * n_frames], xp.asarray(zlut[b])) for b in range(n_beads)]
            if spec.method == "accurate":
                z = xp.concatenate([core.fit_z(p, lut) for p, lut in beads])
            else:
                z = xp.concatenate([core.lookup_z(p, lut, **pipeline.lookup_z) for p, lut in beads])
    return x, y, z, prof


def _fit_per_bead(xp, stack, models: RadialModel | tuple[RadialModel, ...], n_beads: int):
    """x, y, z, profiles of a bead-major stack, each bead fitted with its own model (or the shared one)."""
    n_frames = stack.shape[2] // n_beads
    parts = [core.track_stack(stack[:, :, b * n_frames : (b + 1) * n_frames],
                              models if isinstance(models, RadialModel) else models[b], method="fit")
             for b in range(n_beads)]
    return tuple(xp.concatenate([part[i] for part in parts], axis=-1) for i in range(4))


def _fields(x, y, z, flags, prof) -> np.ndarray:
    """The task's output ``(bead, frame, field)`` from (bead, frame) results and ``(n_bins, n_images)`` profiles."""
    n_beads, n_frames = x.shape
    n_bins = prof.shape[0]
    out = np.empty((n_beads, n_frames, N_FIELDS + n_bins), dtype=np.float64)
    for i, value in enumerate((x, y, z, flags)):
        out[..., i] = value
    out[..., N_FIELDS:] = np.asarray(prof, dtype=np.float64).reshape(n_bins, n_beads, n_frames).transpose(1, 2, 0)
    return out


def _unreadable(n_beads: int, n_frames: int, n_bins: int, has_lut: bool) -> np.ndarray:
    """The output for frames whose input could not be read: NaN, flagged."""
    out = np.full((n_beads, n_frames, N_FIELDS + n_bins), np.nan)
    bits = Flag.INPUT_UNREADABLE | Flag.XY_NOT_FOUND | (Flag.Z_AT_LUT_EDGE_OR_NAN if has_lut else Flag(0))
    out[..., _FLAGS_AT] = int(bits)
    return out


def track_zarr_chunk(frame_numbers: np.ndarray, zlut, *, frames: zarr.Array, frame_axis: int,
                     spec: ChunkSpec) -> np.ndarray:
    """Read frames ``frame_numbers[0] .. frame_numbers[-1]`` of a Zarr array and track them.

    The range is read and tracked one stored shard (or, unsharded, one
    chunk) at a time, so a task spanning many shards holds one shard's frames
    at a time; only the small results of the range are kept whole. Reading
    inside the task decodes each shard where it is tracked, once, and never
    holds it in worker memory between tasks. A shard that cannot be read or
    decoded (:data:`READ_ERRORS`) gives NaN results with flag 16 for its
    frames only, instead of failing the task: the other shards of the task
    and the other tasks of a job go on, and the job reports these frames as
    unreadable.

    Parameters
    ----------
    frame_numbers : ndarray of int
        The first and the last frame of the range (only those two are used).
    zlut : float64 ndarray or None
        As :func:`track_chunk` takes it.
    frames : zarr.Array
        The archive's image array, chunked along ``frame_axis`` only.
    frame_axis : int
    spec : ChunkSpec

    Returns
    -------
    out : (n_beads, n_frames, 4 + n_bins) float64 ndarray
        As :func:`track_chunk` returns it, for the whole range.
    """
    _tune_worker()  # before the read: it sets Blosc's threads
    start, stop = int(frame_numbers[0]), int(frame_numbers[-1]) + 1
    unit = int((frames.shards or frames.chunks)[frame_axis])
    cuts = [start, *range(start - start % unit + unit, stop, unit), stop]
    if len(cuts) == 2:  # one shard: its results are the range's, no copy
        return _track_stored(frames, start, stop, frame_axis, zlut, spec)
    out = np.empty((len(spec.offsets), stop - start, N_FIELDS + spec.n_bins), dtype=np.float64)
    for a, b in zip(cuts[:-1], cuts[1:]):
        out[:, a - start : b - start] = _track_stored(frames, a, b, frame_axis, zlut, spec)
    return out


def _track_stored(frames: zarr.Array, start: int, stop: int, frame_axis: int, zlut: np.ndarray | None,
                  spec: ChunkSpec) -> np.ndarray:
    """Read frames ``start .. stop - 1`` (within one stored shard or chunk) and track them; unreadable: NaN, flag 16."""
    try:
        # read_frames names the chunk when its decoded size disagrees with the metadata
        block = read_frames(frames, start, stop, frame_axis)
    except READ_ERRORS as err:
        log.warning("frames %d-%d of %s are unreadable: %s: %s", start, stop - 1, frames.store, type(err).__name__,
                    err)
        return _unreadable(len(spec.offsets), stop - start, spec.n_bins, zlut is not None)
    return track_chunk(block, zlut, spec=spec)
