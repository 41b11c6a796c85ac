"""Power spectrum of a bead's frames: the blocked periodogram and its exact expectation.

The one-sided periodogram of ``N`` frames at ``f_k = k fs / N`` (``k = 1 .. (N-1)//2``,
the Nyquist bin excluded) is ``P_k = 2 dt / N |sum_n x_n exp(-2 pi i k n / N)|**2``
(nm**2/Hz). Its expectation for frames with autocovariance ``R(n)``
(:class:`magtrack_dask.analysis.trap.FrameCovariance`) is the Fourier series of the
Fejer-weighted autocovariance,

    E[P_k] = 2 dt (R(0) + 2 Re sum_{n=1}^{N-1} (1 - n/N) R(n) exp(-2 pi i k n / N)),

which contains the camera's aliasing and motion blur (for ``N -> inf`` it is the
closed form of Lansdorp & Saleh 2012, Rev. Sci. Instrum. 83, 025115) and the
leakage of a finite trace, so no low-frequency bins need to be dropped. With
``R(n) = r1 rho**(n-1)`` the sum is geometric and evaluated in closed form. The
mean of the trace drops out of every ``k >= 1`` bin. ``n_block`` consecutive bins
are averaged (in frequency, Norrelykke & Flyvbjerg 2010): each block is gamma
distributed with shape ``n_block`` about the block mean of ``E[P_k]``.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

from magtrack_dask.analysis.trap import FrameCovariance

__all__ = ["ExpectedPeriodogram", "block_average", "periodogram"]


def _bins(n_frames: int) -> np.ndarray:
    return np.arange(1, (n_frames - 1) // 2 + 1)


def periodogram(x: np.ndarray, fs_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and one-sided periodogram (nm**2/Hz) of ``x`` (n_frames,), bins 1 .. (N-1)//2."""
    n = x.size
    k = _bins(n)
    return k * fs_hz / n, 2.0 / (fs_hz * n) * np.abs(sp_fft.rfft(x - x.mean())[k]) ** 2


class ExpectedPeriodogram:
    """``E[P_k]`` (nm**2/Hz) for bins 1 .. (N-1)//2 of an ``n_frames`` trace, called with a covariance."""

    def __init__(self, n_frames: int, fs_hz: float):
        self.n = n_frames
        self.fs_hz = fs_hz
        self.phase = np.exp(-2j * np.pi * _bins(n_frames) / n_frames)  # exp(-i w_k)

    def __call__(self, cov: FrameCovariance) -> np.ndarray:
        n, phase = self.n, self.phase
        z = cov.rho * phase
        k_terms = n - 1  # sum_{j=0}^{K-1} (1 - (j + 1)/N) z**j for K = N - 1, with z**N = rho**N
        z_k = np.exp(-cov.beta * k_terms) * phase.conj()  # z**K = rho**K exp(+i w_k)
        one_minus_z = 1.0 - z
        g0 = (1.0 - z_k) / one_minus_z
        g1 = (z - k_terms * z_k + (k_terms - 1) * np.exp(-cov.beta * n)) / one_minus_z**2
        series = cov.r1 * phase * ((1.0 - 1.0 / n) * g0 - g1 / n)
        return 2.0 / self.fs_hz * (cov.r0 + 2.0 * series.real)


def block_average(values: np.ndarray, n_block: int) -> np.ndarray:
    """Means of ``n_block`` consecutive values (a short last block is dropped)."""
    n = values.size // n_block * n_block
    return values[:n].reshape(-1, n_block).mean(axis=1)
