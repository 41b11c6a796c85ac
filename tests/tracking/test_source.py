"""resolve_source: archives, stores and arrays of every layout, and what is refused."""

import dask
import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from magtrack_dask.io.layout import Layout
from magtrack_dask.io.archive import open_archive
from magtrack_dask.tracking import track
from magtrack_dask.tracking.source import resolve_source

from tests.conftest import N_FRAMES, ROI, TRACKED, assert_matches


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_archive(archives, layout):
    src = resolve_source(archives[layout])
    arch = open_archive(archives[layout])
    assert src.layout is Layout(layout) and src.archive is not None and src.frames is not None
    assert src.n_frames == N_FRAMES and src.frame_chunks == (16, 16, 13) and src.roi_size == ROI
    assert src.n_beads == (1 if layout == "yxt" else 3) and src.description.endswith(f"{layout}.zarr")
    if layout == "tyx":
        np.testing.assert_array_equal(src.crop_rois, arch.rois)
    else:  # cropped already: the table only gives offsets
        assert src.crop_rois is None
    np.testing.assert_array_equal(src.rois, arch.rois if arch.rois is not None else [[0, ROI, 0, ROI]])
    assert resolve_source(archives[layout], frames_per_task=20).frame_chunks == (32, 13)  # whole Zarr chunks


def test_arrays_infer_their_layout(archives):
    arch = open_archive(archives["tyx"])
    frames = arch.data.compute()
    src = resolve_source(frames, rois=arch.rois, frames_per_task=7)  # 3-D + rois -> tyx
    assert src.layout is Layout.TYX and src.frame_chunks[:2] == (7, 7) and src.frames is None
    assert src.description == "in-memory numpy.ndarray" and src.archive is None
    assert resolve_source(np.zeros((32, 32, 5))).layout is Layout.YXT  # 3-D, no rois
    assert resolve_source(np.zeros((4, 2, 32, 32))).layout is Layout.TBYX
    default = resolve_source(np.zeros((5000, 2, 32, 32)))
    assert default.frame_chunks[0] == 2048  # 4096 ROIs per task
    rechunked = resolve_source(arch.data.rechunk((11, 20, 30)), rois=arch.rois)
    assert rechunked.data.chunks[1:] == ((arch.data.shape[1],), (arch.data.shape[2],))  # whole frames per task
    za = zarr.open_array(archives["tyx"] + "/frames", mode="r")
    src = resolve_source(za, layout=Layout.TYX, rois=arch.rois, frames_per_task=20)
    assert src.frames is za and src.frame_chunks == (32, 13) and src.description.startswith("zarr array")


def test_numpy_dask_and_store_sources_give_the_archive_results(archives, zlut):
    arch = open_archive(archives["tyx"])
    frames = arch.data.compute()
    with dask.config.set(scheduler="sync"):
        ref = track(LocalStore(archives["tyx"], read_only=True), zlut).compute()  # a Store works too
        from_np = track(frames, zlut, rois=arch.rois, frames_per_task=7).compute()
        from_da = track(arch.data.rechunk((11, 20, 30)), zlut, rois=arch.rois).compute()
        yxt = track(open_archive(archives["yxt"]).data.compute(), zlut)
    assert yxt.attrs["layout"] == "yxt"
    for got in (from_np, from_da):
        assert got.attrs["layout"] == "tyx" and got.attrs["source"].startswith("in-memory")
        assert_matches(got, {k: ref[k].values for k in TRACKED})


def test_bad_sources_name_what_is_wrong(archives):
    frames = open_archive(archives["tyx"]).data
    rois = open_archive(archives["tyx"]).rois
    with pytest.raises(ValueError, match="layout='tbyx' does not match the archive's layout 'tyx'"):
        resolve_source(archives["tyx"], layout=Layout.TBYX)
    with pytest.raises(ValueError, match=r"rois: ROI 1 \[8, 40, 108, 140\] lies outside the frame"):
        resolve_source(frames, rois=rois + [[0, 0, 0, 0], [0, 0, 60, 60], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="rois must all have the same size"):
        resolve_source(frames, rois=[[0, 32, 0, 32], [40, 56, 40, 56]])
    with pytest.raises(ValueError, match="rois is required"):
        resolve_source(frames, layout=Layout.TYX)
    with pytest.raises(ValueError, match=r"layout 'tbyx' needs a 4-D source; got 3-D"):
        resolve_source(np.zeros((4, 32, 32)), layout=Layout.TBYX)
    with pytest.raises(ValueError, match=r"layout 'tbyx' needs square images; got 32 x 30 px \(layout 'tbyx' was "
                                         r"inferred from a 4-D array\)"):
        resolve_source(np.zeros((4, 2, 32, 30)))
    with pytest.raises(ValueError, match=r"layout 'yxt' needs square images; got 32 x 45 px$"):
        resolve_source(np.zeros((45, 32, 32)), layout=Layout.YXT)  # given, not inferred: no hint
    with pytest.raises(ValueError, match=r"rois has 2 ROIs of 32 px; the source has 1 beads of 32 px"):
        resolve_source(np.zeros((32, 32, 4)), rois=[[0, 32, 0, 32]] * 2, layout=Layout.YXT)
    with pytest.raises(ValueError, match=r"source has no frames: shape \(32, 32, 0\)"):
        resolve_source(np.zeros((32, 32, 0)))
    with pytest.raises(TypeError, match="source must hold integer or float pixels; got dtype bool"):
        resolve_source(np.zeros((32, 32, 4), bool))
    with pytest.raises(TypeError, match=r"source must be an archive .* or an image array; got int"):
        resolve_source(3)
