"""Allan variance of a bead's frames: the overlapping estimate and its exact expectation.

For averaging times ``tau = m dt`` (``m`` frames, octave spaced), the overlapping
Allan variance is half the mean squared difference of the means of two adjacent
``m``-frame windows, over all window positions. For frames with autocovariance
``R(n)`` (:class:`magtrack_dask.analysis.trap.FrameCovariance`) its
expectation is exactly ``(2 V(m) - V(2m) / 2) / m**2`` with
``V(n) = sum_{|j|<n} (n - |j|) R(|j|)`` the variance of a sum of ``n`` frames.
With the exposure equal to the frame interval this is the overdamped-bead
expression of Lansdorp & Saleh 2012 (Rev. Sci. Instrum. 83, 025115, eq. for
``sigma**2(tau)``), which the camera's blur does not change; shorter exposures
are covered exactly too. Each estimate is weighted as ``chi**2`` distributed with
the equivalent degrees of freedom of an overlapping Allan variance of white
frequency noise (Howe, Allan & Barnes 1981), which the bead's signal becomes for
``tau`` beyond its relaxation time. The octaves are strongly correlated where
``tau`` is below the relaxation time, so the fit's uncertainties come from the
estimates' covariance (:func:`allan_covariance`), not from these weights.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask.analysis.trap import FrameCovariance

__all__ = ["allan_covariance", "allan_edf", "allan_variance", "expected_allan_variance",
           "octave_windows"]


def octave_windows(n_frames: int) -> np.ndarray:
    """Window lengths ``m = 1, 2, 4, ...`` up to a quarter of the trace (frames)."""
    return 2 ** np.arange(int(np.log2(max(n_frames // 4, 1))) + 1)


def allan_variance(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Overlapping Allan variance (nm**2) of ``x`` (n_frames,) for each window length in ``m``."""
    cumulative = np.concatenate(([0.0], np.cumsum(x - x.mean())))
    out = np.empty(m.size)
    for i, w in enumerate(m):
        means = (cumulative[w:] - cumulative[:-w]) / w
        out[i] = 0.5 * np.mean((means[w:] - means[:-w]) ** 2)
    return out


def expected_allan_variance(cov: FrameCovariance, m: np.ndarray) -> np.ndarray:
    """``E[AVAR(m)]`` (nm**2) for the window lengths ``m`` (frames)."""
    m = m.astype(float)
    return (2 * _sum_variance(cov, m) - _sum_variance(cov, 2 * m) / 2) / m**2


def _sum_variance(cov: FrameCovariance, n: np.ndarray) -> np.ndarray:
    """``V(n) = n R(0) + 2 r1 sum_{i=0}^{n-2} (n - 1 - i) rho**i``, the geometric sum in closed form."""
    terms = n - 1
    one_minus_rho = -np.expm1(-cov.beta)
    weighted = (terms * one_minus_rho + cov.rho * np.expm1(-cov.beta * terms)) / one_minus_rho**2
    return n * cov.r0 + 2 * cov.r1 * weighted


def allan_edf(n_frames: int, m: np.ndarray) -> np.ndarray:
    """Equivalent degrees of freedom of the overlapping Allan variance (white frequency noise)."""
    m = m.astype(float)
    edf = (3 * (n_frames - 1) / (2 * m) - 2 * (n_frames - 2) / n_frames) * 4 * m**2 / (4 * m**2 + 5)
    return np.maximum(edf, 1.0)


def allan_covariance(expected_psd: np.ndarray, n_frames: int, fs_hz: float, m: np.ndarray) -> np.ndarray:
    """Covariance (nm**4) of the overlapping Allan variances at window lengths ``m``.

    Each estimate is, up to end effects, a weighted sum of the periodogram,
    ``sum_k a_k(m) P_k`` with the window-difference filter's gain
    ``|H_m(w)|**2 = 4 sin(m w / 2)**4 / (m sin(w / 2))**2``, and the periodogram values
    are independent with variance ``E[P_k]**2``; an average over ``n_d = N - 2m + 1``
    differences rather than ``N`` scales it by ``N / max(n_d, n_d')``.

    Parameters
    ----------
    expected_psd : numpy.ndarray, shape ((N-1)//2,)
        ``E[P_k]`` (nm**2/Hz) at bins 1 .. (N-1)//2
        (:class:`magtrack_dask.analysis.psd.ExpectedPeriodogram`).
    n_frames : int
    fs_hz : float
    m : numpy.ndarray of int, shape (n_m,)
    """
    n = n_frames
    omega = 2 * np.pi * np.arange(1, expected_psd.size + 1) / n
    mm = m.astype(float)[:, None]
    gain = 4 * np.sin(mm * omega / 2) ** 4 / (mm * np.sin(omega / 2)) ** 2
    # AVAR ~ sum over the whole circle of gain / (2 N) * |X_k|**2 / N, and |X_k|**2 / N = P_k fs / 2:
    # weights on P_k / E[P_k] (each of unit variance) over the half circle.
    weights = gain * fs_hz / (2 * n) * expected_psd
    n_d = n - 2 * m.astype(float) + 1
    return (weights @ weights.T) * n / np.maximum(n_d[:, None], n_d[None, :])
