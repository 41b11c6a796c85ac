"""Maximum-likelihood fit of a model to averaged, gamma-distributed estimates.

Both the blocked periodogram (each point the mean of ``n`` exponential periodogram
values) and the Allan variance (``chi**2`` with ``edf`` degrees of freedom over
``edf``) give estimates ``y_k`` that are gamma distributed around their
expectation ``m_k(theta)`` with a known shape ``s_k``. The negative log-likelihood
is then ``sum_k s_k (y_k / m_k + ln m_k)`` up to a constant (Norrelykke &
Flyvbjerg 2010, Rev. Sci. Instrum. 81, 075103), and the Fisher information
``sum_k s_k d_i m_k d_j m_k / m_k**2`` gives the parameters' covariance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import minimize


@dataclass(frozen=True)
class GammaFit:
    """The fitted parameters (``theta``), their covariance and whether the optimiser converged."""

    theta: np.ndarray
    covariance: np.ndarray
    converged: bool


def fit_gamma_mle(model: Callable[[np.ndarray], np.ndarray], y: np.ndarray, shape: np.ndarray,
                  theta0: np.ndarray,
                  data_covariance: Callable[[np.ndarray], np.ndarray] | None = None) -> GammaFit:
    """Fit ``model(theta)`` to ``y`` (gamma shapes ``shape``); ``theta`` should be log-parameters.

    Parameters
    ----------
    model
        Maps the parameters, shape (n_params,), to expectations, shape (n_points,), all > 0.
    y, shape
        Estimates and their gamma shapes, shape (n_points,).
    theta0
        Starting point, shape (n_params,).
    data_covariance
        For estimates that are correlated with each other: maps the parameters to the
        covariance of ``y``, shape (n_points, n_points). The parameters' covariance is then
        the sandwich ``J^-1 G^T C G J^-1`` of the likelihood's score (``G`` its derivative in
        ``y``, ``J`` the Fisher matrix) instead of ``J^-1``.
    """
    def nll(theta):
        m = model(theta)
        if not np.all(np.isfinite(m)) or np.any(m <= 0):
            return np.inf
        return float(np.sum(shape * (y / m + np.log(m))))

    theta0 = np.asarray(theta0, dtype=float)
    # 1e-4 in log-parameters is 0.01 %; a change of 1e-4 in the log-likelihood is far below its
    # curvature scale (0.5 at one standard deviation).
    options = {"xatol": 1e-4, "fatol": 1e-4, "maxiter": 2000}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        best = minimize(nll, theta0, method="Nelder-Mead", options=options)
        # A restart from its own answer guards against a simplex collapsed on the way.
        best = minimize(nll, best.x, method="Nelder-Mead", options=options)
    theta = best.x
    jac = _jacobian(model, theta)
    m = model(theta)
    score_gain = jac * (shape / m**2)[:, None]  # d(score) / dy, shape (n_points, n_params)
    fisher = score_gain.T @ jac
    try:
        covariance = np.linalg.inv(fisher)
    except np.linalg.LinAlgError:
        covariance = np.full_like(fisher, np.inf)
    else:
        if data_covariance is not None:
            covariance = covariance @ score_gain.T @ data_covariance(theta) @ score_gain @ covariance
    if not np.all(np.isfinite(covariance)) or np.any(np.diag(covariance) <= 0):
        covariance = np.full_like(fisher, np.inf)  # parameters not identifiable from these data
    return GammaFit(theta=theta, covariance=covariance, converged=bool(best.success))


def _jacobian(model: Callable[[np.ndarray], np.ndarray], theta: np.ndarray) -> np.ndarray:
    """Central differences of the model in each parameter: shape (n_points, n_params)."""
    step = 1e-5
    cols = []
    for i in range(theta.size):
        delta = np.zeros_like(theta)
        delta[i] = step
        cols.append((model(theta + delta) - model(theta - delta)) / (2 * step))
    return np.stack(cols, axis=1)
