"""Camera TIFF stacks -> Zarr archive, streaming, in bounded memory.

TIFF files are read a batch of pages at a time with ``tifffile`` and written
one whole shard of frames at a time (:class:`~magtrack_dask.io.writer.ShardWriter`),
so memory holds one shard plus one batch whatever the size of the recording,
and an interrupted import resumes at its first missing shard (``resume=True``). Several files are concatenated along
frames in the order given (a camera that splits a recording into
``run_000.tif``, ``run_001.tif``...).

Layouts (see :class:`magtrack_dask.io.layout.Layout`):

* 3-D series ``(frame, y, x)`` with an ROI table: ``tyx`` (full camera frames).
* 3-D series of square frames, ``layout='yxt'``: one pre-cropped bead (never
  inferred: camera frames are often square too).
* 4-D series ``(frame, bead, y, x)`` (e.g. an ImageJ hyperstack with the beads
  as channels): ``tbyx``.

ROI tables are read by :func:`magtrack_dask.io.rois.read_rois`.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np
import zarr

from magtrack_dask.io.archive import Archive, create_archive, frames_writer, open_archive
from magtrack_dask.io.format import FRAMES
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.rois import read_rois
from magtrack_dask.io.writer import first_missing_shard
from magtrack_dask.validation import InputError

__all__ = ["import_tiff"]


def _series_info(path: str) -> tuple[tuple[int, ...], np.dtype, float | None]:
    """``(shape, dtype, frame rate or None)`` of a file's first image series, frames first."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        s = tif.series[0]
        shape, dtype = tuple(s.shape), np.dtype(s.dtype)
        n_pages = len(s.pages)
        rate = None
        meta = tif.imagej_metadata or {}
        if meta.get("finterval"):
            rate = 1.0 / float(meta["finterval"])
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) not in (3, 4):
        raise InputError(f"{path}: expected a 3-D (frame, y, x) or 4-D (frame, bead, y, x) image series; "
                         f"got shape {shape}")
    per_frame = shape[1] if len(shape) == 4 else 1
    if n_pages != shape[0] * per_frame:
        raise InputError(f"{path}: {n_pages} pages do not make {shape[0]} frames of shape {shape[1:]}")
    return shape, dtype, rate


def _series_infos(paths: list[str]) -> list[tuple[tuple[int, ...], np.dtype, float | None]]:
    """:func:`_series_info` of every file, after checking that they exist and agree."""
    if not paths:
        raise InputError("no TIFF files given")
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"TIFF file not found: {p}")
    infos = [_series_info(p) for p in paths]
    frame_shape, dtype = infos[0][0][1:], infos[0][1]
    for p, (shape, dt, _) in zip(paths, infos):
        if shape[1:] != frame_shape or dt != dtype:
            raise InputError(f"{p}: frames of shape {shape[1:]} {dt} differ from {paths[0]}'s "
                             f"{frame_shape} {dtype}; import them separately")
    return infos


def _import_layout(layout, frame_shape: tuple[int, ...], has_rois: bool) -> Layout:
    """The layout asked for, or the one a series of ``frame_shape`` frames has."""
    if layout is None:
        if len(frame_shape) == 3:
            return Layout.TBYX
        if has_rois:
            return Layout.TYX
        # never guessed from the frame size: camera frames are often square too
        raise InputError(f"frames of {frame_shape[0]} x {frame_shape[1]} px need an ROI table (--rois FILE) "
                         "to be full camera frames, or layout 'yxt' (--layout yxt) to be one pre-cropped bead")
    layout = Layout.parse(layout)
    if (layout is Layout.TBYX) != (len(frame_shape) == 3):
        raise InputError(f"layout {layout!r} does not fit a {len(frame_shape) + 1}-D TIFF series")
    return layout


def import_tiff(
    paths: Sequence,
    out,
    *,
    rois=None,
    layout: Layout | str | None = None,
    chunk_frames: int | None = None,
    shard_frames: int | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    overwrite: bool = False,
    resume: bool = False,
    pages_per_read: int = 256,
    progress: Callable[[int, int, int], None] | None = None,
) -> Archive:
    """Import TIFF stacks into a new archive.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        TIFF files, concatenated along frames in this order.
    out : str or os.PathLike
        The new archive (a Zarr v3 folder).
    rois : array_like or str, optional
        ROI table ``(n_beads, 4)`` or a file
        :func:`~magtrack_dask.io.rois.read_rois` reads. Needed for full camera
        frames.
    layout : {'tyx', 'tbyx', 'yxt'} or Layout, optional
        Default: ``'tbyx'`` for 4-D series, ``'tyx'`` with ``rois``; ``'yxt'``
        must be asked for.
    chunk_frames, shard_frames : int, optional
        Frames per Zarr chunk and per shard (one file, one tracking task; 0:
        unsharded); defaults as :func:`~magtrack_dask.io.archive.create_archive`.
    pixel_size_nm, frame_rate_hz : float, optional
        Stored as archive attributes. The frame rate defaults to ImageJ's
        ``finterval`` when the files carry one.
    overwrite : bool, optional
        Replace an existing archive.
    resume : bool, optional
        Continue an interrupted import of the same files into ``out`` at its
        first missing shard (the shards before it were written whole); a
        fresh import when ``out`` does not exist.
    pages_per_read : int, optional
        TIFF pages read at once.
    progress : callable, optional
        ``progress(n_shards_written, n_shards, n_frames_written)``.

    Returns
    -------
    magtrack_dask.io.archive.Archive

    Raises
    ------
    InputError
        Files that differ in frame shape or dtype, a layout that does not fit,
        full frames without ROIs; ``resume`` with ``overwrite``, or of an
        archive imported from other files.
    FileNotFoundError
        A file that does not exist.
    ImportError
        When ``tifffile`` is not installed.
    """
    try:
        import tifffile  # noqa: F401
    except ImportError as err:
        raise ImportError("importing TIFF needs tifffile: pip install 'magtrack-dask[tiff]'") from err
    if resume and overwrite:
        raise InputError("resume and overwrite exclude each other")
    paths = [os.fspath(p) for p in paths]
    infos = _series_infos(paths)
    frame_shape, dtype = infos[0][0][1:], infos[0][1]
    n_frames = sum(info[0][0] for info in infos)
    if isinstance(rois, (str, os.PathLike)):
        rois = read_rois(rois)
    layout = _import_layout(layout, frame_shape, rois is not None)
    if frame_rate_hz is None:
        frame_rate_hz = infos[0][2]
    shape = (*frame_shape, n_frames) if layout is Layout.YXT else (n_frames, *frame_shape)
    sources = [os.path.abspath(p) for p in paths]
    if resume and os.path.exists(os.fspath(out)):
        group = _reopen(out, sources, shape, dtype, layout)
    else:
        group = create_archive(
            out, shape=shape, dtype=dtype, layout=layout, rois=rois, chunk_frames=chunk_frames,
            shard_frames=shard_frames, pixel_size_nm=pixel_size_nm, frame_rate_hz=frame_rate_hz,
            overwrite=overwrite, attrs={"imported_from": sources},
        )
    arr = group[FRAMES]
    start = first_missing_shard(arr, layout.frame_axis) * (arr.shards or arr.chunks)[layout.frame_axis]
    skip = min(start, n_frames)  # frames already in the archive
    with frames_writer(group, start=skip, progress=progress) as writer:
        for p, (fshape, _, _) in zip(paths, infos):
            if skip >= fshape[0]:
                skip -= fshape[0]
                continue
            for frames in _read_frames(p, fshape, pages_per_read, first=skip):
                writer.append(np.moveaxis(frames, 0, -1) if layout is Layout.YXT else frames)
            skip = 0
    return open_archive(group)


def _reopen(out, sources: list[str], shape: tuple[int, ...], dtype, layout: Layout):
    """The archive of an interrupted import of ``sources``; InputError if it is another one."""
    try:
        group = zarr.open_group(os.fspath(out), mode="r+", zarr_format=3)
        arr = group[FRAMES]
    except Exception as err:  # zarr raises several types for "nothing here"
        raise InputError(f"resume: {os.fspath(out)} is not an archive to resume ({err})") from err
    found = (group.attrs.get("imported_from"), tuple(arr.shape), str(arr.dtype), group.attrs.get("layout"))
    if found != (sources, shape, str(np.dtype(dtype)), layout.value):
        raise InputError(f"resume: {os.fspath(out)} holds another import (files {found[0]}, shape {found[1]} "
                         f"{found[2]}, layout {found[3]}); expected {sources}, {shape} {np.dtype(dtype)}, "
                         f"{layout.value}. Pass overwrite=True to start again")
    return group


def _read_frames(path: str, shape: tuple[int, ...], pages_per_read: int, first: int = 0):
    """Yield the frames ``first..`` of one file, ``(n, *frame_shape)``, a batch of whole frames at a time."""
    import tifffile

    per_frame = shape[1] if len(shape) == 4 else 1
    batch = max(1, pages_per_read // per_frame) * per_frame
    n_pages = shape[0] * per_frame
    with tifffile.TiffFile(path) as tif:
        for start in range(first * per_frame, n_pages, batch):
            pages = tif.asarray(key=range(start, min(start + batch, n_pages)), series=0)
            yield pages.reshape(-1, *shape[1:])
