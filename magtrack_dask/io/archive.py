"""Archives of camera frames: create one, open one as Dask, describe one.

The format (group, arrays, attributes, default codecs) is described in
:mod:`magtrack_dask.io.format`; what is checked on opening in
:mod:`magtrack_dask.io.integrity`.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from magtrack_dask.io.format import (
    CALIBRATION_Z,
    FORMAT_VERSION,
    CHUNKS_PER_SHARD,
    FRAMES,
    STORED_NBYTES,
    TIMESTAMPS,
    TRUTH,
    auto_chunk_frames,
    auto_shard_frames,
    default_compressors,
)
from magtrack_dask.io.integrity import check_archive_metadata, check_frame_chunks, stored_nbytes
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.paths import ArchiveError, check_replaceable, check_zarr_path
from magtrack_dask.io.rois import check_rois
from magtrack_dask.io.writer import ShardWriter
from magtrack_dask.validation import InputError, InputTypeError, check_count, check_positive, is_scalar

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["Archive", "create_archive", "describe_archive", "frames_writer", "open_archive"]


@dataclass
class Archive:
    """An opened archive.

    Attributes
    ----------
    data : dask.array.Array
        The image array in its layout, chunked along frames only; each Dask chunk
        is a whole number of Zarr chunks (or shards). Made on first use: a job
        needs only the metadata, and a Dask array of a million chunks costs
        tens of MB.
    frames : zarr.Array
        The image array.
    task_frames : int
        Frames per Dask chunk (the last one may hold fewer).
    layout : Layout
        ``Layout.TYX``, ``Layout.TBYX`` or ``Layout.YXT`` (equal to ``'tyx'``...).
    rois : (n_beads, 4) int ndarray or None
        ROI table ``[top, bottom, left, right]``; None when the archive has none.
    attrs : dict
        Group attributes.
    path : str or None
        Where the archive lives, when it is on a local file system.
    group : zarr.Group
        The open group (truth arrays, timestamps).
    """

    frames: zarr.Array = field(repr=False)
    task_frames: int
    layout: Layout
    rois: np.ndarray | None
    attrs: dict[str, Any]
    path: str | None
    group: zarr.Group = field(repr=False)

    @functools.cached_property
    def data(self) -> da.Array:
        import dask.array as da  # here: describing or planning from an archive never imports Dask

        ax = self.layout.frame_axis
        return da.from_zarr(self.frames, chunks=tuple(min(self.task_frames, s) if i == ax else s
                                                      for i, s in enumerate(self.frames.shape)))

    @property
    def frame_chunks(self) -> tuple[int, ...]:
        """Frames per Dask chunk (task), from the metadata alone."""
        n, step = self.n_frames, min(self.task_frames, max(1, self.n_frames))
        return (step,) * (n // step) + ((n % step,) if n % step else ())

    @property
    def n_frames(self) -> int:
        return self.layout.n_frames(self.frames.shape)

    @property
    def n_beads(self) -> int:
        if self.layout.full_frames and self.rois is None:
            return 1  # full frames without a table: the frame is the one bead's image
        return self.layout.n_beads(self.frames.shape, self.rois)

    @property
    def pixel_size_nm(self) -> float | None:
        return self.attrs.get("pixel_size_nm")

    @property
    def frame_rate_hz(self) -> float | None:
        return self.attrs.get("frame_rate_hz")

    def time(self) -> da.Array | None:
        """Frame times in seconds ``(frame,)``, lazily, or None when unknown."""
        import dask.array as da

        chunks = (self.frame_chunks,)
        if TIMESTAMPS in self.group:
            return da.from_zarr(self.group[TIMESTAMPS], chunks=chunks)
        if self.frame_rate_hz:
            return da.arange(self.n_frames, chunks=chunks) / float(self.frame_rate_hz)
        return None


# -- open ----------------------------------------------------------------------------


def open_archive(source, *, frames_per_task: int | None = None, check: bool = True) -> Archive:
    """Open an archive as a Dask array chunked along frames.

    Parameters
    ----------
    source : str, os.PathLike, zarr Store or zarr.Group
        The archive group.
    frames_per_task : int, optional
        Frames per Dask chunk. Rounded up to a whole number of Zarr chunks (or
        shards) so that no chunk is read by two tasks. Default: one Zarr chunk
        (shard) per Dask chunk.
    check : bool, optional
        Also check the stored chunks against the metadata (default True): a
        sample of at most 32 chunks (shards) of ``frames``, the last among
        them, must exist, so that a declared shape larger than the data
        written is not read as fill-value frames, and the first chunk's Blosc
        header must give the declared chunk size
        (:func:`~magtrack_dask.io.integrity.check_frame_chunks`). This costs
        at most 32 ``stat`` calls and a 16-byte read, at any archive size; a
        chunk missing elsewhere is reported when a task reads it.
        ``check=False`` skips it (a partly filled archive).

    Returns
    -------
    Archive

    Raises
    ------
    FileNotFoundError
        Nothing at ``source``.
    ArchiveError
        An InputError: metadata that disagrees with itself (layout and array
        shape or dimension names, the ROI table and the frame, the length of
        ``timestamps`` or the ground truth, a non-positive pixel size or frame
        rate, a codec set up for another dtype) or, with ``check``, with the
        stored chunks.
    InputError
        Not a magtrack-dask archive; a bad ``frames_per_task``.
    InputTypeError
        Frames that are not integer or float pixels; a ``source`` that is no archive.
    """
    if frames_per_task is not None:
        frames_per_task = check_count(frames_per_task, "frames_per_task")
    group, arr, layout, attrs = _open_checked(source)
    if check:
        check_frame_chunks(arr)
    ax = layout.frame_axis
    # da.from_zarr would default to the *inner* chunks of a sharded array.
    unit = (arr.shards or arr.chunks)[ax]
    step = unit if frames_per_task is None else unit * max(1, math.ceil(frames_per_task / unit))
    rois = np.asarray(group["rois"][...], dtype=np.int64) if "rois" in group else None
    return Archive(frames=arr, task_frames=int(step), layout=layout, rois=rois, attrs=attrs,
                   path=_source_path(group), group=group)


def _open_checked(source) -> tuple[zarr.Group, zarr.Array, Layout, dict[str, Any]]:
    """``(group, frames array, layout, attrs)`` of an archive whose metadata agrees with itself."""
    group = _as_group(source)
    attrs = dict(group.attrs)
    layout = attrs.get("layout")
    if layout is None or FRAMES not in group:
        raise InputError(f"{source!r} is not a magtrack-dask archive (no 'layout' attribute or 'frames' array)")
    names = tuple(m.value for m in Layout)
    if not isinstance(layout, str) or layout not in names:
        raise ArchiveError(f"archive attribute 'layout' is {layout!r}; expected one of "
                           f"{', '.join(map(repr, names))}")
    layout = Layout(layout)
    arr = group[FRAMES]
    check_archive_metadata(group, arr, layout, attrs)
    return group, arr, layout, attrs


def _as_group(source, mode: str = "r") -> zarr.Group:
    if isinstance(source, zarr.Group):
        return source
    if is_scalar(source):  # zarr would misread some of these as a store
        raise InputTypeError(f"source must be an archive path, a zarr.Group or a Zarr store; "
                             f"got {type(source).__name__}")
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str) and mode == "r":
        check_zarr_path(source, "source", "group")
    return zarr.open_group(source, mode=mode, zarr_format=3)


def _source_path(group: zarr.Group) -> str | None:
    store = group.store
    while getattr(store, "root", None) is None and hasattr(store, "_store"):  # WrapperStore
        store = store._store
    root = getattr(store, "root", None)
    # Absolute: the path is recorded in results and job state, and workers or a
    # later resume may run in another working directory.
    return None if root is None else os.path.abspath(os.fspath(root)) + ("/" + group.path if group.path else "")


# -- create --------------------------------------------------------------------------


def create_archive(
    path,
    data=None,
    *,
    shape: tuple[int, ...] | None = None,
    dtype="uint16",
    layout: Layout | str = Layout.TYX,
    rois=None,
    chunk_frames: int | None = None,
    shard_frames: int | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    timestamps=None,
    compressors="default",
    attrs: dict | None = None,
    overwrite: bool = False,
) -> zarr.Group:
    """Create an archive, empty or filled from an array.

    Parameters
    ----------
    path : str, os.PathLike or zarr Store
        Where to create the group.
    data : array_like, optional
        NumPy or Dask array in ``layout``; written chunk by chunk. If omitted,
        ``shape`` (and ``dtype``) create an empty ``frames`` array to fill with
        whole shards, e.g. ``with frames_writer(group) as w: w.append(block)``.
    shape : tuple of int, optional
        Shape of the ``frames`` array when ``data`` is omitted.
    dtype : str or numpy dtype, optional
        Pixel type when ``data`` is omitted; default ``'uint16'``.
    layout : {'tyx', 'tbyx', 'yxt'} or Layout
        Axis order of the image array (see :mod:`magtrack_dask.io.format`).
    rois : array_like of int, shape (n_beads, 4), optional
        ROI table; required for ``'tyx'``, optional for ``'tbyx'``.
    chunk_frames : int, optional
        Frames per Zarr chunk, the smallest unit a reader decodes. Default:
        ``shard_frames / 32``, or ~4096 ROIs and at most ~64 MiB unsharded.
    shard_frames : int, optional
        Frames per shard (a multiple of ``chunk_frames``), one file and the
        unit of work of :func:`magtrack_dask.track`. Default
        :func:`~magtrack_dask.io.format.auto_shard_frames`: up to 32 chunks,
        ~4096 ROIs (1024 frames of 4 beads) and at most ~64 MiB. 0: no
        sharding, every chunk a file and a task.
    pixel_size_nm : float, optional
        Camera pixel size in the sample plane, nm/px.
    frame_rate_hz : float, optional
        Frame rate, frames per second.
    timestamps : array_like of float, shape (n_frames,), optional
        Frame times in seconds; stored as the ``timestamps`` array.
    compressors : 'default', codec sequence or None
        Codecs for the image array; ``'default'`` is
        :func:`~magtrack_dask.io.format.default_compressors`.
    attrs : dict, optional
        More group attributes (JSON-serialisable).
    overwrite : bool, optional
        Replace an existing archive at ``path`` (only ever a Zarr store).
        Default False raises FileExistsError.

    Returns
    -------
    zarr.Group

    Raises
    ------
    InputError
        A bad ``layout``, shape, ROI table, chunking, pixel size, frame rate or
        ``timestamps``; ``overwrite`` of something that is not a Zarr store.
    InputTypeError
        Pixels that are not integers or floats.
    FileExistsError
        Something is at ``path`` and ``overwrite`` is False.
    """
    layout = Layout.parse(layout)
    if data is not None:
        shape, dtype = tuple(data.shape), np.dtype(data.dtype)
    if shape is None:
        raise InputError("create_archive needs data or shape")
    shape = _check_frames_shape(layout, tuple(int(s) for s in shape), dtype, "shape" if data is None else "data")
    chunk_frames = None if chunk_frames is None else check_count(chunk_frames, "chunk_frames")
    if shard_frames is not None and shard_frames != 0:
        shard_frames = check_count(shard_frames, "shard_frames")
    group_attrs = _group_attrs(layout, pixel_size_nm, frame_rate_hz, attrs)
    n_frames = layout.n_frames(shape)
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if ts is not None and ts.shape != (n_frames,):
        raise InputError(f"timestamps must have shape ({n_frames},); got {ts.shape}")
    rois = _check_archive_rois(layout, shape, rois)
    chunks, shards = _frame_chunks(layout, shape, dtype, rois, chunk_frames, shard_frames)
    _check_target(path, overwrite)
    group = zarr.open_group(path, mode="w" if overwrite else "w-", zarr_format=3, attributes=group_attrs)
    group.create_array(
        FRAMES, shape=shape, dtype=dtype, chunks=chunks, shards=shards,
        compressors=default_compressors() if compressors == "default" else compressors,
        dimension_names=layout.dims, fill_value=0,
    )
    if rois is not None:
        r = group.create_array("rois", shape=rois.shape, dtype="int64", dimension_names=("bead", "edge"))
        r[...] = rois
        r.attrs.update({"columns": ["top", "bottom", "left", "right"], "units": "px"})
    if ts is not None:
        ax = layout.frame_axis
        t = group.create_array(TIMESTAMPS, shape=ts.shape, dtype="float64", chunks=(shards or chunks)[ax : ax + 1],
                               dimension_names=("frame",))
        t[...] = ts
        t.attrs["units"] = "s"
    if data is not None:
        _write_frames(group[FRAMES], data, layout.frame_axis)
    return group


def _check_frames_shape(layout: Layout, shape: tuple[int, ...], dtype, name: str) -> tuple[int, ...]:
    """The shape and pixel type of a new ``frames`` array (``name`` is the parameter they came from)."""
    if np.dtype(dtype).kind not in "uif":
        raise InputTypeError(f"{'dtype' if name == 'shape' else name}: expected integer or float pixels "
                             f"(uint8, uint16, float32...), got {np.dtype(dtype)}")
    if len(shape) != layout.ndim:
        raise InputError(f"layout {layout!r} needs a {layout.ndim}-D array {layout.dims}; got shape {shape}")
    if min(shape) < 1:
        raise InputError(f"{name}: expected at least one frame and one pixel along every axis {layout.dims}, "
                         f"got shape {shape}")
    return shape


def _check_archive_rois(layout: Layout, shape: tuple[int, ...], rois) -> np.ndarray | None:
    """The ROI table of a new archive (required for full frames, unused for one bead) and,
    without full frames, the square ROI images of ``shape``."""
    if rois is None and layout.full_frames:
        raise InputError(f"rois is required for layout {layout!r}")
    if rois is not None:
        if layout is Layout.YXT:
            raise InputError(f"rois is not used with layout {layout!r} (one pre-cropped bead)")
        rois = check_rois(rois, layout.image_shape(shape) if layout.full_frames else None)
        if not layout.full_frames and (len(rois) != layout.n_beads(shape)
                                       or rois[0, 1] - rois[0, 0] != layout.image_shape(shape)[0]):
            raise InputError(f"rois {rois.shape} does not match the {layout} data of shape {shape}")
    if not layout.full_frames:
        height, width = layout.image_shape(shape)
        if height != width:
            raise InputError(f"layout {layout!r} needs square ROIs; got {height} x {width} px")
    return rois


def _frame_chunks(layout: Layout, shape, dtype, rois, chunk_frames, shard_frames):
    """``(chunks, shards)`` of the ``frames`` array: split along frames only (``shards`` None: unsharded)."""
    ax, n_frames = layout.frame_axis, layout.n_frames(shape)
    frame_bytes = int(np.prod(shape) // max(1, n_frames)) * np.dtype(dtype).itemsize
    n_beads = len(rois) if rois is not None else layout.n_beads(shape)
    along = lambda n: tuple(n if i == ax else s for i, s in enumerate(shape))  # noqa: E731
    if shard_frames == 0:
        chunk_frames = chunk_frames or auto_chunk_frames(frame_bytes, n_frames, n_beads)
        return along(int(min(chunk_frames, max(1, n_frames)))), None
    if shard_frames is None:
        chunk_frames, shard_frames = auto_shard_frames(chunk_frames, frame_bytes, n_frames, n_beads)
    elif chunk_frames is None:  # the most chunks up to 32 that divide the shard
        chunk_frames = shard_frames // max(k for k in range(1, CHUNKS_PER_SHARD + 1) if shard_frames % k == 0)
    if shard_frames % chunk_frames:
        raise InputError(f"shard_frames ({shard_frames}) must be a multiple of chunk_frames ({chunk_frames})")
    return along(chunk_frames), along(shard_frames)


def _group_attrs(layout: Layout, pixel_size_nm, frame_rate_hz, attrs: dict | None) -> dict[str, Any]:
    group_attrs: dict[str, Any] = {"magtrack_dask_archive": FORMAT_VERSION, "layout": layout.value}
    if pixel_size_nm is not None:
        group_attrs["pixel_size_nm"] = check_positive(pixel_size_nm, "pixel_size_nm", "nm per pixel")
    if frame_rate_hz is not None:
        group_attrs["frame_rate_hz"] = check_positive(frame_rate_hz, "frame_rate_hz", "frames per second")
    group_attrs.update(attrs or {})
    return group_attrs


def _check_target(path, overwrite: bool) -> None:
    """Refuse an existing local path unless ``overwrite``, and then only a Zarr store."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or "://" in path or not os.path.lexists(path):
        return
    if not overwrite:
        raise FileExistsError(f"path: {path} exists; pass overwrite=True to replace it")
    check_replaceable(path, "path")  # zarr's mode='w' empties whatever folder it is given


def frames_writer(target, **kwargs) -> ShardWriter:
    """A :class:`~magtrack_dask.io.writer.ShardWriter` of an archive's frames.

    Parameters
    ----------
    target : zarr.Group or zarr.Array
        The archive (its ``frames`` array) or the image array itself.
    **kwargs
        ``start``, ``progress``: see :class:`~magtrack_dask.io.writer.ShardWriter`.

    Returns
    -------
    ShardWriter
        Append frames in order (``writer.append(block)``); use it as a
        context manager or close it.
    """
    if isinstance(target, zarr.Group):
        layout = Layout.parse(target.attrs.get("layout"), "archive attribute 'layout'")
        return ShardWriter(target[FRAMES], layout.frame_axis, **kwargs)
    names = tuple(target.metadata.dimension_names or ())
    return ShardWriter(target, names.index("frame") if "frame" in names else 0, **kwargs)


def _write_frames(arr: zarr.Array, data, ax: int) -> None:
    # One write per whole shard/chunk keeps memory bounded and writes aligned.
    step = (arr.shards or arr.chunks)[ax]
    with ShardWriter(arr, ax) as writer:
        for start in range(0, arr.shape[ax], step):
            sl = tuple(slice(start, start + step) if i == ax else slice(None) for i in range(arr.ndim))
            writer.append(np.asarray(data[sl]))


# -- describe ------------------------------------------------------------------------


def describe_archive(source) -> dict[str, Any]:
    """Summarise an archive from its metadata, without reading or listing its chunks.

    The stored size is the one the package's writer recorded
    (:class:`~magtrack_dask.io.writer.ShardWriter`); for an archive written
    elsewhere it is measured from at most 32 chunks (shards) and, beyond
    that many, labelled as an estimate. The cost is the same at any size.

    Parameters
    ----------
    source : str, os.PathLike, zarr Store or zarr.Group

    Returns
    -------
    info : dict
        ``path, layout`` (a plain string), ``format_version, shape, dtype,
        n_frames, n_beads, roi_size, frame_shape, chunk_frames, shard_frames,
        compressors, nbytes, nbytes_stored, nbytes_stored_estimate (None when
        exact, else how it was estimated), compression_ratio, pixel_size_nm,
        frame_rate_hz, has_timestamps, has_truth, rois`` (a list of lists or
        None) and ``calibration_z_range_nm`` (``[min, max]`` of the per-frame
        z of a calibration archive, else None).
    """
    # Metadata only (a partly written archive can be described): instant at any size.
    group, arr, layout, attrs = _open_checked(source)
    ax = layout.frame_axis
    rois = np.asarray(group["rois"][...], dtype=np.int64) if "rois" in group else None
    if layout.full_frames:
        roi_size, frame_shape = int(rois[0, 1] - rois[0, 0]), layout.image_shape(arr.shape)
    else:
        roi_size, frame_shape = layout.roi_size(arr.shape), None
    stored, estimate = _stored_size(arr)
    return {
        "path": _source_path(group),
        "layout": layout.value,
        "format_version": attrs.get("magtrack_dask_archive"),
        "shape": tuple(arr.shape),
        "dtype": str(arr.dtype),
        "n_frames": layout.n_frames(arr.shape),
        "n_beads": 1 if layout.full_frames and rois is None else layout.n_beads(arr.shape, rois),
        "roi_size": roi_size,
        "frame_shape": frame_shape,
        "chunk_frames": int(arr.chunks[ax]),
        "shard_frames": int(arr.shards[ax]) if arr.shards else None,
        "compressors": [repr(c) for c in arr.compressors],
        "nbytes": int(arr.nbytes),
        "nbytes_stored": stored,
        "nbytes_stored_estimate": estimate,
        "compression_ratio": float(arr.nbytes / stored) if stored else None,
        "pixel_size_nm": attrs.get("pixel_size_nm"),
        "frame_rate_hz": attrs.get("frame_rate_hz"),
        "has_timestamps": TIMESTAMPS in group,
        "has_truth": TRUTH[2] in group,
        "rois": None if rois is None else rois.tolist(),
        "calibration_z_range_nm": _calibration_z_range(group),
    }


def _stored_size(arr: zarr.Array) -> tuple[int, str | None]:
    """``(bytes, None)`` as recorded by the writer, else ``(estimate, how it was estimated)``."""
    recorded = arr.attrs.get(STORED_NBYTES)
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded, None
    stored, sized, total = stored_nbytes(arr)
    return stored, None if sized == total else f"estimated from {sized} of {total:,} stored chunks"


def _calibration_z_range(group: zarr.Group) -> list[float] | None:
    if CALIBRATION_Z not in group:
        return None
    z = group[CALIBRATION_Z][...]
    return [float(np.nanmin(z)), float(np.nanmax(z))] if np.isfinite(z).any() else None
