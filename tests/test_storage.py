"""Archives: create, open, describe, simulate (magtrack_dask.storage)."""

import os

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from magtrack_dask.storage import (
    LAYOUTS,
    check_rois,
    create_archive,
    describe_archive,
    open_archive,
    roi_grid,
    write_simulated_archive,
)

from conftest import CHUNK_FRAMES, N_FRAMES, ROI, Z_RANGE_NM

ROIS = np.array([[0, 8, 0, 8], [4, 12, 10, 18]])


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_simulated_archive_layout_and_metadata(archives, layout):
    a = open_archive(archives[layout])
    g = zarr.open_group(archives[layout], mode="r")
    frames = g["frames"]
    assert a.layout == layout and g.attrs["layout"] == layout
    assert g.attrs["magtrack_dask_archive"] == 1
    assert tuple(frames.metadata.dimension_names) == LAYOUTS[layout]
    assert frames.dtype == np.uint16
    assert isinstance(frames.compressors[0], BloscCodec)
    ax = LAYOUTS[layout].index("frame")
    # chunked along frames only, Dask chunks = Zarr chunks
    assert all(c == s for i, (c, s) in enumerate(zip(frames.chunks, frames.shape)) if i != ax)
    assert a.data.chunks[ax] == (16, 16, 13)
    assert a.n_frames == N_FRAMES
    assert a.n_beads == (1 if layout == "yxt" else 3)
    assert a.pixel_size_nm == 100.0 and a.frame_rate_hz == 50.0
    np.testing.assert_allclose(a.time().compute(), np.arange(N_FRAMES) / 50.0)
    for name in ("truth_x", "truth_y", "truth_z"):
        assert g[name].shape == (a.n_beads, N_FRAMES)
        assert tuple(g[name].metadata.dimension_names) == ("bead", "frame")
    # beads wander around their ROI centres, z stays in range
    off = a.rois if a.rois is not None else np.zeros((1, 4))
    dx = g["truth_x"][...] - off[:, 2:3] - (ROI - 1) / 2
    assert 0.1 < np.abs(dx).max() <= 1.5
    z = g["truth_z"][...]
    assert Z_RANGE_NM[0] < z.min() and z.max() < Z_RANGE_NM[1]


def test_simulated_frames_hold_beads_at_the_rois(archives):
    a = open_archive(archives["tyx"])
    frame = a.data[0].compute().astype(float)
    inside = [frame[t:b, l:r].std() for t, b, l, r in a.rois]
    outside = frame[: a.rois[:, 0].min(), :].std()  # background strip above the grid
    assert min(inside) > 3 * outside
    assert describe_archive(archives["tyx"])["frame_shape"] == (88, 88)


def test_truth_does_not_depend_on_chunking(tmp_path):
    kw = dict(n_frames=30, n_beads=2, roi=16, layout="tbyx", seed=3)
    a = write_simulated_archive(tmp_path / "a.zarr", chunk_frames=7, **kw)
    b = write_simulated_archive(tmp_path / "b.zarr", chunk_frames=30, **kw)
    for name in ("truth_x", "truth_y", "truth_z"):
        np.testing.assert_array_equal(a.group[name][...], b.group[name][...])
    # noiseless rendering: the frames agree too
    np.testing.assert_array_equal(a.data.compute(), b.data.compute())


def test_describe(archives):
    info = describe_archive(archives["tbyx"])
    assert info["layout"] == "tbyx" and info["n_beads"] == 3 and info["roi_size"] == ROI
    assert info["chunk_frames"] == CHUNK_FRAMES and info["shard_frames"] is None
    assert info["has_truth"] and not info["has_timestamps"]
    assert info["compression_ratio"] > 1
    assert info["shape"] == (N_FRAMES, 3, ROI, ROI)


def test_archive_path_is_absolute_when_opened_by_a_relative_path(archives, monkeypatch):
    parent, name = os.path.split(archives["tyx"])
    monkeypatch.chdir(parent)
    assert open_archive(name).path == os.path.join(parent, name)


def test_xarray_opens_archive(archives):
    ds = xr.open_zarr(archives["tyx"], consolidated=False)
    assert ds["frames"].dims == ("frame", "y", "x")
    assert ds["truth_z"].dims == ("bead", "frame")
    assert ds["rois"].dims == ("bead", "edge")


def test_create_from_data_with_timestamps_and_shards(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (50, 20, 24), dtype=np.uint16)
    ts = np.cumsum(np.full(50, 0.01))
    create_archive(tmp_path / "a.zarr", data, rois=ROIS, chunk_frames=5, shard_frames=10, timestamps=ts,
                   pixel_size_nm=65.0)
    a = open_archive(tmp_path / "a.zarr")
    assert a.data.chunks[0] == (10,) * 5  # whole shards, not inner chunks
    np.testing.assert_array_equal(a.data.compute(), data)
    np.testing.assert_array_equal(a.rois, ROIS)
    np.testing.assert_allclose(a.time().compute(), ts)
    assert open_archive(tmp_path / "a.zarr", frames_per_task=25).data.chunks[0] == (30, 20)
    info = describe_archive(tmp_path / "a.zarr")
    assert info["shard_frames"] == 10 and info["has_timestamps"] and info["pixel_size_nm"] == 65.0


def test_create_empty_then_fill(tmp_path):
    g = create_archive(tmp_path / "e.zarr", shape=(12, 2, 8, 8), layout="tbyx", chunk_frames=4)
    g["frames"][4:8] = 7
    a = open_archive(tmp_path / "e.zarr", check=False)  # chunks 0 and 2 were never written
    assert a.rois is None and a.n_beads == 2
    assert a.data[5].compute().min() == 7 and a.data[0].compute().max() == 0


def test_overwrite_guard(tmp_path):
    create_archive(tmp_path / "a.zarr", shape=(8, 8, 4), layout="yxt")
    with pytest.raises(FileExistsError):
        create_archive(tmp_path / "a.zarr", shape=(8, 8, 4), layout="yxt")
    create_archive(tmp_path / "a.zarr", shape=(8, 8, 6), layout="yxt", overwrite=True)
    assert open_archive(tmp_path / "a.zarr", check=False).n_frames == 6  # created empty


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(4, 20, 24), layout="xyz", rois=ROIS), "layout"),
        (dict(shape=(4, 20, 24), layout="tyx"), "rois is required"),
        (dict(shape=(4, 10, 24), layout="tyx", rois=ROIS), "rois: ROI 1 .* outside the frame"),
        (dict(shape=(4, 20, 24), layout="tyx", rois=[[0, 8, 0, 8], [0, 6, 0, 6]]), "rois must all have the same size"),
        (dict(shape=(4, 20, 24), layout="tyx", rois=[[0, 8, 0, 7]]), "rois must be square"),
        (dict(shape=(4, 20, 24), layout="tbyx"), "layout 'tbyx' needs a 4-D"),
        (dict(shape=(8, 9, 4), layout="yxt"), "square"),
    ],
)
def test_create_rejects_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_archive(tmp_path / "bad.zarr", **kwargs)


def test_roi_grid_and_check():
    rois, shape = roi_grid(5, 16)
    assert shape == (4 + 2 * 20, 4 + 3 * 20)
    check_rois(rois, shape)
    with pytest.raises(ValueError, match="cannot hold"):
        roi_grid(5, 16, frame_shape=(30, 30))
    with pytest.raises(ValueError, match="rois must have shape"):
        check_rois([1, 2, 3, 4])


def test_open_rejects_non_archive(tmp_path):
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(ValueError, match="not a magtrack-dask archive"):
        open_archive(tmp_path / "g.zarr")


def test_default_chunks_carry_a_checksum(tmp_path):
    # Blosc checks only its header: a byte damaged inside a chunk must fail the read, not decode to wrong pixels.
    write_simulated_archive(tmp_path / "a.zarr", 32, 1, roi=16, chunk_frames=16, photons=1e4, seed=1)
    chunk = tmp_path / "a.zarr" / "frames" / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    frames = open_archive(tmp_path / "a.zarr", check=False).group["frames"]
    assert frames[:16].shape[0] == 16
    with pytest.raises(ValueError, match="checksum"):
        frames[16:]



def test_remove_unfinished_writes_takes_only_zarrs_temporaries(tmp_path):
    from magtrack_dask.storage import remove_unfinished_writes

    (tmp_path / "x" / "c" / "0").mkdir(parents=True)
    stale = [tmp_path / "x" / "c" / "0" / "3.0123456789abcdef0123456789abcdef.partial",
             tmp_path / "zarr.fedcba9876543210fedcba9876543210.partial"]
    kept = [tmp_path / "x" / "c" / "0" / "3", tmp_path / "x" / "my.partial",
            tmp_path / "x" / "4.0123456789ABCDEF0123456789ABCDEF.partial"]  # zarr writes lower-case hex
    for f in stale + kept:
        f.write_bytes(b"1")
    assert remove_unfinished_writes(str(tmp_path)) == 2
    assert not any(f.exists() for f in stale) and all(f.exists() for f in kept)
