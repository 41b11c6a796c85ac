"""radial_symmetry, sample_symmetry and lost_beads: a bead at the found centre, or none."""

import numpy as np
import pytest

from magtrack_dask import core
from magtrack_dask._backend import check_cupy
from magtrack_dask.core.rois import crop_rois
from magtrack_dask.core.symmetry import (
    MIN_SYMMETRY,
    SCREEN_MIN_ROI,
    SCREEN_STEP,
    lost_beads,
    radial_symmetry,
    sample_symmetry,
)
from magtrack_dask.sim.beads import render_beads


def _leaving_and_empty(photons):
    """(stack (64, 64, 280), x, y): beads drifting out of a 64 px ROI (cut from 160 px frames), then
    ROIs of background only."""
    rng = np.random.default_rng(3)
    n = 240
    x0 = np.linspace(32, -24, n) + 48
    beads = render_beads(x0, 80 + rng.uniform(-3, 3, n), rng.uniform(300, 5000, n), n_pixels=160,
                         photons=photons, seed=1)[48:112, 48:112]
    empty = render_beads(np.full(40, 5.0), np.full(40, 5.0), np.full(40, 1000.0), n_pixels=160,
                         photons=photons or 1000.0, seed=2)[90:154, 90:154]
    stack = np.concatenate([beads, empty], axis=2)
    x, y = core.stack_to_xyzp(stack)[:2]
    return stack, x, y


def _reference_score(image, x, y, step):
    """The definition, image by image: 1 - (sum of squares within 1 px rings) / (sum of squares about the mean)
    over the disc of radius roi // 2, on every step-th row and column."""
    roi = image.shape[0]
    yy, xx = np.mgrid[0:roi:step, 0:roi:step]
    ring = np.rint(np.hypot(xx - x, yy - y)).astype(int)
    inside = ring < roi // 2
    values, ring = image[::step, ::step][inside], ring[inside]
    within = sum(((values[ring == r] - values[ring == r].mean()) ** 2).sum() for r in np.unique(ring))
    return 1.0 - within / ((values - values.mean()) ** 2).sum()


def test_score_is_its_definition():
    stack, x, y = _leaving_and_empty(300.0)
    some = np.arange(0, stack.shape[2], 23)
    some = some[np.isfinite(x[some]) & np.isfinite(y[some])]
    assert len(some) > 8
    for step in (1, 2, 4):
        want = [_reference_score(stack[:, :, i], x[i], y[i], step) for i in some]
        np.testing.assert_allclose(radial_symmetry(stack[:, :, some], x[some], y[some], step=step), want,
                                   rtol=1e-9, atol=1e-12)
    x[5], y[6] = np.nan, np.nan
    flat = np.full((16, 16, 2), 7.0)
    assert np.isnan(radial_symmetry(stack, x, y)[[5, 6]]).all()  # no centre: no score
    assert np.isnan(radial_symmetry(flat, np.full(2, 8.0), np.full(2, 8.0))).all()  # a constant image


@pytest.mark.parametrize("photons", [None, 300.0])
def test_coarse_screen_decides_like_the_full_score(photons):
    stack, x, y = _leaving_and_empty(photons)
    n = stack.shape[2]
    full = radial_symmetry(stack, x, y)
    # The tracking crops frame-major: the (roi, roi, n) view of an (n, roi, roi) buffer scores alike.
    by_frame = np.moveaxis(np.ascontiguousarray(np.moveaxis(stack, 2, 0)), 0, 2)
    np.testing.assert_allclose(radial_symmetry(by_frame, x, y), full, rtol=0, atol=1e-12)
    some = np.arange(3, n, 7)
    np.testing.assert_allclose(radial_symmetry(by_frame, x[some], y[some], images=some), full[some], rtol=0,
                               atol=1e-12)
    assert stack.shape[0] >= SCREEN_MIN_ROI  # the screen runs
    for threshold in (0.3, MIN_SYMMETRY, 0.8):
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(lost_beads(stack, x, y, threshold), full < threshold)
            np.testing.assert_array_equal(lost_beads(by_frame, x, y, threshold), full < threshold)
    assert 0 < (full < 0.5).sum() < n  # both kinds present
    small = stack[16:48, 16:48]  # below SCREEN_MIN_ROI: scored on every second row and column only
    xs, ys = x - 16, y - 16
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(lost_beads(small, xs, ys, 0.5), radial_symmetry(small, xs, ys) < 0.5)


def test_screen_sample_from_camera_integers_scores_like_the_float_stack():
    stack, x, y = _leaving_and_empty(300.0)
    counts = np.clip(np.rint(stack), 0, 65535).astype(np.uint16)
    frames = np.ascontiguousarray(counts.transpose(2, 0, 1))  # (frame, y, x), one 64 px ROI each
    rois = np.array([[0, 64, 0, 64]])
    as_float = counts.astype(np.float64)
    x[3] = np.nan
    sample = crop_rois(frames, rois, step=SCREEN_STEP)
    want = radial_symmetry(as_float, x, y, step=SCREEN_STEP)
    got = sample_symmetry(sample, x, y, 64, SCREEN_STEP)  # one bincount for counts and sums (exact integer sums)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sample_symmetry(sample.astype(np.float64), x, y, 64, SCREEN_STEP), want, rtol=0,
                               atol=1e-12)
    assert np.isnan(got[3]) and np.nanmin(want) < 0.5 < np.nanmax(want)
    for threshold in (0.3, 0.5, 0.8):
        np.testing.assert_array_equal(lost_beads(as_float, x, y, threshold, sample),
                                      lost_beads(as_float, x, y, threshold))


@pytest.mark.gpu
@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
def test_cupy_gives_the_numpy_results():
    import cupy

    stack, x, y = _leaving_and_empty(300.0)
    on_gpu, xg, yg = cupy.asarray(stack), cupy.asarray(x), cupy.asarray(y)
    score = radial_symmetry(on_gpu, xg, yg)
    assert isinstance(score, cupy.ndarray)
    np.testing.assert_allclose(score.get(), radial_symmetry(stack, x, y), rtol=0, atol=1e-9)
    for threshold in (0.3, 0.5, 0.8):
        np.testing.assert_array_equal(lost_beads(on_gpu, xg, yg, threshold).get(), lost_beads(stack, x, y, threshold))
