"""Sharded archives: default shard sizes, whole-shard writes (ShardWriter), whole-shard reads, resumed imports.

zarr writes part of a shard by read-modify-write, so two writers of one shard, or a writer killed half way,
lose frames silently (zarr-developers/zarr-python#3682, pydata/xarray#10831). These tests check that the
package's writer only ever writes whole shards, once each, and that what it wrote reads back exactly.
"""

import os

import numpy as np
import pytest
import tifffile
import zarr
from zarr.codecs import BloscCodec, ZstdCodec
from zarr.storage import LocalStore, WrapperStore

from magtrack_dask.io.archive import create_archive, describe_archive, frames_writer, open_archive
from magtrack_dask.io.chunk_read import read_frames
from magtrack_dask.io.format import STORED_NBYTES, auto_shard_frames
from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.io.shard_read import read_whole_shard
from magtrack_dask.io.tiff_import import import_tiff
from magtrack_dask.io.writer import ShardWriter, first_missing_shard
from magtrack_dask.validation import InputError

SHAPES = {"tyx": (45, 12, 14), "tbyx": (45, 2, 8, 8), "yxt": (8, 8, 45)}
AXIS = {"tyx": 0, "tbyx": 0, "yxt": 2}
ROIS = np.array([[0, 8, 0, 8], [4, 12, 6, 14]])


def _data(layout="tyx", dtype=np.uint16, seed=1):
    return np.random.default_rng(seed).integers(0, 4000, SHAPES[layout]).astype(dtype)


def _frames(data, axis, start, stop):
    return data[tuple(slice(start, stop) if i == axis else slice(None) for i in range(data.ndim))]


def _files(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize(
    ("chunk_frames", "frame_bytes", "n_frames", "n_beads", "expected"),
    [
        (None, 2 * 64 * 64, 10**6, 1, (128, 4096)),  # a task's ROIs in 32 chunks
        (None, 2 * 2048 * 2048, 10**6, 1, (1, 8)),  # 8 MiB frames: the 64 MiB cap
        (16, 2 * 32 * 32, 10**6, 3, (16, 512)),  # 32 chunks a shard
        (64, 2 * 32 * 32, 10**6, 3, (64, 1344)),  # a shard stays one task's worth: 4096 ROIs
        (4, 2 * 32 * 32, 10**6, 1, (4, 128)),  # 32 chunks a shard
        (16, 2 * 32 * 32, 45, 3, (16, 48)),  # never much more than the archive
        (10**5, 2 * 32 * 32, 10**6, 1, (10**5, 10**5)),  # a chunk larger than a task: one chunk a shard
    ],
)
def test_auto_shard_frames(chunk_frames, frame_bytes, n_frames, n_beads, expected):
    assert auto_shard_frames(chunk_frames, frame_bytes, n_frames, n_beads) == expected


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_archives_are_sharded_by_default_and_read_whole_shards(tmp_path, layout, dtype):
    data = _data(layout, dtype)
    group = create_archive(tmp_path / "a.zarr", data, layout=layout, rois=ROIS if layout == "tyx" else None,
                           chunk_frames=4, shard_frames=16)
    arr, axis = group["frames"], AXIS[layout]
    assert arr.shards[axis] == 16 and arr.chunks[axis] == 4
    assert len(_files(tmp_path / "a.zarr" / "frames" / "c")) == 3  # one file a shard, not 12 chunk files
    for start in (0, 16, 32):  # the last shard is short: 13 frames
        stop = min(start + 16, 45)
        block = read_whole_shard(arr, start, stop, axis)
        assert block is not None and block.dtype == data.dtype  # the direct path was taken
        np.testing.assert_array_equal(block, _frames(data, axis, start, stop))
        np.testing.assert_array_equal(read_frames(arr, start, stop, axis), block)
    assert read_whole_shard(arr, 4, 20, axis) is None  # not one shard: zarr reads it
    np.testing.assert_array_equal(read_frames(arr, 4, 20, axis), _frames(data, axis, 4, 20))
    assert open_archive(tmp_path / "a.zarr").data.chunks[axis] == (16, 16, 13)  # one task a shard


def test_default_sizes_and_unsharded_on_request(tmp_path):
    data = _data()
    arr = create_archive(tmp_path / "a.zarr", data, rois=ROIS)["frames"]
    assert arr.shards[0] >= 45 and arr.shards[0] % arr.chunks[0] == 0 and arr.chunks[0] < 45  # one shard
    plain = create_archive(tmp_path / "b.zarr", data, rois=ROIS, chunk_frames=5, shard_frames=0)["frames"]
    assert plain.shards is None and plain.chunks[0] == 5
    np.testing.assert_array_equal(read_frames(plain, 0, 45, 0), data)


def test_archives_written_elsewhere_sharded_or_not_read_as_before(tmp_path):
    data = _data()
    for i, (shards, codecs) in enumerate([((16, 12, 14), (ZstdCodec(),)), ((16, 12, 14), None),
                                          ((16, 12, 14), (BloscCodec(cname="lz4"),)), (None, (ZstdCodec(),))]):
        g = zarr.open_group(tmp_path / f"{i}.zarr", mode="w", zarr_format=3,
                            attributes={"layout": "tyx", "magtrack_dask_archive": 1})
        arr = g.create_array("frames", shape=data.shape, dtype=data.dtype, chunks=(4, 12, 14), shards=shards,
                             compressors=codecs, dimension_names=("frame", "y", "x"))
        arr[...] = data  # zarr's own write: no recorded size
        g.create_array("rois", data=ROIS)
        a = open_archive(tmp_path / f"{i}.zarr")
        np.testing.assert_array_equal(a.data.compute(), data)
        for start in range(0, 45, 16):
            np.testing.assert_array_equal(read_frames(arr, start, min(start + 16, 45), 0), data[start:start + 16])
        info = describe_archive(tmp_path / f"{i}.zarr")
        assert info["nbytes_stored_estimate"] is None and info["nbytes_stored"] > 0  # few chunks: all sized


def test_a_damaged_or_missing_chunk_inside_a_shard_is_an_archive_error(tmp_path):
    data = _data()
    arr = create_archive(tmp_path / "a.zarr", data, rois=ROIS, chunk_frames=4, shard_frames=16)["frames"]
    shard = tmp_path / "a.zarr" / "frames" / "c" / "1" / "0" / "0"
    intact = shard.read_bytes()
    damaged = bytearray(intact)
    damaged[len(damaged) // 3] ^= 0xFF  # inside a chunk: its CRC-32C tells
    shard.write_bytes(bytes(damaged))
    with pytest.raises(ArchiveError, match="frames 16-31: .*checksum|frames 2[0-9]-.*checksum"):
        read_frames(arr, 16, 32, 0)
    np.testing.assert_array_equal(read_frames(arr, 32, 45, 0), data[32:])  # the other shards are fine

    # A chunk the index lists as absent: zarr would read fill values; the writer stores every chunk.
    g = zarr.open_group(tmp_path / "b.zarr", mode="w", zarr_format=3)
    dark = data.copy()
    dark[20:24] = 0  # one all-fill chunk: zarr's default write leaves it out of the shard
    for name, codecs in (("blosc", (BloscCodec(),)), ("zstd", (ZstdCodec(),))):  # read directly, and by zarr
        holey = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(4, 12, 14), shards=(16, 12, 14),
                               compressors=codecs)
        holey[...] = dark
        with pytest.raises(ArchiveError, match=rf"{name}: frames 20-23: the chunk is missing from its shard"):
            read_frames(holey, 16, 32, 0)
        np.testing.assert_array_equal(holey[16:32], dark[16:32])  # what zarr itself reads

    shard.unlink()  # a whole shard missing
    with pytest.raises(ArchiveError, match="shard holding frames 16-31 is missing from the store"):
        read_frames(arr, 16, 32, 0)


class _Recorder(WrapperStore):
    """A local store that records the keys written."""

    def __init__(self, store, log):
        super().__init__(store)
        self.log = log

    async def set(self, key, value):
        self.log.append(key)
        await super().set(key, value)


def test_the_writer_writes_each_shard_once_whole(tmp_path):
    data = _data()
    create_archive(tmp_path / "a.zarr", shape=data.shape, rois=ROIS, chunk_frames=4, shard_frames=16)
    log = []
    group = zarr.open_group(_Recorder(LocalStore(tmp_path / "a.zarr"), log), mode="r+")
    with frames_writer(group) as writer:
        for lo in range(0, 45, 7):  # pieces that straddle shard edges
            writer.append(data[lo:lo + 7])
    shards = [k for k in log if k.startswith("frames/c/")]
    assert shards == ["frames/c/0/0/0", "frames/c/1/0/0", "frames/c/2/0/0"]  # once each, in order
    np.testing.assert_array_equal(open_archive(tmp_path / "a.zarr").data.compute(), data)
    on_disk = sum(os.path.getsize(tmp_path / "a.zarr" / "frames" / "c" / f) for f in _files(
        tmp_path / "a.zarr" / "frames" / "c"))
    assert group["frames"].attrs[STORED_NBYTES] == on_disk == describe_archive(tmp_path / "a.zarr")["nbytes_stored"]


def test_the_writer_refuses_what_would_split_a_shard(tmp_path):
    data = _data()
    arr = create_archive(tmp_path / "a.zarr", shape=data.shape, rois=ROIS, chunk_frames=4, shard_frames=16)["frames"]
    with pytest.raises(InputError, match="start: expected the first frame of a shard"):
        ShardWriter(arr, 0, start=8)
    with pytest.raises(InputError, match="stop: expected the first frame of a shard"):
        ShardWriter(arr, 0, stop=20)
    with pytest.raises(InputError, match="this writer ends at 16"):
        ShardWriter(arr, 0, stop=16).append(data[:17])
    with pytest.raises(InputError, match=r"frames: expected shape \(16, 12, 14\)"):
        ShardWriter(arr, 0).append(data[:, :6])
    writer = ShardWriter(arr, 0)
    writer.append(data[:20])
    with pytest.raises(InputError, match="only the array's last shard may be partly filled"):
        writer.close()
    assert first_missing_shard(arr, 0) == 1  # the 4 frames of shard 1 were never written
    with pytest.raises(ZeroDivisionError):
        with frames_writer(arr) as w:
            w.append(data[:20])
            1 / 0
    assert first_missing_shard(arr, 0) == 1 and STORED_NBYTES not in arr.attrs


def test_an_interrupted_import_resumes_at_the_first_missing_shard(tmp_path):
    data = _data()
    paths = [tmp_path / "a.tif", tmp_path / "b.tif"]
    tifffile.imwrite(paths[0], data[:21])  # the second file starts inside shard 1
    tifffile.imwrite(paths[1], data[21:])
    np.save(tmp_path / "rois.npy", ROIS)

    def stop_after_one_shard(done, total, n):
        if done == 1 and n == 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_tiff(paths, tmp_path / "i.zarr", rois=ROIS, chunk_frames=4, shard_frames=16, pages_per_read=5,
                    progress=stop_after_one_shard)
    arr = zarr.open_group(tmp_path / "i.zarr", mode="r")["frames"]
    assert first_missing_shard(arr, 0) == 1 and STORED_NBYTES not in arr.attrs
    with pytest.raises(ArchiveError, match="missing from the store"):
        open_archive(tmp_path / "i.zarr")  # incomplete: refused, not read as dark frames
    with pytest.raises(InputError, match="resume: .* holds another import"):
        import_tiff(paths[::-1], tmp_path / "i.zarr", rois=ROIS, resume=True)
    seen = []
    arch = import_tiff(paths, tmp_path / "i.zarr", rois=ROIS, resume=True, pages_per_read=5,
                       progress=lambda *a: seen.append(a))
    assert seen[0] == (1, 3, 16) and seen[-1] == (3, 3, 45)  # shard 0 was not read or written again
    np.testing.assert_array_equal(arch.data.compute(), data)
    import_tiff(paths, tmp_path / "ref.zarr", rois=ROIS, chunk_frames=4, shard_frames=16)
    for name in _files(tmp_path / "ref.zarr" / "frames" / "c"):  # byte for byte an uninterrupted import
        assert (tmp_path / "i.zarr" / "frames" / "c" / name).read_bytes() == \
            (tmp_path / "ref.zarr" / "frames" / "c" / name).read_bytes()
    assert describe_archive(tmp_path / "i.zarr")["nbytes_stored"] == describe_archive(tmp_path / "ref.zarr")[
        "nbytes_stored"]
    again = import_tiff(paths, tmp_path / "i.zarr", rois=ROIS, resume=True)  # nothing left: nothing written
    np.testing.assert_array_equal(again.data.compute(), data)


def test_writers_of_different_shards_run_at_once_without_loss(tmp_path):
    """Whole-shard writes never read a shard back, so writers of different shards cannot undo each other."""
    from concurrent.futures import ThreadPoolExecutor

    data = np.random.default_rng(3).integers(0, 4000, (160, 12, 14)).astype(np.uint16)
    group = create_archive(tmp_path / "a.zarr", shape=data.shape, rois=ROIS, chunk_frames=2, shard_frames=16)

    def write(start):
        with ShardWriter(group["frames"], 0, start=start, stop=start + 16) as writer:
            for lo in range(start, start + 16, 4):
                writer.append(data[lo:lo + 4])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(0, 160, 16)))
    np.testing.assert_array_equal(open_archive(tmp_path / "a.zarr").data.compute(), data)
