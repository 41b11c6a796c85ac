"""Simulated archives with ground truth (magtrack_dask.sim.archives)."""

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from magtrack_dask.io.archive import describe_archive, open_archive
from magtrack_dask.io.format import CALIBRATION_Z
from magtrack_dask.io.layout import Layout
from magtrack_dask.sim.archives import write_simulated_archive, write_simulated_calibration
from magtrack_dask.validation import InputError

from tests.conftest import CALIBRATION_STEPS, N_FRAMES, ROI, Z_RANGE_NM


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_simulated_archive_layout_and_metadata(archives, layout):
    a = open_archive(archives[layout])
    g = zarr.open_group(archives[layout], mode="r")
    frames = g["frames"]
    assert a.layout == layout and g.attrs["layout"] == layout
    assert g.attrs["magtrack_dask_archive"] == 1
    assert tuple(frames.metadata.dimension_names) == Layout(layout).dims
    assert frames.dtype == np.uint16
    assert isinstance(frames.compressors[0], BloscCodec)
    ax = Layout(layout).frame_axis
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


def test_noiseless_full_frames_are_the_rounded_background_outside_the_rois(tmp_path):
    a = write_simulated_archive(tmp_path / "a.zarr", 3, 2, roi=16, background=1000.0, dtype="uint8", seed=1)
    frames = a.data.compute()
    assert frames.dtype == np.uint8
    outside = np.ones(frames.shape[1:], bool)
    for top, bottom, left, right in a.rois:
        outside[top:bottom, left:right] = False
    assert np.all(frames[:, outside] == 255)  # clipped to the dtype's range, not wrapped around
    f = write_simulated_archive(tmp_path / "f.zarr", 3, 2, roi=16, background=999.75, dtype="float32").data
    assert f.dtype == np.float32 and np.all(f.compute()[:, outside] == np.float32(999.75))


def test_one_bead_layout_holds_one_bead(tmp_path):
    with pytest.raises(InputError, match="layout 'yxt' holds one bead; got n_beads=2"):
        write_simulated_archive(tmp_path / "a.zarr", 4, 2, layout="yxt")
    with pytest.raises(InputError, match="unknown layout 'ytx'"):
        write_simulated_archive(tmp_path / "a.zarr", 4, 1, layout="ytx")
    assert not (tmp_path / "a.zarr").exists()


def test_simulated_calibration_archive(calibration, archives):
    a = open_archive(calibration)
    assert a.layout == "tyx" and a.n_frames == len(CALIBRATION_STEPS) * 6
    np.testing.assert_array_equal(a.rois, open_archive(archives["tyx"]).rois)  # the measurement's ROI grid
    z = a.group[CALIBRATION_Z]
    np.testing.assert_array_equal(z[...], np.repeat(CALIBRATION_STEPS, 6))
    assert z.attrs["units"] == "nm" and z.metadata.dimension_names == ("frame",)
    assert describe_archive(calibration)["calibration_z_range_nm"] == [CALIBRATION_STEPS[0], CALIBRATION_STEPS[-1]]
    assert describe_archive(archives["tyx"])["calibration_z_range_nm"] is None


def test_calibration_needs_two_steps(tmp_path):
    with pytest.raises(InputError, match=r"z_steps_nm must be 1-D with at least 2 steps; got shape \(1,\)"):
        write_simulated_calibration(tmp_path / "c.zarr", [1000.0])
