"""Does an archive hold what its metadata says? Checks before any pixel is tracked.

Archives written elsewhere, copied in part or edited by hand can disagree with
themselves: a layout attribute that does not fit the array, an ROI table
outside the frame, fewer chunks on disk than the shape declares (zarr reads the
missing ones as fill-value frames), chunks written as another dtype. These
checks find that from the metadata and one small read, and name what
disagrees (:class:`~magtrack_dask.io.paths.ArchiveError`). The temporary files
of chunk writes that never finished are found here too.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from magtrack_dask.io.chunk_read import blosc_sizes
from magtrack_dask.io.format import CALIBRATION_Z, FORMAT_VERSION, TIMESTAMPS, TRUTH
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.io.rois import check_rois
from magtrack_dask.validation import InputTypeError, check_positive

__all__ = [
    "UNFINISHED_WRITE",
    "check_archive_metadata",
    "check_frame_chunks",
    "remove_unfinished_writes",
    "stored_nbytes",
]

#: zarr's LocalStore writes a chunk to "<key>.<uuid4 hex>.partial" and then renames it.
UNFINISHED_WRITE = re.compile(r"\.[0-9a-f]{32}\.partial$")


# -- metadata against itself ---------------------------------------------------------


def check_archive_metadata(group: zarr.Group, arr, layout: Layout, attrs: dict[str, Any]) -> None:
    """Cheap checks of an archive's metadata against itself; no chunk is read.

    Parameters
    ----------
    group : zarr.Group
        The archive.
    arr : zarr.Array or zarr.Group
        Its ``frames`` node.
    layout : Layout
        The ``layout`` attribute, parsed.
    attrs : dict
        The group attributes.

    Raises
    ------
    ArchiveError
        A newer format version, a ``frames`` node or ``rois`` table of the wrong
        kind or shape, dimension names or a Blosc value size that disagree, a
        non-positive pixel size or frame rate, per-frame arrays of another length.
    InputTypeError
        ``frames`` does not hold integer or float pixels.
    """
    _check_frames_array(arr, layout, attrs)
    n_beads = None if layout.full_frames else layout.n_beads(arr.shape)
    if "rois" in group:
        n_beads = _check_roi_table(group["rois"], arr, layout, n_beads)
    _check_per_frame_arrays(group, layout.n_frames(arr.shape), n_beads)
    _check_codec_value_size(arr)


def _check_frames_array(arr, layout: Layout, attrs: dict[str, Any]) -> None:
    version = attrs.get("magtrack_dask_archive")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ArchiveError(f"archive format version {version} is newer than this magtrack-dask reads "
                           f"({FORMAT_VERSION}); upgrade magtrack-dask")
    if not isinstance(arr, zarr.Array):
        raise ArchiveError("archive 'frames' is a group; expected the image array")
    dims = layout.dims
    if arr.ndim != len(dims):
        raise ArchiveError(f"archive attribute layout={layout!r} means a {len(dims)}-D frames array {dims}, "
                           f"but 'frames' has shape {tuple(arr.shape)}")
    names = tuple(arr.metadata.dimension_names or ())
    if sorted(n for n in names if n) == sorted(dims) and names != dims:
        raise ArchiveError(f"frames: dimension_names {names} disagree with the archive attribute "
                           f"layout={layout!r} {dims}")
    if np.dtype(arr.dtype).kind not in "uif":
        raise InputTypeError(f"frames: dtype {arr.dtype} is not a pixel type; expected integers or floats")
    if not layout.full_frames:
        height, width = layout.image_shape(arr.shape)
        if height != width:
            raise ArchiveError(f"frames: layout {layout!r} holds square ROIs, but its images are "
                               f"{height} x {width} px")
    for name, what in (("pixel_size_nm", "nm per pixel"), ("frame_rate_hz", "frames per second")):
        if attrs.get(name) is not None:
            try:
                check_positive(attrs[name], name, what)
            except ValueError as err:
                raise ArchiveError(f"archive attribute {err}") from None


def _check_roi_table(table, arr, layout: Layout, n_beads: int | None) -> int:
    """Check the ``rois`` node against the frames; return the number of beads."""
    if not isinstance(table, zarr.Array):
        raise ArchiveError("archive 'rois' is a group; expected an (n_beads, 4) table")
    try:
        rois = check_rois(table[...], layout.image_shape(arr.shape) if layout.full_frames else None)
    except ValueError as err:
        raise ArchiveError(f"archive ROI table disagrees with its frames: {err}") from None
    size = int(rois[0, 1] - rois[0, 0])
    if n_beads is not None:
        roi = layout.roi_size(arr.shape)
        if len(rois) != n_beads or size != roi:
            raise ArchiveError(f"archive 'rois' has {len(rois)} ROIs of {size} px, but the {layout} frames "
                               f"{tuple(arr.shape)} hold {n_beads} beads of {roi} px")
    return len(rois)


def _check_per_frame_arrays(group: zarr.Group, n_frames: int, n_beads: int | None) -> None:
    """``timestamps``/``calibration_z`` hold one value per frame, the truth one per bead and frame."""
    for name in (TIMESTAMPS, CALIBRATION_Z):
        if name in group and tuple(getattr(group[name], "shape", ())) != (n_frames,):
            raise ArchiveError(f"archive {name!r} has shape {tuple(getattr(group[name], 'shape', ()))}, "
                               f"expected ({n_frames},): one value per frame")
    for name in TRUTH:
        if name in group:
            shape = tuple(getattr(group[name], "shape", ()))
            if len(shape) != 2 or shape[1] != n_frames or (n_beads is not None and shape[0] != n_beads):
                raise ArchiveError(f"archive {name!r} has shape {shape}, expected "
                                   f"({'n_beads' if n_beads is None else n_beads}, {n_frames}): (bead, frame)")


def _check_codec_value_size(arr) -> None:
    """A Blosc codec set up for another value size means chunks written as another dtype."""
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


# -- metadata against the stored chunks ----------------------------------------------


def check_frame_chunks(arr: zarr.Array) -> None:
    """Check that the stored chunks of an image array agree with its metadata.

    Every chunk (shard) of the declared shape must exist: zarr reads a missing
    one as fill-value frames. When the chunks are Blosc-compressed, the first
    chunk's header must give the declared chunk size and value size. Costs one
    ``stat`` per chunk on a local store, one listing of the array's keys
    elsewhere, and a 16-byte read.

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
    total = math.prod(_grid(arr))
    # Streamed, never a list of every key: that list alone would grow with the archive.
    absent = [] if _all_listed(store, arr, total) else _missing_keys(store, f"{prefix}/" if prefix else "",
                                                                      _chunk_keys(arr))
    # The first stored chunk's size first: a declared chunk_shape or data_type that
    # disagrees with the encoded chunks also shows as missing keys.
    gone = {k for _, k in absent}
    first = next(((c, k) for c, k in _chunk_keys(arr) if k not in gone), None)
    if first is not None and arr.shards is None:
        _check_chunk_size(arr, store, *first)
    missing = [c for c, _ in absent]
    if missing:
        listed = ", ".join(f"{'/'.join(map(str, c))} ({_frames_of(arr, c)})" for c in missing[:3])
        raise ArchiveError(
            f"{name}: {len(missing)} of {total} chunks declared by its shape {tuple(arr.shape)} are missing "
            f"from the store (chunk {listed}{', ...' if len(missing) > 3 else ''}); zarr would read them as "
            f"fill-value ({arr.fill_value}) frames. The archive is incomplete or its shape is larger than the "
            "data written; open_archive(..., check=False) reads it anyway")


def _grid(arr) -> tuple[int, ...]:
    unit = arr.shards or arr.chunks
    return tuple(-(-s // c) for s, c in zip(arr.shape, unit))


def _all_listed(store, arr, total: int) -> bool:
    """Whether a listed (not local) store holds all ``total`` chunk keys of ``arr``, counted as they stream by.

    True only when the count is complete; False (look key by key) otherwise and for local stores.
    """
    pattern = _key_pattern(arr)
    if _local_root(store) is not None or pattern is None:
        return False
    prefix = arr.store_path.path
    return _store_call(_count_chunk_keys(store, f"{prefix}/" if prefix else "", *pattern)) == total


async def _count_chunk_keys(store, head: str, before: str, after: str, n_keys: int) -> int:
    """Stored keys under ``head`` of the form ``before + index + after``, index < ``n_keys``."""
    n = 0
    async for key in store.list_prefix(head):
        if key.startswith(before) and key.endswith(after):
            index = key[len(before) : len(key) - len(after)]
            n += index.isdigit() and int(index) < n_keys and str(int(index)) == index
    return n


def _key_pattern(arr) -> tuple[str, str, int] | None:
    """``(before, after, n)``: the store keys are ``before + str(i) + after`` for i < n, when the array
    is split along one axis only (the frames); else None."""
    grid = _grid(arr)
    split = [i for i, g in enumerate(grid) if g > 1]
    if len(split) != 1:
        return None
    ax = split[0]
    encode = arr.metadata.encode_chunk_key
    a, b = encode(tuple(0 for _ in grid)), encode(tuple(7 if i == ax else 0 for i in range(len(grid))))
    i = next((j for j, (p, q) in enumerate(zip(a, b)) if p != q), None)
    if i is None or a[:i] + "7" + a[i + 1 :] != b:
        return None
    prefix = arr.store_path.path
    return (f"{prefix}/" if prefix else "") + a[:i], a[i + 1 :], grid[ax]


def _chunk_keys(arr):
    """(coords, store key) of every stored object (chunk, or shard) of an array, in grid order."""
    grid = _grid(arr)
    pattern = _key_pattern(arr)
    if pattern is not None:  # split along frames only: the keys differ in one number, made as strings
        before, after, n_keys = pattern
        ax = next(i for i, g in enumerate(grid) if g > 1)
        coords = [0] * len(grid)
        for n in range(n_keys):
            coords[ax] = n
            yield tuple(coords), f"{before}{n}{after}"
        return
    prefix = arr.store_path.path
    for coords in np.ndindex(*grid):
        yield coords, (f"{prefix}/" if prefix else "") + arr.metadata.encode_chunk_key(coords)


#: Stored objects (chunks or shards) that :func:`stored_nbytes` sizes one by one; beyond
#: this many it sizes an even sample, so that describing an archive never lists the store.
SIZE_SAMPLE = 32


def stored_nbytes(arr: zarr.Array, sample: int = SIZE_SAMPLE) -> tuple[int, int, int]:
    """Bytes an array's chunks take in the store, from at most ``sample`` of them.

    zarr's ``nbytes_stored`` lists and sizes every object of the array, which
    grows with the archive; this asks the store for the size of ``sample``
    objects spread evenly over the chunk grid (the first and the last among
    them) and scales their total to the whole grid. Missing objects count as 0.

    Returns
    -------
    nbytes : int
        Exact when ``sized == total``, else an estimate.
    sized, total : int
        Objects sized, and objects the array's shape declares.
    """
    unit = arr.shards or arr.chunks
    grid = tuple(-(-s // c) for s, c in zip(arr.shape, unit))
    total = math.prod(grid)
    if total == 0:
        return 0, 0, 0
    flat = np.unique(np.linspace(0, total - 1, min(total, sample)).round().astype(np.int64))
    prefix = arr.store_path.path
    store = arr.store_path.store
    sizes = []
    for index in flat:
        key = arr.metadata.encode_chunk_key(tuple(int(i) for i in np.unravel_index(index, grid)))
        sizes.append(_object_size(store, f"{prefix}/{key}" if prefix else key))
    found = sum(sizes)
    nbytes = found if len(flat) == total else round(found * total / len(flat))
    return int(nbytes), len(flat), total


def _local_root(store) -> str | None:
    """The folder of a local store (asked per file with ``stat``), else None."""
    root = getattr(store, "root", None)
    return os.fspath(root) if root is not None and type(store).__name__ == "LocalStore" else None


def _object_size(store, key: str) -> int:
    root = _local_root(store)
    if root is not None:
        path = os.path.join(root, key)
        return os.path.getsize(path) if os.path.isfile(path) else 0
    try:
        return int(_store_call(store.getsize(key)))
    except FileNotFoundError:
        return 0


def _store_call(coro):
    from zarr.core.sync import sync

    return sync(coro)


async def _list_keys(store, prefix: str) -> set[str]:
    return {k async for k in store.list_prefix(prefix)}


def _missing_keys(store, prefix: str, keys: list) -> list:
    """The (coords, key) pairs of ``keys`` not in the store.

    A local store is asked one ``stat`` per key: its chunks lie in one folder
    per chunk index, and listing them is much slower. Other stores are listed.
    """
    root = _local_root(store)
    if root is not None:
        return [(c, k) for c, k in keys if not os.path.isfile(os.path.join(root, k))]
    stored = _store_call(_list_keys(store, prefix))
    return [(c, k) for c, k in keys if k not in stored]


def _frames_of(arr, coords) -> str:
    """'frames a-b' of the chunk (shard) at ``coords`` (the frame axis is the one that is split)."""
    unit = arr.shards or arr.chunks
    ax = int(np.argmax([s // c for s, c in zip(arr.shape, unit)])) if arr.ndim else 0
    start = coords[ax] * unit[ax]
    return f"frames {start}-{min(start + unit[ax], arr.shape[ax]) - 1}"


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


# -- unfinished writes ---------------------------------------------------------------


def remove_unfinished_writes(path: str, keys=None) -> int:
    """Delete the temporary files of chunk writes that never finished.

    A worker killed while writing a chunk leaves its temporary file behind
    (the chunk itself is written again when the task is retried). Call it
    only when no task writes to those keys.

    Parameters
    ----------
    path : str
        A local Zarr store.
    keys : iterable of str, optional
        Store keys (``'x/c/0/5'``) whose unfinished writes to remove: only
        their folders are listed. Default: the whole store is walked.

    Returns
    -------
    int
        How many files were removed.
    """
    if keys is None:
        found = [os.path.join(folder, name) for folder, _, files in os.walk(path) for name in files
                 if UNFINISHED_WRITE.search(name)]
    else:
        by_folder: dict[str, set[str]] = {}
        for key in keys:
            folder, _, name = key.rpartition("/")
            by_folder.setdefault(os.path.join(path, folder), set()).add(name)
        found = []
        for folder, names in by_folder.items():
            try:
                entries = os.scandir(folder)
            except FileNotFoundError:  # nothing written there yet
                continue
            with entries:
                found += [e.path for e in entries if UNFINISHED_WRITE.search(e.name)
                          and UNFINISHED_WRITE.sub("", e.name) in names]
    for file in found:
        os.unlink(file)
    return len(found)
