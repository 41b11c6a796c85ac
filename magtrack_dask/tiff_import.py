"""Camera TIFF stacks -> Zarr archive, streaming, in bounded memory.

TIFF files are read a batch of pages at a time with ``tifffile`` and written
one Zarr chunk of frames at a time, so memory holds one chunk plus one batch
whatever the size of the recording. Several files are concatenated along
frames in the order given (a camera that splits a recording into
``run_000.tif``, ``run_001.tif``...).

Layouts (see :mod:`magtrack_dask.storage`):

* 3-D series ``(frame, y, x)`` with an ROI table: ``tyx`` (full camera frames).
* 3-D series of square frames, ``layout='yxt'``: one pre-cropped bead (never
  inferred: camera frames are often square too).
* 4-D series ``(frame, bead, y, x)`` (e.g. an ImageJ hyperstack with the beads
  as channels): ``tbyx``.

ROI tables are read from ``.csv``/``.txt`` (4 columns ``top, bottom, left,
right``, an optional header line), ``.json`` (a list of rows, or an object with
a ``rois`` list) or ``.npy``.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Sequence

import numpy as np

__all__ = ["import_tiff", "read_rois"]


def read_rois(path) -> np.ndarray:
    """Read an ROI table ``(n_beads, 4)`` ``[top, bottom, left, right]``.

    Parameters
    ----------
    path : str or os.PathLike
        ``.csv``/``.txt``, ``.json`` or ``.npy``.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray
        Checked by :func:`magtrack_dask.storage.check_rois` (square, equal sizes).
    """
    from magtrack_dask.storage import check_rois

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ROI file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            rois = np.load(path)
        elif ext == ".json":
            with open(path) as f:
                obj = json.load(f)
            rois = np.asarray(obj["rois"] if isinstance(obj, dict) else obj)
        elif ext in (".csv", ".txt"):
            with open(path) as f:
                first = f.readline()
            header = any(c.isalpha() for c in first)
            rois = np.loadtxt(path, delimiter="," if "," in first else None, skiprows=int(header), ndmin=2)
        else:
            raise ValueError(f"unknown ROI file type {ext!r}: use .csv, .txt, .json or .npy")
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read ROI table {path}: {err}") from err
    except ValueError as err:
        raise ValueError(f"cannot read ROI table {path}: {err}") from err
    return check_rois(rois)


def _series_info(path: str):
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
        raise ValueError(f"{path}: expected a 3-D (frame, y, x) or 4-D (frame, bead, y, x) image series; "
                         f"got shape {shape}")
    per_frame = shape[1] if len(shape) == 4 else 1
    if n_pages != shape[0] * per_frame:
        raise ValueError(f"{path}: {n_pages} pages do not make {shape[0]} frames of shape {shape[1:]}")
    return shape, dtype, rate


def import_tiff(
    paths: Sequence,
    out,
    *,
    rois=None,
    layout: str | None = None,
    chunk_frames: int | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    overwrite: bool = False,
    pages_per_read: int = 256,
    progress: Callable[[int, int, int], None] | None = None,
):
    """Import TIFF stacks into a new archive.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        TIFF files, concatenated along frames in this order.
    out : str or os.PathLike
        The new archive (a Zarr v3 folder).
    rois : array_like or str, optional
        ROI table ``(n_beads, 4)`` or a file :func:`read_rois` reads. Needed
        for full camera frames.
    layout : {'tyx', 'tbyx', 'yxt'}, optional
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
    magtrack_dask.storage.Archive

    Raises
    ------
    ValueError
        Files that differ in frame shape or dtype, a layout that does not fit,
        full frames without ROIs.
    ImportError
        When ``tifffile`` is not installed.
    """
    try:
        import tifffile
    except ImportError as err:
        raise ImportError("importing TIFF needs tifffile: pip install 'magtrack-dask[tiff]'") from err
    from magtrack_dask.storage import LAYOUTS, create_archive, frames_writer, open_archive

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no TIFF files given")
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"TIFF file not found: {p}")
    infos = [_series_info(p) for p in paths]
    frame_shape, dtype = infos[0][0][1:], infos[0][1]
    for p, (shape, dt, _) in zip(paths, infos):
        if shape[1:] != frame_shape or dt != dtype:
            raise ValueError(f"{p}: frames of shape {shape[1:]} {dt} differ from {paths[0]}'s "
                             f"{frame_shape} {dtype}; import them separately")
    n_frames = sum(info[0][0] for info in infos)
    if isinstance(rois, (str, os.PathLike)):
        rois = read_rois(rois)
    if layout is None:
        if len(frame_shape) == 3:
            layout = "tbyx"
        elif rois is not None:
            layout = "tyx"
        else:  # never guessed from the frame size: camera frames are often square too
            raise ValueError(f"frames of {frame_shape[0]} x {frame_shape[1]} px need an ROI table (--rois FILE) "
                             "to be full camera frames, or layout 'yxt' (--layout yxt) to be one pre-cropped bead")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: layout must be one of {', '.join(map(repr, LAYOUTS))}")
    if (layout == "tbyx") != (len(frame_shape) == 3):
        raise ValueError(f"layout {layout!r} does not fit a {len(frame_shape) + 1}-D TIFF series")
    if frame_rate_hz is None:
        frame_rate_hz = infos[0][2]
    shape = (*frame_shape, n_frames) if layout == "yxt" else (n_frames, *frame_shape)
    group = create_archive(
        out, shape=shape, dtype=dtype, layout=layout, rois=rois, chunk_frames=chunk_frames,
        pixel_size_nm=pixel_size_nm, frame_rate_hz=frame_rate_hz, overwrite=overwrite,
        attrs={"imported_from": [os.path.abspath(p) for p in paths]},
    )
    arr = frames_writer(group["frames"])  # a dark chunk is stored, not taken for a missing one
    ax = LAYOUTS[layout].index("frame")
    step = (arr.shards or arr.chunks)[ax]
    n_chunks = -(-n_frames // step)
    buf = np.empty((step, *frame_shape), dtype=dtype)
    filled = written = 0
    if progress:
        progress(0, n_chunks, 0)

    def flush(n: int) -> None:
        nonlocal written
        frames = slice(written, written + n)
        if layout == "yxt":
            arr[:, :, frames] = np.moveaxis(buf[:n], 0, -1)
        else:
            arr[frames] = buf[:n]  # whole chunks only: aligned writes
        written += n
        if progress:
            progress(-(-written // step), n_chunks, written)

    for p, (fshape, _, _) in zip(paths, infos):
        per_frame = fshape[1] if len(fshape) == 4 else 1
        batch = max(1, pages_per_read // per_frame) * per_frame
        n_pages = fshape[0] * per_frame
        with tifffile.TiffFile(p) as tif:
            for start in range(0, n_pages, batch):
                pages = tif.asarray(key=range(start, min(start + batch, n_pages)), series=0)
                frames = pages.reshape(-1, *frame_shape)
                i = 0
                while i < len(frames):  # copy into the chunk buffer, flush when full
                    take = min(step - filled, len(frames) - i)
                    buf[filled:filled + take] = frames[i:i + take]
                    filled += take
                    i += take
                    if filled == step:
                        flush(step)
                        filled = 0
    if filled:
        flush(filled)
    return open_archive(group)
