"""Writing an archive's frames: in order, one whole shard at a time.

zarr writes part of a shard by reading the shard, changing it and writing it
back; two writers doing so at once, or one killed half way, lose frames
without a word. :class:`ShardWriter` therefore buffers frames until a whole
shard (a whole chunk, unsharded) is filled and only ever writes whole shards,
each once, from the one process that holds the writer. A shard on disk is
then complete, which is what lets an interrupted import resume at the first
shard that is missing (:func:`first_missing_shard`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import zarr

from magtrack_dask.io.format import STORED_NBYTES
from magtrack_dask.validation import InputError

__all__ = ["ShardWriter", "first_missing_shard", "stored_object_size"]


class ShardWriter:
    """Append frames to an image array; every write covers one whole shard.

    Use it as a context manager (or call :meth:`close`): the last, partly
    filled shard is written on a clean exit only, so an exception never leaves
    a shard on disk that holds fewer frames than its place in the array.

    Parameters
    ----------
    arr : zarr.Array
        The image array, chunked (and sharded) along ``frame_axis`` only.
    frame_axis : int
        Its frame axis.
    start : int, optional
        First frame to write: 0, or the start of a shard when an interrupted
        write is resumed (:func:`first_missing_shard`).
    stop : int, optional
        End of the frames this writer writes: a shard boundary, or (default)
        the array's end. Writers of different shard ranges may run at once.
    progress : callable, optional
        ``progress(n_shards_written, n_shards, n_frames_written)`` after each shard.
    record_size : bool, optional
        Record the stored size (below) when the last frame is written; default True.

    Notes
    -----
    Every chunk is stored, even one of fill values only (zarr would skip it,
    and a dark chunk would read as a missing one). When the last frame is
    written, the bytes the array takes in the store are recorded in its
    attribute ``frames_nbytes_stored``, so that describing the archive lists
    nothing.
    """

    def __init__(self, arr: zarr.Array, frame_axis: int, *, start: int = 0, stop: int | None = None,
                 progress: Callable[[int, int, int], None] | None = None, record_size: bool = True):
        self.arr = arr.with_config({"write_empty_chunks": True})
        self.axis = int(frame_axis)
        self.step = int((arr.shards or arr.chunks)[self.axis])
        self.n_frames = int(arr.shape[self.axis])
        self.stop = self.n_frames if stop is None else int(stop)
        for name, value in (("start", start), ("stop", self.stop)):
            if (value % self.step and value != self.n_frames) or not 0 <= value <= self.n_frames:
                raise InputError(f"{name}: expected the first frame of a shard (a multiple of {self.step}) "
                                 f"or the array's end, within 0..{self.n_frames}; got {value}")
        if self.stop < start:
            raise InputError(f"stop ({self.stop}) is before start ({start})")
        self.n_shards = -(-self.n_frames // self.step)
        shape = list(arr.shape)
        shape[self.axis] = self.step
        self.buf = np.empty(shape, dtype=arr.dtype)
        self.filled = 0
        self.start = self.written = int(start)
        self.nbytes = 0  # stored bytes of the shards this writer wrote
        self.progress = progress
        self.closed = False
        self.record_size = record_size
        if record_size and STORED_NBYTES in arr.attrs:  # stale until the last frame is written
            del self.arr.attrs[STORED_NBYTES]
        if progress:
            progress(self.written // self.step, self.n_shards, self.written)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.closed = True  # the partly filled shard is dropped, never written

    def _frames(self, sl: slice, ndim: int) -> tuple:
        return tuple(sl if i == self.axis else slice(None) for i in range(ndim))

    def append(self, frames) -> None:
        """Add frames after those written so far (``frames`` in the array's axis order)."""
        if self.closed:
            raise InputError("frames: the writer is closed")
        frames = np.asarray(frames)
        n = frames.shape[self.axis]
        expected = self.buf.shape[: self.axis] + self.buf.shape[self.axis + 1 :]
        if frames.ndim != self.buf.ndim or frames.shape[: self.axis] + frames.shape[self.axis + 1 :] != expected:
            raise InputError(f"frames: expected shape {self.buf.shape} with any number of frames along axis "
                             f"{self.axis}; got {frames.shape}")
        if self.written + self.filled + n > self.stop:
            raise InputError(f"frames: would write up to frame {self.written + self.filled + n}; this writer "
                             f"ends at {self.stop}")
        i = 0
        while i < n:
            take = min(self.step - self.filled, n - i)
            self.buf[self._frames(slice(self.filled, self.filled + take), self.buf.ndim)] = \
                frames[self._frames(slice(i, i + take), frames.ndim)]
            self.filled += take
            i += take
            if self.filled == self.step:
                self._flush()

    def close(self) -> None:
        """Write the last shard (it may end with the array) and record the stored size."""
        if self.closed:
            return
        if self.filled:
            if self.written + self.filled != self.n_frames:
                self.closed = True
                raise InputError(f"frames: {self.written + self.filled} of {self.n_frames} frames given; only "
                                 "the array's last shard may be partly filled (resume the write later)")
            self._flush()
        self.closed = True
        if self.record_size and self.written == self.n_frames and self.stop == self.n_frames:
            before = sum(stored_object_size(self.arr, i) for i in range(self.start // self.step))
            self.arr.attrs[STORED_NBYTES] = int(before + self.nbytes)

    def _flush(self) -> None:
        n = self.filled
        sl = self._frames(slice(self.written, self.written + n), self.arr.ndim)
        self.arr[sl] = self.buf[self._frames(slice(0, n), self.buf.ndim)]
        if self.record_size:
            self.nbytes += stored_object_size(self.arr, self.written // self.step)
        self.written += n
        self.filled = 0
        if self.progress:
            self.progress(-(-self.written // self.step), self.n_shards, self.written)


def _shard_key(arr: zarr.Array, index: int, axis: int) -> str:
    """Store key of the ``index``-th shard (chunk, unsharded) along ``axis``."""
    key = arr.metadata.encode_chunk_key(tuple(index if i == axis else 0 for i in range(arr.ndim)))
    prefix = arr.store_path.path
    return f"{prefix}/{key}" if prefix else key


def _frame_axis(arr: zarr.Array) -> int:
    unit = arr.shards or arr.chunks
    split = [i for i, (s, c) in enumerate(zip(arr.shape, unit)) if c < s]
    return split[0] if split else 0


def stored_object_size(arr: zarr.Array, index: int) -> int:
    """Bytes of the ``index``-th shard (chunk) of an array chunked along one axis; 0 when missing."""
    from magtrack_dask.io.integrity import object_size

    return object_size(arr.store_path.store, _shard_key(arr, index, _frame_axis(arr)))


def first_missing_shard(arr: zarr.Array, frame_axis: int) -> int:
    """Index of the first shard (chunk, unsharded) along ``frame_axis`` not in the store.

    A :class:`ShardWriter` writes shards in order and each one whole, so the
    shards before it are complete. Equals the number of shards when none is missing.
    """
    from magtrack_dask.io.integrity import object_exists

    step = (arr.shards or arr.chunks)[frame_axis]
    n = -(-arr.shape[frame_axis] // step)
    store = arr.store_path.store
    for i in range(n):
        if not object_exists(store, _shard_key(arr, i, frame_axis)):
            return i
    return n
