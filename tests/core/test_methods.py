"""The accurate method (magtrack_dask.core.spline_profile, fit_z, methods) against simulated beads with known
truth; the compiled kernel against the NumPy formulation; the CuPy path (GPU only)."""

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask._backend import check_cupy
from magtrack_dask.core import _numba_spline, spline_profile
from magtrack_dask.core.fit_z import fit_z
from magtrack_dask.core.methods import track_stack, zlut_from_stack
from magtrack_dask.sim.beads import render_beads

ROI = 32
Z_STEPS = np.arange(600.0, 2601.0, 50.0)  # rings fit in 32 px ROIs


@pytest.fixture(scope="module")
def beads():
    """Noise-free and noisy 32 px beads within 1.5 px of the centre, and their truth."""
    rng = np.random.default_rng(11)
    n = 60
    x, y = 15.5 + rng.uniform(-1.5, 1.5, (2, n))
    z = rng.uniform(900, 2300, n)
    clean = render_beads(x, y, z, n_pixels=ROI)
    noisy = render_beads(x, y, z, n_pixels=ROI, photons=1e4, background=1e4, seed=3)
    return clean, noisy, x, y, z


@pytest.fixture(scope="module")
def calibration():
    """Two noise-free frames per 50 nm step at random sub-pixel offsets (the measured-style LUT's frames)."""
    rng = np.random.default_rng(5)
    z = np.repeat(Z_STEPS, 2)
    x, y = 15.5 + rng.uniform(-0.5, 0.5, (2, z.size))
    return render_beads(x, y, z, n_pixels=ROI), z


def test_compiled_kernel_equals_the_numpy_formulation(beads):
    _, noisy, *_ = beads
    assert _numba_spline.TAPER_PX == spline_profile.TAPER_PX and _numba_spline.CLIP == spline_profile.CLIP
    assert _numba_spline.SAMPLE_STEP == spline_profile.SAMPLE_STEP
    hot = noisy.copy()
    hot[3, 4, 0] = 65535.0  # a hot pixel: both start elsewhere than at it
    hot[:, :, 1] = 1000.0  # a constant image: NaN in both
    for stack in (hot, np.ascontiguousarray(np.moveaxis(hot, 2, 0)).transpose(1, 2, 0), hot.astype(np.float32)):
        a = spline_profile.accurate_xy_profiles(stack, compiled=False)
        b = spline_profile.accurate_xy_profiles(stack, compiled=True)
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-9 * max(1.0, float(np.nanmax(np.abs(u)))))
        assert b[2].dtype == stack.dtype and np.isnan(b[0][1]) and np.isnan(b[2][:, 1]).all()
        assert abs(b[0][0] - 15.5) < 2


def test_centres_reach_the_truth_without_pixel_bias(beads):
    clean, noisy, x, y, _ = beads
    cx, cy, _ = spline_profile.accurate_xy_profiles(clean)
    assert np.abs(cx - x).max() < 2e-3 and np.abs(cy - y).max() < 2e-3  # px: 0.2 nm at 100 nm/px
    mx, my, _, _ = md.stack_to_xyzp(noisy)
    nx, ny, _ = spline_profile.accurate_xy_profiles(noisy)
    rms = lambda a, b: np.sqrt(np.mean((a - b) ** 2))  # noqa: E731
    assert rms(nx, x) < 0.8 * rms(mx, x) and rms(ny, y) < 0.8 * rms(my, y)  # the magtrack method's is ~1.4x


def test_profiles_hardly_depend_on_the_sub_pixel_centre():
    # one bead at one z, centred on a pixel and between pixels: tent profiles with the moment correction agree
    # far better than the 1-px nearest rings of radial_profile
    stack = render_beads([15.0, 15.5, 15.25], [15.0, 15.5, 15.75], 1500.0, n_pixels=ROI)
    x, y = np.array([15.0, 15.5, 15.25]), np.array([15.0, 15.5, 15.75])
    tent = spline_profile.tent_profiles(stack, x, y)[1:]
    rings = md.radial_profile(stack, x, y)[1:]
    spread = lambda p: np.abs(p - p.mean(axis=1, keepdims=True)).max()  # noqa: E731
    assert spread(tent) < 0.1 * spread(rings)


def test_track_stack_z_against_the_truth(beads, calibration):
    clean, noisy, x, y, z = beads
    lut = zlut_from_stack(*calibration)
    assert lut.shape == (1 + ROI // 2, len(Z_STEPS)) and np.array_equal(lut[0], Z_STEPS)
    _, _, zc, _ = track_stack(clean, lut)
    assert np.isfinite(zc).all() and np.abs(zc - z).max() < 2.0  # nm, noise-free
    _, _, zn, _ = track_stack(noisy, lut)
    _, _, zm, _ = track_stack(noisy, zlut_from_stack(*calibration, method="magtrack"), method="magtrack")
    assert np.sqrt(np.mean((zn - z) ** 2)) < 0.15 * np.sqrt(np.nanmean((zm - z) ** 2))


def test_magtrack_method_is_stack_to_xyzp(beads, calibration):
    _, noisy, *_ = beads
    lut = zlut_from_stack(*calibration, method="magtrack")
    for a, b in zip(track_stack(noisy, lut, method="magtrack"), md.stack_to_xyzp(noisy, lut)):
        np.testing.assert_array_equal(a, b)


def test_fit_z_interpolates_sparse_luts_and_fits_scale_and_offset(beads, calibration):
    clean, _, _, _, z = beads
    lut = zlut_from_stack(*calibration)
    _, _, prof = spline_profile.accurate_xy_profiles(clean)
    err = {step: fit_z(prof, lut[:, ::step]) - z for step in (1, 3, 8)}  # 50, 150, 400 nm between planes
    rms = {step: np.sqrt(np.mean(e**2)) for step, e in err.items()}
    assert all(np.isfinite(e).all() for e in err.values())  # no NaN away from the LUT's ends
    assert rms[8] < 1.5 * rms[3] + 0.5 and rms[3] < 1.0, rms  # the step does not set the error
    # intensity scale and offset (illumination drifts), normalised profiles, a decreasing LUT: the same z
    np.testing.assert_allclose(fit_z(1.7 * prof + 300.0, lut), z + err[1], atol=1e-6)
    norm = (prof - prof.mean(axis=0)) / prof.std(axis=0)
    lut_norm = lut.copy()
    lut_norm[1:] = (lut[1:] - lut[1:].mean(axis=0)) / lut[1:].std(axis=0)
    assert np.sqrt(np.mean((fit_z(norm, lut_norm) - z) ** 2)) < 3.0
    np.testing.assert_allclose(fit_z(prof, lut[:, ::-1]), z + err[1], atol=1e-6)
    # beyond the LUT's ends: NaN, not the end plane
    inner = lut[:, (lut[0] > 1500) & (lut[0] < 2000)]
    zi = fit_z(prof, inner)
    assert np.isnan(zi[z < 1400]).all() and np.isfinite(zi[(z > 1600) & (z < 1900)]).all()


def test_bad_input_names_the_parameter(calibration):
    stack, z = calibration
    lut = zlut_from_stack(stack, z)
    with pytest.raises(ValueError, match=r"z_nm must be real numbers, one per frame, shape \(82,\); got shape \(3,\)"):
        zlut_from_stack(stack, z[:3])
    with pytest.raises(ValueError, match="at least 2 distinct finite z values; got 1"):
        zlut_from_stack(stack, np.full(z.shape, 1000.0))
    with pytest.raises(ValueError, match="method must be one of 'magtrack', 'accurate', 'fit'; got 'qi'"):
        track_stack(stack, lut, method="qi")
    with pytest.raises(ValueError, match=r"profiles have 8 radial bins but zlut has 16"):
        track_stack(stack[:16, :16], lut)
    with pytest.raises(ValueError, match=r"stack images must be at least 8 x 8 pixels"):
        track_stack(stack[:6, :6], None)
    with pytest.raises(ValueError, match=r"weights must have one value per profile bin, shape \(16,\); got \(3,\)"):
        fit_z(lut[1:], lut, weights=np.ones(3))
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        fit_z(lut[1:], lut, weights=-np.ones(16))


@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
def test_cupy_path_equals_numpy(beads, calibration):
    import cupy

    _, noisy, *_ = beads
    lut = zlut_from_stack(*calibration)
    expected = track_stack(noisy, lut)
    got = track_stack(cupy.asarray(noisy), cupy.asarray(lut))
    for a, b in zip(expected, got):
        assert isinstance(b, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(b), a, rtol=0, atol=1e-6 * max(1.0, float(np.nanmax(np.abs(a)))))
    np.testing.assert_allclose(cupy.asnumpy(zlut_from_stack(cupy.asarray(calibration[0]), calibration[1])), lut,
                               rtol=1e-9)


def test_lut_smoothing_removes_calibration_noise(beads):
    clean, _, _, _, z = beads
    rng = np.random.default_rng(8)
    zc = np.repeat(Z_STEPS, 3)
    xs, ys = 15.5 + rng.uniform(-0.5, 0.5, (2, zc.size))
    cal = render_beads(xs, ys, zc, n_pixels=ROI, photons=300.0, background=300.0, seed=2)
    smoothed = zlut_from_stack(cal, zc)
    _, _, prof = spline_profile.accurate_xy_profiles(cal)
    plain = np.vstack([Z_STEPS, prof.reshape(prof.shape[0], len(Z_STEPS), 3).mean(axis=2)])
    _, _, p = spline_profile.accurate_xy_profiles(clean)
    rms = {name: np.sqrt(np.mean((fit_z(p, lut) - z) ** 2)) for name, lut in (("smoothed", smoothed),
                                                                             ("plain", plain))}
    assert rms["smoothed"] < 0.7 * rms["plain"], rms
