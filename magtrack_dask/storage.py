"""Zarr v3 archives of camera frames: create, open as Dask, describe, simulate.

An archive is a Zarr v3 *group* holding one image array ``frames`` in one of
three layouts, named by their axes:

``tyx``
    Full camera frames ``(frame, y, x)`` plus an ROI table ``rois``
    ``(n_beads, 4)`` int ``[top, bottom, left, right]`` (bottom and right
    exclusive; square, all the same size).
``tbyx``
    Pre-cropped ROIs ``(frame, bead, y, x)``. An optional ``rois`` table says
    where the crops came from in the camera frame; tracking then reports
    full-frame coordinates.
``yxt``
    One bead in the core's own layout ``(y, x, frame)``.

Arrays are chunked along frames only and carry ``dimension_names`` (xarray
needs them). Group attributes: ``magtrack_dask_archive`` (format version),
``layout``, optional ``pixel_size_nm`` and ``frame_rate_hz``; an optional
``timestamps`` array ``(frame,)`` in seconds takes precedence over the frame
rate. :func:`write_simulated_archive` adds the ground truth ``truth_x``,
``truth_y`` (full-frame px) and ``truth_z`` (nm), each ``(bead, frame)``.

Default compressor
------------------
Blosc with zstd, level 5, bit-shuffle (:func:`default_compressors`). Measured
here, one thread, on simulated uint16 camera frames (300 frames of 176 x 176
px, four 64 px beads, ``photons=1000`` on a background of 1000 counts)::

    codec                        ratio  encode    decode
    blosc zstd-5 bitshuffle      1.74   0.6 GB/s  1.5-3 GB/s
    blosc zstd-5 byte shuffle    1.85   0.07      1.5
    blosc lz4-5 bitshuffle       1.55   3.4       4.9
    zstd-0 (zarr's default)      1.65   0.2       1.3

A CRC-32C checksum follows (4 bytes a chunk; checking a 1000-frame chunk
costs ~3 ms of its ~25 ms read), so damaged bytes fail the read rather than
decode to wrong pixels.

Shot noise fills the low bits, so no lossless codec gets far past 2. Through
zarr, reading a 4-bead frame costs 0.07 ms of CPU with this codec, 0.075 with
lz4, 0.11 with zarr's zstd and 0.04 uncompressed, against ~0.3 ms to track it:
zstd + bit-shuffle is the smallest of the fast codecs, the cheapest to read
and encodes 3x faster than zarr's default; byte shuffle stores 6 % less but
encodes at 70 MB/s, too slow to keep up with a camera.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from magtrack_dask.chunk_read import blosc_sizes, read_whole_chunk
from magtrack_dask.io.paths import ArchiveError, check_zarr_path

__all__ = [
    "FORMAT_VERSION",
    "LAYOUTS",
    "Archive",
    "ArchiveError",
    "create_archive",
    "open_archive",
    "describe_archive",
    "write_simulated_archive",
    "default_compressors",
    "check_layout",
    "check_rois",
    "check_zarr_path",
    "read_frames",
    "remove_unfinished_writes",
    "roi_grid",
]

FORMAT_VERSION = 1
#: Axis names of the image array for each layout.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "tyx": ("frame", "y", "x"),
    "tbyx": ("frame", "bead", "y", "x"),
    "yxt": ("y", "x", "frame"),
}
FRAMES = "frames"  # name of the image array in the group
CALIBRATION_Z = "calibration_z"  # per-frame z (nm) of a calibration archive
_TARGET_CHUNK_BYTES = 64 * 2**20
#: ROIs per chunk by default: ~0.3 s of tracking per task for 64 px ROIs
#: (scheduling costs ~1-2 ms), and measured faster than 8000 per chunk.
TARGET_ROIS_PER_CHUNK = 4096


def default_compressors() -> tuple[BloscCodec, Crc32cCodec]:
    """The default codec chain: Blosc zstd level 5 with bit-shuffle, then a CRC-32C checksum.

    The checksum makes bytes damaged on disk a read error (flagged and reported
    by :func:`magtrack_dask.track`) instead of wrong pixels: Blosc itself
    checks only its header.
    """
    return (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), Crc32cCodec())


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is known, else raise a ValueError naming it."""
    if layout not in LAYOUTS:
        raise ValueError(
            f"unknown layout {layout!r}: layout must be one of {', '.join(map(repr, LAYOUTS))}"
        )
    return layout


def frame_axis(layout: str) -> int:
    """Index of the frame axis in an array of this layout."""
    return LAYOUTS[check_layout(layout)].index("frame")


def check_rois(rois, frame_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate an ROI table.

    Parameters
    ----------
    rois : array_like of int, shape (n_beads, 4)
        ``[top, bottom, left, right]`` per bead, in pixels; bottom and right are
        exclusive.
    frame_shape : tuple of int, optional
        ``(height, width)`` of the camera frame the ROIs must lie inside.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray

    Raises
    ------
    ValueError
        If the table has the wrong shape, an ROI is not square, the ROIs differ
        in size, or an ROI lies outside the frame. The message names ``rois``.
    """
    arr = np.asarray(rois)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] < 1:
        raise ValueError(f"rois must have shape (n_beads, 4) [top, bottom, left, right] with n_beads >= 1; "
                         f"got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("rois must hold whole pixel numbers")
    arr = arr.astype(np.int64)
    heights, widths = arr[:, 1] - arr[:, 0], arr[:, 3] - arr[:, 2]
    if np.any(heights <= 0) or np.any(heights != widths):
        bad = int(np.flatnonzero((heights <= 0) | (heights != widths))[0])
        raise ValueError(
            f"rois must be square with bottom > top: ROI {bad} {arr[bad].tolist()} is "
            f"{heights[bad]} x {widths[bad]} px"
        )
    if np.any(heights != heights[0]):
        raise ValueError(f"rois must all have the same size; got sizes {sorted(set(heights.tolist()))} px")
    if frame_shape is not None:
        h, w = frame_shape
        out = (arr[:, 0] < 0) | (arr[:, 2] < 0) | (arr[:, 1] > h) | (arr[:, 3] > w)
        if np.any(out):
            bad = int(np.flatnonzero(out)[0])
            raise ValueError(
                f"rois: ROI {bad} {arr[bad].tolist()} lies outside the frame of shape "
                f"(height={h}, width={w})"
            )
    return arr


def roi_grid(n_beads: int, roi: int, frame_shape: tuple[int, int] | None = None, gap: int | None = None):
    """Lay ``n_beads`` square ROIs out on a grid.

    Parameters
    ----------
    n_beads : int
    roi : int
        ROI side in pixels.
    frame_shape : tuple of int, optional
        ``(height, width)``; default: the smallest near-square frame that fits.
    gap : int, optional
        Pixels between ROIs and around the grid; default ``roi // 4``.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray
    frame_shape : tuple of int
    """
    gap = roi // 4 if gap is None else gap
    if frame_shape is None:
        cols = math.ceil(math.sqrt(n_beads))
        rows = math.ceil(n_beads / cols)
        frame_shape = (gap + rows * (roi + gap), gap + cols * (roi + gap))
    h, w = frame_shape
    cols = max(1, (w - gap) // (roi + gap))
    rows = math.ceil(n_beads / cols)
    if rows * (roi + gap) + gap > h or roi + 2 * gap > w:
        raise ValueError(f"frame_shape {frame_shape} cannot hold {n_beads} ROIs of {roi} px")
    idx = np.arange(n_beads)
    top = gap + (idx // cols) * (roi + gap)
    left = gap + (idx % cols) * (roi + gap)
    return np.stack([top, top + roi, left, left + roi], axis=1).astype(np.int64), (int(h), int(w))


def auto_chunk_frames(frame_bytes: int, n_frames: int, n_beads: int = 1) -> int:
    """Default frames per chunk: ~4096 ROIs, at most ~64 MiB of frames."""
    by_rois = max(1, TARGET_ROIS_PER_CHUNK // max(1, n_beads))
    return int(max(1, min(n_frames, by_rois, _TARGET_CHUNK_BYTES // max(1, frame_bytes))))


def _is_scalar(source) -> bool:
    """None or a plain number/bytes: never an archive or an image array (zarr
    would misread some of them as a store)."""
    return source is None or isinstance(source, (bool, int, float, complex, bytes))


def _as_group(source, mode: str = "r") -> zarr.Group:
    if isinstance(source, zarr.Group):
        return source
    if _is_scalar(source):
        raise TypeError(f"source must be an archive path, a zarr.Group or a Zarr store; got {type(source).__name__}")
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


@dataclass
class Archive:
    """An opened archive.

    Attributes
    ----------
    data : dask.array.Array
        The image array in its layout, chunked along frames only; each Dask chunk
        is a whole number of Zarr chunks (or shards).
    layout : str
        ``'tyx'``, ``'tbyx'`` or ``'yxt'``.
    rois : (n_beads, 4) int ndarray or None
        ROI table ``[top, bottom, left, right]``; None when the archive has none.
    attrs : dict
        Group attributes.
    path : str or None
        Where the archive lives, when it is on a local file system.
    group : zarr.Group
        The open group (truth arrays, timestamps).
    """

    data: da.Array
    layout: str
    rois: np.ndarray | None
    attrs: dict[str, Any]
    path: str | None
    group: zarr.Group = field(repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[frame_axis(self.layout)])

    @property
    def n_beads(self) -> int:
        if self.layout == "tbyx":
            return int(self.data.shape[1])
        return 1 if self.rois is None else int(self.rois.shape[0])

    @property
    def pixel_size_nm(self) -> float | None:
        return self.attrs.get("pixel_size_nm")

    @property
    def frame_rate_hz(self) -> float | None:
        return self.attrs.get("frame_rate_hz")

    def time(self) -> da.Array | None:
        """Frame times in seconds ``(frame,)``, lazily, or None when unknown."""
        if "timestamps" in self.group:
            return da.from_zarr(self.group["timestamps"], chunks=(self.data.chunks[frame_axis(self.layout)],))
        if self.frame_rate_hz:
            return da.arange(self.n_frames, chunks=(self.data.chunks[frame_axis(self.layout)],)) / float(
                self.frame_rate_hz
            )
        return None


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
        Also check the stored chunks against the metadata (default True): every
        chunk (shard) of ``frames`` must exist, so that a declared shape larger
        than the data written is not read as fill-value frames, and the first
        chunk's Blosc header must give the declared chunk size. This costs a
        ``stat`` per chunk (a listing on remote stores) and a 16-byte read.
        ``check=False`` skips it (a partly filled archive; a remote store where
        listing is slow).

    Returns
    -------
    Archive

    Raises
    ------
    FileNotFoundError
        Nothing at ``source``.
    ArchiveError
        A ValueError: metadata that disagrees with itself (layout and array
        shape or dimension names, the ROI table and the frame, the length of
        ``timestamps`` or the ground truth, a non-positive pixel size or frame
        rate, a codec set up for another dtype) or, with ``check``, with the
        stored chunks.
    ValueError
        Not a magtrack-dask archive.
    TypeError
        Frames that are not integer or float pixels.
    """
    if frames_per_task is not None:
        frames_per_task = _check_count(frames_per_task, "frames_per_task")
    group = _as_group(source)
    attrs = dict(group.attrs)
    layout = attrs.get("layout")
    if layout is None or FRAMES not in group:
        raise ValueError(f"{source!r} is not a magtrack-dask archive (no 'layout' attribute or 'frames' array)")
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ArchiveError(f"archive attribute 'layout' is {layout!r}; expected one of "
                           f"{', '.join(map(repr, LAYOUTS))}")
    arr = group[FRAMES]
    _check_archive_metadata(group, arr, layout, attrs)
    if check:
        check_frame_chunks(arr)
    ax = frame_axis(layout)
    # da.from_zarr would default to the *inner* chunks of a sharded array.
    unit = (arr.shards or arr.chunks)[ax]
    step = unit if frames_per_task is None else unit * max(1, math.ceil(frames_per_task / unit))
    chunks = tuple(min(step, s) if i == ax else s for i, s in enumerate(arr.shape))
    data = da.from_zarr(arr, chunks=chunks)
    rois = np.asarray(group["rois"][...], dtype=np.int64) if "rois" in group else None
    path = _source_path(group)
    return Archive(data=data, layout=layout, rois=rois, attrs=attrs, path=path, group=group)


# -- consistency checks: metadata against itself and against the chunks --------------


def _check_count(value, name: str) -> int:
    """An integer >= 1 such as ``chunk_frames``; bools and fractions are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_positive(value, name: str, what: str) -> float:
    """A finite number > 0 such as ``pixel_size_nm``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 ({what}), got {value!r}")
    return float(value)


def _check_archive_metadata(group: zarr.Group, arr, layout: str, attrs: dict[str, Any]) -> None:
    """Cheap checks of an archive's metadata against itself; no chunk is read."""
    version = attrs.get("magtrack_dask_archive")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ArchiveError(f"archive format version {version} is newer than this magtrack-dask reads "
                           f"({FORMAT_VERSION}); upgrade magtrack-dask")
    if not isinstance(arr, zarr.Array):
        raise ArchiveError("archive 'frames' is a group; expected the image array")
    dims = LAYOUTS[layout]
    if arr.ndim != len(dims):
        raise ArchiveError(f"archive attribute layout={layout!r} means a {len(dims)}-D frames array {dims}, "
                           f"but 'frames' has shape {tuple(arr.shape)}")
    names = tuple(arr.metadata.dimension_names or ())
    if sorted(n for n in names if n) == sorted(dims) and names != dims:
        raise ArchiveError(f"frames: dimension_names {names} disagree with the archive attribute "
                           f"layout={layout!r} {dims}")
    if np.dtype(arr.dtype).kind not in "uif":
        raise TypeError(f"frames: dtype {arr.dtype} is not a pixel type; expected integers or floats")
    if layout != "tyx":
        yx = arr.shape[2:] if layout == "tbyx" else arr.shape[:2]
        if yx[0] != yx[1]:
            raise ArchiveError(f"frames: layout {layout!r} holds square ROIs, but its images are "
                               f"{yx[0]} x {yx[1]} px")
    for name, what in (("pixel_size_nm", "nm per pixel"), ("frame_rate_hz", "frames per second")):
        if attrs.get(name) is not None:
            try:
                _check_positive(attrs[name], name, what)
            except ValueError as err:
                raise ArchiveError(f"archive attribute {err}") from None
    n_frames = int(arr.shape[frame_axis(layout)])
    n_beads = {"tbyx": int(arr.shape[1]), "yxt": 1}.get(layout)
    if "rois" in group:
        table = group["rois"]
        if not isinstance(table, zarr.Array):
            raise ArchiveError("archive 'rois' is a group; expected an (n_beads, 4) table")
        try:
            rois = check_rois(table[...], tuple(arr.shape[1:3]) if layout == "tyx" else None)
        except ValueError as err:
            raise ArchiveError(f"archive ROI table disagrees with its frames: {err}") from None
        size = int(rois[0, 1] - rois[0, 0])
        if n_beads is not None and (len(rois) != n_beads or size != arr.shape[-1 if layout == "tbyx" else 0]):
            raise ArchiveError(f"archive 'rois' has {len(rois)} ROIs of {size} px, but the {layout} frames "
                               f"{tuple(arr.shape)} hold {n_beads} beads of {arr.shape[-1 if layout == 'tbyx' else 0]} px")
        n_beads = len(rois)
    for name in ("timestamps", CALIBRATION_Z):
        if name in group and tuple(getattr(group[name], "shape", ())) != (n_frames,):
            raise ArchiveError(f"archive {name!r} has shape {tuple(getattr(group[name], 'shape', ()))}, "
                               f"expected ({n_frames},): one value per frame")
    for name in ("truth_x", "truth_y", "truth_z"):
        if name in group:
            shape = tuple(getattr(group[name], "shape", ()))
            if len(shape) != 2 or shape[1] != n_frames or (n_beads is not None and shape[0] != n_beads):
                raise ArchiveError(f"archive {name!r} has shape {shape}, expected "
                                   f"({'n_beads' if n_beads is None else n_beads}, {n_frames}): (bead, frame)")
    itemsize = np.dtype(arr.dtype).itemsize
    for codec in _bytes_codecs(arr):
        typesize = getattr(codec, "typesize", None)
        if isinstance(codec, BloscCodec) and typesize is not None and typesize != itemsize:
            raise ArchiveError(f"frames: zarr.json declares data_type {arr.dtype} ({itemsize}-byte values) but "
                               f"its blosc codec was set up for {typesize}-byte values: the chunks were "
                               f"written as another dtype")


def _bytes_codecs(arr) -> list:
    """The bytes-to-bytes codecs (compressors) of the chunks, inside a shard too."""
    codecs = list(arr.metadata.codecs)
    if arr.shards is not None:
        codecs = list(getattr(codecs[0], "codecs", ()))
    return codecs[1:]  # the first is the array-to-bytes codec


def _chunk_keys(arr):
    """(coords, store key) of every stored object (chunk, or shard) of an array."""
    unit = arr.shards or arr.chunks
    grid = tuple(-(-s // c) for s, c in zip(arr.shape, unit))
    prefix = arr.store_path.path
    for coords in np.ndindex(*grid):
        key = arr.metadata.encode_chunk_key(coords)
        yield coords, f"{prefix}/{key}" if prefix else key


def _store_call(coro):
    from zarr.core.sync import sync

    return sync(coro)


async def _list_keys(store, prefix: str) -> set[str]:
    return {k async for k in store.list_prefix(prefix)}


def _missing_keys(store, prefix: str, keys: list) -> list:
    """The (coords, key) pairs of ``keys`` not in the store.

    A local store is asked one ``stat`` per key: its chunks lie in one folder
    per chunk index, and listing them is ~50x slower. Other stores are listed.
    """
    root = getattr(store, "root", None)
    if root is not None and type(store).__name__ == "LocalStore":
        root = os.fspath(root)
        return [(c, k) for c, k in keys if not os.path.isfile(os.path.join(root, k))]
    stored = _store_call(_list_keys(store, prefix))
    return [(c, k) for c, k in keys if k not in stored]


def _frames_of(arr, coords) -> str:
    """'frames a-b' of the chunk (shard) at ``coords`` (the frame axis is the one that is split)."""
    unit = arr.shards or arr.chunks
    ax = int(np.argmax([s // c for s, c in zip(arr.shape, unit)])) if arr.ndim else 0
    start = coords[ax] * unit[ax]
    return f"frames {start}-{min(start + unit[ax], arr.shape[ax]) - 1}"


def check_frame_chunks(arr) -> None:
    """Check that the stored chunks of an image array agree with its metadata.

    Every chunk (shard) of the declared shape must exist: zarr reads a missing
    one as fill-value frames. When the chunks are Blosc-compressed, the first
    chunk's header must give the declared chunk size and value size. Costs one
    ``stat`` per chunk on a local store (0.1 s for 20 000 chunks), one listing
    of the array's keys elsewhere, and a 16-byte read.

    Parameters
    ----------
    arr : zarr.Array

    Raises
    ------
    ArchiveError
        Naming the array, the chunks and what was expected and found.
    """
    name = arr.path or "array"
    store = arr.store_path.store
    prefix = arr.store_path.path
    keys = list(_chunk_keys(arr))
    absent = _missing_keys(store, f"{prefix}/" if prefix else "", keys)
    # The first stored chunk's size first: a declared chunk_shape or data_type that
    # disagrees with the encoded chunks also shows as missing keys.
    gone = {k for _, k in absent}
    first = next(((c, k) for c, k in keys if k not in gone), None)
    if first is not None and arr.shards is None:
        _check_chunk_size(arr, store, *first)
    missing = [c for c, _ in absent]
    if missing:
        listed = ", ".join(f"{'/'.join(map(str, c))} ({_frames_of(arr, c)})" for c in missing[:3])
        raise ArchiveError(
            f"{name}: {len(missing)} of {len(keys)} chunks declared by its shape {tuple(arr.shape)} are missing "
            f"from the store (chunk {listed}{', ...' if len(missing) > 3 else ''}); zarr would read them as "
            f"fill-value ({arr.fill_value}) frames. The archive is incomplete or its shape is larger than the "
            "data written; open_archive(..., check=False) reads it anyway")


def _check_chunk_size(arr, store, coords, key) -> None:
    """Compare one stored chunk's decoded size with the declared one (Blosc header or raw size)."""
    from zarr.abc.store import RangeByteRequest
    from zarr.core.buffer import default_buffer_prototype

    codecs = _bytes_codecs(arr)
    size = _store_call(store.getsize(key))
    if not codecs:  # uncompressed: the object is the chunk
        nbytes, what = size, "bytes"
    elif isinstance(codecs[0], BloscCodec) and all(isinstance(c, Crc32cCodec) for c in codecs[1:2]) and len(
        codecs
    ) <= 2:
        head = _store_call(store.get(key, prototype=default_buffer_prototype(), byte_range=RangeByteRequest(0, 16)))
        head = b"" if head is None else head.to_bytes()
        blosc_size = size - 4 * (len(codecs) - 1)  # the checksum is a 4-byte trailer
        sizes = blosc_sizes(head)
        if sizes is None or sizes[1] != blosc_size:
            return  # not a readable Blosc header: corrupt bytes, reported when the chunk is read
        nbytes, what = sizes[0], f"bytes of {head[3]}-byte values"
    else:
        return  # other codecs: checked when the chunk is read (read_frames)
    expected = math.prod(arr.chunks) * np.dtype(arr.dtype).itemsize
    if nbytes != expected:
        raise ArchiveError(
            f"{arr.path or 'array'}: chunk {'/'.join(map(str, coords))} ({_frames_of(arr, coords)}) holds "
            f"{nbytes} {what}, but zarr.json declares chunks of {tuple(arr.chunks)} {arr.dtype} = {expected} "
            "bytes: its data_type or chunk_shape disagrees with what the chunks hold")


_RESHAPE = re.compile(r"cannot reshape array of size (\d+) into shape")


# zarr's LocalStore writes a chunk to "<key>.<uuid4 hex>.partial" and then renames it.
_UNFINISHED_WRITE = re.compile(r"\.[0-9a-f]{32}\.partial$")


def remove_unfinished_writes(path: str) -> int:
    """Delete the temporary files of chunk writes that never finished.

    A worker killed while writing a chunk leaves its temporary file behind
    (the chunk itself is written again when the task is retried). Call it
    only when no task writes to ``path``. Returns how many were removed.
    """
    n = 0
    for folder, _, files in os.walk(path):
        for name in files:
            if _UNFINISHED_WRITE.search(name):
                os.unlink(os.path.join(folder, name))
                n += 1
    return n


def read_frames(arr, start: int, stop: int, axis: int) -> np.ndarray:
    """Read frames ``start .. stop - 1`` of an image array.

    A chunk whose decoded size disagrees with the declared dtype and chunk
    shape raises :class:`ArchiveError` naming the array, the chunk and the
    sizes, instead of zarr's bare reshape error. The check costs nothing on
    the normal path: the chunks are only looked at again after a failure.
    A range that is exactly one stored chunk of a local Blosc array (what a
    tracking task reads) is decoded straight into the result
    (:func:`magtrack_dask.chunk_read.read_whole_chunk`); anything else, and
    any chunk that path cannot vouch for, is read by zarr.

    Parameters
    ----------
    arr : zarr.Array
    start, stop : int
        Frame range.
    axis : int
        The frame axis.

    Returns
    -------
    numpy.ndarray
    """
    block = read_whole_chunk(arr, int(start), int(stop), axis)  # a task's usual read: one whole chunk
    if block is not None:
        return block
    sl = tuple(slice(int(start), int(stop)) if i == axis else slice(None) for i in range(arr.ndim))
    try:
        return arr[sl]
    except ValueError as err:
        if not _RESHAPE.search(str(err)):
            raise
        failure = err
    # Which chunk: read them one at a time (only after a failure).
    unit = (arr.shards or arr.chunks)[axis]
    for first in range(int(start) - int(start) % unit, int(stop), unit):
        try:
            arr[tuple(slice(first, first + unit) if i == axis else slice(None) for i in range(arr.ndim))]
        except ValueError as err:
            match = _RESHAPE.search(str(err))
            if match is None:
                raise
            found = int(match.group(1)) * np.dtype(arr.dtype).itemsize
            expected = math.prod(arr.chunks) * np.dtype(arr.dtype).itemsize
            raise ArchiveError(
                f"{arr.path or 'array'}: the chunk holding frames {first}-{min(first + unit, arr.shape[axis]) - 1} "
                f"decodes to {found} bytes, but zarr.json declares chunks of {tuple(arr.chunks)} {arr.dtype} = "
                f"{expected} bytes: its data_type or chunk_shape disagrees with what the chunk holds") from err
    raise failure


def create_archive(
    path,
    data=None,
    *,
    shape: tuple[int, ...] | None = None,
    dtype="uint16",
    layout: str = "tyx",
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
        chunk-aligned writes, e.g. ``group['frames'][0:1000] = block``.
    shape : tuple of int, optional
        Shape of the ``frames`` array when ``data`` is omitted.
    dtype : str or numpy dtype, optional
        Pixel type when ``data`` is omitted; default ``'uint16'``.
    layout : {'tyx', 'tbyx', 'yxt'}
        Axis order of the image array (see the module docstring).
    rois : array_like of int, shape (n_beads, 4), optional
        ROI table; required for ``'tyx'``, optional for ``'tbyx'``.
    chunk_frames : int, optional
        Frames per Zarr chunk, the unit of work of :func:`magtrack_dask.track`;
        default ~4096 ROIs (1024 frames of 4 beads) and at most ~64 MiB.
    shard_frames : int, optional
        Frames per shard (a multiple of ``chunk_frames``); default no sharding.
    pixel_size_nm : float, optional
        Camera pixel size in the sample plane, nm/px.
    frame_rate_hz : float, optional
        Frame rate, frames per second.
    timestamps : array_like of float, shape (n_frames,), optional
        Frame times in seconds; stored as the ``timestamps`` array.
    compressors : 'default', codec sequence or None
        Codecs for the image array; ``'default'`` is
        :func:`default_compressors`.
    attrs : dict, optional
        More group attributes (JSON-serialisable).
    overwrite : bool, optional
        Replace an existing archive at ``path``. Default False raises
        FileExistsError.

    Returns
    -------
    zarr.Group
    """
    check_layout(layout)
    if data is not None:
        shape, dtype = tuple(data.shape), np.dtype(data.dtype)
    if shape is None:
        raise ValueError("create_archive needs data or shape")
    shape = tuple(int(s) for s in shape)
    if np.dtype(dtype).kind not in "uif":
        raise TypeError(f"{'dtype' if data is None else 'data'}: expected integer or float pixels "
                        f"(uint8, uint16, float32...), got {np.dtype(dtype)}")
    dims = LAYOUTS[layout]
    if len(shape) != len(dims):
        raise ValueError(f"layout {layout!r} needs a {len(dims)}-D array {dims}; got shape {shape}")
    ax = dims.index("frame")
    n_frames = shape[ax]
    if min(shape) < 1:
        raise ValueError(f"{'shape' if data is None else 'data'}: expected at least one frame and one pixel "
                         f"along every axis {dims}, got shape {shape}")
    chunk_frames = None if chunk_frames is None else _check_count(chunk_frames, "chunk_frames")
    shard_frames = None if shard_frames is None else _check_count(shard_frames, "shard_frames")
    if pixel_size_nm is not None:
        pixel_size_nm = _check_positive(pixel_size_nm, "pixel_size_nm", "nm per pixel")
    if frame_rate_hz is not None:
        frame_rate_hz = _check_positive(frame_rate_hz, "frame_rate_hz", "frames per second")
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if ts is not None and ts.shape != (n_frames,):
        raise ValueError(f"timestamps must have shape ({n_frames},); got {ts.shape}")
    if layout == "tyx" and rois is None:
        raise ValueError("rois is required for layout 'tyx'")
    if rois is not None:
        if layout == "yxt":
            raise ValueError("rois is not used with layout 'yxt' (one pre-cropped bead)")
        rois = check_rois(rois, shape[1:3] if layout == "tyx" else None)
        if layout == "tbyx" and (rois.shape[0] != shape[1] or rois[0, 1] - rois[0, 0] != shape[2]):
            raise ValueError(f"rois {rois.shape} does not match the tbyx data of shape {shape}")
    if layout in ("tbyx", "yxt"):
        yx = shape[2:] if layout == "tbyx" else shape[:2]
        if yx[0] != yx[1]:
            raise ValueError(f"layout {layout!r} needs square ROIs; got {yx[0]} x {yx[1]} px")
    frame_bytes = int(np.prod(shape) // max(1, n_frames)) * np.dtype(dtype).itemsize
    n_beads = len(rois) if rois is not None else (shape[1] if layout == "tbyx" else 1)
    chunk_frames = chunk_frames or auto_chunk_frames(frame_bytes, n_frames, n_beads)
    chunk_frames = int(min(chunk_frames, max(1, n_frames)))
    chunks = tuple(chunk_frames if i == ax else s for i, s in enumerate(shape))
    shards = None
    if shard_frames:
        if shard_frames % chunk_frames:
            raise ValueError(f"shard_frames ({shard_frames}) must be a multiple of chunk_frames ({chunk_frames})")
        shards = tuple(shard_frames if i == ax else s for i, s in enumerate(shape))

    group_attrs = {"magtrack_dask_archive": FORMAT_VERSION, "layout": layout}
    if pixel_size_nm is not None:
        group_attrs["pixel_size_nm"] = float(pixel_size_nm)
    if frame_rate_hz is not None:
        group_attrs["frame_rate_hz"] = float(frame_rate_hz)
    group_attrs.update(attrs or {})
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, str) and "://" not in path and os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"path: {path} exists; pass overwrite=True to replace it")
        # zarr's mode='w' empties whatever folder it is given: only ever replace a Zarr store.
        if not os.path.isfile(os.path.join(path, "zarr.json")):
            raise ValueError(f"path: refusing to overwrite {path}: it is "
                             f"{'a folder' if os.path.isdir(path) else 'a file'}, not a Zarr store")
    group = zarr.open_group(path, mode="w" if overwrite else "w-", zarr_format=3, attributes=group_attrs)
    group.create_array(
        FRAMES,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        compressors=default_compressors() if compressors == "default" else compressors,
        dimension_names=dims,
        fill_value=0,
    )
    if rois is not None:
        r = group.create_array("rois", shape=rois.shape, dtype="int64", dimension_names=("bead", "edge"))
        r[...] = rois
        r.attrs.update({"columns": ["top", "bottom", "left", "right"], "units": "px"})
    if ts is not None:
        t = group.create_array(
            "timestamps", shape=ts.shape, dtype="float64", chunks=(shards or chunks)[ax : ax + 1],
            dimension_names=("frame",),
        )
        t[...] = ts
        t.attrs["units"] = "s"
    if data is not None:
        _write_frames(group[FRAMES], data, ax)
    return group


def frames_writer(arr: zarr.Array) -> zarr.Array:
    """``arr`` set to store every chunk written, even one of fill values only.

    zarr skips all-fill-value chunks by default; :func:`open_archive` would then
    take a dark chunk of frames for a missing one.
    """
    return arr.with_config({"write_empty_chunks": True})


def _write_frames(arr: zarr.Array, data, ax: int) -> None:
    # One write per whole shard/chunk keeps memory bounded and writes aligned.
    arr = frames_writer(arr)
    step = (arr.shards or arr.chunks)[ax]
    for start in range(0, arr.shape[ax], step):
        sl = tuple(slice(start, start + step) if i == ax else slice(None) for i in range(arr.ndim))
        arr[sl] = np.asarray(data[sl])


def describe_archive(source) -> dict[str, Any]:
    """Summarise an archive without reading its frames.

    Parameters
    ----------
    source : str, os.PathLike, zarr Store or zarr.Group

    Returns
    -------
    info : dict
        ``path, layout, format_version, shape, dtype, n_frames, n_beads,
        roi_size, frame_shape, chunk_frames, shard_frames, compressors,
        nbytes, nbytes_stored, compression_ratio, pixel_size_nm,
        frame_rate_hz, has_timestamps, has_truth, rois`` (a list of lists or
        None) and ``calibration_z_range_nm`` (``[min, max]`` of the per-frame
        z of a calibration archive, else None).
    """
    a = open_archive(source, check=False)  # a partly written archive can be described
    arr = a.group[FRAMES]
    ax = frame_axis(a.layout)
    if a.layout == "tyx":
        roi_size, frame_shape = int(a.rois[0, 1] - a.rois[0, 0]), tuple(arr.shape[1:3])
    else:
        roi_size, frame_shape = int(arr.shape[-1] if a.layout == "tbyx" else arr.shape[0]), None
    stored = int(arr.nbytes_stored())
    return {
        "path": a.path,
        "layout": a.layout,
        "format_version": a.attrs.get("magtrack_dask_archive"),
        "shape": tuple(arr.shape),
        "dtype": str(arr.dtype),
        "n_frames": a.n_frames,
        "n_beads": a.n_beads,
        "roi_size": roi_size,
        "frame_shape": frame_shape,
        "chunk_frames": int(arr.chunks[ax]),
        "shard_frames": int(arr.shards[ax]) if arr.shards else None,
        "compressors": [repr(c) for c in arr.compressors],
        "nbytes": int(arr.nbytes),
        "nbytes_stored": stored,
        "compression_ratio": float(arr.nbytes / stored) if stored else None,
        "pixel_size_nm": a.pixel_size_nm,
        "frame_rate_hz": a.frame_rate_hz,
        "has_timestamps": "timestamps" in a.group,
        "has_truth": "truth_z" in a.group,
        "rois": None if a.rois is None else a.rois.tolist(),
        "calibration_z_range_nm": _calibration_z_range(a.group),
    }


def _calibration_z_range(group: zarr.Group) -> list[float] | None:
    if CALIBRATION_Z not in group:
        return None
    z = group[CALIBRATION_Z][...]
    return [float(np.nanmin(z)), float(np.nanmax(z))] if np.isfinite(z).any() else None


# -- simulated archives -------------------------------------------------------


def _trajectories(n_frames, n_beads, roi, wander_px, z_range_nm, seed):
    """Smooth per-bead paths evaluable on any frame range (bounded memory).

    Each coordinate is a sum of three sinusoids with random periods of 50 to
    2000 frames; x, y wander by up to ``wander_px`` around the ROI centre, z
    sweeps most of ``z_range_nm``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    per = rng.uniform(50, 2000, size=(2, n_beads, 3))
    amp = rng.dirichlet(np.ones(3), size=(2, n_beads)) * wander_px
    ph = rng.uniform(0, 2 * np.pi, size=(2, n_beads, 3))
    z_lo, z_hi = z_range_nm
    z_mid, z_amp = (z_lo + z_hi) / 2, 0.45 * (z_hi - z_lo)
    z_per = rng.uniform(0.5, 1.5, n_beads) * max(200, n_frames)
    z_ph = rng.uniform(0, 2 * np.pi, n_beads)
    centre = (roi - 1) / 2  # pixel centres at integers

    def at(t):  # t: (n,) frame numbers -> x, y (bead, n) ROI px; z (bead, n) nm
        arg = 2 * np.pi * t[None, None, :, None] / per[:, :, None, :] + ph[:, :, None, :]
        xy = centre + (amp[:, :, None, :] * np.sin(arg)).sum(-1)
        z = z_mid + z_amp * np.sin(2 * np.pi * t[None, :] / z_per[:, None] + z_ph[:, None])
        return xy[0], xy[1], z

    return at


def write_simulated_archive(
    path,
    n_frames: int,
    n_beads: int = 4,
    *,
    roi: int = 64,
    frame_shape: tuple[int, int] | None = None,
    layout: str = "tyx",
    chunk_frames: int | None = None,
    photons: float | None = None,
    background: float = 1000.0,
    seed: int = 0,
    z_range_nm: tuple[float, float] = (1000.0, 4000.0),
    wander_px: float = 1.5,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    optics=None,
    dtype: str = "uint16",
    compressors="default",
    overwrite: bool = False,
) -> Archive:
    """Write simulated beads to an archive, chunk by chunk, with ground truth.

    Beads move smoothly: x, y wander sub-pixel to ``wander_px`` around their ROI
    centre and z sweeps across ``z_range_nm``. Memory use is bounded by one
    chunk of frames, whatever ``n_frames``.

    Parameters
    ----------
    path : str, os.PathLike or zarr Store
    n_frames : int
    n_beads : int, optional
        Beads per frame (1 for ``'yxt'``). Default 4.
    roi : int, optional
        ROI side, px. Default 64.
    frame_shape : tuple of int, optional
        ``(height, width)`` of the camera frame for ``'tyx'``; default the
        smallest near-square grid of ROIs with ``roi // 4`` px gaps.
    layout : {'tyx', 'tbyx', 'yxt'}
    chunk_frames : int, optional
        Frames per Zarr chunk; default as :func:`create_archive`.
    photons : float, optional
        Passed to :func:`magtrack_dask.simulate.render_beads` (shot noise);
        None renders noiseless images.
    background : float, optional
        Background level, counts; also fills the frame outside the ROIs.
    seed : int, optional
        Seeds the paths and the noise. Paths and noiseless frames do not depend
        on ``chunk_frames``; noise is drawn per chunk.
    z_range_nm : tuple of float, optional
        The z sweep stays inside ``(z_min, z_max)``, nm; default 1-4 um, where
        the default optics give several rings inside a 64 px ROI.
    wander_px : float, optional
        Maximum x, y excursion from the ROI centre, px.
    pixel_size_nm, frame_rate_hz : float, optional
        Stored as group attributes.
    optics : optional
        Passed to ``render_beads``.
    dtype : str, optional
        Pixel type, default ``'uint16'``.
    compressors, overwrite
        As in :func:`create_archive`.

    Returns
    -------
    Archive
        The new archive, opened. Ground truth: arrays ``truth_x``, ``truth_y``
        (full-frame px; ROI px for ``'yxt'``) and ``truth_z`` (nm), each
        ``(bead, frame)``.
    """
    from magtrack_dask.simulate import render_beads

    check_layout(layout)
    if layout == "yxt" and n_beads != 1:
        raise ValueError(f"layout 'yxt' holds one bead; got n_beads={n_beads}")
    rois, fshape = roi_grid(n_beads, roi, frame_shape)
    shape = {
        "tyx": (n_frames, *fshape),
        "tbyx": (n_frames, n_beads, roi, roi),
        "yxt": (roi, roi, n_frames),
    }[layout]
    group = create_archive(
        path, shape=shape, dtype=dtype, layout=layout, rois=None if layout == "yxt" else rois,
        chunk_frames=chunk_frames, pixel_size_nm=pixel_size_nm, frame_rate_hz=frame_rate_hz,
        compressors=compressors, overwrite=overwrite,
        attrs={"simulated": {"seed": seed, "photons": photons, "background": background,
                             "z_range_nm": list(z_range_nm), "wander_px": wander_px}},
    )
    frames = frames_writer(group[FRAMES])
    ax = frame_axis(layout)
    step = frames.chunks[ax]
    truth = {}
    for name, units in (("truth_x", "px"), ("truth_y", "px"), ("truth_z", "nm")):
        truth[name] = group.create_array(
            name, shape=(n_beads, n_frames), dtype="float64", chunks=(n_beads, step),
            dimension_names=("bead", "frame"),
        )
        truth[name].attrs["units"] = units
    path_at = _trajectories(n_frames, n_beads, roi, wander_px, z_range_nm, seed)
    off = rois if layout != "yxt" else np.zeros_like(rois)
    info = np.iinfo(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else None
    for i, start in enumerate(range(0, n_frames, step)):
        t = np.arange(start, min(start + step, n_frames))
        x, y, z = path_at(t)  # (bead, nt)
        imgs = render_beads(
            x.ravel(), y.ravel(), z.ravel(), n_pixels=roi, optics=optics, background=background,
            photons=photons, dtype="float64", seed=np.random.SeedSequence([seed, 2, i]).generate_state(1)[0],
        ).reshape(roi, roi, n_beads, t.size)  # bead-major image order
        if info is not None:
            imgs = np.clip(np.rint(imgs), info.min, info.max)
        imgs = imgs.astype(dtype)
        if layout == "tyx":
            block = np.full((t.size, *fshape), background, dtype=dtype)
            if photons is not None:  # shot noise outside the ROIs too, as render_beads draws it
                rng = np.random.default_rng(np.random.SeedSequence([seed, 3, i]))
                noise = rng.poisson(photons, block.shape) * (background / photons)
                block[...] = np.clip(np.rint(noise), info.min, info.max) if info else noise
            for b, (top, bottom, left, right) in enumerate(rois):
                block[:, top:bottom, left:right] = imgs[:, :, b, :].transpose(2, 0, 1)
            frames[start : start + t.size] = block
        elif layout == "tbyx":
            frames[start : start + t.size] = imgs.transpose(3, 2, 0, 1)
        else:
            frames[:, :, start : start + t.size] = imgs[:, :, 0, :]
        truth["truth_x"][:, start : start + t.size] = x + off[:, 2:3]
        truth["truth_y"][:, start : start + t.size] = y + off[:, 0:1]
        truth["truth_z"][:, start : start + t.size] = z
    return open_archive(group)
