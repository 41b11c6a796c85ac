"""Brownian traces with known truth: a tethered bead in a magnetic trap, and stage drift.

The bead (:func:`simulate_tethered_bead`) moves in x and y as an overdamped
particle in a harmonic trap, ``gamma dx/dt = -kappa x + sqrt(2 k_B T gamma) xi(t)``,
with Stokes' drag ``gamma = 6 pi eta r`` (times ``drag_factor``, e.g. Faxen's wall
correction) and stiffness ``kappa = F / L`` in both axes (an inverted pendulum;
in an instrument the axis along the field has ``F / (L + r)``, which a caller
gets by passing ``length_nm = L + r``). Each frame
interval ``1 / fs`` is cut into ``oversample`` substeps on which the process is
advanced with its exact Ornstein-Uhlenbeck transition, together with the exact
integral of the path over the substep (the pair is jointly Gaussian), so the
camera's value, the path averaged over the exposure (the first
``exposure_s * fs * oversample`` substeps of each frame), carries the exact motion
blur and aliasing for any substep length. The trace starts in equilibrium.

:func:`simulate_drift` gives the stage's drift, common to all beads of a field of
view: a constant velocity plus a random walk, in x, y and z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from magtrack_dask.analysis.trap import stokes_drag, thermal_energy
from magtrack_dask.validation import InputError, check_count, check_nonnegative, check_positive

__all__ = ["TetheredBead", "simulate_drift", "simulate_tethered_bead"]


@dataclass(frozen=True, eq=False)
class TetheredBead:
    """A simulated bead's frames (``x_nm``, ``y_nm``, ``time_s``: shape (n_frames,)) and its truth."""

    x_nm: np.ndarray
    y_nm: np.ndarray
    time_s: np.ndarray
    force_pn: float
    length_nm: float
    radius_nm: float
    stiffness_pn_per_nm: float
    drag_pn_s_per_nm: float
    corner_hz: float
    fs_hz: float
    exposure_s: float


def simulate_tethered_bead(force_pn: float, *, length_nm: float, radius_nm: float, fs_hz: float,
                           n_frames: int, exposure_s: float | None = None,
                           temperature_k: float = 296.15, viscosity_pa_s: float = 0.00089,
                           drag_factor: float = 1.0, oversample: int = 10,
                           seed: int | np.random.Generator | None = None) -> TetheredBead:
    """Camera frames of a tethered bead's lateral position (nm) under a constant force.

    Parameters
    ----------
    force_pn, length_nm, radius_nm : float
        Force (pN), tether length (nm) and bead radius (nm): stiffness ``force_pn / length_nm``.
    fs_hz : float
        Frame rate (Hz).
    n_frames : int
        Number of frames.
    exposure_s : float, optional
        Exposure (s) from the start of each frame, ``0 <= exposure_s <= 1 / fs_hz`` and a whole
        number of substeps; default ``1 / fs_hz``. ``0`` samples the position instantly.
    temperature_k, viscosity_pa_s : float
        Temperature (K) and viscosity (Pa s).
    drag_factor : float
        Drag over Stokes' drag (1 far from walls).
    oversample : int
        Substeps per frame interval.
    seed : int or numpy.random.Generator, optional
        Seeds the random numbers (x and y are independent).

    Returns
    -------
    TetheredBead
    """
    force_pn = check_positive(force_pn, "force_pn", "pN")
    length_nm = check_positive(length_nm, "length_nm", "nm")
    fs_hz = check_positive(fs_hz, "fs_hz", "Hz")
    n_frames = check_count(n_frames, "n_frames")
    oversample = check_count(oversample, "oversample")
    exposure = 1.0 / fs_hz if exposure_s is None else check_nonnegative(exposure_s, "exposure_s", "s")
    n_exposed = exposure * fs_hz * oversample
    if exposure > (1 + 1e-9) / fs_hz or abs(n_exposed - round(n_exposed)) > 1e-6:
        raise InputError(f"exposure_s must be a whole number of the {oversample} substeps of the frame "
                         f"interval 1 / fs_hz = {1 / fs_hz:g} s (raise oversample), got {exposure_s!r}")
    gamma = stokes_drag(check_positive(radius_nm, "radius_nm", "nm"),
                        check_positive(viscosity_pa_s, "viscosity_pa_s", "Pa s"))
    gamma *= check_positive(drag_factor, "drag_factor")
    kappa = force_pn / length_nm
    kt = thermal_energy(check_positive(temperature_k, "temperature_k", "K"))
    rng = np.random.default_rng(seed)
    step_s = 1.0 / (fs_hz * oversample)
    axes = [_exposed_frames(_ou_substeps(kappa, gamma, kt, step_s, n_frames * oversample, rng),
                            oversample, int(round(n_exposed)), step_s)
            for _ in range(2)]
    return TetheredBead(
        x_nm=axes[0], y_nm=axes[1], time_s=np.arange(n_frames) / fs_hz, force_pn=force_pn,
        length_nm=length_nm, radius_nm=float(radius_nm), stiffness_pn_per_nm=kappa,
        drag_pn_s_per_nm=gamma, corner_hz=kappa / (2 * math.pi * gamma), fs_hz=fs_hz,
        exposure_s=exposure)


def _ou_substeps(kappa: float, gamma: float, kt: float, step_s: float, n_steps: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions at the start of each substep and the path's integral over it, shape (n_steps,)."""
    tau = gamma / kappa
    u = step_s / tau
    variance = kt / kappa
    one_minus_c = -math.expm1(-u)
    c = 1.0 - one_minus_c
    var_step = variance * -math.expm1(-2 * u)
    cov = variance * tau * one_minus_c**2
    var_integral_given_step = variance * tau**2 * (2 * _f(u) - one_minus_c**3 / (1 + c))
    steps = rng.standard_normal(n_steps) * math.sqrt(var_step)
    x0 = rng.standard_normal() * math.sqrt(variance)
    after, _ = lfilter([1.0], [1.0, -c], steps, zi=[c * x0])
    starts = np.concatenate(([x0], after[:-1]))
    integral = (starts * tau * one_minus_c + steps * (cov / var_step)
                + rng.standard_normal(n_steps) * math.sqrt(max(var_integral_given_step, 0.0)))
    return starts, integral


def _f(u: float) -> float:
    """``u - 2 (1 - exp(-u)) + (1 - exp(-2u)) / 2`` without cancellation (the integral's variance)."""
    if u > 0.1:
        return u + 2 * math.expm1(-u) - math.expm1(-2 * u) / 2
    return sum((-1) ** (n + 1) * (2 ** (n - 1) - 2) * u**n / math.factorial(n) for n in range(3, 14))


def _exposed_frames(path: tuple[np.ndarray, np.ndarray], oversample: int, n_exposed: int,
                    step_s: float) -> np.ndarray:
    """Each frame's mean position over its exposure (the instant position for a zero exposure)."""
    starts, integral = (a.reshape(-1, oversample) for a in path)
    if n_exposed == 0:
        return starts[:, 0].copy()
    return integral[:, :n_exposed].sum(axis=1) / (n_exposed * step_s)


def simulate_drift(n_frames: int, *, fs_hz: float,
                   velocity_nm_per_s: tuple[float, float, float] = (3.0, -2.0, 1.0),
                   diffusion_nm2_per_s: float = 5.0,
                   seed: int | np.random.Generator | None = None) -> np.ndarray:
    """The stage's drift in x, y and z (nm), common to every bead of a field of view.

    A constant velocity plus a random walk of diffusion coefficient ``diffusion_nm2_per_s``
    in each axis, starting at 0 (the defaults drift by a few hundred nm over 100 s).

    Parameters
    ----------
    n_frames : int
    fs_hz : float
        Frame rate (Hz).
    velocity_nm_per_s : tuple of 3 floats
        Linear drift in x, y, z (nm/s).
    diffusion_nm2_per_s : float
        The random walk's diffusion coefficient (nm**2/s); 0 for a straight line.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    numpy.ndarray, shape (3, n_frames)
        Rows x, y, z (nm); add a row to every bead's trace in that axis.
    """
    n_frames = check_count(n_frames, "n_frames")
    fs_hz = check_positive(fs_hz, "fs_hz", "Hz")
    diffusion = check_nonnegative(diffusion_nm2_per_s, "diffusion_nm2_per_s", "nm**2/s")
    velocity = np.asarray(velocity_nm_per_s, dtype=float)
    if velocity.shape != (3,) or not np.all(np.isfinite(velocity)):
        raise InputError(f"velocity_nm_per_s must be 3 finite numbers (x, y, z in nm/s), "
                         f"got {velocity_nm_per_s!r}")
    time_s = np.arange(n_frames) / fs_hz
    steps = np.random.default_rng(seed).standard_normal((3, n_frames)) * math.sqrt(2 * diffusion / fs_hz)
    steps[:, 0] = 0.0
    return velocity[:, None] * time_s + np.cumsum(steps, axis=1)
