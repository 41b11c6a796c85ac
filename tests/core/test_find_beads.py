"""Bead finding on our simulator's full frames and on a real-looking field drawn another way."""

import numpy as np
import pytest

from magtrack_dask import find_beads
from magtrack_dask._backend import check_cupy
from magtrack_dask.core.find_beads import flatten_illumination
from magtrack_dask.io.rois import check_rois, read_rois, write_rois
from magtrack_dask.sim.archives import write_simulated_archive
from magtrack_dask.sim.field import camera_field
from magtrack_dask.validation import InputError, InputTypeError

ROI = 64


def roi_centres(rois):
    """Centres (x, y) of ROIs ``[top, bottom, left, right]``, px (pixel centres at integers)."""
    return rois[:, 2] + (ROI - 1) / 2, rois[:, 0] + (ROI - 1) / 2


def match(rois, x, y):
    """Per ROI: the nearest true bead and the per-axis offset of the ROI's centre from it, px."""
    cx, cy = roi_centres(rois)
    nearest = np.hypot(cx[:, None] - x[None], cy[:, None] - y[None]).argmin(axis=1)
    return nearest, np.maximum(np.abs(cx - x[nearest]), np.abs(cy - y[nearest]))


def overlapping(rois):
    """Pairs of ROIs that share pixels."""
    t, b, l, r = rois.T
    share = ((np.minimum(b[:, None], b[None]) > np.maximum(t[:, None], t[None]))
             & (np.minimum(r[:, None], r[None]) > np.maximum(l[:, None], l[None])))
    np.fill_diagonal(share, False)
    return int(share.sum()) // 2


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Our simulator's full frames: 100 beads on a grid of 64 px ROIs, 2 noisy frames, with the truth."""
    path = tmp_path_factory.mktemp("find") / "a.zarr"
    arch = write_simulated_archive(path, 2, 100, roi=ROI, photons=1000.0, seed=3)
    frames = np.asarray(arch.data.compute())
    truth = np.asarray(arch.group["truth_x"][:, 0]), np.asarray(arch.group["truth_y"][:, 0])
    return str(path), frames, truth, find_beads(frames, ROI)


@pytest.fixture(scope="module")
def field():
    """A real-looking 8-bit field (Bessel rings, debris, uneven light, JPEG-like noise) and what was found."""
    frame, truth = camera_field(seed=0)
    rois, found = find_beads(frame, ROI, return_candidates=True)
    return frame, truth, rois, found


def test_simulated_frames_recall_and_no_false_rois(simulated):
    _, _, (x, y), rois = simulated
    nearest, offset = match(rois, x, y)
    assert np.all(offset <= 1.0), offset.max()  # no false ROI: each is centred on a true bead
    assert len(set(nearest.tolist())) == len(rois)  # and on a different one
    assert len(rois) >= 99  # recall >= 99 % of 100
    assert overlapping(rois) == 0
    check_rois(rois, (816, 816))


def test_real_looking_field_every_isolated_bead_centred(field):
    frame, truth, rois, _ = field
    isolated = np.flatnonzero(truth["kind"] == "isolated")
    nearest, offset = match(rois, truth["x"], truth["y"])
    assert set(isolated.tolist()) <= set(nearest.tolist())  # every isolated bead found
    assert np.all(offset <= 1.0), offset.max()  # ROI centre within 1 px of the bead's, per axis
    assert set(nearest.tolist()) <= set(isolated.tolist())  # pairs and edge beads rejected
    assert overlapping(rois) == 0
    check_rois(rois, frame.shape)  # inside the frame


def test_real_looking_field_no_roi_on_debris(field):
    _, truth, rois, found = field
    cx, cy = roi_centres(rois)
    for x, y, kind in truth["debris"]:
        assert np.hypot(cx - x, cy - y).min() > ROI / 2, kind
    # Each kind of debris that was a candidate was turned down for a reason of its own.
    reasons = set(found.reason[~found.accepted].tolist())
    assert {"edge", "overlap", "not_ring", "saturated"} <= reasons


def test_found_table_round_trips_through_a_file_and_tracking(simulated, tmp_path):
    from magtrack_dask import track

    path, _, (x, y), rois = simulated
    table = read_rois(write_rois(tmp_path / "rois.csv", rois))
    np.testing.assert_array_equal(table, rois)
    ds = track(path, rois=table[:8]).compute()  # the archive's frames, cropped by the found ROIs
    nearest, _ = match(table[:8], x, y)
    np.testing.assert_allclose(ds["x"].values[:, 0], x[nearest], atol=0.1)
    np.testing.assert_allclose(ds["y"].values[:, 0], y[nearest], atol=0.1)
    assert not ds["flags"].values.any()


def test_flattening_divides_out_uneven_light():
    yy, xx = np.mgrid[0:200, 0:300]
    light = 100 + 0.3 * xx + 0.2 * yy
    contrast = flatten_illumination(light * (1 + 0.01 * np.sin(xx / 3.0)), 32)
    assert np.abs(contrast[20:-20, 20:-20]).max() < 0.02


@pytest.mark.parametrize("frame, roi, kwargs, error, pattern", [
    (np.zeros(100), 16, {}, InputError, r"frame must be 2-D .* got shape \(100,\)"),
    (np.zeros((2, 2, 50, 50)), 16, {}, InputError, r"frame must be 2-D"),
    (np.zeros((50, 50), dtype=bool), 16, {}, InputTypeError, r"frame must be an array of integer or float"),
    (np.full((50, 50), np.nan), 16, {}, InputError, r"finite pixels"),
    (np.zeros((50, 50)), 64, {}, InputError, r"roi must be 8 px to the frame's smaller side \(50 px\); got 64"),
    (np.zeros((50, 50)), 4, {}, InputError, r"roi must be 8 px"),
    (np.zeros((50, 50)), 16, {"min_symmetry": 2}, InputError, r"min_symmetry"),
    (np.zeros((50, 50)), 16, {"min_rings": -1}, InputError, r"min_rings must be an integer >= 0"),
    (np.zeros((50, 50)), 16, {"radius_px": (5, 2)}, InputError, r"radius_px must be \(min, max\)"),
    (np.zeros((50, 50)), 16, {"min_distance": 0}, InputError, r"min_distance"),
])
def test_bad_input_names_the_parameter(frame, roi, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        find_beads(frame, roi, **kwargs)


def test_blank_and_noise_frames_have_no_beads():
    assert find_beads(np.full((100, 120), 1000, dtype=np.uint16), 32).shape == (0, 4)
    noise = np.random.default_rng(0).poisson(100, (3, 300, 300)).astype(np.uint16)
    assert find_beads(noise, 32).shape == (0, 4)


@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a GPU")
def test_a_cupy_frame_gives_the_same_table(simulated):
    import cupy

    _, frames, _, rois = simulated
    np.testing.assert_array_equal(find_beads(cupy.asarray(frames), ROI), rois)
