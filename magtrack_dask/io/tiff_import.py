"""Camera TIFF stacks -> Zarr archive, streaming, in bounded memory.

TIFF files are read a batch of pages at a time with ``tifffile`` and written
one Zarr chunk of frames at a time, so memory holds one chunk plus one batch
whatever the size of the recording. Several files are concatenated along
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

from magtrack_dask.io.archive import Archive, create_archive, frames_writer, open_archive
from magtrack_dask.io.format import FRAMES
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.rois import read_rois
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
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    overwrite: bool = False,
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
    chunk_frames : int, optional
        Frames per Zarr chunk (= per tracking task); default about 64 MiB.
    pixel_size_nm, frame_rate_hz : float, optional
        Stored as archive attributes. The frame rate defaults to ImageJ's
        ``finterval`` when the files carry one.
    overwrite : bool, optional
        Replace an existing archive.
    pages_per_read : int, optional
        TIFF pages read at once.
    progress : callable, optional
        ``progress(n_chunks_written, n_chunks, n_frames_written)``.

    Returns
    -------
    magtrack_dask.io.archive.Archive

    Raises
    ------
    InputError
        Files that differ in frame shape or dtype, a layout that does not fit,
        full frames without ROIs.
    FileNotFoundError
        A file that does not exist.
    ImportError
        When ``tifffile`` is not installed.
    """
    try:
        import tifffile  # noqa: F401
    except ImportError as err:
        raise ImportError("importing TIFF needs tifffile: pip install 'magtrack-dask[tiff]'") from err
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
    group = create_archive(
        out, shape=shape, dtype=dtype, layout=layout, rois=rois, chunk_frames=chunk_frames,
        pixel_size_nm=pixel_size_nm, frame_rate_hz=frame_rate_hz, overwrite=overwrite,
        attrs={"imported_from": [os.path.abspath(p) for p in paths]},
    )
    writer = _ChunkWriter(group[FRAMES], layout, frame_shape, n_frames, progress)
    for p, (fshape, _, _) in zip(paths, infos):
        for frames in _read_frames(p, fshape, pages_per_read):
            writer.add(frames)
    writer.close()
    return open_archive(group)


def _read_frames(path: str, shape: tuple[int, ...], pages_per_read: int):
    """Yield the frames of one file, ``(n, *frame_shape)``, a batch of whole frames at a time."""
    import tifffile

    per_frame = shape[1] if len(shape) == 4 else 1
    batch = max(1, pages_per_read // per_frame) * per_frame
    n_pages = shape[0] * per_frame
    with tifffile.TiffFile(path) as tif:
        for start in range(0, n_pages, batch):
            pages = tif.asarray(key=range(start, min(start + batch, n_pages)), series=0)
            yield pages.reshape(-1, *shape[1:])


class _ChunkWriter:
    """Collects frames in a one-chunk buffer and writes each chunk whole (aligned writes)."""

    def __init__(self, arr, layout: Layout, frame_shape, n_frames: int, progress=None):
        self.arr = frames_writer(arr)  # a dark chunk is stored, not taken for a missing one
        self.layout = layout
        self.step = (self.arr.shards or self.arr.chunks)[layout.frame_axis]
        self.n_chunks = -(-n_frames // self.step)
        self.buf = np.empty((self.step, *frame_shape), dtype=self.arr.dtype)
        self.filled = self.written = 0
        self.progress = progress
        if progress:
            progress(0, self.n_chunks, 0)

    def add(self, frames: np.ndarray) -> None:
        """Copy ``frames`` into the chunk buffer, writing it out each time it is full."""
        i = 0
        while i < len(frames):
            take = min(self.step - self.filled, len(frames) - i)
            self.buf[self.filled:self.filled + take] = frames[i:i + take]
            self.filled += take
            i += take
            if self.filled == self.step:
                self._flush()

    def close(self) -> None:
        """Write the last, partly filled chunk."""
        if self.filled:
            self._flush()

    def _flush(self) -> None:
        n, frames = self.filled, slice(self.written, self.written + self.filled)
        if self.layout is Layout.YXT:
            self.arr[:, :, frames] = np.moveaxis(self.buf[:n], 0, -1)
        else:
            self.arr[frames] = self.buf[:n]
        self.written += n
        self.filled = 0
        if self.progress:
            self.progress(-(-self.written // self.step), self.n_chunks, self.written)
