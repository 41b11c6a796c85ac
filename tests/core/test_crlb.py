"""The Cramer-Rao bound against closed forms and simple scalings."""

import math

import numpy as np
import pytest
from scipy.special import erf

import magtrack_dask
from magtrack_dask.core.crlb import crlb, fisher_information, simulator_model, zlut_model
from magtrack_dask.validation import InputError

N_PX = 15


def _pixel_mass(centre, sigma, n=N_PX):
    """Integral of a unit 1-D Gaussian over each pixel, and its derivatives in centre and sigma."""
    edges = np.arange(n + 1) - 0.5
    t = (edges - centre) / sigma
    cdf = 0.5 * (1 + erf(t / math.sqrt(2)))
    pdf = np.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return np.diff(cdf), -np.diff(pdf) / sigma, -np.diff(pdf * t) / sigma


def _gaussian_model(photons, background):
    """A pixelated 2-D Gaussian spot of ``photons`` photons whose z is its width sigma (px)."""
    def model(x, y, z):
        out = np.empty((N_PX, N_PX, len(x)))
        for k, (xk, yk, sk) in enumerate(zip(x, y, z)):
            gx, gy = _pixel_mass(xk, sk)[0], _pixel_mass(yk, sk)[0]
            out[:, :, k] = photons * np.outer(gy, gx) + background
        return out
    return model


def _gaussian_bound(x, y, sigma, photons, background):
    """Analytic Fisher matrix of (x, y, sigma, photons, background) under Poisson noise, inverted."""
    gx, dgx, sgx = _pixel_mass(x, sigma)
    gy, dgy, sgy = _pixel_mass(y, sigma)
    mu = photons * np.outer(gy, gx) + background
    jac = np.stack([
        photons * np.outer(gy, dgx),
        photons * np.outer(dgy, gx),
        photons * (np.outer(sgy, gx) + np.outer(gy, sgx)),
        np.outer(gy, gx),
        np.ones_like(mu),
    ]).reshape(5, -1)
    info = (jac / mu.ravel()) @ jac.T
    return np.sqrt(np.diag(np.linalg.inv(info))[:3])


@pytest.mark.parametrize("photons, background", [(2000.0, 10.0), (500.0, 50.0), (10000.0, 0.5)])
def test_gaussian_spot_matches_closed_form(photons, background):
    x, y, sigma = 7.3, 6.8, 1.4
    got = crlb(_gaussian_model(photons, background), x, y, sigma, step_xy=1e-4, step_z=1e-4)
    assert np.allclose(got, _gaussian_bound(x, y, sigma, photons, background), rtol=1e-5)


def test_gaussian_spot_without_background_is_the_pixelated_width_over_sqrt_n():
    # Mortensen et al. 2010: without background the ML x precision is sigma_a / sqrt(N),
    # sigma_a**2 = sigma**2 + a**2 / 12 (pixel size a = 1).
    photons, sigma = 1e5, 1.5
    sx, sy, _ = crlb(_gaussian_model(photons, 1e-3), 7.0, 7.0, sigma, step_xy=1e-4, step_z=1e-4)
    expected = math.sqrt(sigma**2 + 1 / 12) / math.sqrt(photons)
    assert sx == pytest.approx(expected, rel=0.03) and sy == pytest.approx(expected, rel=0.03)


def test_noise_options():
    model = _gaussian_model(1000.0, 20.0)
    base = np.array(crlb(model, 7.2, 7.1, 1.3))
    emccd = np.array(crlb(model, 7.2, 7.1, 1.3, excess_noise=2.0))
    assert np.allclose(emccd, base * math.sqrt(2), rtol=1e-9)
    read = np.array(crlb(model, 7.2, 7.1, 1.3, read_noise=5.0))
    assert np.all(read > base * 1.05)
    # Counts at gain 4 per electron: the same model in counts has 4x fewer electrons.
    counts = np.array(crlb(model, 7.2, 7.1, 1.3, gain=4.0))
    assert np.allclose(counts, base * 2, rtol=1e-9)


def test_vectorised_and_flat_export():
    model = _gaussian_model(1000.0, 20.0)
    sx, sy, sz = magtrack_dask.crlb(model, [7.0, 7.5], 7.0, [1.2, 1.6])
    assert sx.shape == (2,) and sz.shape == (2,)
    assert sx[0] == pytest.approx(crlb(model, 7.0, 7.0, 1.2)[0])
    assert fisher_information(model, 7.0, 7.0, 1.2).shape == (1, 5, 5)


def test_simulator_bound_scales_with_photons_and_zlut_model_agrees():
    model = simulator_model(n_pixels=32, photons=1000.0)
    bright = simulator_model(n_pixels=32, photons=4000.0)
    at = (15.3, 15.6, 1500.0)
    b1, b4 = np.array(crlb(model, *at)), np.array(crlb(bright, *at))
    assert np.allclose(b4, b1 / 2, rtol=1e-3)
    assert 0.001 < b1[0] < 0.05 and 1 < b1[2] < 100  # px and nm, shot-noise sized
    from magtrack_dask.sim.beads import make_zlut

    z = np.arange(1000.0, 2001.0, 50.0)
    lut = make_zlut(z, n_pixels=32, background=1000.0, oversample_frames=8)
    from_lut = np.array(crlb(zlut_model(lut, n_pixels=32), 15.5, 15.5, 1500.0))
    centred = np.array(crlb(model, 15.5, 15.5, 1500.0))
    # The profile-built model loses the pixel integration's fine detail only.
    assert np.allclose(from_lut, centred, rtol=0.25)


def test_bad_input():
    model = _gaussian_model(1000.0, 20.0)
    with pytest.raises(InputError, match="read_noise"):
        crlb(model, 7.0, 7.0, 1.3, read_noise=-1.0)
    with pytest.raises(InputError, match="same length"):
        crlb(model, [7.0, 7.1], [7.0, 7.1, 7.2], 1.3)
    with pytest.raises(InputError, match="model must return"):
        crlb(lambda x, y, z: np.ones((4, 4)), 1.0, 1.0, 1.0)
    with pytest.raises(InputError, match="singular"):
        crlb(lambda x, y, z: np.ones((4, 4, len(x))), 1.0, 1.0, 1.0)
    with pytest.raises(InputError, match="zlut"):
        zlut_model(np.ones((2, 5)), n_pixels=8)
