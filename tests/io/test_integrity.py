"""Archive integrity (magtrack_dask.io.integrity): metadata against itself and against the stored chunks.

Each check is called directly on real archives on disk; the same lies told through open_archive, track and
the command line are in tests/reliability/test_inputs_that_lie.py.
"""

import json
import os

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore, WrapperStore

from magtrack_dask.io.archive import create_archive
from magtrack_dask.io.integrity import (
    UNFINISHED_WRITE,
    check_archive_metadata,
    check_frame_chunks,
    remove_unfinished_writes,
    stored_nbytes,
)
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.validation import InputTypeError


def _tbyx(tmp_path, **kwargs):
    """Unsharded, 3 chunks of 4 frames."""
    data = np.arange(10 * 2 * 8 * 8, dtype=np.uint16).reshape(10, 2, 8, 8)
    kwargs.setdefault("shard_frames", 0)
    return create_archive(tmp_path / "a.zarr", data, layout="tbyx", chunk_frames=4, **kwargs)


def _check(group, layout="tbyx"):
    check_archive_metadata(group, group["frames"], Layout(layout), dict(group.attrs))


def test_a_truthful_archive_passes(tmp_path):
    g = _tbyx(tmp_path, rois=[[0, 8, 0, 8], [0, 8, 10, 18]], timestamps=np.arange(10) * 0.1, pixel_size_nm=65.0)
    _check(g)
    check_frame_chunks(g["frames"])


@pytest.mark.parametrize(
    ("lie", "match"),
    [
        (lambda g: g.attrs.update(magtrack_dask_archive=2), "archive format version 2 is newer than this"),
        (lambda g: g.attrs.update(frame_rate_hz=0), r"archive attribute frame_rate_hz must be a finite number > 0"),
        (lambda g: g.create_array("rois", data=np.array([[0, 8, 0, 8]])),
         r"archive 'rois' has 1 ROIs of 8 px, but the tbyx frames \(10, 2, 8, 8\) hold 2 beads of 8 px"),
        (lambda g: g.create_group("rois"), "archive 'rois' is a group"),
        (lambda g: g.create_array("timestamps", data=np.zeros(9)), r"archive 'timestamps' has shape \(9,\), "
                                                                   r"expected \(10,\): one value per frame"),
        (lambda g: g.create_array("truth_z", data=np.zeros((3, 10))), r"archive 'truth_z' has shape \(3, 10\), "
                                                                      r"expected \(2, 10\): \(bead, frame\)"),
    ],
)
def test_metadata_that_disagrees_with_itself(tmp_path, lie, match):
    g = _tbyx(tmp_path)
    lie(g)
    with pytest.raises(ArchiveError, match=match):
        _check(g)


def test_layout_and_array_disagree(tmp_path):
    g = _tbyx(tmp_path)
    with pytest.raises(ArchiveError, match=r"archive attribute layout='tyx' means a 3-D frames array"):
        _check(g, "tyx")
    g = create_archive(tmp_path / "b.zarr", shape=(8, 8, 4), layout="yxt")
    with pytest.raises(ArchiveError, match=r"dimension_names \('y', 'x', 'frame'\) disagree .*layout='tyx'|means a"):
        _check(g, "tyx")


def test_frames_that_are_not_pixels(tmp_path):
    g = zarr.open_group(tmp_path / "c.zarr", mode="w")
    g.create_array("frames", shape=(8, 8, 4), dtype="complex64")
    with pytest.raises(InputTypeError, match="frames: dtype complex64 is not a pixel type"):
        _check(g, "yxt")


@pytest.mark.parametrize("wrapped", [False, True])  # a local store is asked with stat, others with exists
def test_missing_chunks_are_named_with_their_frames(tmp_path, wrapped):
    g = _tbyx(tmp_path)
    os.remove(tmp_path / "a.zarr" / "frames" / "c" / "1" / "0" / "0" / "0")
    frames = zarr.open_group(WrapperStore(LocalStore(tmp_path / "a.zarr")), mode="r")["frames"] if wrapped \
        else g["frames"]
    with pytest.raises(ArchiveError, match=r"frames: 1 of 3 chunks declared by its shape \(10, 2, 8, 8\) are "
                                           r"missing from the store \(chunk 1/0/0/0 \(frames 4-7\)\)"):
        check_frame_chunks(frames)


def test_a_chunk_shape_that_disagrees_with_the_stored_chunks(tmp_path):
    _tbyx(tmp_path)
    meta = tmp_path / "a.zarr" / "frames" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["chunk_grid"]["configuration"]["chunk_shape"][0] = 5
    meta.write_text(json.dumps(doc))
    frames = zarr.open_group(tmp_path / "a.zarr", mode="r")["frames"]
    assert frames.chunks[0] == 5
    with pytest.raises(ArchiveError, match=r"chunk 0/0/0/0 \(frames 0-4\) holds 1024 bytes of 2-byte values, but "
                                           r"zarr.json declares chunks of \(5, 2, 8, 8\) uint16 = 1280 bytes"):
        check_frame_chunks(frames)


def test_remove_unfinished_writes_takes_only_zarrs_temporaries(tmp_path):
    (tmp_path / "x" / "c" / "0").mkdir(parents=True)
    stale = [tmp_path / "x" / "c" / "0" / "3.0123456789abcdef0123456789abcdef.partial",
             tmp_path / "zarr.fedcba9876543210fedcba9876543210.partial"]
    kept = [tmp_path / "x" / "c" / "0" / "3", tmp_path / "x" / "my.partial",
            tmp_path / "x" / "4.0123456789ABCDEF0123456789ABCDEF.partial"]  # zarr writes lower-case hex
    for f in stale + kept:
        f.write_bytes(b"1")
    assert all(UNFINISHED_WRITE.search(f.name) for f in stale)
    assert remove_unfinished_writes(str(tmp_path)) == 2
    assert not any(f.exists() for f in stale) and all(f.exists() for f in kept)
    assert remove_unfinished_writes(str(tmp_path)) == 0


def test_stored_nbytes_is_exact_for_few_chunks_and_sampled_for_many(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    small = create_archive(tmp_path / "small.zarr", rng.integers(0, 4000, (10, 2, 8, 8), dtype=np.uint16),
                           layout="tbyx", chunk_frames=4, shard_frames=0)["frames"]
    chunks = os.path.join(tmp_path, "small.zarr", "frames", "c")
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(chunks) for f in files)
    assert stored_nbytes(small) == (on_disk, 3, 3)  # the chunks' bytes, not the metadata's
    frames = rng.integers(0, 4000, (300, 16, 16), dtype=np.uint16)
    many = create_archive(tmp_path / "many.zarr", frames, rois=[[0, 16, 0, 16]], chunk_frames=1,
                          shard_frames=0)["frames"]
    exact = many.nbytes_stored() - os.path.getsize(os.path.join(tmp_path, "many.zarr", "frames", "zarr.json"))
    # Sized from a sample, never by listing or sizing every chunk.
    monkeypatch.setattr(zarr.Array, "nbytes_stored", lambda self: pytest.fail("listed every chunk"))
    nbytes, sized, total = stored_nbytes(many, sample=16)
    assert (sized, total) == (16, 300) and abs(nbytes - exact) < 0.05 * exact
    os.remove(os.path.join(tmp_path, "many.zarr", "frames", "c", "299", "0", "0"))  # the last chunk, sampled
    assert stored_nbytes(many, sample=16)[0] < nbytes  # a missing chunk counts as 0



def test_opening_looks_for_a_sample_of_chunks_and_reading_finds_the_others(tmp_path, monkeypatch):
    from magtrack_dask.io import integrity
    from magtrack_dask.io.archive import open_archive
    from magtrack_dask.io.chunk_read import read_frames

    frames = np.random.default_rng(0).integers(0, 4000, (300, 16, 16), dtype=np.uint16)
    create_archive(tmp_path / "a.zarr", frames, rois=[[0, 16, 0, 16]], chunk_frames=1, shard_frames=0)
    os.remove(tmp_path / "a.zarr" / "frames" / "c" / "150" / "0" / "0")  # not among the 32 sampled
    looked = []
    real = integrity.object_exists
    monkeypatch.setattr(integrity, "object_exists", lambda store, key: looked.append(key) or real(store, key))
    arr = open_archive(tmp_path / "a.zarr").group["frames"]  # the same cost at any archive size
    assert len(looked) == 32 and "frames/c/0/0/0" in looked and "frames/c/299/0/0" in looked
    with pytest.raises(ArchiveError, match="frames 150-150 is missing from the store"):
        read_frames(arr, 150, 151, 0)  # a task's read: flagged unreadable, never dark frames
    os.remove(tmp_path / "a.zarr" / "frames" / "c" / "299" / "0" / "0")  # the last one: a shape too large
    with pytest.raises(ArchiveError, match=r"1 of 32 sampled \(of 300\) chunks .* missing .*frames 299-299"):
        open_archive(tmp_path / "a.zarr")
