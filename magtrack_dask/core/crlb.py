"""The Cramer-Rao lower bound of a bead's x, y and z from one image.

An image model is any callable ``model(x, y, z) -> expected counts``: it takes
three ``(n,)`` float64 arrays (x, y in px, pixel centres at integer
coordinates, x the column; z in the model's units) and returns the expected
images ``(n_pixels, n_pixels, n)`` in the core layout. Intensity and
background are nuisance parameters: the fitted image is
``a * model(x, y, z) + b`` about ``a = 1, b = 0``, so the bound is that of an
estimator that does not know the illumination or the offset.

Noise: each pixel's counts (photo-electrons) have the variance
``excess_noise * mu + read_noise**2``; the Fisher information is
``sum_pixels (d mu / d theta_i)(d mu / d theta_j) / variance``. This is exact
for Poisson noise (the defaults), exact for the shifted-Poisson model of
read noise, and with ``excess_noise=2`` the usual high-gain EMCCD rule
(information halved).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from magtrack_dask.validation import InputError, check_nonnegative, check_positive

__all__ = ["crlb", "fisher_information", "simulator_model", "zlut_model"]

#: Parameters of the Fisher matrix, in order.
PARAMETERS = ("x", "y", "z", "intensity", "background")

Model = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _positions(x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    arrays = []
    for name, value in (("x", x), ("y", y), ("z", z)):
        a = np.asarray(value, dtype=np.float64)
        if a.ndim > 1 or not np.all(np.isfinite(a)):
            raise InputError(f"{name} must be a finite scalar or 1-D array, got {value!r}")
        arrays.append(a)
    try:
        x, y, z = np.broadcast_arrays(*arrays)
    except ValueError:
        raise InputError(f"x, y and z must have the same length, got shapes "
                         f"{[a.shape for a in arrays]}") from None
    return np.atleast_1d(x).ravel(), np.atleast_1d(y).ravel(), np.atleast_1d(z).ravel(), x.shape


def fisher_information(
    model: Model,
    x,
    y,
    z,
    *,
    step_xy: float = 1e-2,
    step_z: float = 1.0,
    gain: float = 1.0,
    read_noise: float = 0.0,
    excess_noise: float = 1.0,
) -> np.ndarray:
    """Fisher information of x, y, z, intensity and background from one image.

    Parameters
    ----------
    model : callable
        ``model(x, y, z)`` with ``(n,)`` arrays -> expected counts
        ``(n_pixels, n_pixels, n)`` (see the module docstring).
    x, y : float or (n,) array_like
        Bead centre, px.
    z : float or (n,) array_like
        Focus position, the model's z units.
    step_xy, step_z : float, optional
        Steps of the central differences, px and z units.
    gain : float, optional
        Model counts per photo-electron (> 0); the noise is counted in electrons.
    read_noise : float, optional
        Read noise, electrons RMS (>= 0).
    excess_noise : float, optional
        Excess noise factor F**2 of the multiplication register (1: none;
        2: an EMCCD at high gain).

    Returns
    -------
    (n, 5, 5) float64 array
        Fisher matrices over ``PARAMETERS`` (x, y in px; z in z units;
        intensity as a relative scale; background in model counts).
    """
    step_xy = check_positive(step_xy, "step_xy")
    step_z = check_positive(step_z, "step_z")
    gain = check_positive(gain, "gain")
    read_noise = check_nonnegative(read_noise, "read_noise")
    excess_noise = check_positive(excess_noise, "excess_noise")
    if excess_noise < 1:
        raise InputError(f"excess_noise must be >= 1, got {excess_noise!r}")
    x, y, z, _ = _positions(x, y, z)
    n = x.size
    # One call: centre, then +-x, +-y, +-z.
    steps = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    steps *= [step_xy, step_xy, step_z]
    px = (x[None, :] + steps[:, 0:1]).ravel()
    py = (y[None, :] + steps[:, 1:2]).ravel()
    pz = (z[None, :] + steps[:, 2:3]).ravel()
    images = np.asarray(model(px, py, pz), dtype=np.float64)
    if images.ndim != 3 or images.shape[2] != 7 * n:
        raise InputError(f"model must return images (n_pixels, n_pixels, {7 * n}), got shape {images.shape}")
    images = images.reshape(-1, 7, n) / gain  # electrons
    mu = images[:, 0]
    if not np.all(np.isfinite(images)) or np.any(mu < 0):
        raise InputError("model must return finite, non-negative expected counts")
    derivs = [
        (images[:, 1] - images[:, 2]) / (2 * step_xy),
        (images[:, 3] - images[:, 4]) / (2 * step_xy),
        (images[:, 5] - images[:, 6]) / (2 * step_z),
        mu,  # d mu / d intensity scale
        np.ones_like(mu) / gain,  # d mu / d background (model counts)
    ]
    jac = np.stack(derivs, axis=1)  # (n_pix, 5, n)
    variance = np.maximum(excess_noise * mu + read_noise**2, 1e-12)
    return np.einsum("pin,pjn->nij", jac / variance[:, None], jac)


def crlb(model: Model, x, y, z, **options):
    """Cramer-Rao lower bound (standard deviations) of x, y and z from one image.

    Parameters
    ----------
    model : callable
        ``model(x, y, z)`` with ``(n,)`` arrays -> expected counts
        ``(n_pixels, n_pixels, n)``; e.g. :func:`simulator_model`,
        :func:`zlut_model` or :meth:`RadialModel.render`.
    x, y : float or (n,) array_like
        Bead centre, px (pixel centres at integer coordinates; x the column).
    z : float or (n,) array_like
        Focus position in the model's z units.
    **options
        ``step_xy``, ``step_z``, ``gain``, ``read_noise``, ``excess_noise``:
        see :func:`fisher_information`.

    Returns
    -------
    sx, sy, sz : float64 arrays shaped like the broadcast x, y, z (floats for scalars)
        Smallest standard deviations of unbiased estimates: x, y in px, z in
        z units, with intensity and background unknown.

    Examples
    --------
    >>> model = simulator_model(n_pixels=32, photons=1000.0)
    >>> sx, sy, sz = crlb(model, 15.5, 15.5, 1500.0)
    """
    _, _, _, shape = _positions(x, y, z)
    info = fisher_information(model, x, y, z, **options)
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        raise InputError("the Fisher information is singular: the image does not depend on x, y or z") from None
    sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2)[:, :3], 0.0))
    out = [sd[:, i].reshape(shape) for i in range(3)]
    return tuple(float(o) if o.ndim == 0 else o for o in out)


def simulator_model(*, n_pixels: int = 64, optics=None, photons: float = 1000.0) -> Model:
    """Our simulator (:func:`magtrack_dask.sim.beads.render_beads`) as an image model.

    Parameters
    ----------
    n_pixels : int, optional
        ROI side, px.
    optics : magtrack_dask.sim.beads.Optics, optional
    photons : float, optional
        Expected photons of a background pixel.

    Returns
    -------
    callable
        ``model(x, y, z)`` -> expected photons ``(n_pixels, n_pixels, n)``; z in nm.
    """
    from magtrack_dask.sim.beads import render_beads

    photons = check_positive(photons, "photons")

    def model(x, y, z):
        images = render_beads(x, y, z, n_pixels=n_pixels, optics=optics, background=photons)
        return np.maximum(images, 0.0)  # as the simulator's photon noise does

    return model


def zlut_model(zlut, *, n_pixels: int, scale: float = 1.0, radii=None, spacing: float = 1.0) -> Model:
    """An image model from a measured Z-LUT: each plane's radial profile turned into an image.

    The profiles become a :class:`~magtrack_dask.core.radial_model.RadialModel`
    (cubic B-splines in ``r``, knots every ``spacing`` px, and a cubic spline
    through the planes in z); pixels beyond the last bin take its value.

    Parameters
    ----------
    zlut : (1 + n_bins, n_ref) array_like
        Row 0 the planes' z (strictly monotonic), rows 1.. the profiles; NaN
        bins (an empty central bin) are left out.
    n_pixels : int
        Side of the images the model makes, px.
    scale : float, optional
        Expected counts per Z-LUT unit (e.g. photons / the LUT's background level).
    radii : (n_bins,) array_like, optional
        Radius of each bin, px; default ``0, 1, .. n_bins - 1``
        (:func:`~magtrack_dask.core.profiles.radial_profile` with ``oversample=1``).
    spacing : float, optional
        Knot spacing in ``r``, px.

    Returns
    -------
    callable
        ``model(x, y, z)`` -> expected counts ``(n_pixels, n_pixels, n)``.
    """
    from magtrack_dask.core.radial_model import RadialModel, fit_planes

    zlut = np.asarray(zlut, dtype=np.float64)
    if zlut.ndim != 2 or zlut.shape[0] < 3 or zlut.shape[1] < 2:
        raise InputError(f"zlut must be (1 + n_bins, n_ref) with n_bins >= 2 and n_ref >= 2, got {zlut.shape}")
    scale = check_positive(scale, "scale")
    z, profiles = zlut[0], zlut[1:]
    order = np.argsort(z)
    z, profiles = z[order], profiles[:, order]
    radii = np.arange(profiles.shape[0], dtype=np.float64) if radii is None else np.asarray(radii, np.float64)
    if radii.shape != (profiles.shape[0],):
        raise InputError(f"radii must have one radius per bin ({profiles.shape[0]}), got shape {radii.shape}")
    r = np.broadcast_to(radii[:, None], profiles.shape).ravel()
    plane = np.broadcast_to(np.arange(z.size)[None, :], profiles.shape).ravel()
    ok = np.isfinite(profiles.ravel())
    coef = fit_planes(r[ok], profiles.ravel()[ok], plane[ok], z.size, float(radii.max()), spacing)
    radial = RadialModel(z, coef, spacing)

    def model(x, y, zz):
        return radial.render(x, y, zz, n_pixels) * scale

    return model
