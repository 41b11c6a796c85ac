"""Read frames of an archive's image array: one whole stored chunk (or shard) straight into NumPy.

A tracking task reads exactly one chunk, or one shard, of frames
(:func:`read_frames`); a shard is read once and decoded chunk by chunk
(:func:`~magtrack_dask.io.shard_read.read_whole_shard`). zarr's
own read decodes it into a chunk buffer of its own on another thread and then
copies it into the result; for the chunks this package writes (a local store,
Blosc, an optional CRC-32C checksum, no sharding) :func:`read_whole_chunk`
reads the file, checks the checksum and decodes into the result directly,
which saves that copy and thread hop on every task (measured in
benchmarks/README.md). Anything else -- other stores, codecs or layouts, a
damaged chunk -- is left to zarr, which then reads it (and raises what it
raises for a damaged chunk). A chunk or shard missing from the store is an
:class:`~magtrack_dask.io.paths.ArchiveError`, not fill-value frames: opening
an archive looks for a sample of its chunks only.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec
from zarr.storage import LocalStore

from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.io.shard_read import check_shard_indexes, decode_blosc_chunk, read_whole_shard, spans_one_unit

__all__ = ["read_frames", "read_whole_chunk"]

_RESHAPE = re.compile(r"cannot reshape array of size (\d+) into shape")


def read_frames(arr: zarr.Array, start: int, stop: int, axis: int) -> np.ndarray:
    """Read frames ``start .. stop - 1`` of an image array.

    A chunk whose decoded size disagrees with the declared dtype and chunk
    shape raises :class:`ArchiveError` naming the array, the chunk and the
    sizes, instead of zarr's bare reshape error. The check costs nothing on
    the normal path: the chunks are only looked at again after a failure.
    A range that is exactly one stored chunk of a local Blosc array, or one
    shard of a sharded Blosc array (what a tracking task reads), is decoded
    straight into the result (:func:`read_whole_chunk`,
    :func:`~magtrack_dask.io.shard_read.read_whole_shard`); anything else,
    and any chunk that path cannot vouch for, is read by zarr. A chunk or
    shard of the range missing from the store raises :class:`ArchiveError`.

    Parameters
    ----------
    arr : zarr.Array
        Chunked along ``axis`` only.
    start, stop : int
        Frame range.
    axis : int
        The frame axis.

    Returns
    -------
    numpy.ndarray
        ``arr``'s shape with ``stop - start`` frames along ``axis``.
    """
    read_whole = read_whole_chunk if arr.shards is None else read_whole_shard
    block = read_whole(arr, int(start), int(stop), axis)  # a task's usual read: one whole chunk (shard)
    if block is not None:
        return block
    _check_stored(arr, int(start), int(stop), axis)
    check_shard_indexes(arr, int(start), int(stop), axis)
    sl = tuple(slice(int(start), int(stop)) if i == axis else slice(None) for i in range(arr.ndim))
    try:
        return arr[sl]
    except ValueError as err:
        if not _RESHAPE.search(str(err)):
            raise
        failure = err
    _raise_bad_chunk(arr, int(start), int(stop), axis)
    raise failure


def _check_stored(arr: zarr.Array, start: int, stop: int, axis: int) -> None:
    """ArchiveError when a chunk (shard) holding frames ``start .. stop - 1`` is not in the store."""
    from magtrack_dask.io.integrity import object_exists  # integrity reads Blosc headers with this module

    unit = (arr.shards or arr.chunks)[axis]
    store, prefix = arr.store_path.store, arr.store_path.path
    for i in range(start // unit, -(-stop // unit)):
        key = arr.metadata.encode_chunk_key(tuple(i if j == axis else 0 for j in range(arr.ndim)))
        if not object_exists(store, f"{prefix}/{key}" if prefix else key):
            raise ArchiveError(f"{arr.path or 'array'}: the {'shard' if arr.shards else 'chunk'} holding frames "
                               f"{i * unit}-{min((i + 1) * unit, arr.shape[axis]) - 1} is missing from the store")


def _raise_bad_chunk(arr: zarr.Array, start: int, stop: int, axis: int) -> None:
    """Read the chunks of ``start .. stop - 1`` one at a time (only after a failure) and
    raise an :class:`ArchiveError` for the first whose size disagrees with zarr.json."""
    unit = (arr.shards or arr.chunks)[axis]
    for first in range(start - start % unit, stop, unit):
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


def read_whole_chunk(arr: zarr.Array, start: int, stop: int, axis: int) -> np.ndarray | None:
    """Frames ``start .. stop - 1`` along ``axis`` when they are exactly one stored chunk.

    Parameters
    ----------
    arr : zarr.Array
        Chunked along ``axis`` only.
    start, stop : int
        A chunk's frame range: ``start`` on a chunk boundary, ``stop`` the
        chunk's end (or the array's, for the last chunk).
    axis : int
        The frame axis.

    Returns
    -------
    numpy.ndarray or None
        The frames, or None where this path does not apply or the chunk is
        missing, fails its checksum or does not decode to the declared size.
    """
    codecs = _blosc_codecs(arr, axis)
    unit = arr.chunks[axis]
    if codecs is None or not spans_one_unit(start, stop, unit, arr.shape[axis]):
        return None
    coords = tuple(start // unit if i == axis else 0 for i in range(arr.ndim))
    path = os.path.join(os.fspath(arr.store.root), arr.path, arr.metadata.encode_chunk_key(coords))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:  # missing (fill value) or unreadable: zarr decides
        return None
    chunk = np.empty(arr.chunks, dtype=arr.dtype)
    if decode_blosc_chunk(np.frombuffer(data, dtype=np.uint8), chunk, isinstance(codecs[-1], Crc32cCodec)):
        return None  # damaged: zarr reads it again and raises
    if stop - start == unit:
        return chunk
    return chunk[tuple(slice(0, stop - start) if i == axis else slice(None) for i in range(arr.ndim))]


def _blosc_codecs(arr: zarr.Array, axis: int) -> list | None:
    """The codecs of ``arr`` when they are [bytes, Blosc(, CRC-32C)] on a local,
    unsharded Zarr v3 array chunked along ``axis`` only; else None."""
    if type(arr.store) is not LocalStore or arr.metadata.zarr_format != 3 or arr.shards is not None:
        return None
    if any(c != s for i, (c, s) in enumerate(zip(arr.chunks, arr.shape)) if i != axis):
        return None
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "uif" or not dtype.isnative:
        return None
    codecs = list(arr.metadata.codecs)
    if len(codecs) not in (2, 3) or not isinstance(codecs[0], BytesCodec) or not isinstance(codecs[1], BloscCodec):
        return None
    if len(codecs) == 3 and not isinstance(codecs[2], Crc32cCodec):
        return None
    endian = codecs[0].endian
    if dtype.itemsize > 1 and (endian is None or endian.value != "little" or not np.little_endian):
        return None
    return codecs
