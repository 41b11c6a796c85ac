"""Radial profiles (radial_profile, fft_profile, fft_profile_with_center): behaviour
from first principles, choices the spec leaves open, input validation and mutation.

Choices documented here:

* Centres that are NaN or outside the frame give an all-NaN profile for that
  image (no IndexError, no wrap-around); ``fft_profile_with_center`` leaves
  that image unweighted.
* A NaN pixel makes only the radial bin it falls in NaN, in its own image.
* The FFT profiles need an even width: 65 px raises ValueError.
* Profiles keep the stack's float type (float32 in, float32 out).
* 0 images give (n_bins, 0) profiles.

Agreement with the reference package is in test_conformance.py.
"""


import numpy as np
import pytest

import magtrack_dask as md

N = 10


@pytest.fixture(scope="module")
def beads(simulated_beads):
    return simulated_beads(N, 31, photons=5000, seed=3)


@pytest.fixture(autouse=True)
def _no_warnings(no_warnings):
    yield


# ------------------------------------------------------------------ radial_profile


@pytest.mark.parametrize("n_px", [64, 65, 17])
@pytest.mark.parametrize("oversample", [1, 2, 5])
def test_radial_profile_shape_and_constant_image(n_px, oversample):
    stack = np.full((n_px, n_px, 3), 7.25)
    x = np.array([(n_px - 1) / 2, 3.3, n_px - 1.0])
    p = md.radial_profile(stack, x, x[::-1], oversample=oversample)
    assert p.shape == ((n_px // 2) * oversample, 3)
    # every non-empty bin of a flat image is exactly the flat value (with
    # oversampling some thin rings hold no pixel centre: NaN)
    assert np.all((p == 7.25) | np.isnan(p))
    assert np.isfinite(p).mean() > 0.5


def test_radial_profile_of_the_distance_image():
    """An image equal to each pixel's distance from the centre: bin k averages
    the distances that round to k, so it is close to k."""
    n = 64
    cx, cy = 30.3, 33.8
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(xx - cx, yy - cy)
    for oversample in (1, 3):
        p = md.radial_profile(r[:, :, None], np.array([cx]), np.array([cy]), oversample=oversample)[:, 0]
        k = np.arange(p.size) / oversample
        np.testing.assert_allclose(p[2 * oversample :], k[2 * oversample :], atol=0.5 / oversample)
        # exact: the mean of the pixels whose rounded distance is k
        b = np.rint(r * oversample)
        for kk in (oversample * 5, oversample * 20, p.size - 1):
            assert p[kk] == pytest.approx(r[b == kk].mean(), rel=1e-12)


def test_radial_profile_centre_convention():
    """x is the column (axis 1), y the row (axis 0): a single bright pixel at
    row 10, column 40 lands in bin 0 about (x=40, y=10) only."""
    stack = np.zeros((64, 64, 2))
    stack[10, 40, :] = 1.0
    p = md.radial_profile(stack, np.array([40.0, 10.0]), np.array([10.0, 40.0]))
    assert p[0, 0] == 1.0 and np.nansum(p[1:, 0]) == 0
    assert np.nansum(p[:, 1]) < 0.05  # swapped centre: far away, averaged down


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_radial_profile_keeps_dtype(beads, dtype):
    stack, x, y = beads
    p = md.radial_profile(stack.astype(dtype), x, y)
    assert p.dtype == dtype


def test_radial_profile_float32_is_the_rounded_float64_profile(beads):
    """Binning accumulates in float64: the float32 profile is the float64 one rounded once."""
    stack, x, y = beads
    s32 = stack.astype(np.float32)
    p32 = md.radial_profile(s32, x, y, oversample=2)
    p64 = md.radial_profile(s32.astype(np.float64), x, y, oversample=2)
    np.testing.assert_allclose(p32, p64, rtol=2.0**-24, atol=0, equal_nan=True)


BAD = [np.nan, -0.6, 63.6, 1e6, np.inf]


@pytest.mark.parametrize("which", ["x", "y"])
def test_radial_profile_invalid_centres(beads, which):
    stack, x, y = beads
    xb, yb = x.copy(), y.copy()
    (xb if which == "x" else yb)[: len(BAD)] = BAD
    p = md.radial_profile(stack, xb, yb)
    assert np.isnan(p[:, : len(BAD)]).all()
    np.testing.assert_array_equal(p[:, len(BAD) :], md.radial_profile(stack, x, y)[:, len(BAD) :])


def test_radial_profile_nan_pixel_only_spoils_its_bin(beads):
    stack, x, y = beads
    s = stack.copy()
    s[int(round(y[2])), int(round(x[2])) + 10, 2] = np.nan  # ~10 px from the centre
    p = md.radial_profile(s, x, y)
    good = md.radial_profile(stack, x, y)
    nan_bins = np.flatnonzero(np.isnan(p[:, 2]) & ~np.isnan(good[:, 2]))  # bin 0 may be empty anyway
    assert nan_bins.size == 1 and abs(nan_bins[0] - 10) <= 1
    keep = np.ones(p.shape, bool)
    keep[nan_bins[0], 2] = False
    np.testing.assert_array_equal(p[keep], good[keep])  # NaN == NaN here


# ------------------------------------------------------------------ fft_profile


def test_fft_profile_needs_an_even_width():
    with pytest.raises(ValueError, match="even"):
        md.fft_profile(np.ones((65, 65, 2)))
    with pytest.raises(ValueError, match="even"):
        md.fft_profile_with_center(np.ones((65, 65, 2)), np.full(2, 32.0), np.full(2, 32.0))


@pytest.mark.parametrize(
    ("kwargs", "n_bins"),
    [({}, 64), ({"oversample": 1}, 16), ({"oversample": 2, "rmin": 0.25, "rmax": 0.5}, 16), ({"rmax": 0.25}, 32)],
)
def test_fft_profile_shape(beads, kwargs, n_bins):
    """round(n/2 * rmax * oversample) - round(n/2 * rmin * oversample) bins."""
    p = md.fft_profile(beads[0], **kwargs)
    assert p.shape == (n_bins, N)


def test_fft_profile_of_a_constant_image_is_dc_only():
    p = md.fft_profile(np.full((32, 32, 1), 2.0), oversample=1)
    assert p[0, 0] == pytest.approx(2.0 * 32 * 32)
    assert np.nanmax(np.abs(p[1:])) < 1e-9


def test_fft_profile_of_a_cosine():
    """A cosine of 5 cycles across the frame puts its magnitude in radial bin 5."""
    n = 64
    img = np.cos(2 * np.pi * 5 * np.arange(n) / n)[None, :] * np.ones((n, 1))
    p = md.fft_profile(img[:, :, None], oversample=1)[:, 0]
    assert np.nanargmax(p) == 5
    assert p[5] > 10 * np.nanmax(np.delete(p, 5))


def test_fft_profile_is_shift_invariant(beads):
    """|FFT| ignores circular shifts, so the profile does too."""
    stack = beads[0]
    shifted = np.roll(stack, (5, -9), axis=(0, 1))
    np.testing.assert_allclose(md.fft_profile(shifted), md.fft_profile(stack), rtol=1e-10, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["frames-last", "frame-major"])
@pytest.mark.parametrize("kwargs", [{}, {"oversample": 2, "rmin": 0.25, "rmax": 0.5}])
def test_fft_profile_equals_the_ring_matrix_formulation(dtype, order, kwargs):
    """Blocks of images, one bincount per block: equal to the mean of each
    ring's magnitudes by the dense averaging matrix, over many blocks, for
    both memory orders of the stack."""
    from magtrack_dask.core.profiles import _fourier_ring_matrix

    rng = np.random.default_rng(5)
    images = rng.normal(100.0, 10.0, (300, 48, 48)).astype(dtype)  # 300 images: several blocks
    stack = np.ascontiguousarray(np.moveaxis(images, 0, 2)) if order == "frames-last" else np.moveaxis(images, 0, 2)
    matrix, empty = _fourier_ring_matrix(np, 48, kwargs.get("oversample", 4), kwargs.get("rmin", 0.0),
                                         kwargs.get("rmax", 0.5))
    magnitude = np.abs(np.fft.rfft2(stack.astype(np.float64), axes=(0, 1))).reshape(matrix.shape[1], -1)
    expected = matrix @ magnitude
    expected[empty] = np.nan
    with md.core_threads(2):
        got = md.fft_profile(stack, **kwargs)
    rtol = 1e-12 if dtype == np.float64 else 1e-5  # float32 transforms
    np.testing.assert_allclose(got, expected, rtol=rtol, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fft_profile_keeps_dtype(beads, dtype):
    assert md.fft_profile(beads[0].astype(dtype)).dtype == dtype
    s = beads[0].astype(dtype)
    assert md.fft_profile_with_center(s, beads[1], beads[2]).dtype == dtype


@pytest.mark.parametrize("kwargs", [{"rmin": 0.3, "rmax": 0.2}, {"rmin": -0.1}])
def test_fft_profile_bad_range(beads, kwargs):
    with pytest.raises(ValueError, match="rmin"):
        md.fft_profile(beads[0], **kwargs)


# ------------------------------------------------------------------ fft_profile_with_center


def test_fft_profile_with_center_weights_in_place(beads):
    """The spec: the stack is weighted in place by a Gaussian (sigma = n /
    gaus_factor) centred at row y, column x; the profile is fft_profile of the
    weighted stack."""
    stack, x, y = beads
    s = stack.copy()
    p = md.fft_profile_with_center(s, x, y, gaus_factor=5.0)
    grid = np.arange(64.0)
    window = np.exp(-((grid[:, None, None] - y) ** 2 + (grid[None, :, None] - x) ** 2) / (2 * (64 / 5.0) ** 2))
    np.testing.assert_allclose(s, stack * window, rtol=1e-12)
    np.testing.assert_allclose(p, md.fft_profile(s), rtol=1e-12, equal_nan=True)


def test_fft_profile_with_center_invalid_centres(beads):
    """NaN or outside: NaN profile, image left unweighted; the other images unchanged."""
    stack, x, y = beads
    xb, yb = x.copy(), y.copy()
    xb[0], yb[1], xb[2] = np.nan, -3.0, 64.0
    s = stack.copy()
    p = md.fft_profile_with_center(s, xb, yb)
    assert np.isnan(p[:, :3]).all()
    np.testing.assert_array_equal(s[:, :, :3], stack[:, :, :3])
    s_good = stack.copy()
    p_good = md.fft_profile_with_center(s_good, x, y)
    np.testing.assert_allclose(p[:, 3:], p_good[:, 3:], rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(s[:, :, 3:], s_good[:, :, 3:])


def test_fft_profile_with_center_leaves_x_y_alone(beads):
    stack, x, y = beads
    x0, y0 = x.copy(), y.copy()
    md.fft_profile_with_center(stack.copy(), x, y)
    assert np.array_equal(x, x0) and np.array_equal(y, y0)


@pytest.mark.parametrize("gaus_factor", [0.0, -2.0])
def test_fft_profile_with_center_bad_gaus_factor(beads, gaus_factor):
    with pytest.raises(ValueError, match="gaus_factor"):
        md.fft_profile_with_center(beads[0].copy(), beads[1], beads[2], gaus_factor=gaus_factor)


# ------------------------------------------------------------------ common validation

PROFILE_FNS = {
    "radial_profile": lambda s, x, y, **kw: md.radial_profile(s, x, y, **kw),
    "fft_profile": lambda s, x, y, **kw: md.fft_profile(s, **kw),
    "fft_profile_with_center": lambda s, x, y, **kw: md.fft_profile_with_center(s, x, y, **kw),
}


@pytest.mark.parametrize("name", list(PROFILE_FNS))
@pytest.mark.parametrize("oversample", [0, -1, 1.5, True])
def test_bad_oversample(beads, name, oversample):
    stack, x, y = beads
    with pytest.raises(ValueError, match="oversample"):
        PROFILE_FNS[name](stack.copy(), x, y, oversample=oversample)


@pytest.mark.parametrize("name", list(PROFILE_FNS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64, np.float16])
def test_non_float_stack(name, dtype):
    with pytest.raises(TypeError, match="stack"):
        PROFILE_FNS[name](np.ones((16, 16, 2), dtype), np.full(2, 7.5), np.full(2, 7.5))


@pytest.mark.parametrize("name", list(PROFILE_FNS))
@pytest.mark.parametrize(
    ("shape", "match"), [((16, 16), "stack"), ((16, 14, 2), "square"), ((2, 16, 16), "square")]
)
def test_bad_stack_shape(name, shape, match):
    with pytest.raises(ValueError, match=match):
        PROFILE_FNS[name](np.ones(shape), np.full(2, 7.5), np.full(2, 7.5))


@pytest.mark.parametrize("name", ["radial_profile", "fft_profile_with_center"])
def test_centre_lengths(name):
    stack = np.ones((16, 16, 3))
    with pytest.raises(ValueError, match="x"):
        PROFILE_FNS[name](stack, np.full(2, 7.5), np.full(3, 7.5))
    with pytest.raises(ValueError, match="y"):
        PROFILE_FNS[name](stack, np.full(3, 7.5), np.full(4, 7.5))


@pytest.mark.parametrize("name", ["radial_profile", "fft_profile"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_mutation(beads, name, dtype):
    stack, x, y = beads
    s = stack.astype(dtype)
    xb, yb = x.copy(), y.copy()
    xb[0] = np.nan
    s0, x0, y0 = s.copy(), xb.copy(), yb.copy()
    PROFILE_FNS[name](s, xb, yb, oversample=2)
    assert np.array_equal(s, s0)
    assert np.array_equal(xb, x0, equal_nan=True) and np.array_equal(yb, y0)


@pytest.mark.parametrize("name", list(PROFILE_FNS))
def test_empty_stack(name):
    """0 images give (n_bins, 0) profiles, or a ValueError naming the stack;
    never an unrelated NumPy error."""
    try:
        p = PROFILE_FNS[name](np.zeros((16, 16, 0)), np.zeros(0), np.zeros(0))
    except ValueError as err:
        assert "stack" in str(err), f"unclear error for 0 images: {err}"
    else:
        assert p.ndim == 2 and p.shape[1] == 0
