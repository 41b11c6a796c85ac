"""The trap model: a tethered bead's lateral motion as a camera records it.

A bead on a tether of length ``L`` pulled with force ``F`` moves sideways like an
overdamped particle in a harmonic trap of stiffness ``kappa = F / L`` with drag
``gamma`` (an Ornstein-Uhlenbeck process of relaxation time ``tau = gamma / kappa``,
corner frequency ``f_c = kappa / (2 pi gamma)`` and variance ``k_B T / kappa``).
A camera with frame interval ``dt = 1 / fs`` and exposure ``W <= dt`` records the
bead's position averaged over each exposure. The frame values then form a
stationary Gaussian series whose autocovariance at lag ``n`` frames is, with
``alpha = W / tau`` and ``beta = dt / tau``::

    R(0) = k_B T / kappa * 2 (alpha - 1 + exp(-alpha)) / alpha**2
    R(n) = k_B T / kappa * ((1 - exp(-alpha)) / alpha)**2 * exp(alpha - n beta),  n >= 1

(the double integral of the OU covariance over two exposures). ``R(0)`` is the
motion-blur reduction of the variance of Wong & Halvorsen 2006 (Opt. Express 14,
12517). Everything the calibration fits derives from ``R``: the power spectrum of
the frames (its Fourier series: the aliased, motion-blurred Lorentzian of
Lansdorp & Saleh 2012, Rev. Sci. Instrum. 83, 025115, here with the finite-trace
leakage too) and their Allan variance (exact for any ``W <= dt``; for ``W = dt``
it is the overdamped-bead expression of Lansdorp & Saleh 2012).

Units: nm, pN, s; stiffness in pN/nm, drag in pN s/nm, energies in pN nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOLTZMANN_PN_NM_PER_K = 1.380649e-2  # k_B in pN nm / K (exact SI value)

__all__ = [
    "blur_variance_factor",
    "faxen_lateral_factor",
    "FrameCovariance",
    "frame_covariance",
    "stokes_drag",
    "thermal_energy",
]


def thermal_energy(temperature_k: float) -> float:
    """``k_B T`` in pN nm."""
    return BOLTZMANN_PN_NM_PER_K * temperature_k


def stokes_drag(radius_nm: float, viscosity_pa_s: float) -> float:
    """Stokes drag ``6 pi eta r`` of a sphere far from any wall, in pN s/nm."""
    # 1 N s/m = 1e3 pN s/nm and r in nm is 1e-9 m.
    return 6 * np.pi * viscosity_pa_s * radius_nm * 1e-6


def faxen_lateral_factor(radius_nm: float, height_nm: float) -> float:
    """Faxen's correction (>= 1) of the drag for motion parallel to a wall.

    ``height_nm`` is the distance from the wall to the bead's centre (for a tethered
    bead, tether length plus radius). Faxen's series to fifth order in ``r / h``
    (Happel & Brenner, Low Reynolds number hydrodynamics, 1965; as used by
    Schaffer et al. 2007, Langmuir 23, 3654).
    """
    q = radius_nm / height_nm
    return 1.0 / (1 - 9 / 16 * q + q**3 / 8 - 45 / 256 * q**4 - q**5 / 16)


def blur_variance_factor(alpha: np.ndarray | float) -> np.ndarray | float:
    """``2 (alpha - 1 + exp(-alpha)) / alpha**2``: the frames' variance over ``k_B T / kappa``.

    ``alpha = exposure / tau`` (``2 pi f_c W``); 1 at ``alpha = 0``, ~``2 / alpha`` for long exposures.
    """
    a = np.asarray(alpha, dtype=float)
    small = a < 1e-3
    safe = np.where(small, 1.0, a)
    exact = 2 * (safe + np.expm1(-safe)) / safe**2
    series = 1 - a / 3 + a**2 / 12 - a**3 / 60  # avoids the cancellation of alpha + expm1(-alpha)
    out = np.where(small, series, exact)
    return out if out.ndim else float(out)


@dataclass(frozen=True)
class FrameCovariance:
    """``R(0) = r0`` and ``R(n) = r1 * rho**(n - 1)`` for ``n >= 1`` (nm**2)."""

    r0: float
    r1: float
    rho: float
    beta: float  # -ln(rho): the frame interval over the relaxation time

    def lags(self, n_lags: int) -> np.ndarray:
        """``R(0 .. n_lags - 1)``, shape (n_lags,)."""
        out = np.empty(n_lags)
        out[0] = self.r0
        out[1:] = self.r1 * np.exp(-self.beta * np.arange(n_lags - 1, dtype=float))
        return out


def frame_covariance(kappa: float, gamma: float, *, fs_hz: float, exposure_s: float,
                     kt: float) -> FrameCovariance:
    """The autocovariance of exposure-averaged frames (see the module docstring).

    Parameters
    ----------
    kappa, gamma
        Stiffness (pN/nm) and drag (pN s/nm).
    fs_hz, exposure_s
        Frame rate and exposure (``0 <= exposure_s <= 1 / fs_hz``).
    kt
        Thermal energy (pN nm).
    """
    tau = gamma / kappa
    alpha = exposure_s / tau
    beta = 1.0 / (fs_hz * tau)
    variance = kt / kappa
    lag_gain = (-math.expm1(-alpha) / alpha) ** 2 if alpha > 0 else 1.0
    # exp(alpha - beta) <= 1 because exposure <= frame interval: no overflow.
    return FrameCovariance(r0=variance * float(blur_variance_factor(alpha)),
                           r1=variance * lag_gain * math.exp(alpha - beta),
                           rho=math.exp(-beta), beta=beta)
