"""The Brownian simulator: exact blurred variance and lag covariance, seeding, drift, bad input."""

import numpy as np
import pytest

from magtrack_dask.analysis.trap import frame_covariance, stokes_drag, thermal_energy
from magtrack_dask.sim.brownian import simulate_drift, simulate_tethered_bead
from magtrack_dask.validation import InputError

KT = thermal_energy(296.15)


@pytest.mark.parametrize("exposure_fraction, oversample", [(1.0, 1), (1.0, 10), (0.5, 10), (0.0, 4)])
def test_variance_and_lag_covariance_follow_the_closed_form(exposure_fraction, oversample):
    # 30 pN on 2 um with an M-280 bead at 100 Hz: corner frequency ~100 Hz, so the exposure
    # shrinks the variance to ~26 % of k_B T / kappa; 20000 frames give ~1.5 % on the variance.
    fs = 100.0
    bead = simulate_tethered_bead(30.0, length_nm=2000, radius_nm=1400, fs_hz=fs, n_frames=20000,
                                  exposure_s=exposure_fraction / fs, oversample=oversample, seed=3)
    cov = frame_covariance(bead.stiffness_pn_per_nm, bead.drag_pn_s_per_nm, fs_hz=fs,
                           exposure_s=exposure_fraction / fs, kt=KT)
    for trace in (bead.x_nm, bead.y_nm):
        assert np.var(trace) == pytest.approx(cov.r0, rel=0.05)
        lag1 = np.mean((trace[1:] - trace.mean()) * (trace[:-1] - trace.mean()))
        assert lag1 / np.var(trace) == pytest.approx(cov.r1 / cov.r0, abs=0.03)
    if exposure_fraction == 0:
        assert cov.r0 == pytest.approx(KT / bead.stiffness_pn_per_nm)
    else:
        assert cov.r0 < 0.5 * KT / bead.stiffness_pn_per_nm  # the blur matters here


def test_truth_seeding_and_axes():
    kwargs = dict(length_nm=1000, radius_nm=500, fs_hz=200.0, n_frames=500)
    a = simulate_tethered_bead(5.0, **kwargs, seed=1)
    b = simulate_tethered_bead(5.0, **kwargs, seed=np.random.default_rng(1))
    c = simulate_tethered_bead(5.0, **kwargs, seed=2)
    np.testing.assert_array_equal(a.x_nm, b.x_nm)
    assert not np.allclose(a.x_nm, c.x_nm) and not np.allclose(a.x_nm, a.y_nm)
    assert a.x_nm.shape == a.y_nm.shape == a.time_s.shape == (500,)
    assert a.stiffness_pn_per_nm == pytest.approx(5.0 / 1000)
    assert a.drag_pn_s_per_nm == pytest.approx(stokes_drag(500, 0.00089))
    assert a.corner_hz == pytest.approx(0.005 / (2 * np.pi * a.drag_pn_s_per_nm))
    assert a.exposure_s == pytest.approx(1 / 200)


def test_drift_is_common_linear_plus_random_walk():
    fs = 50.0
    straight = simulate_drift(1000, fs_hz=fs, velocity_nm_per_s=(2.0, -1.0, 0.5), diffusion_nm2_per_s=0)
    t = np.arange(1000) / fs
    np.testing.assert_allclose(straight, np.outer([2.0, -1.0, 0.5], t))
    walk = simulate_drift(20000, fs_hz=fs, velocity_nm_per_s=(0, 0, 0), diffusion_nm2_per_s=8.0, seed=4)
    assert walk.shape == (3, 20000) and np.all(walk[:, 0] == 0)
    # increments of a random walk: variance 2 D dt
    assert np.var(np.diff(walk, axis=1)) == pytest.approx(2 * 8.0 / fs, rel=0.05)


@pytest.mark.parametrize("kwargs, match", [
    (dict(exposure_s=0.0033), "whole number"),
    (dict(exposure_s=0.02), "whole number"),
    (dict(oversample=0), "oversample"),
    (dict(n_frames=0), "n_frames"),
    (dict(radius_nm=-1.0), "radius_nm"),
])
def test_bad_input(kwargs, match):
    args = dict(length_nm=1000, radius_nm=500, fs_hz=100.0, n_frames=100) | kwargs
    with pytest.raises(InputError, match=match):
        simulate_tethered_bead(1.0, **args)
    with pytest.raises(InputError, match="velocity"):
        simulate_drift(10, fs_hz=10.0, velocity_nm_per_s=(1.0, 2.0))
