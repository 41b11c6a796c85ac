"""read_frames and read_whole_chunk (magtrack_dask.io.chunk_read): one stored chunk decoded straight into an
array, or None for zarr to read.

Real archives on disk in each layout; damaged, missing and foreign chunks.
"""

import os

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import LocalStore, WrapperStore

from magtrack_dask.io.archive import create_archive
from magtrack_dask.io.chunk_read import read_frames, read_whole_chunk
from magtrack_dask.io.paths import ArchiveError

N_FRAMES, CHUNK = 23, 5  # the last chunk holds 3 frames
SHAPES = {"tyx": (N_FRAMES, 12, 14), "tbyx": (N_FRAMES, 2, 8, 8), "yxt": (8, 8, N_FRAMES)}
AXIS = {"tyx": 0, "tbyx": 0, "yxt": 2}


def _archive(tmp_path, layout="tyx", dtype=np.uint16, **kwargs):
    """An unsharded archive of CHUNK-frame chunks (sharded ones: test_shard_read.py)."""
    data = np.random.default_rng(1).integers(0, 4000, SHAPES[layout]).astype(dtype)
    rois = np.array([[0, 8, 0, 8], [4, 12, 6, 14]]) if layout == "tyx" else None
    kwargs.setdefault("shard_frames", 0)
    group = create_archive(tmp_path / f"{layout}.zarr", data, layout=layout, rois=rois, chunk_frames=CHUNK, **kwargs)
    return group["frames"], data


def _frames(data, axis, start, stop):
    return data[tuple(slice(start, stop) if i == axis else slice(None) for i in range(data.ndim))]


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32])
def test_every_chunk_equals_the_data(tmp_path, layout, dtype):
    arr, data = _archive(tmp_path, layout, dtype)
    axis = AXIS[layout]
    for start in range(0, N_FRAMES, CHUNK):
        stop = min(start + CHUNK, N_FRAMES)
        block = read_whole_chunk(arr, start, stop, axis)
        assert block is not None, (start, stop)  # the direct path was taken
        np.testing.assert_array_equal(block, _frames(data, axis, start, stop))
        assert block.dtype == data.dtype
        np.testing.assert_array_equal(read_frames(arr, start, stop, axis), block)


@pytest.mark.parametrize(("start", "stop"), [(0, 4), (1, 6), (0, 10), (20, 22), (20, 25)])
def test_ranges_other_than_one_chunk_are_left_to_zarr(tmp_path, start, stop):
    arr, data = _archive(tmp_path)
    assert read_whole_chunk(arr, start, stop, 0) is None
    np.testing.assert_array_equal(read_frames(arr, start, min(stop, N_FRAMES), 0), data[start:stop])


def test_a_damaged_chunk_is_left_to_zarr_and_raises_there(tmp_path):
    arr, _ = _archive(tmp_path)
    path = os.path.join(arr.store.root, arr.path, "c", "1", "0", "0")
    with open(path, "r+b") as f:  # mid-chunk bytes: only the CRC-32C trailer tells
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xff" * 8)
    assert read_whole_chunk(arr, 5, 10, 0) is None
    with pytest.raises(ValueError, match="checksum"):
        read_frames(arr, 5, 10, 0)


def test_a_chunk_whose_header_disagrees_is_left_to_zarr(tmp_path):
    """Blosc fills a larger destination silently: the header's sizes are checked first."""
    arr, data = _archive(tmp_path, compressors=(BloscCodec(cname="zstd", clevel=1),))  # no checksum
    path = os.path.join(arr.store.root, arr.path, "c", "0", "0", "0")
    short = np.random.default_rng(2).integers(0, 10, (CHUNK - 1, 12, 14)).astype(np.uint16)
    with open(path, "wb") as f:  # a chunk of 4 frames where 5 are declared
        f.write(BloscCodec(cname="zstd", clevel=1, typesize=2)._blosc_codec.encode(short))
    assert read_whole_chunk(arr, 0, 5, 0) is None
    np.testing.assert_array_equal(read_whole_chunk(arr, 5, 10, 0), data[5:10])  # the others still direct


def test_a_missing_chunk_is_an_archive_error_not_fill_values(tmp_path):
    arr, data = _archive(tmp_path)
    os.unlink(os.path.join(arr.store.root, arr.path, "c", "2", "0", "0"))
    assert read_whole_chunk(arr, 10, 15, 0) is None
    with pytest.raises(ArchiveError, match="frames 10-14 is missing from the store"):
        read_frames(arr, 10, 15, 0)  # zarr would read its fill value
    with pytest.raises(ArchiveError, match="frames 10-14 is missing"):
        read_frames(arr, 8, 12, 0)  # a range zarr reads
    np.testing.assert_array_equal(read_frames(arr, 15, 20, 0), data[15:20])


def test_other_codecs_and_stores_are_left_to_zarr(tmp_path):
    arr, data = _archive(tmp_path, compressors=(ZstdCodec(),))
    assert read_whole_chunk(arr, 0, 5, 0) is None
    np.testing.assert_array_equal(read_frames(arr, 0, 5, 0), data[:5])

    arr, data = _archive(tmp_path / "plain", compressors=None)
    assert read_whole_chunk(arr, 0, 5, 0) is None

    arr, data = _archive(tmp_path / "wrapped")
    wrapped = zarr.open_group(WrapperStore(LocalStore(arr.store.root)), mode="r")["frames"]
    assert read_whole_chunk(wrapped, 0, 5, 0) is None
    np.testing.assert_array_equal(read_frames(wrapped, 0, 5, 0), data[:5])

    arr, data = _archive(tmp_path / "sharded", shard_frames=2 * CHUNK)
    assert read_whole_chunk(arr, 0, 5, 0) is None
    np.testing.assert_array_equal(read_frames(arr, 0, 5, 0), data[:5])
