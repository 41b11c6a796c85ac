"""Force calibration from a tethered bead's lateral fluctuations.

A bead on a tether of length ``L`` pulled with force ``F`` fluctuates sideways in a
trap of stiffness ``kappa = F / L`` (an inverted pendulum). That holds for motion
perpendicular to the magnetic field, where the bead rotates freely; along the
field its magnetic moment stops it rotating and the pendulum is ``L + r`` long
(Daldrop et al. 2015, Biophys. J. 108, 2550), so pass ``length_nm = L + r`` for
that axis. :func:`calibrate_force` measures ``kappa`` from one lateral trace (nm)
and returns ``F = kappa * length_nm`` with its uncertainty:

* ``"psd"`` (default): maximum-likelihood fit of the blocked periodogram with its
  exact expectation for a camera with aliasing and motion blur
  (:mod:`.psd`, Lansdorp & Saleh 2012; Norrelykke & Flyvbjerg 2010).
* ``"allan"``: fit of the overlapping Allan variance at octave spaced averaging
  times with its exact, blur-aware expectation (:mod:`.allan`); the uncertainties
  account for the correlation between octaves.
* ``"equipartition"``: ``kappa = k_B T / var(x)``. The camera's blur shrinks the
  variance when the corner frequency approaches ``1 / exposure``, so this
  overestimates the force there; the result then carries a warning with the
  expected bias (judged from a PSD fit of the same trace).

The drag: ``drag="fit"`` (default) fits it with the stiffness, as real beads
near the surface feel more than Stokes drag (``drag_ratio`` reports the fitted
drag over Stokes'); ``"stokes"`` fixes it at ``6 pi eta r``; ``"faxen"`` at
Stokes' times Faxen's wall correction at height ``L + r`` (the bead's centre
above the surface). Fixing the drag helps only when it is known: a wrong drag
biases the stiffness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from magtrack_dask.analysis import allan, psd
from magtrack_dask.analysis.fitting import GammaFit, fit_gamma_mle
from magtrack_dask.analysis.trap import (
    FrameCovariance, blur_variance_factor, faxen_lateral_factor, frame_covariance, stokes_drag,
    thermal_energy)
from magtrack_dask.validation import (
    InputError, check_choice, check_nonnegative, check_positive)

__all__ = ["MIN_FRAMES", "ForceCalibration", "calibrate_force"]

METHODS = ("psd", "allan", "equipartition")
DRAGS = ("fit", "stokes", "faxen")
MIN_FRAMES = 256  # below this neither the spectrum nor the Allan variance has enough points
PSD_POINTS = 400  # about this many blocked periodogram points are fitted
BLUR_WARN = 0.05  # warn when the blur biases an equipartition force by more than this


@dataclass(frozen=True, eq=False)
class ForceCalibration:
    """One bead's force calibration (units in the names; ``*_err`` are one standard deviation).

    ``stiffness_pn_per_nm``, ``drag_pn_s_per_nm`` and ``corner_hz`` come from the chosen
    method, except for ``"equipartition"``, whose drag and corner frequency are the PSD
    fit's (used to judge the blur). ``drag_ratio`` is the drag over Stokes' drag.
    The arrays are what the plots need: the blocked periodogram (``frequencies_hz``,
    ``psd_nm2_per_hz``) and the Allan deviation (``taus_s``, ``allan_deviation_nm``),
    each with the model of the chosen method's parameters (``*_model_*``).
    """

    method: str
    force_pn: float
    force_pn_err: float
    stiffness_pn_per_nm: float
    stiffness_pn_per_nm_err: float
    corner_hz: float
    corner_hz_err: float
    drag_pn_s_per_nm: float
    drag_ratio: float
    drag: str
    n_samples: int
    fs_hz: float
    exposure_s: float
    length_nm: float
    radius_nm: float
    temperature_k: float
    viscosity_pa_s: float
    warnings: tuple = ()
    frequencies_hz: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    psd_nm2_per_hz: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    psd_model_nm2_per_hz: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    taus_s: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    allan_deviation_nm: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    allan_model_nm: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The scalars (``warnings`` joined by ``"; "``), e.g. for a table row or Dataset attrs."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if not isinstance(getattr(self, f.name), np.ndarray)}
        out["warnings"] = "; ".join(self.warnings)
        return out


@dataclass(frozen=True)
class _Setup:
    """The checked inputs and the trap's fixed quantities."""

    x: np.ndarray
    conditions: dict  # the checked scalar inputs, named as in ForceCalibration
    kt: float
    stokes: float
    fixed_drag: float | None  # None when the drag is fitted

    @property
    def fs_hz(self) -> float:
        return self.conditions["fs_hz"]

    @property
    def exposure_s(self) -> float:
        return self.conditions["exposure_s"]

    def params(self, theta: np.ndarray) -> tuple[float, float]:
        """(kappa, gamma) from the fitted log-parameters."""
        kappa = math.exp(theta[0])
        return kappa, (self.fixed_drag if self.fixed_drag is not None else math.exp(theta[1]))

    def covariance(self, kappa: float, gamma: float) -> FrameCovariance:
        return frame_covariance(kappa, gamma, fs_hz=self.fs_hz, exposure_s=self.exposure_s, kt=self.kt)


def calibrate_force(x_nm: Any, *, fs_hz: float, length_nm: float, radius_nm: float,
                    exposure_s: float | None = None, temperature_k: float = 296.15,
                    viscosity_pa_s: float = 0.00089, method: str = "psd",
                    drag: str = "fit") -> ForceCalibration:
    """Force on a tethered bead from its lateral fluctuations (see the module docstring).

    Parameters
    ----------
    x_nm : array_like, shape (n_frames,)
        The bead's lateral position (nm) at a constant force, drift removed. NaN or infinite values raise :class:`~magtrack_dask.validation.InputError`
        (drop or fill the frames first: a gap changes the spectrum).
    fs_hz : float
        Frame rate (Hz).
    length_nm : float
        Pendulum length (nm): the tether length for the axis perpendicular to the field,
        tether length plus bead radius along it. ``F = kappa * length_nm``.
    radius_nm : float
        Bead radius (nm), for Stokes' drag.
    exposure_s : float, optional
        Camera exposure (s), ``0 <= exposure_s <= 1 / fs_hz``; default ``1 / fs_hz``.
    temperature_k, viscosity_pa_s : float
        Temperature (K) and the medium's viscosity (Pa s; water at 23 C by default).
    method : {"psd", "allan", "equipartition"}
    drag : {"fit", "stokes", "faxen"}
        Fit the drag, or fix it at Stokes' (far from walls) or Faxen's (at ``L + r``).

    Returns
    -------
    ForceCalibration
    """
    setup = _check_inputs(x_nm, fs_hz, length_nm, radius_nm, exposure_s, temperature_k,
                          viscosity_pa_s, drag)
    check_choice(method, "method", METHODS)
    spectrum_fit, spectrum = _fit_spectrum(setup)
    allan_fit, allan_data = _fit_allan(setup) if method == "allan" else (None, None)
    if method == "equipartition":
        kappa = setup.kt / float(np.var(setup.x))
        gamma = setup.params(spectrum_fit.theta)[1]
        rel_err = _equipartition_rel_err(setup, *setup.params(spectrum_fit.theta))
        corner_fit = spectrum_fit
    else:
        corner_fit = spectrum_fit if method == "psd" else allan_fit
        kappa, gamma = setup.params(corner_fit.theta)
        rel_err = math.sqrt(corner_fit.covariance[0, 0])
    corner = _corner_hz(setup, corner_fit)
    if allan_data is None:
        allan_data = _allan_points(setup)
    warnings = _warnings(setup, method, spectrum_fit, corner_fit, rel_err)
    length = setup.conditions["length_nm"]
    return ForceCalibration(
        method=method, force_pn=kappa * length, force_pn_err=kappa * rel_err * length,
        stiffness_pn_per_nm=kappa, stiffness_pn_per_nm_err=kappa * rel_err,
        corner_hz=corner[0], corner_hz_err=corner[1], drag_pn_s_per_nm=gamma,
        drag_ratio=gamma / setup.stokes, drag=drag, n_samples=setup.x.size, **setup.conditions,
        warnings=tuple(warnings), frequencies_hz=spectrum[0], psd_nm2_per_hz=spectrum[1],
        psd_model_nm2_per_hz=_spectrum_model(setup, kappa, gamma, spectrum[2]),
        taus_s=allan_data[0] / setup.fs_hz, allan_deviation_nm=np.sqrt(allan_data[1]),
        allan_model_nm=np.sqrt(allan.expected_allan_variance(setup.covariance(kappa, gamma),
                                                             allan_data[0])))


def _check_inputs(x_nm, fs_hz, length_nm, radius_nm, exposure_s, temperature_k, viscosity_pa_s,
                  drag) -> _Setup:
    x = np.asarray(x_nm, dtype=float)
    if x.ndim != 1:
        raise InputError(f"x_nm must be one trace of shape (n_frames,), got shape {x.shape}")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise InputError(f"x_nm has {bad} NaN or infinite values of {x.size}: a force needs a "
                         "complete trace (drop or fill the lost frames first)")
    if x.size < MIN_FRAMES:
        raise InputError(f"x_nm must have at least {MIN_FRAMES} frames for a force calibration, "
                         f"got {x.size}")
    fs_hz = check_positive(fs_hz, "fs_hz", "Hz")
    exposure = 1.0 / fs_hz if exposure_s is None else check_nonnegative(exposure_s, "exposure_s", "s")
    if exposure > (1 + 1e-9) / fs_hz:
        raise InputError(f"exposure_s must not exceed the frame interval 1 / fs_hz = {1 / fs_hz:g} s, "
                         f"got {exposure_s!r}")
    length_nm = check_positive(length_nm, "length_nm", "nm")
    radius_nm = check_positive(radius_nm, "radius_nm", "nm")
    temperature_k = check_positive(temperature_k, "temperature_k", "K")
    viscosity_pa_s = check_positive(viscosity_pa_s, "viscosity_pa_s", "Pa s")
    check_choice(drag, "drag", DRAGS)
    if np.ptp(x) == 0:
        raise InputError("x_nm is constant: a stuck bead or a lost track has no force to measure")
    stokes = stokes_drag(radius_nm, viscosity_pa_s)
    fixed = {"fit": None, "stokes": stokes,
             "faxen": stokes * faxen_lateral_factor(radius_nm, length_nm + radius_nm)}[drag]
    conditions = dict(fs_hz=fs_hz, exposure_s=min(exposure, 1.0 / fs_hz), length_nm=length_nm,
                      radius_nm=radius_nm, temperature_k=temperature_k, viscosity_pa_s=viscosity_pa_s)
    return _Setup(x=x, conditions=conditions, kt=thermal_energy(temperature_k), stokes=stokes,
                  fixed_drag=fixed)


def _theta0(setup: _Setup) -> np.ndarray:
    """Start at equipartition's stiffness and Stokes' drag (log-parameters)."""
    theta = [math.log(setup.kt / float(np.var(setup.x)))]
    return np.array(theta if setup.fixed_drag is not None else theta + [math.log(setup.stokes)])


def _fit_spectrum(setup: _Setup) -> tuple[GammaFit, tuple[np.ndarray, np.ndarray, int]]:
    """ML fit of the blocked periodogram; returns the fit and (frequencies, spectrum, n_block)."""
    n = setup.x.size
    freqs, power = psd.periodogram(setup.x, setup.fs_hz)
    n_block = max(1, freqs.size // PSD_POINTS)
    blocked = psd.block_average(power, n_block)
    expected = psd.ExpectedPeriodogram(n, setup.fs_hz)

    def model(theta):
        return psd.block_average(expected(setup.covariance(*setup.params(theta))), n_block)

    fit = fit_gamma_mle(model, blocked, np.full(blocked.size, float(n_block)), _theta0(setup))
    return fit, (psd.block_average(freqs, n_block), blocked, n_block)


def _spectrum_model(setup: _Setup, kappa: float, gamma: float, n_block: int) -> np.ndarray:
    expected = psd.ExpectedPeriodogram(setup.x.size, setup.fs_hz)(setup.covariance(kappa, gamma))
    return psd.block_average(expected, n_block)


def _allan_points(setup: _Setup) -> tuple[np.ndarray, np.ndarray]:
    m = allan.octave_windows(setup.x.size)
    return m, allan.allan_variance(setup.x, m)


def _fit_allan(setup: _Setup) -> tuple[GammaFit, tuple[np.ndarray, np.ndarray]]:
    """ML fit of the Allan variance, uncertainties from the octaves' covariance."""
    m, avar = _allan_points(setup)
    shape = allan.allan_edf(setup.x.size, m) / 2
    expected_psd = psd.ExpectedPeriodogram(setup.x.size, setup.fs_hz)

    def model(theta):
        return allan.expected_allan_variance(setup.covariance(*setup.params(theta)), m)

    def data_covariance(theta):
        spectrum = expected_psd(setup.covariance(*setup.params(theta)))
        return allan.allan_covariance(spectrum, setup.x.size, setup.fs_hz, m)

    return fit_gamma_mle(model, avar, shape, _theta0(setup), data_covariance), (m, avar)


def _corner_hz(setup: _Setup, fit: GammaFit) -> tuple[float, float]:
    """Corner frequency ``kappa / (2 pi gamma)`` (Hz) and its standard deviation."""
    kappa, gamma = setup.params(fit.theta)
    corner = kappa / (2 * math.pi * gamma)
    cov = fit.covariance
    if not np.all(np.isfinite(cov)):
        return corner, math.inf
    var_log = cov[0, 0] if setup.fixed_drag is not None else cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return corner, corner * math.sqrt(max(var_log, 0.0))


def _equipartition_rel_err(setup: _Setup, kappa: float, gamma: float) -> float:
    """Relative standard deviation of the sample variance of a Gaussian series with the fitted ``R``."""
    n = setup.x.size
    r = setup.covariance(kappa, gamma).lags(n)
    var_of_var = 2.0 / n * (r[0] ** 2 + 2 * np.sum((1 - np.arange(1, n) / n) * r[1:] ** 2))
    return math.sqrt(var_of_var) / r[0]


def _warnings(setup: _Setup, method: str, spectrum_fit: GammaFit, fit: GammaFit,
              rel_err: float) -> list[str]:
    """What the user must know about this number."""
    out = []
    corner, corner_err = _corner_hz(setup, spectrum_fit)
    alpha = 2 * math.pi * corner * setup.exposure_s
    bias = 1.0 / blur_variance_factor(alpha) - 1.0
    if method == "equipartition" and not corner_err < corner:
        out.append("equipartition may be biased by motion blur: the corner frequency could not be "
                   "measured (try drag='stokes' for a bead far above the Nyquist frequency)")
    elif method == "equipartition" and bias > BLUR_WARN:
        out.append(f"equipartition biased by motion blur: corner frequency {corner:.3g} Hz vs exposure "
                   f"{setup.exposure_s:.3g} s (2 pi f_c W = {alpha:.2g}) shrinks the variance, force "
                   f"overestimated by about {bias:+.0%}; use method='psd' or 'allan'")
    nyquist = setup.fs_hz / 2
    if method != "equipartition" and corner >= nyquist:
        out.append(f"corner frequency {corner:.3g} Hz at or above the Nyquist frequency {nyquist:.3g} Hz: "
                   "the stiffness rests on the aliasing and blur model (exposure_s must be right)")
    n_tau = setup.x.size / setup.fs_hz * 2 * math.pi * corner
    if n_tau < 100:
        out.append(f"the trace spans only {n_tau:.0f} relaxation times: low precision")
    if not (spectrum_fit.converged and fit.converged):
        out.append("the fit did not converge")
    if not math.isfinite(rel_err) or rel_err > 0.2:
        out.append(f"force uncertainty {rel_err:.0%}: not a usable calibration")
    if setup.fixed_drag is None and method != "equipartition":
        ratio = setup.params(fit.theta)[1] / setup.stokes
        if not 0.7 < ratio < 3:
            out.append(f"fitted drag {ratio:.2g} x Stokes' drag: check radius_nm, viscosity_pa_s and "
                       "exposure_s, or the tracking noise")
    return out
