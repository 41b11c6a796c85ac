"""Helpers (binmean, pearson, gaussian, gaussian_2d, crop_stack_to_rois, parabolic_vertex):
behaviour from first principles, input validation and (no) mutation.

Agreement with the reference package is in test_conformance.py.
"""

import warnings

import numpy as np
import pytest

import magtrack_dask as md


@pytest.fixture(autouse=True)
def _no_warnings():
    """Our helpers never warn (no divide-by-zero RuntimeWarnings leak out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------ binmean


def test_binmean_values_and_empty_bins():
    x = np.array([[0, 1], [0, 3], [2, 3], [5, 9]])
    w = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 40.0], [7.0, 80.0]])
    out = md.binmean(x, w, 4)
    expected = np.array([[2.0, np.nan], [np.nan, 10.0], [5.0, np.nan], [np.nan, 30.0]])
    np.testing.assert_array_equal(out, expected)  # values >= n_bins (5, 9) are dropped


def test_binmean_clips_x_in_place():
    """The spec: x is clipped in place to n_bins."""
    x = np.array([[0, 7], [4, 2], [12, 3]], dtype=np.int32)
    md.binmean(x, np.ones(x.shape), 4)
    np.testing.assert_array_equal(x, [[0, 4], [4, 2], [4, 3]])


def test_binmean_leaves_weights_alone():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10, (50, 3))
    w = rng.normal(size=(50, 3))
    w0 = w.copy()
    md.binmean(x, w, 8)
    assert np.array_equal(w, w0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binmean_keeps_weight_dtype(dtype):
    out = md.binmean(np.zeros((3, 2), int), np.ones((3, 2), dtype), 2)
    assert out.dtype == dtype and out.shape == (2, 2)


def test_binmean_errors():
    w = np.ones((4, 2))
    with pytest.raises(TypeError, match="x"):
        md.binmean(np.ones((4, 2)), w, 3)  # float bins
    with pytest.raises(ValueError, match="x"):
        md.binmean(-np.ones((4, 2), int), w, 3)
    with pytest.raises(ValueError, match="weights"):
        md.binmean(np.ones((4, 3), int), w, 3)
    with pytest.raises(ValueError, match="x"):
        md.binmean(np.ones(4, int), w[:, 0], 3)  # 1-D
    for n_bins in (0, -2, 2.5):
        with pytest.raises(ValueError, match="n_bins"):
            md.binmean(np.ones((4, 2), int), w, n_bins)


# ------------------------------------------------------------------ pearson


def test_pearson_known_values():
    t = np.linspace(0, 1, 20)
    x = np.stack([t, t**2, np.sin(7 * t)], axis=1)
    y = np.stack([3 * t + 1, -t], axis=1)
    r = md.pearson(x, y)
    assert r.shape == (2, 3)
    np.testing.assert_allclose(r[0, 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(r[1, 0], -1.0, atol=1e-12)
    np.testing.assert_allclose(r[0, 1], np.corrcoef(t, t**2)[0, 1], rtol=1e-12)
    np.testing.assert_allclose(r[0, 2], np.corrcoef(t, np.sin(7 * t))[0, 1], rtol=1e-12)


def test_pearson_ignores_nan_entries():
    """A NaN is dropped from the column means and contributes 0 to the sums."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(15, 2))
    y = rng.normal(size=(15, 1))
    y_nan = y.copy()
    y_nan[4, 0] = np.nan
    r = md.pearson(x, y_nan)
    assert np.isfinite(r).all()
    yc = y_nan - np.nanmean(y_nan)
    yc[4] = 0
    xc = x - x.mean(axis=0)
    expected = (yc.T @ xc) / (np.sqrt((yc**2).sum()) * np.sqrt((xc**2).sum(axis=0)))
    np.testing.assert_allclose(r, expected, rtol=1e-12)


def test_pearson_constant_column_is_nan():
    x = np.ones((10, 2))
    x[:, 1] = np.arange(10)
    r = md.pearson(x, np.arange(10.0)[:, None])
    assert np.isnan(r[0, 0]) and r[0, 1] == pytest.approx(1.0)


def test_pearson_all_nan_column_is_nan_without_warnings():
    """An all-NaN column (a lost bead's profile) correlates as NaN, silently
    (the autouse filter turns NumPy's 'Mean of empty slice' into an error)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 3))
    y = rng.normal(size=(12, 2))
    y[:, 1] = np.nan
    r = md.pearson(x, y)
    assert np.isnan(r[1]).all() and np.isfinite(r[0]).all()


def test_pearson_no_mutation_and_errors():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    x[0, 0] = np.nan
    x0, y0 = x.copy(), y.copy()
    md.pearson(x, y)
    assert np.array_equal(x, x0, equal_nan=True) and np.array_equal(y, y0)
    with pytest.raises(ValueError, match="x and y"):
        md.pearson(x, y[:5])
    with pytest.raises(ValueError, match="x and y"):
        md.pearson(x[:, 0], y)


# ------------------------------------------------------------------ gaussians


def test_gaussian():
    x = np.linspace(-5, 5, 11)
    g = md.gaussian(x, 1.0, 2.0)
    np.testing.assert_allclose(g, np.exp(-((x - 1) ** 2) / 8), rtol=1e-15)
    assert g[6] == 1.0
    x0 = x.copy()
    md.gaussian(x, 1.0, 2.0)
    assert np.array_equal(x, x0)


def test_gaussian_2d_axes_and_peak():
    """Axis 0 follows x/mu_x, axis 1 follows y/mu_y (as in the spec)."""
    x = np.arange(30.0)
    y = np.arange(20.0)
    mu_x = np.array([4.0, 25.0])
    mu_y = np.array([15.0, 2.0])
    g = md.gaussian_2d(x, y, mu_x, mu_y, 3.0)
    assert g.shape == (30, 20, 2)
    for k in range(2):
        assert np.unravel_index(np.argmax(g[:, :, k]), (30, 20)) == (mu_x[k], mu_y[k])
        assert g[int(mu_x[k]), int(mu_y[k]), k] == 1.0
    expected = np.exp(-((x[:, None] - 4.0) ** 2 + (y[None, :] - 15.0) ** 2) / 18)
    np.testing.assert_allclose(g[:, :, 0], expected, rtol=1e-13, atol=1e-300)
    for a, a0 in ((x, np.arange(30.0)), (mu_x, np.array([4.0, 25.0]))):
        assert np.array_equal(a, a0)


# ------------------------------------------------------------------ crop_stack_to_rois


@pytest.fixture
def frames():
    return np.arange(40 * 50 * 3, dtype=np.uint16).reshape(40, 50, 3)


def test_crop_values_copy_and_no_mutation(frames):
    rois = np.array([[0, 10, 0, 10], [30, 40, 40, 50], [5, 15, 20, 30]])
    f0, r0 = frames.copy(), rois.copy()
    out = md.crop_stack_to_rois(frames, rois)
    assert out.shape == (10, 10, 3, 3) and out.dtype == np.uint16
    for i, (t, b, l, r) in enumerate(rois):
        np.testing.assert_array_equal(out[:, :, :, i], frames[t:b, l:r, :])
    out[:] = 0  # the result is a copy
    assert np.array_equal(frames, f0) and np.array_equal(rois, r0)


@pytest.mark.parametrize(
    ("rois", "match"),
    [
        ([[0, 10, 0, 10], [0, 12, 0, 12]], "same"),  # unequal sizes
        ([[0, 10, 0, 12]], "square"),  # not square
        ([[-1, 9, 0, 10]], "outside"),
        ([[35, 45, 0, 10]], "outside"),  # below the 40-row frame
        ([[0, 10, 45, 55]], "outside"),  # right of the 50-column frame
        ([[0, 10, 0]], "rois"),  # wrong shape
        (np.zeros((0, 4), int), "rois"),
        ([[5, 5, 5, 5]], "rois"),  # empty ROI
    ],
    ids=["unequal", "non-square", "negative", "past-bottom", "past-right", "3-columns", "none", "empty"],
)
def test_crop_bad_rois(frames, rois, match):
    with pytest.raises(ValueError, match=match):
        md.crop_stack_to_rois(frames, np.asarray(rois, dtype=int))


def test_crop_bad_types(frames):
    with pytest.raises(TypeError, match="rois"):
        md.crop_stack_to_rois(frames, np.array([[0.0, 10.0, 0.0, 10.0]]))
    with pytest.raises(ValueError, match="stack"):
        md.crop_stack_to_rois(frames[:, :, 0], np.array([[0, 10, 0, 10]]))


# ------------------------------------------------------------------ parabolic_vertex


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("n_local", [3, 5, 7, 9])
def test_parabolic_vertex_exact_on_parabolas(n_local, weighted):
    """A parabola is fitted exactly, whatever the weights and the estimate's error."""
    vertex = np.array([7.3, 12.5, 9.99, 10.0, 6.51])
    t = np.arange(25.0)
    data = 5.0 - 0.7 * (t[None, :] - vertex[:, None]) ** 2
    est = np.round(vertex) + np.array([0.4, -0.3, 0.0, 0.49, 0.2])
    out = md.parabolic_vertex(data, est, n_local, weighted=weighted)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, vertex, rtol=0, atol=1e-10)
    np.testing.assert_allclose(md.parabolic_vertex(-data, est, n_local, weighted=weighted), vertex, atol=1e-10)


@pytest.mark.parametrize("n_local", [3, 5, 7])
def test_parabolic_vertex_nan_near_the_ends(n_local):
    """NaN where the fit window would reach the first or last point, or the estimate is NaN."""
    n = 20
    half = n_local // 2
    data = np.tile(-((np.arange(n) - 10.0) ** 2), (8, 1))
    est = np.array([0.0, half - 0.6, half, half + 1, n - 2 - half, n - 1 - half, n - 1.0, np.nan])
    out = md.parabolic_vertex(data, est, n_local)
    expected_nan = [True, True, True, False, False, True, True, True]
    np.testing.assert_array_equal(np.isnan(out), expected_nan)


def test_parabolic_vertex_weighting_matters():
    """Weighted and unweighted fits differ on non-parabolic data (the flag is used)."""
    data = np.abs(np.arange(15.0) - 7.2)[None, :] ** 1.5
    a = md.parabolic_vertex(data, np.array([7.0]), 7, weighted=True)
    b = md.parabolic_vertex(data, np.array([7.0]), 7, weighted=False)
    assert abs(a[0] - b[0]) > 1e-4


def test_parabolic_vertex_flat_data_is_not_finite():
    out = md.parabolic_vertex(np.ones((2, 10)), np.array([5.0, 4.0]), 5)
    assert not np.isfinite(out).any()


def test_parabolic_vertex_no_mutation():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(10, 12))
    est = rng.uniform(2, 9, 10)
    d0, e0 = data.copy(), est.copy()
    md.parabolic_vertex(data, est, 5)
    assert np.array_equal(data, d0) and np.array_equal(est, e0)


@pytest.mark.parametrize("n_local", [4, 2, 1, 0, -3, 3.5, 13])
def test_parabolic_vertex_bad_n_local(n_local):
    """Even, below 3, fractional, or more points than the data has."""
    with pytest.raises(ValueError, match="n_local"):
        md.parabolic_vertex(np.ones((2, 12)), np.array([5.0, 5.0]), n_local)


def test_parabolic_vertex_bad_shapes():
    with pytest.raises(ValueError, match="data"):
        md.parabolic_vertex(np.ones(12), np.array([5.0]), 5)
    with pytest.raises(ValueError, match="vertex_est"):
        md.parabolic_vertex(np.ones((2, 12)), np.array([5.0, 5.0, 5.0]), 5)
