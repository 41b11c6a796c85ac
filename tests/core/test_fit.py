"""method="fit": the radial image model learned from calibration frames and the ML fit."""

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.core.crlb import crlb, simulator_model
from magtrack_dask.core.fit import fit_stack, model_from_stack, track_fit
from magtrack_dask.core.radial_model import RadialModel
from magtrack_dask.sim.beads import render_beads
from magtrack_dask.validation import InputError, InputTypeError

N = 32
PHOTONS = 1000.0
Z_CAL = np.repeat(np.arange(700.0, 2301.0, 50.0), 12)


def _frames(n_frames, seed, photons=None, jitter=0.5):
    rng = np.random.default_rng(seed)
    x = (N - 1) / 2 + rng.uniform(-jitter, jitter, n_frames)
    y = (N - 1) / 2 + rng.uniform(-jitter, jitter, n_frames)
    z = rng.uniform(1000.0, 2000.0, n_frames)
    return render_beads(x, y, z, n_pixels=N, background=PHOTONS, photons=photons, seed=seed), x, y, z


@pytest.fixture(scope="module")
def clean_model():
    rng = np.random.default_rng(1)
    x = (N - 1) / 2 + rng.uniform(-0.5, 0.5, Z_CAL.size)
    y = (N - 1) / 2 + rng.uniform(-0.5, 0.5, Z_CAL.size)
    return model_from_stack(render_beads(x, y, Z_CAL, n_pixels=N, background=PHOTONS), Z_CAL)


@pytest.fixture(scope="module")
def noisy_model():
    rng = np.random.default_rng(2)
    x = (N - 1) / 2 + rng.uniform(-0.5, 0.5, Z_CAL.size)
    y = (N - 1) / 2 + rng.uniform(-0.5, 0.5, Z_CAL.size)
    stack = render_beads(x, y, Z_CAL, n_pixels=N, background=PHOTONS, photons=PHOTONS, seed=3)
    return model_from_stack(stack, Z_CAL)


def test_noise_free_images_are_recovered(clean_model):
    stack, x, y, z = _frames(12, 4)
    fx, fy, fz, profiles = track_fit(stack, clean_model)
    assert np.max(np.abs(fx - x)) < 2e-3 and np.max(np.abs(fy - y)) < 2e-3  # px
    assert np.max(np.abs(fz - z)) < 0.5  # nm
    assert profiles.shape == (N // 2, 12)
    assert np.allclose(profiles, md.radial_profile(stack, fx, fy), equal_nan=True)


def test_noisy_images_near_the_bound(noisy_model):
    stack, x, y, z = _frames(60, 5, photons=PHOTONS)
    fx, fy, fz, _ = track_fit(stack, noisy_model)
    bound = crlb(simulator_model(n_pixels=N, photons=PHOTONS), x, y, z)
    for err, b in zip((fx - x, fy - y, fz - z), bound):
        ratio = np.sqrt(np.mean(err**2)) / np.sqrt(np.mean(b**2))
        assert 0.6 < ratio < 1.6  # 60 frames: the ratio itself scatters by ~10 %


def test_amplitude_and_background_are_nuisance(clean_model):
    stack, x, y, z = _frames(6, 6)
    fx, fy, fz, _ = track_fit(stack * 0.7 + 250.0, clean_model)  # dimmer light, a camera offset
    assert np.max(np.abs(fx - x)) < 2e-3 and np.max(np.abs(fz - z)) < 0.5
    _, _, _, a, b = fit_stack(stack * 0.7 + 250.0, clean_model, fx, fy, fz, 1.0, 0.0)
    assert np.allclose(a, 0.7, rtol=1e-3) and np.allclose(b, 250.0, atol=1.0)


def test_compiled_kernel_matches_numpy(noisy_model):
    pytest.importorskip("numba")
    stack, x, y, z = _frames(10, 7, photons=PHOTONS)
    seeds = (x + 0.2, y - 0.2, z + 20.0, 1.0, 0.0)
    slow = fit_stack(stack, noisy_model, *seeds, compiled=False)
    fast = fit_stack(stack, noisy_model, *seeds, compiled=True)
    for s, f in zip(slow, fast):
        assert np.allclose(s, f, rtol=1e-9, atol=1e-9)


def test_model_render_and_profiles(clean_model):
    # The learned model reproduces the simulator's image (background 1000) and its own profiles.
    img = clean_model.render(15.3, 15.6, 1525.0, N)
    truth = render_beads(15.3, 15.6, 1525.0, n_pixels=N, background=PHOTONS)
    assert img.shape == (N, N, 1)
    assert np.max(np.abs(img - truth)) < 2.0
    radii = np.array([2.0, 5.5, 9.0])
    prof = clean_model.profile(radii, [1525.0, 1600.0])
    assert prof.shape == (3, 2)
    at_pixel = clean_model.render(15.0 - radii, 15.0, 1600.0, N)[15, 15]  # pixel (15, 15) at each radius
    assert np.allclose(prof[:, 1], at_pixel, rtol=1e-9)


def test_bad_input(clean_model):
    stack, *_ = _frames(2, 8)
    with pytest.raises(InputTypeError, match="model must be a RadialModel"):
        track_fit(stack, np.zeros((17, 5)))
    with pytest.raises(InputError, match="z_nm must be finite with one value per frame"):
        model_from_stack(stack, [1.0])
    with pytest.raises(InputError, match="at least 4 distinct focus planes"):
        model_from_stack(stack, [1000.0, 1000.0])
    with pytest.raises(InputError, match="stack must have images of the model's size, 32 x 32 px"):
        track_fit(render_beads(11.5, 11.5, 1500.0, n_pixels=24), clean_model)
    with pytest.raises(InputError, match="iterations"):
        track_fit(stack, clean_model, iterations=0)
    with pytest.raises(InputError, match="x must be a scalar or have shape"):
        fit_stack(stack, clean_model, [1.0, 2.0, 3.0], 1.0, 1500.0, 1.0, 0.0)
    with pytest.raises(InputError, match="strictly increasing"):
        RadialModel(np.array([1.0, 1.0]), np.zeros((2, 8)), 0.25)


@pytest.mark.gpu
@pytest.mark.skipif(not md.check_cupy(), reason="needs CuPy and a working CUDA device")
def test_cupy_matches_numpy(noisy_model):
    import cupy

    stack, x, y, z = _frames(10, 9, photons=PHOTONS)
    cpu = track_fit(stack, noisy_model, compiled=False)
    gpu = track_fit(cupy.asarray(stack), noisy_model)
    for c, g in zip(cpu, gpu):
        assert isinstance(g, cupy.ndarray)
        assert np.allclose(c, cupy.asnumpy(g), rtol=1e-9, atol=1e-8)
    model = model_from_stack(cupy.asarray(render_beads((N - 1) / 2, (N - 1) / 2, Z_CAL, n_pixels=N)), Z_CAL)
    assert isinstance(model, RadialModel) and np.all(np.isfinite(model.coef))
