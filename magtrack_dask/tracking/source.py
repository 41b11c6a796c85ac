"""What :func:`~magtrack_dask.tracking.track` reads: an archive or an image array, resolved once.

:func:`resolve_source` turns whatever the caller gave (an archive path, group or
store, a Zarr, Dask or NumPy array) into a :class:`Source`: the frames as a Dask
array chunked along frames only, their :class:`~magtrack_dask.io.layout.Layout`,
the ROI table and what to call the input in the results. Every check of the
input itself happens here, before any task exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import zarr

from magtrack_dask.io.layout import Layout
from magtrack_dask.io.archive import Archive, open_archive
from magtrack_dask.io.format import TARGET_ROIS_PER_CHUNK
from magtrack_dask.io.rois import check_rois
from magtrack_dask.validation import InputError, InputTypeError, is_scalar

__all__ = ["Source", "resolve_source"]


@dataclass(frozen=True, eq=False)
class Source:
    """The input of one :func:`~magtrack_dask.tracking.track` call.

    Attributes
    ----------
    data : dask.array.Array
        The frames in their layout, chunked along frames only: one chunk, one
        task. For an archive it is made on first use (a job plans from the
        metadata alone: ``shape``, ``dtype``, ``frame_chunks``).
    layout : Layout
    rois : (n_beads, 4) int64 ndarray
        ``[top, bottom, left, right]`` of each bead: where it is cropped from a
        full frame (``tyx``), else its offset in the camera frame (default
        ``[0, roi, 0, roi]``).
    archive : Archive or None
        The opened archive, when the source is one (timestamps, pixel size).
    frames : zarr.Array or None
        The Zarr array the tasks read their frames from themselves; None for
        in-memory and Dask arrays.
    description : str
        The input as the results' ``source`` attribute names it.
    array : dask.array.Array or None
        The frames of a source that is no archive.
    """

    layout: Layout
    rois: np.ndarray
    archive: Archive | None = field(default=None, repr=False)
    frames: zarr.Array | None = field(default=None, repr=False)
    description: str = ""
    array: da.Array | None = field(default=None, repr=False)

    @property
    def data(self) -> da.Array:
        return self.archive.data if self.archive is not None else self.array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.archive.frames.shape if self.archive is not None else self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.archive.frames.dtype if self.archive is not None else self.array.dtype)

    @property
    def roi_size(self) -> int:
        """Side of the (square) ROIs, px."""
        return int(self.rois[0, 1] - self.rois[0, 0])

    @property
    def n_beads(self) -> int:
        return len(self.rois)

    @property
    def n_frames(self) -> int:
        return self.layout.n_frames(self.shape)

    @property
    def frame_bounds(self) -> np.ndarray:
        """``(n_tasks + 1,)`` int64: the first frame of each task, then the frame count (no tuple per task)."""
        n = self.n_frames
        if self.archive is not None:
            return np.append(np.arange(0, n, min(self.archive.task_frames, n), dtype=np.int64), np.int64(n))
        return np.concatenate([[0], np.cumsum(np.asarray(self.frame_chunks, dtype=np.int64))])

    @property
    def frame_chunks(self) -> tuple[int, ...]:
        """Frames per task."""
        if self.archive is not None:
            return self.archive.frame_chunks
        return self.array.chunks[self.layout.frame_axis]

    @property
    def crop_rois(self) -> np.ndarray | None:
        """The table the tasks crop by: the ROIs of full frames, else None."""
        return self.rois if self.layout.full_frames else None


def resolve_source(source, *, layout: Layout | None = None, rois=None, frames_per_task: int | None = None) -> Source:
    """Open and check the input of :func:`~magtrack_dask.tracking.track`.

    Parameters
    ----------
    source : str, os.PathLike, zarr Store, zarr.Group, zarr.Array, dask or numpy array
        An archive or an image array; see :func:`~magtrack_dask.tracking.track`.
    layout : Layout, optional
        Axis order of an array source (inferred when None); checked against an
        archive's.
    rois : array_like of int, shape (n_beads, 4), optional
        Overrides the archive's ROI table.
    frames_per_task : int, optional
        Checked already (an integer >= 1).

    Returns
    -------
    Source

    Raises
    ------
    InputError
        A layout that does not fit, no frames or beads, non-square images, a
        bad or missing ROI table (``tyx``), an archive whose metadata lies.
    InputTypeError
        A scalar source, or pixels that are not integers or floats.
    FileNotFoundError
        A missing archive.
    """
    layout_given = layout is not None
    if is_scalar(source):
        raise InputTypeError(f"source must be an archive (a path, zarr.Group or Zarr store) or an image array; "
                             f"got {type(source).__name__}")
    if _is_archive(source):
        arch = open_archive(source, frames_per_task=frames_per_task)
        if layout is not None and layout != arch.layout:
            raise InputError(f"layout='{layout}' does not match the archive's layout '{arch.layout}'")
        data, layout, frames = None, Layout(arch.layout), arch.frames
        rois = arch.rois if rois is None else rois
        description = arch.path or f"zarr group in {arch.group.store}"
    else:
        arch = None
        layout = layout if layout is not None else Layout.infer(np.ndim(source), rois is not None)
        data = _frames_of_array(source, layout, rois, frames_per_task)
        frames = source if isinstance(source, zarr.Array) else None
        description = (f"zarr array {frames.path!r} in {frames.store}" if frames is not None else
                       f"in-memory {type(source).__module__.split('.')[0]}.{type(source).__name__}")
    shape, dtype = (tuple(frames.shape), frames.dtype) if arch is not None else (data.shape, data.dtype)
    _check_pixels(shape, dtype, layout)
    rois = _roi_table(shape, layout, rois, hint=not layout_given and arch is None)
    return Source(layout=layout, rois=rois, archive=arch, frames=frames, description=description, array=data)


def _is_archive(source) -> bool:
    """A path, group or store (an archive), rather than an image array."""
    return isinstance(source, (str, os.PathLike, zarr.Group)) or (
        not hasattr(source, "ndim") and not isinstance(source, (list, tuple)))


def _frames_of_array(source, layout: Layout, rois, frames_per_task: int | None) -> da.Array:
    """An image array as a Dask array chunked along frames only (a task sees whole frames, all beads)."""
    if layout.ndim != np.ndim(source):
        raise InputError(f"layout '{layout}' needs a {layout.ndim}-D source; got {np.ndim(source)}-D")
    ax = layout.frame_axis
    if isinstance(source, zarr.Array):
        unit = (source.shards or source.chunks)[ax]  # whole Zarr chunks (shards) per task
        step = unit * max(1, -(-(frames_per_task or unit) // unit))
        data = da.from_zarr(source, chunks=tuple(step if i == ax else -1 for i in range(source.ndim)))
    elif isinstance(source, da.Array):
        data = source.rechunk({ax: frames_per_task}) if frames_per_task else source
    else:
        n_beads = layout.n_beads(np.shape(source), rois) or 1
        step = frames_per_task or max(1, TARGET_ROIS_PER_CHUNK // n_beads)
        data = da.from_array(np.asarray(source), chunks=tuple(step if i == ax else -1 for i in range(layout.ndim)))
    return data.rechunk({i: -1 for i in range(data.ndim) if i != ax})


def _check_pixels(shape: tuple[int, ...], dtype, layout: Layout) -> None:
    if np.dtype(dtype).kind not in "uif":
        raise InputTypeError(f"source must hold integer or float pixels; got dtype {dtype}")
    if layout.n_frames(shape) == 0:
        raise InputError(f"source has no frames: shape {tuple(shape)} (layout '{layout}', "
                         f"frame axis {layout.frame_axis})")


def _roi_table(shape: tuple[int, ...], layout: Layout, rois, *, hint: bool) -> np.ndarray:
    """The checked ROI table: required for full frames, else the beads' offsets (default ``[0, roi, 0, roi]``).

    ``hint``: the layout was inferred from an array, and a mismatch says so.
    """
    if layout.full_frames:
        if rois is None:
            raise InputError("rois is required for layout 'tyx' (an (n_beads, 4) [top, bottom, left, right] table)")
        return check_rois(rois, layout.image_shape(shape))
    height, width = layout.image_shape(shape)
    if height != width:
        why = ""
        if hint:
            why = (f" (layout '{layout}' was inferred from a {len(shape)}-D array"
                   + (" without rois; (frame, y, x) frames need layout='tyx' and rois)" if layout is Layout.YXT
                      else ")"))
        # yxt names its x side first, as its messages always have.
        sides = (width, height) if layout is Layout.YXT else (height, width)
        raise InputError(f"layout '{layout}' needs square images; got {sides[0]} x {sides[1]} px{why}")
    roi = width
    n_beads = layout.n_beads(shape)
    if n_beads == 0:
        raise InputError(f"source has no beads: shape {tuple(shape)} (layout '{layout}', bead axis "
                         f"{layout.bead_axis})")
    if rois is None:
        return np.tile(np.array([[0, roi, 0, roi]], dtype=np.int64), (n_beads, 1))
    rois = check_rois(rois)
    if rois.shape[0] != n_beads or rois[0, 1] - rois[0, 0] != roi:
        raise InputError(f"rois has {rois.shape[0]} ROIs of {rois[0, 1] - rois[0, 0]} px; "
                         f"the source has {n_beads} beads of {roi} px")
    return rois
