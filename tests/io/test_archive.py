"""Archives: create, open, describe (magtrack_dask.io.archive)."""

import os

import numpy as np
import pytest
import xarray as xr
import zarr

from magtrack_dask.io.archive import Archive, create_archive, describe_archive, open_archive
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.validation import InputError, InputTypeError

from tests.conftest import CHUNK_FRAMES, N_FRAMES, ROI

ROIS = np.array([[0, 8, 0, 8], [4, 12, 10, 18]])


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_open_gives_frames_chunked_along_frames(archives, layout):
    a = open_archive(archives[layout])
    assert isinstance(a, Archive)
    assert a.layout is Layout(layout) and a.layout == layout
    ax = Layout(layout).frame_axis
    assert a.data.chunks[ax] == (16, 16, 13)  # Dask chunks = Zarr chunks
    assert all(len(c) == 1 for i, c in enumerate(a.data.chunks) if i != ax)
    assert a.n_frames == N_FRAMES and a.n_beads == (1 if layout == "yxt" else 3)
    assert a.pixel_size_nm == 100.0 and a.frame_rate_hz == 50.0
    np.testing.assert_allclose(a.time().compute(), np.arange(N_FRAMES) / 50.0)
    assert open_archive(archives[layout], frames_per_task=20).data.chunks[ax] == (32, 13)  # whole Zarr chunks


def test_describe(archives):
    info = describe_archive(archives["tbyx"])
    assert info["layout"] == "tbyx" and type(info["layout"]) is str  # JSON-ready
    assert info["n_beads"] == 3 and info["roi_size"] == ROI and info["frame_shape"] is None
    assert info["shard_frames"] == CHUNK_FRAMES and info["chunk_frames"] == 4  # written sharded
    assert info["has_truth"] and not info["has_timestamps"]
    frames = os.path.join(archives["tbyx"], "frames", "c")
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(frames) for f in files)
    assert info["nbytes_stored"] == on_disk and info["nbytes_stored_estimate"] is None  # recorded by the writer
    assert info["compression_ratio"] > 1
    assert info["shape"] == (N_FRAMES, 3, ROI, ROI)
    info = describe_archive(archives["tyx"])
    assert info["roi_size"] == ROI and info["frame_shape"] == (88, 88) and len(info["rois"]) == 3
    assert describe_archive(archives["yxt"])["roi_size"] == ROI


def test_archive_path_is_absolute_when_opened_by_a_relative_path(archives, monkeypatch):
    parent, name = os.path.split(archives["tyx"])
    monkeypatch.chdir(parent)
    assert open_archive(name).path == os.path.join(parent, name)


def test_xarray_opens_archive(archives):
    ds = xr.open_zarr(archives["tyx"], consolidated=False)
    assert ds["frames"].dims == ("frame", "y", "x")
    assert ds["truth_z"].dims == ("bead", "frame")
    assert ds["rois"].dims == ("bead", "edge")


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_created_archive_has_the_layouts_dims_and_attrs(tmp_path, layout):
    shape = {"tyx": (6, 20, 24), "tbyx": (6, 2, 8, 8), "yxt": (8, 8, 6)}[layout]
    g = create_archive(tmp_path / "a.zarr", shape=shape, layout=Layout(layout), rois=ROIS if layout == "tyx" else None,
                       chunk_frames=4)
    assert tuple(g["frames"].metadata.dimension_names) == Layout(layout).dims
    assert g["frames"].chunks[Layout(layout).frame_axis] == 4
    # The attribute is the plain name, whether a Layout or a string was passed.
    with open(tmp_path / "a.zarr" / "zarr.json") as f:
        assert f'"layout": "{layout}"' in f.read()
    assert g.attrs["magtrack_dask_archive"] == 1


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
    with pytest.raises(FileExistsError, match="path: .*a.zarr exists; pass overwrite=True"):
        create_archive(tmp_path / "a.zarr", shape=(8, 8, 4), layout="yxt")
    create_archive(tmp_path / "a.zarr", shape=(8, 8, 6), layout="yxt", overwrite=True)
    assert open_archive(tmp_path / "a.zarr", check=False).n_frames == 6  # created empty


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_overwrite_never_replaces_what_is_not_a_zarr_store(tmp_path, kind):
    target = tmp_path / "precious"
    if kind == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("keep me")
    else:
        target.write_text("keep me")
    with pytest.raises(InputError, match=f"path: refusing to overwrite .*precious: it is a {kind}, not a Zarr store"):
        create_archive(target, shape=(8, 8, 4), layout="yxt", overwrite=True)
    assert (target / "notes.txt" if kind == "folder" else target).read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shape=(4, 20, 24), layout="xyz", rois=ROIS), "unknown layout 'xyz': layout must be one of"),
        (dict(shape=(4, 20, 24), layout="tyx"), "rois is required for layout 'tyx'"),
        (dict(shape=(4, 10, 24), layout="tyx", rois=ROIS), "rois: ROI 1 .* outside the frame"),
        (dict(shape=(4, 20, 24), layout="tyx", rois=[[0, 8, 0, 8], [0, 6, 0, 6]]), "rois must all have the same size"),
        (dict(shape=(4, 20, 24), layout="tyx", rois=[[0, 8, 0, 7]]), "rois must be square"),
        (dict(shape=(4, 20, 24), layout="tbyx"), r"layout 'tbyx' needs a 4-D array \('frame', 'bead', 'y', 'x'\)"),
        (dict(shape=(8, 9, 4), layout="yxt"), "layout 'yxt' needs square ROIs; got 8 x 9 px"),
        (dict(shape=(4, 2, 8, 8), layout="tbyx", rois=ROIS[:1]), r"rois \(1, 4\) does not match the tbyx data"),
        (dict(shape=(8, 8, 4), layout="yxt", rois=[[0, 8, 0, 8]]), "rois is not used with layout 'yxt'"),
        (dict(shape=(8, 8, 4), layout="yxt", chunk_frames=2.0), "chunk_frames must be an integer >= 1, got 2.0"),
        (dict(shape=(8, 8, 4), layout="yxt", frame_rate_hz=np.inf), r"frame_rate_hz must be a finite number > 0"),
        (dict(), "create_archive needs data or shape"),
    ],
)
def test_create_rejects_bad_input(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        create_archive(tmp_path / "bad.zarr", **kwargs)
    assert not (tmp_path / "bad.zarr").exists()  # nothing is created


def test_create_rejects_non_pixel_dtypes(tmp_path):
    with pytest.raises(InputTypeError, match="dtype: expected integer or float pixels"):
        create_archive(tmp_path / "bad.zarr", shape=(8, 8, 4), dtype="complex64", layout="yxt")


def test_open_rejects_non_archive(tmp_path):
    zarr.open_group(tmp_path / "g.zarr", mode="w")
    with pytest.raises(InputError, match="not a magtrack-dask archive"):
        open_archive(tmp_path / "g.zarr")
    with pytest.raises(InputTypeError, match="source must be an archive path, a zarr.Group or a Zarr store; got int"):
        open_archive(3)


def test_open_rejects_an_unknown_layout_attribute(tmp_path):
    g = create_archive(tmp_path / "a.zarr", np.zeros((8, 8, 4), np.uint16), layout="yxt")
    g.attrs["layout"] = ["yxt"]  # not even a string
    with pytest.raises(ArchiveError, match=r"archive attribute 'layout' is \['yxt'\]; expected one of 'tyx', "):
        open_archive(tmp_path / "a.zarr")
