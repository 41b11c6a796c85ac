"""A task's read of one whole shard: one read of the stored object, then one decode per chunk.

zarr reads a sharded array chunk by chunk, each a byte-range request of its
own plus the shard's index. A tracking task wants a whole shard, so
:func:`read_whole_shard` fetches it once, checks the index, and decodes every
chunk (Blosc, optional CRC-32C) straight into the task's frames. A chunk the
index lists as absent is an error here, not fill-value frames: the package's
writer stores every chunk of a shard, so a hole means damage (zarr would
silently read zeros).
"""

from __future__ import annotations

import os

import google_crc32c  # zarr's own, for its CRC-32C codec
import numpy as np
import zarr
from numcodecs import blosc
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec

from magtrack_dask.io.format import blosc_sizes
from magtrack_dask.io.paths import ArchiveError

__all__ = ["check_shard_indexes", "decode_blosc_chunk", "read_whole_shard", "spans_one_unit"]

_EMPTY = np.uint64(2**64 - 1)  # an index entry of a chunk that is not stored


def spans_one_unit(start: int, stop: int, unit: int, n_frames: int) -> bool:
    """Whether frames ``start .. stop - 1`` are exactly one stored chunk or shard of ``unit`` frames."""
    return start % unit == 0 and stop == min(start + unit, n_frames) and stop > start


def read_whole_shard(arr: zarr.Array, start: int, stop: int, axis: int) -> np.ndarray | None:
    """Frames ``start .. stop - 1`` along ``axis`` when they are exactly one stored shard.

    The parameters are :func:`~magtrack_dask.io.chunk_read.read_whole_chunk`'s
    with a shard for a chunk: ``arr`` sharded along ``axis`` only (Zarr v3
    ``sharding_indexed``), ``start, stop`` one shard's frame range.

    Returns
    -------
    numpy.ndarray or None
        The frames; None where this path does not apply (no sharding, other
        codecs, another range, the shard not stored, a shard index that is not
        intact): zarr then reads it and raises what it raises.

    Raises
    ------
    ArchiveError
        A chunk inside the shard is missing, fails its checksum or does not
        decode to the declared chunk size.
    """
    codec = _sharding_codec(arr, axis)
    unit = None if codec is None else arr.shards[axis]
    if unit is None or not spans_one_unit(start, stop, unit, arr.shape[axis]):
        return None
    data = _get(arr, start // unit, axis)
    if data is None:
        return None
    index = _index(data, codec, -(-unit // arr.chunks[axis]))
    if index is None:
        return None
    out = np.empty(tuple(stop - start if i == axis else s for i, s in enumerate(arr.shape)), dtype=arr.dtype)
    step = arr.chunks[axis]
    chunk = np.empty(arr.chunks, dtype=arr.dtype)
    has_crc = len(codec.codecs) == 3
    for j, first in enumerate(range(0, stop - start, step)):
        offset, nbytes = index[j]
        where = f"{arr.path or 'array'}: frames {start + first}-{min(start + first + step, stop) - 1}"
        if offset == _EMPTY and nbytes == _EMPTY:
            raise ArchiveError(f"{where}: the chunk is missing from its shard (damaged or partly written)")
        if int(offset) + int(nbytes) > len(data):
            raise ArchiveError(f"{where}: the shard's index points past its end (truncated shard)")
        body = np.frombuffer(data, dtype=np.uint8, count=int(nbytes), offset=int(offset))
        n = min(step, stop - start - first)
        target = out[_frames(slice(first, first + n), arr.ndim, axis)]
        dest = target if n == step and target.flags.c_contiguous else chunk
        wrong = decode_blosc_chunk(body, dest, has_crc)
        if wrong:
            raise ArchiveError(f"{where}: the chunk {wrong}")
        if dest is chunk:
            target[...] = chunk[_frames(slice(0, n), arr.ndim, axis)]
    return out


def decode_blosc_chunk(body: np.ndarray, dest: np.ndarray, has_crc: bool) -> str | None:
    """Decode one stored chunk (Blosc, then an optional CRC-32C trailer) into ``dest``.

    Parameters
    ----------
    body : uint8 ndarray
        The stored bytes (a view, as zarr hands them to the codecs).
    dest : ndarray
        C-contiguous, of the chunk's declared shape and dtype.
    has_crc : bool
        The last 4 bytes are a CRC-32C of the rest.

    Returns
    -------
    str or None
        None when ``dest`` holds the chunk; else what is wrong with it.
    """
    if has_crc:
        body, stored = body[:-4], bytes(body[-4:])
        if np.uint32(google_crc32c.value(body)).tobytes() != stored:  # as zarr compares them
            return "fails its CRC-32C checksum (damaged bytes)"
    # Blosc fills a larger destination without a word: the sizes must agree first.
    if blosc_sizes(body[:16].tobytes()) != (dest.nbytes, body.size):
        return f"does not hold the declared {dest.shape} {dest.dtype}"
    try:
        blosc.decompress(body, dest)
    except (RuntimeError, ValueError, TypeError) as err:
        return f"does not decode: {err}"
    return None


def check_shard_indexes(arr: zarr.Array, start: int, stop: int, axis: int) -> None:
    """ArchiveError when a chunk holding frames ``start .. stop - 1`` is absent from its stored shard.

    For sharded arrays that :func:`read_whole_shard` leaves to zarr (other
    codecs, stores or ranges): zarr would read such a chunk as fill values.
    Shards that are not stored, or whose index is not intact, are left to the
    caller and to zarr.
    """
    if arr.shards is None or len(arr.metadata.codecs) != 1 or not isinstance(arr.metadata.codecs[0], ShardingCodec):
        return
    codec = arr.metadata.codecs[0]
    unit, step = arr.shards[axis], arr.chunks[axis]
    for i in range(start // unit, -(-stop // unit)):
        data = _get(arr, i, axis)
        index = None if data is None else _index(data, codec, -(-unit // step))
        if index is None:
            continue
        for j in range(unit // step):
            first = i * unit + j * step
            if first < stop and first + step > start and first < arr.shape[axis] and (index[j] == _EMPTY).all():
                raise ArchiveError(f"{arr.path or 'array'}: frames {first}-{min(first + step, arr.shape[axis]) - 1}: "
                                   "the chunk is missing from its shard (damaged or partly written)")


def _frames(sl: slice, ndim: int, axis: int) -> tuple:
    return tuple(sl if i == axis else slice(None) for i in range(ndim))


def _get(arr: zarr.Array, index: int, axis: int) -> bytes | None:
    """The stored bytes of the ``index``-th shard, or None when it is not stored."""
    key = arr.metadata.encode_chunk_key(tuple(index if i == axis else 0 for i in range(arr.ndim)))
    key = f"{arr.store_path.path}/{key}" if arr.store_path.path else key
    store = arr.store_path.store
    root = getattr(store, "root", None)
    if root is not None and type(store).__name__ == "LocalStore":
        try:
            with open(os.path.join(os.fspath(root), key), "rb") as f:
                return f.read()
        except OSError:
            return None
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def _index(data: bytes, codec: ShardingCodec, n_chunks: int) -> np.ndarray | None:
    """``(n_chunks, 2)`` uint64 ``(offset, nbytes)`` of the shard's chunks along frames, or None."""
    has_crc = len(codec.index_codecs) == 2
    size = 16 * n_chunks + 4 * has_crc
    if len(data) < size:
        return None
    at_end = codec.index_location.value == "end"
    raw = data[-size:] if at_end else data[:size]
    body = raw[:-4] if has_crc else raw
    if has_crc and np.uint32(google_crc32c.value(body)).tobytes() != raw[-4:]:
        return None
    return np.frombuffer(body, dtype="<u8").reshape(n_chunks, 2)


def _sharding_codec(arr: zarr.Array, axis: int) -> ShardingCodec | None:
    """The sharding codec when shards and chunks split ``axis`` only and hold
    [bytes, Blosc(, CRC-32C)] chunks with a [bytes(, CRC-32C)] index; else None."""
    if arr.metadata.zarr_format != 3 or arr.shards is None:
        return None
    codecs = list(arr.metadata.codecs)
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    codec = codecs[0]
    for unit in (arr.shards, arr.chunks):
        if any(c != s for i, (c, s) in enumerate(zip(unit, arr.shape)) if i != axis):
            return None
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "uif" or not dtype.isnative or (dtype.itemsize > 1 and not np.little_endian):
        return None
    inner = list(codec.codecs)
    if len(inner) not in (2, 3) or not isinstance(inner[0], BytesCodec) or not isinstance(inner[1], BloscCodec):
        return None
    if len(inner) == 3 and not isinstance(inner[2], Crc32cCodec):
        return None
    if dtype.itemsize > 1 and (inner[0].endian is None or inner[0].endian.value != "little"):
        return None
    index = list(codec.index_codecs)
    if not index or not isinstance(index[0], BytesCodec) or (index[0].endian and index[0].endian.value != "little"):
        return None
    if len(index) > 2 or (len(index) == 2 and not isinstance(index[1], Crc32cCodec)):
        return None
    return codec
