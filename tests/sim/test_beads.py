"""The bead simulator (magtrack_dask.sim.beads): layout, positions, optics, noise, Z-LUTs, errors."""

import numpy as np
import pytest

from magtrack_dask.core.profiles import radial_profile
from magtrack_dask.sim.beads import Optics, make_zlut, render_beads
from magtrack_dask.validation import InputError, InputTypeError

BG = 1000.0
C64 = 31.5  # centre of a 64 px ROI: between columns 31 and 32


def _com(image, background=BG):
    """Centre of mass (x, y) of the background-subtracted image."""
    w = image - background
    rows, cols = np.indices(w.shape)
    return (w * cols).sum() / w.sum(), (w * rows).sum() / w.sum()


def _pearson(a, b):
    a = (a - a.mean(axis=0)) / a.std(axis=0)
    b = (b - b.mean(axis=0)) / b.std(axis=0)
    return a.T @ b / a.shape[0]


def _brute_force_image(x, y, z, optics, n=64, os=5, sub=4):
    """Independent slow model: thin sphere sampled on a fine grid (os x os points per pixel,
    each averaged over sub x sub points), FFT propagation, pupil, |U|^2, mean over each pixel."""
    px = optics.pixel_size_nm
    length = 2 * n * os  # canvas twice the ROI: no wrap-around into the ROI
    u = (np.arange(length) + 0.5) / os - 0.5 - n / 2  # fine sample centres, ROI pixel units
    k0 = 2 * np.pi / optics.wavelength_nm
    a = optics.bead_diameter_nm / 2
    t = np.zeros((length, length), complex)
    for sy in range(sub):
        for sx in range(sub):
            yy = (u + ((sy + 0.5) / sub - 0.5) / os - y) * px
            xx = (u + ((sx + 0.5) / sub - 0.5) / os - x) * px
            h = 2 * np.sqrt(np.clip(a * a - yy[:, None] ** 2 - xx[None, :] ** 2, 0, None))
            t += np.exp(1j * k0 * (optics.n_bead - optics.n_medium + 1j * optics.k_bead) * h)
    t /= sub * sub
    f = np.fft.fftfreq(length, d=px / os)
    fr = np.hypot(f[:, None], f[None, :])
    fc = optics.na / optics.wavelength_nm
    pupil = np.sin(0.5 * np.pi * np.clip((fc - fr) / (optics.pupil_taper * fc), 0, 1)) ** 2
    km = optics.n_medium / optics.wavelength_nm
    defocus = np.exp(2j * np.pi * z * (np.sqrt(np.maximum(km**2 - fr**2, 0)) - km))
    intensity = np.abs(np.fft.ifft2(np.fft.fft2(t) * pupil * defocus)) ** 2
    pixels = intensity.reshape(2 * n, os, 2 * n, os).mean(axis=(1, 3))
    return pixels[n // 2 : n // 2 + n, n // 2 : n // 2 + n]


@pytest.fixture(scope="module")
def zlut():
    return make_zlut(np.arange(500.0, 5001.0, 50.0))


@pytest.mark.parametrize("dtype", ["float64", "float32", "uint16"])
@pytest.mark.parametrize("n_pixels", [64, 65, 128])
def test_shape_and_dtype(n_pixels, dtype):
    c = (n_pixels - 1) / 2
    stack = render_beads([c, c + 1.2, c - 2.7], [c, c - 0.4, c + 3.1], [800.0, 2500.0, 4800.0],
                         n_pixels=n_pixels, dtype=dtype)
    assert stack.shape == (n_pixels, n_pixels, 3)
    assert stack.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(stack.astype(np.float64)))


def test_scalars_broadcast_and_empty():
    stack = render_beads(C64, C64, [1000.0, 2000.0])
    assert stack.shape == (64, 64, 2)
    assert not np.allclose(stack[..., 0], stack[..., 1])
    assert render_beads(C64, 30.0, 1000.0).shape == (64, 64, 1)
    assert render_beads([], [], []).shape == (64, 64, 0)


def test_pixel_centre_convention():
    # x = 31.5 lies between columns 31 and 32: the image is mirror symmetric about them.
    im = render_beads(C64, C64, 3000.0)[..., 0]
    np.testing.assert_allclose(im, im[:, ::-1], atol=1e-3 * BG)
    np.testing.assert_allclose(im, im[::-1, :], atol=1e-3 * BG)
    # Integer x = column 20, y = row 40: symmetric about that column and that row.
    im = render_beads(20.0, 40.0, 3000.0)[..., 0]
    k = np.arange(1, 21)
    np.testing.assert_allclose(im[:, 20 + k], im[:, 20 - k], atol=1e-3 * BG)
    k = np.arange(1, 24)
    np.testing.assert_allclose(im[40 + k, :], im[40 - k, :], atol=1e-3 * BG)
    # Odd ROI: (n - 1) / 2 = 32 is the central pixel.
    im = render_beads(32.0, 32.0, 3000.0, n_pixels=65)[..., 0]
    np.testing.assert_allclose(im, im[::-1, ::-1], atol=1e-3 * BG)
    np.testing.assert_allclose(im, im.T, atol=1e-3 * BG)


@pytest.mark.parametrize("x, y", [(30.2, 33.7), (28.9, 29.4), (35.25, 31.0), (33.0, 30.5)])
@pytest.mark.parametrize("z", [1000.0, 1500.0])
def test_centre_of_mass_matches_truth(x, y, z):
    com_x, com_y = _com(render_beads(x, y, z)[..., 0])
    assert abs(com_x - x) < 0.05
    assert abs(com_y - y) < 0.05


@pytest.mark.parametrize("x, y, z", [(30.2, 33.7, 1500.0), (C64, C64, -2000.0)])
def test_matches_brute_force_optics(x, y, z):
    # Checks the object spectrum, defocus sign, pupil, pixel integration and the
    # Fourier sub-pixel shift against a direct fine-grid computation.
    optics = Optics()
    expected = BG * _brute_force_image(x, y, z, optics)
    image = render_beads(x, y, z, optics=optics)[..., 0]
    assert np.ptp(image) > 1000
    np.testing.assert_allclose(image, expected, atol=0.002 * BG)


def test_integer_shift_equals_roll():
    a = render_beads(C64, C64, 3500.0)[..., 0]
    b = render_beads(C64 + 3, C64 - 2, 3500.0)[..., 0]
    rolled = np.roll(a, shift=(-2, 3), axis=(0, 1))
    # Away from the edges that np.roll wraps around.
    np.testing.assert_allclose(b[4:-4, 5:-5], rolled[4:-4, 5:-5], atol=1e-3 * BG)


def test_subpixel_shift_conserves_signal():
    offset = np.array([0.0, 0.13, 0.37, 0.5, 0.81, 1.0])
    stack = render_beads(C64 + offset, C64 - offset, np.full(offset.size, 2500.0))
    signal = (stack - BG).sum(axis=(0, 1))
    np.testing.assert_allclose(signal, signal[0], rtol=1e-3)
    assert np.ptp(stack, axis=2).max() > 100  # the frames really differ


def test_background_flat_and_no_wraparound():
    # A bead at the left edge: the right-hand columns, 50+ px away, stay at the background.
    # (A periodic Fourier shift without padding would put the bead's copy just beyond them.)
    im = render_beads(2.0, C64, 3000.0)[..., 0]
    assert np.abs(im[:, 52:] - BG).max() < 0.005 * BG
    # Compact pattern near focus: the corners are flat background.
    im = render_beads(C64, C64, 1500.0)[..., 0]
    corners = np.hypot(*(np.indices(im.shape) - C64)) > 36
    assert np.abs(im[corners] - BG).max() < 0.002 * BG


def test_roi_size_does_not_change_the_bead():
    small = render_beads(C64, C64, 2500.0)[..., 0]
    large = render_beads(63.5, 63.5, 2500.0, n_pixels=128)[..., 0]
    np.testing.assert_allclose(large[32:96, 32:96], small, atol=1e-3 * BG)


def test_above_and_below_focus_differ():
    z = np.array([-2000.0, 2000.0])
    stack = render_beads(np.full(2, C64), np.full(2, C64), z)
    prof = radial_profile(stack, np.full(2, C64), np.full(2, C64))[1:]
    # The bead focuses the light downstream (z > 0): bright centre; upstream: dark centre.
    assert prof[0, 1] > 1.5 * BG
    assert prof[0, 0] < 0.8 * BG
    assert _pearson(prof[:, :1], prof[:, 1:])[0, 0] < 0.5


def test_rings_far_from_focus_compact_spot_near_focus():
    stack = render_beads(np.full(2, C64), np.full(2, C64), [600.0, 5000.0])
    prof = radial_profile(stack, np.full(2, C64), np.full(2, C64))[1:]
    dev = np.abs(prof - BG) > 0.05 * BG
    outermost = [np.flatnonzero(dev[:, i]).max() + 1 for i in range(2)]  # bin 0 was dropped
    assert outermost[0] <= 15  # near focus: compact
    assert outermost[1] >= 25  # far: rings out to 25+ px, still inside the 32 px radius
    # Several rings: the far profile has at least two dark minima below the background.
    p = prof[:, 1]
    minima = (p[1:-1] < p[:-2]) & (p[1:-1] < p[2:]) & (p[1:-1] < 0.95 * BG)
    assert minima.sum() >= 2


def test_profiles_change_with_z_and_match_the_lut(zlut):
    profiles = zlut[2:]
    # Adjacent LUT columns are 50 nm apart: 100 nm apart always differ by several counts.
    assert np.abs(profiles[:, 2:] - profiles[:, :-2]).max(axis=0).min() > 2
    # Off-grid z: the correlation with the LUT peaks at the nearest reference z.
    z_true = np.array([812.0, 1234.0, 2750.0, 3333.0, 4321.0])
    n = z_true.size
    stack = render_beads(np.full(n, C64), np.full(n, C64), z_true)
    prof = radial_profile(stack, np.full(n, C64), np.full(n, C64))[1:]
    best = zlut[0, np.argmax(_pearson(prof, profiles), axis=1)]
    assert np.all(np.abs(best - z_true) <= 25.0 + 1e-9)
    # With photon noise, still within a few LUT steps.
    stack = render_beads(np.full(n, C64), np.full(n, C64), z_true, photons=1000, seed=3)
    prof = radial_profile(stack, np.full(n, C64), np.full(n, C64))[1:]
    best = zlut[0, np.argmax(_pearson(prof, profiles), axis=1)]
    assert np.all(np.abs(best - z_true) <= 250.0)


@pytest.mark.parametrize("photons, var_per_mean", [(BG, 1.0), (BG / 4, 4.0)])
def test_poisson_variance(photons, var_per_mean):
    # Output = Poisson(photons * I / I_bg) * background / photons, so
    # variance / mean = background / photons (1 when photons == background).
    n = 400
    stack = render_beads(np.full(n, C64), np.full(n, C64), np.full(n, 2500.0), photons=photons, seed=7)
    clean = render_beads(C64, C64, 2500.0)[..., 0]
    mean, var = stack.mean(axis=2), stack.var(axis=2, ddof=1)
    ratio = var.sum() / mean.sum()
    assert abs(ratio - var_per_mean) < 0.05 * var_per_mean
    # The noise is unbiased: per-pixel means scatter about the clean image as expected.
    z_scores = (mean - clean) / np.sqrt(clean * var_per_mean / n)
    assert abs(z_scores.mean()) < 0.1
    assert 0.9 < z_scores.std() < 1.1


def test_seed_reproducible():
    kw = dict(photons=500.0, dtype="uint16")
    a = render_beads([30.0, 33.0], [31.0, 32.0], [1000.0, 2000.0], seed=42, **kw)
    b = render_beads([30.0, 33.0], [31.0, 32.0], [1000.0, 2000.0], seed=42, **kw)
    c = render_beads([30.0, 33.0], [31.0, 32.0], [1000.0, 2000.0], seed=43, **kw)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
    assert np.all(np.diff(np.unique(a[..., 0])) >= 1)  # whole camera counts


def test_uint16_rounds_and_clips():
    z = [1000.0, 2000.0]
    exact = render_beads([C64, C64], [C64, C64], z, background=30000.0)
    counts = render_beads([C64, C64], [C64, C64], z, background=30000.0, dtype="uint16")
    assert exact.max() > 65535  # the bright focus would overflow the camera
    np.testing.assert_allclose(counts, np.clip(np.rint(exact), 0, 65535), atol=1.0)
    assert counts.max() == 65535


def test_many_frames_match_single_renders():
    # Several internal batches: each frame depends only on its own x, y, z.
    g = np.random.default_rng(0)
    n = 700
    x, y = C64 + g.uniform(-3, 3, (2, n))
    z = g.uniform(500, 5000, n)
    stack = render_beads(x, y, z, dtype="float32")
    for i in (0, 255, 256, 511, 699):
        np.testing.assert_allclose(stack[..., i], render_beads(x[i], y[i], z[i])[..., 0], atol=0.02)
    noisy = render_beads(x, y, z, photons=1000, dtype="uint16", seed=1)
    assert noisy.shape == (64, 64, n) and noisy.dtype == np.uint16
    assert abs(noisy.astype(np.float64).mean() / stack.mean() - 1) < 1e-3


def test_make_zlut_format():
    z_ref = np.array([500.0, 1500.0, 2500.0, 3500.0])
    lut = make_zlut(z_ref)
    assert lut.shape == (33, 4)
    np.testing.assert_array_equal(lut[0], z_ref)
    stack = render_beads(np.full(4, C64), np.full(4, C64), z_ref)
    np.testing.assert_allclose(lut[1:], radial_profile(stack, np.full(4, C64), np.full(4, C64)))
    assert np.all(np.isfinite(lut[2:]))
    lut65 = make_zlut(z_ref[::-1], n_pixels=65, background=200.0)
    assert lut65.shape == (33, 4)
    np.testing.assert_array_equal(lut65[0], z_ref[::-1])
    assert np.all(np.isfinite(lut65))  # odd ROI: a pixel sits at the bead centre
    # Averaging frames over sub-pixel positions changes the profiles a little, not a lot.
    lut8 = make_zlut(z_ref, oversample_frames=8)
    assert np.all(np.isfinite(lut8[2:]))
    assert np.abs(lut8[2:] - lut[2:]).max() > 1
    assert np.diag(_pearson(lut8[2:], lut[2:])).min() > 0.98


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(x=[1.0, 2.0], y=[1.0], z=[1.0, 2.0]), "x, y and z"),
        (dict(x=[[1.0]], y=1.0, z=1.0), "x"),
        (dict(x=70.0, y=30.0, z=1000.0), "x"),
        (dict(x=30.0, y=np.nan, z=1000.0), "y"),
        (dict(x=30.0, y=30.0, z=1e6), "z"),
        (dict(x=30.0, y=30.0, z=1000.0, n_pixels=7), "n_pixels"),
        (dict(x=3.0, y=3.0, z=1000.0, n_pixels=64.0), "n_pixels"),
        (dict(x=30.0, y=30.0, z=1000.0, background=0.0), "background"),
        (dict(x=30.0, y=30.0, z=1000.0, photons=-5.0), "photons"),
        (dict(x=30.0, y=30.0, z=1000.0, dtype="int32"), "dtype"),
    ],
)
def test_render_beads_rejects_bad_input(kwargs, name):
    with pytest.raises(InputError, match=name):
        render_beads(**kwargs)


def test_bad_optics_and_zlut_arguments():
    with pytest.raises(InputError, match="na"):
        Optics(na=1.4)
    with pytest.raises(InputError, match="pixel_size_nm"):
        Optics(pixel_size_nm=400.0)
    with pytest.raises(InputError, match="pupil_taper"):
        Optics(pupil_taper=2.0)
    with pytest.raises(InputTypeError, match="optics"):
        render_beads(30.0, 30.0, 1000.0, optics="default")
    with pytest.raises(InputError, match="z_ref"):
        make_zlut([1000.0, 500.0, 2000.0])
    with pytest.raises(InputError, match="oversample_frames must be an integer >= 1, got 0"):
        make_zlut([1000.0, 2000.0], oversample_frames=0)
    with pytest.raises(InputError, match="oversample_frames must be an integer >= 1, got True"):
        make_zlut([1000.0, 2000.0], oversample_frames=True)


def test_custom_optics():
    silica = Optics(n_bead=1.45, bead_diameter_nm=1500.0, na=0.6, wavelength_nm=660.0, contrast=0.5)
    im = render_beads(C64, C64, 3000.0, optics=silica)[..., 0]
    default = render_beads(C64, C64, 3000.0)[..., 0]
    assert not np.allclose(im, default, atol=1)
    assert np.abs(im[0, 0] - BG) < 0.01 * BG
    # Half the contrast halves the modulation.
    full = render_beads(C64, C64, 3000.0, optics=Optics(n_bead=1.45, bead_diameter_nm=1500.0, na=0.6,
                                                         wavelength_nm=660.0))[..., 0]
    np.testing.assert_allclose(im - BG, 0.5 * (full - BG), atol=1e-3 * BG)
