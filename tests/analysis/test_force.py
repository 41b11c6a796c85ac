"""Force calibration on simulated beads with known force: accuracy, blur bias, uncertainties,
the camera model against its closed forms, bad input."""

import numpy as np
import pytest

from magtrack_dask.analysis import allan, psd
from magtrack_dask.analysis.force import MIN_FRAMES, calibrate_force
from magtrack_dask.analysis.trap import faxen_lateral_factor, frame_covariance, thermal_energy
from magtrack_dask.sim.brownian import simulate_tethered_bead
from magtrack_dask.validation import InputError

KT = thermal_energy(296.15)
M280, MYONE = 1400.0, 500.0


@pytest.fixture(scope="module")
def blurred():
    """30 pN, 2 um, M-280 at 100 Hz for 100 s: corner frequency ~100 Hz, twice the Nyquist frequency."""
    return simulate_tethered_bead(30.0, length_nm=2000, radius_nm=M280, fs_hz=100.0, n_frames=10000,
                                  seed=11)


@pytest.fixture(scope="module")
def soft():
    """1 pN, 1 um, MyOne at 100 Hz for 100 s: corner frequency ~19 Hz."""
    return simulate_tethered_bead(1.0, length_nm=1000, radius_nm=MYONE, fs_hz=100.0, n_frames=10000,
                                  seed=12)


def _calibrate(bead, **kwargs):
    return calibrate_force(bead.x_nm, fs_hz=bead.fs_hz, length_nm=bead.length_nm,
                           radius_nm=bead.radius_nm, **kwargs)


@pytest.mark.parametrize("method", ["psd", "allan"])
def test_force_within_a_few_percent(blurred, soft, method):
    for bead, tolerance in ((blurred, 0.08), (soft, 0.05)):
        cal = _calibrate(bead, method=method)
        assert cal.force_pn == pytest.approx(bead.force_pn, rel=tolerance)
        assert abs(cal.force_pn - bead.force_pn) < 2.5 * cal.force_pn_err
        assert cal.corner_hz == pytest.approx(bead.corner_hz, rel=3 * cal.corner_hz_err / cal.corner_hz)
        assert 0.005 < cal.force_pn_err / cal.force_pn < 0.12
        assert not any("motion blur" in w for w in cal.warnings)
    assert any("Nyquist" in w for w in _calibrate(blurred, method=method).warnings)


def test_equipartition_is_biased_by_blur_and_says_so(blurred, soft):
    cal = _calibrate(blurred, method="equipartition")
    # +280 % expected: the variance shrinks to ~26 % at 2 pi f_c W ~ 6.4
    assert 3.4 < cal.force_pn / blurred.force_pn < 4.3
    (warning,) = [w for w in cal.warnings if "motion blur" in w]
    assert "equipartition" in warning and "+2" in warning  # "... overestimated by about +2xx%"
    assert "; " not in cal.as_dict()["warnings"] or "motion blur" in cal.as_dict()["warnings"]
    # a 4 um tether at 0.3 pN: corner ~0.2 Hz, no blur, no warning, equipartition fine
    slow = simulate_tethered_bead(0.3, length_nm=4000, radius_nm=M280, fs_hz=100.0, n_frames=10000, seed=5)
    cal = _calibrate(slow, method="equipartition")
    assert not any("motion blur" in w for w in cal.warnings)
    assert cal.force_pn == pytest.approx(0.3, rel=3 * cal.force_pn_err / cal.force_pn)


def test_stated_uncertainties_match_the_scatter():
    z = []
    for seed in range(10):
        bead = simulate_tethered_bead(5.0, length_nm=1000, radius_nm=MYONE, fs_hz=100.0, n_frames=2000,
                                      seed=100 + seed)
        cal = _calibrate(bead)
        z.append((cal.force_pn - bead.force_pn) / cal.force_pn_err)
    assert 0.5 < np.std(z) < 1.6 and abs(np.mean(z)) < 1.0


def test_fixed_drag_options(soft):
    stokes = _calibrate(soft, drag="stokes")
    faxen = _calibrate(soft, drag="faxen")
    assert stokes.drag_ratio == 1.0 and stokes.force_pn == pytest.approx(1.0, rel=0.05)
    assert faxen.drag_ratio == pytest.approx(faxen_lateral_factor(MYONE, 1000 + MYONE))
    assert faxen.drag_ratio > 1.1  # a wrong drag (the simulation has none) shows in the fit


def test_result_scalars_and_plot_arrays(soft):
    cal = _calibrate(soft)
    row = cal.as_dict()
    assert row["method"] == "psd" and row["n_samples"] == 10000 and row["drag"] == "fit"
    assert not any(isinstance(v, np.ndarray) for v in row.values())
    assert cal.stiffness_pn_per_nm == pytest.approx(cal.force_pn / 1000)
    assert cal.frequencies_hz.shape == cal.psd_nm2_per_hz.shape == cal.psd_model_nm2_per_hz.shape
    assert cal.taus_s.shape == cal.allan_deviation_nm.shape == cal.allan_model_nm.shape
    assert cal.frequencies_hz.max() < 50 and cal.taus_s[0] == pytest.approx(0.01)
    # the fitted model follows the data: ~400 blocks of 12 bins, each ratio scattering by 1/sqrt(12)
    assert np.mean(cal.psd_nm2_per_hz / cal.psd_model_nm2_per_hz) == pytest.approx(1, abs=0.05)
    assert np.mean(cal.allan_deviation_nm[:6] / cal.allan_model_nm[:6]) == pytest.approx(1, abs=0.05)


def test_periodogram_model_matches_the_fejer_sum_and_the_aliased_lorentzian():
    fs, exposure, n = 100.0, 0.006, 600
    kappa, gamma = 0.01, 2.35e-5
    cov = frame_covariance(kappa, gamma, fs_hz=fs, exposure_s=exposure, kt=KT)
    r = cov.lags(n) * (1 - np.arange(n) / n)
    k = np.arange(1, (n - 1) // 2 + 1)
    fejer = 2 / fs * (r[0] + 2 * np.cos(2 * np.pi * np.outer(k, np.arange(1, n)) / n) @ r[1:])
    np.testing.assert_allclose(psd.ExpectedPeriodogram(n, fs)(cov), fejer, rtol=1e-9)
    # long trace: Lansdorp & Saleh's aliased sum of motion-blurred Lorentzians
    n = 200000
    f = np.array([1.0, 10.0, 30.0, 45.0])
    shifted = f[:, None] + fs * np.arange(-3000, 3001)
    corner = kappa / (2 * np.pi * gamma)
    lorentz = KT / (gamma * np.pi**2 * (corner**2 + shifted**2)) * np.sinc(shifted * exposure) ** 2
    model = psd.ExpectedPeriodogram(n, fs)(cov)[(f * n / fs).astype(int) - 1]
    np.testing.assert_allclose(model, lorentz.sum(axis=1), rtol=2e-3)


def test_allan_model_matches_lansdorp_saleh_and_the_direct_sum():
    fs, kappa, gamma = 1000.0, 0.02, 8.4e-6
    m = allan.octave_windows(4000)
    full = allan.expected_allan_variance(frame_covariance(kappa, gamma, fs_hz=fs, exposure_s=1 / fs, kt=KT), m)
    tc, t = gamma / kappa, m / fs
    closed = 2 * KT * gamma / (kappa**2 * t) * (
        1 + 2 * tc / t * np.exp(-t / tc) - tc / (2 * t) * np.exp(-2 * t / tc) - 1.5 * tc / t)
    np.testing.assert_allclose(full, closed, rtol=1e-9)
    cov = frame_covariance(kappa, gamma, fs_hz=fs, exposure_s=0.3 / fs, kt=KT)
    r = cov.lags(2 * m[-1] + 1)

    def sum_variance(n):
        return n * r[0] + 2 * np.sum((n - np.arange(1, n)) * r[1:n])

    direct = [(2 * sum_variance(w) - sum_variance(2 * w) / 2) / w**2 for w in m]
    np.testing.assert_allclose(allan.expected_allan_variance(cov, m), direct, rtol=1e-9)


@pytest.mark.parametrize("x, kwargs, match", [
    (np.r_[np.zeros(500), np.nan, np.ones(500)], {}, "NaN"),
    (np.full(2000, np.nan), {}, "NaN"),
    (np.arange(MIN_FRAMES - 1.0), {}, "at least"),
    (np.ones((2, 1000)), {}, "shape"),
    (np.ones(1000), {}, "constant"),
    (np.arange(1000.0), {"exposure_s": 0.02}, "exposure_s"),
    (np.arange(1000.0), {"method": "fft"}, "method"),
    (np.arange(1000.0), {"drag": "free"}, "drag"),
    (np.arange(1000.0), {"length_nm": 0}, "length_nm"),
])
def test_bad_input(x, kwargs, match):
    args = dict(fs_hz=100.0, length_nm=1000, radius_nm=500) | kwargs
    with pytest.raises(InputError, match=match):
        calibrate_force(x, **args)
