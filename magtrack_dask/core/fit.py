"""``method="fit"``: Poisson maximum-likelihood fit of the whole ROI to an image model.

Each image is fitted with ``mu = amplitude * I(|pixel - (x, y)|, z) + background``
(:class:`~magtrack_dask.core.radial_model.RadialModel`) by Fisher scoring: a
Gauss-Newton step weighted by the Poisson variance ``mu``, at most
``iterations`` steps from a cheap seed; a frame stops once a step moves it by
far less than any bound. The model is learned from the calibration frames
alone (:func:`model_from_stack`): each frame's centre, amplitude and
background are refitted against its plane's profile, the profiles refitted
about the new centres, and the planes smoothed along z. The fit reaches the
Cramer-Rao bound where the bead's image is radially symmetric and the model
is accurate (see benchmarks/README.md, "Accuracy").

Seeds: x, y from the centre of mass (``background='median'``),
:func:`~magtrack_dask.core.xy.auto_conv` and one round of
:func:`~magtrack_dask.core.xy.auto_conv_multiline_sub_pixel`; z from the best
Pearson match of the image's radial profile over the whole model (profiles of
the model binned as :func:`radial_profile` bins them, for the frame's
sub-pixel offset class, on a grid of five per plane spacing, then a
parabola); amplitude and background from the linear regression there.

The NumPy/CuPy formulation here is vectorised over blocks of frames; on the
CPU a compiled kernel (:mod:`magtrack_dask.core._numba_fit`) does the same
arithmetic per frame when numba is installed (equal to ~1e-9).
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module, to_numpy
from magtrack_dask.core.pipeline import as_float_stack, stack_to_xyzp
from magtrack_dask.core.profiles import radial_profile
from magtrack_dask.core.radial_model import RadialModel, fit_planes
from magtrack_dask.core.xy import auto_conv, center_of_mass, refine_rounds
from magtrack_dask.validation import InputError, InputTypeError, check_count, check_positive

__all__ = ["model_from_stack", "fit_stack", "track_fit"]

_BLOCK = 64  # frames per vectorised block: (block, 5, n_pixels**2) float64 Jacobians
_MU_FLOOR = 1e-6  # expected counts are kept positive (Poisson weights 1 / mu)
# ... and at least this fraction of the image's mean: a pixel the model puts near zero
# (a dark ring, a spline's undershoot) must not take a weight that swamps the others.
_MU_FLOOR_FRACTION = 1e-2
# A frame stops when a step moves x and y by less than TOL_XY px and z by less than
# TOL_Z of the model's plane spacing: far below any bound, so further steps are wasted.
TOL_XY = 1e-4
TOL_Z = 1e-4
_SEED_OFFSETS = 4  # sub-pixel offset classes per axis of the z seed's profile tables
_SEED_Z_STEPS = 5  # z seed's table columns per plane spacing
_SEED_ROUNDS = 1  # auto_conv_multiline_sub_pixel rounds of the x, y seed


def _as_model(model, stack) -> RadialModel:
    if not isinstance(model, RadialModel):
        raise InputTypeError(f"model must be a RadialModel (from model_from_stack), got {type(model).__name__}")
    if model.n_pixels is not None and stack.shape[0] != model.n_pixels:
        raise InputError(f"stack must have images of the model's size, {model.n_pixels} x {model.n_pixels} px, "
                         f"got {stack.shape[0]} x {stack.shape[1]}")
    return model


def _pixels(xp, n: int):
    grid = xp.arange(n, dtype=np.float64)
    return xp.tile(grid, n), xp.repeat(grid, n)  # column (x) and row (y) of each pixel, row-major


def _scoring(xp, data, model: RadialModel, x, y, z, a, b, iterations: int, fit_z: bool = True):
    """Fisher-scoring steps on a block; ``data`` ``(n_f, n_pix)`` row-major images. Returns x, y, z, a, b."""
    n = int(round(data.shape[1] ** 0.5))
    px, py = _pixels(xp, n)
    z_lo, z_hi = model.z_range
    z_step = float(np.min(np.diff(model.z)))
    done = xp.zeros(x.shape, dtype=bool)
    floor = xp.maximum(_MU_FLOOR_FRACTION * data.mean(axis=1), _MU_FLOOR)[:, None]
    for _ in range(iterations):
        c, dc = model.coefficients(z, xp)
        dx = px[None, :] - x[:, None]
        dy = py[None, :] - y[:, None]
        r = xp.sqrt(dx * dx + dy * dy)
        value, slope, dz = model.intensity(r, c, dc, xp)
        mu = xp.maximum(a[:, None] * value + b[:, None], floor)
        g = a[:, None] * slope / xp.maximum(r, 1e-9)
        jac = xp.stack([-g * dx, -g * dy, a[:, None] * dz, value, xp.ones_like(value)], axis=1)
        weighted = jac / mu[:, None, :]
        info = xp.einsum("fip,fjp->fij", weighted, jac)
        score = xp.einsum("fip,fp->fi", weighted, data - mu)
        if not fit_z:
            info[:, 2, :] = 0.0
            info[:, :, 2] = 0.0
            info[:, 2, 2] = 1.0
            score[:, 2] = 0.0
        info += xp.eye(5)[None] * 1e-12 * xp.trace(info, axis1=1, axis2=2)[:, None, None]
        step = xp.linalg.solve(info, score[..., None])[..., 0]
        step = xp.where(done[:, None], 0.0, step)  # converged frames keep their values
        done = done | ((xp.abs(step[:, 0]) < TOL_XY) & (xp.abs(step[:, 1]) < TOL_XY)
                       & (xp.abs(step[:, 2]) < TOL_Z * z_step))
        # A step never leaves the basin: at most 1 px and one plane spacing.
        x = x + xp.clip(step[:, 0], -1.0, 1.0)
        y = y + xp.clip(step[:, 1], -1.0, 1.0)
        z = xp.clip(z + xp.clip(step[:, 2], -z_step, z_step), z_lo, z_hi)
        a = xp.maximum(a + step[:, 3], 1e-3 * xp.abs(a))
        b = b + step[:, 4]
    return x, y, z, a, b


def _frames(stack):
    """Images as ``(n_images, n_pix)`` float64 rows (pixel order row-major)."""
    xp = array_module(stack)
    n = stack.shape[0]
    return xp.ascontiguousarray(stack.reshape(n * n, -1).T, dtype=np.float64)


def _check_positions(xp, n_images: int, **arrays):
    out = []
    for name, value in arrays.items():
        arr = xp.asarray(value, dtype=np.float64)
        if arr.ndim == 0:
            arr = xp.full(n_images, float(arr))
        if arr.shape != (n_images,):
            raise InputError(f"{name} must be a scalar or have shape ({n_images},), got {arr.shape}")
        out.append(arr.copy())
    return out


def fit_stack(stack, model: RadialModel, x, y, z, amplitude, background, *, iterations: int = 6,
              compiled: bool | None = None):
    """Fit x, y, z, amplitude and background of each image from given seeds.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) array
        Images in photon counts ideally (the Poisson weights assume it; other
        units change only the weighting). NumPy or CuPy.
    model : RadialModel
        From :func:`model_from_stack`.
    x, y : (n_images,) array_like or float
        Seeds of the centre, px (pixel centres at integer coordinates, x the column).
    z : (n_images,) array_like or float
        Seed of z, the model's z units (within the model's planes).
    amplitude, background : (n_images,) array_like or float
        Seeds of the image scale (relative to the model) and offset (counts).
    iterations : int, optional
        Fisher-scoring steps.
    compiled : bool, optional
        Use the numba kernel (NumPy only); default: when numba is installed.

    Returns
    -------
    x, y, z, amplitude, background : (n_images,) float64 arrays
    """
    iterations = check_count(iterations, "iterations")
    stack = as_float_stack(stack)
    model = _as_model(model, stack)
    xp = array_module(stack)
    n_images = stack.shape[2]
    params = _check_positions(xp, n_images, x=x, y=y, z=z, amplitude=amplitude, background=background)
    data = _frames(stack)
    return _fit_blocks(data, model, params, iterations, compiled=compiled)


def _fit_blocks(data, model: RadialModel, params, iterations: int, *, fit_z: bool = True,
                compiled: bool | None = None):
    """Fisher scoring of ``data`` ``(n_images, n_pix)`` from ``params`` (x, y, z, a, b): numba or blocks."""
    xp = array_module(data)
    kernel = _compiled_kernel() if (xp is np and compiled is not False) else None
    if compiled and kernel is None:
        raise InputError("compiled=True needs numba and a NumPy stack")
    if kernel is not None:
        return kernel(data, model, *params, iterations, fit_z)
    n_images = data.shape[0]
    out = [xp.empty(n_images) for _ in range(5)]
    for start in range(0, n_images, _BLOCK):
        sl = slice(start, min(start + _BLOCK, n_images))
        for o, v in zip(out, _scoring(xp, data[sl], model, *(p[sl] for p in params), iterations, fit_z)):
            o[sl] = v
    return tuple(out)


def _compiled_kernel():
    try:
        from magtrack_dask.core._numba_fit import fit_frames
    # RuntimeError: numba finds no writable place for its cache (``cache=True``)
    except (ImportError, RuntimeError):
        return None
    return fit_frames


def _seed_tables(model: RadialModel, n: int):
    """The model's radial profiles as :func:`radial_profile` bins them, cached on the model.

    Returns
    -------
    z : (n_z,) array
        A grid of ``_SEED_Z_STEPS`` values per plane spacing.
    tables : (_SEED_OFFSETS, _SEED_OFFSETS, n // 2, n_z) array
        Profiles of the model rendered with the bead at each sub-pixel offset
        class (rows: y, columns: x): 1-px ring binning depends on where the bead
        sits on the pixel grid, so a frame is compared with its own class.
    """
    cache = model.__dict__.setdefault("_seed_cache", {})
    if n not in cache:
        z = np.interp(np.arange((model.z.size - 1) * _SEED_Z_STEPS + 1) / _SEED_Z_STEPS,
                      np.arange(model.z.size), model.z)
        off = (np.arange(_SEED_OFFSETS) + 0.5) / _SEED_OFFSETS - 0.5
        tables = np.empty((_SEED_OFFSETS, _SEED_OFFSETS, n // 2, z.size))
        for i, oy in enumerate(off):
            for j, ox in enumerate(off):
                x = np.full(z.size, n // 2 + ox)
                y = np.full(z.size, n // 2 + oy)
                tables[i, j] = radial_profile(model.render(x, y, z, n), x, y)
        cache[n] = z, tables
    return cache[n]


def seed_z(profiles, x, y, model: RadialModel):
    """z, amplitude and background seeds from radial profiles, by the best-matching model profile.

    Parameters
    ----------
    profiles : (n_bins, n_images) array
        :func:`radial_profile` of the images about ``x, y`` (1 px bins,
        ``n_bins = n_pixels // 2``); bin 0 is not used.
    x, y : (n_images,) arrays
        The centres of the profiles, px.
    model : RadialModel

    Returns
    -------
    z, amplitude, background : (n_images,) float64 arrays
        ``z`` maximises the Pearson correlation with the model's profiles
        (binned alike, on a grid finer than the planes, refined by a
        parabola); ``amplitude`` and ``background`` are the linear regression
        of the profile on the model's there.
    """
    xp = array_module(profiles)
    n_bins = profiles.shape[0]
    z_grid, tables = _seed_tables(model, 2 * n_bins)
    p = xp.nan_to_num(xp.asarray(profiles[1:], dtype=np.float64))
    pc = p - p.mean(axis=0)
    n_images = p.shape[1]
    z = xp.empty(n_images)
    amplitude = xp.empty(n_images)
    background = xp.empty(n_images)
    cls_x = xp.clip(xp.floor((x - xp.rint(x) + 0.5) * _SEED_OFFSETS), 0, _SEED_OFFSETS - 1).astype(np.int64)
    cls_y = xp.clip(xp.floor((y - xp.rint(y) + 0.5) * _SEED_OFFSETS), 0, _SEED_OFFSETS - 1).astype(np.int64)
    cls = to_numpy(cls_y * _SEED_OFFSETS + cls_x)
    zg = xp.asarray(z_grid)
    n_z = z_grid.size
    for c in np.unique(cls):
        sel = xp.asarray(np.flatnonzero(cls == c))
        table = xp.asarray(tables[c // _SEED_OFFSETS, c % _SEED_OFFSETS, 1:])
        tc = table - table.mean(axis=0)
        t_norm = xp.sqrt((tc * tc).sum(axis=0))
        corr = (pc[:, sel].T @ tc) / xp.maximum(t_norm, 1e-300)[None, :]  # Pearson up to a per-image scale
        best = xp.argmax(corr, axis=1)
        k = xp.clip(best, 1, n_z - 2)
        rows = xp.arange(corr.shape[0])
        lo, mid, hi = corr[rows, k - 1], corr[rows, k], corr[rows, k + 1]
        curv = lo - 2 * mid + hi
        shift = xp.where(curv < 0, 0.5 * (lo - hi) / xp.where(curv < 0, curv, -1.0), 0.0)
        shift = xp.where(best == k, xp.clip(shift, -0.5, 0.5), 0.0)
        z[sel] = xp.interp(best + shift, xp.arange(n_z, dtype=np.float64), zg)
        m = tc[:, best]
        a = (pc[:, sel] * m).sum(axis=0) / xp.maximum((m * m).sum(axis=0), 1e-300)
        a = xp.where(a > 0, a, 1.0)
        amplitude[sel] = a
        background[sel] = p[:, sel].mean(axis=0) - a * table.mean(axis=0)[best]
    return z, amplitude, background


def track_fit(stack, model: RadialModel, *, iterations: int = 6, compiled: bool | None = None):
    """x, y, z and radial profiles of each image by a maximum-likelihood fit of the image model.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) array
        Square images (float32, float64, uint8 or uint16), ideally in photon
        counts; NumPy or CuPy.
    model : RadialModel
        From :func:`model_from_stack` with images of the same size.
    iterations : int, optional
        Fisher-scoring steps from the seed.
    compiled : bool, optional
        See :func:`fit_stack`.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        Centres, px; NaN where the fit left the ROI or failed.
    z : (n_images,) float64 array
        In the model's z units; NaN where the fit ends on the model's first or last plane.
    profiles : (n_bins, n_images) array
        :func:`radial_profile` about the fitted centres, ``n_bins = n_pixels // 2``.
    """
    stack = as_float_stack(stack)
    model = _as_model(model, stack)
    xp = array_module(stack)
    n = stack.shape[0]
    x0, y0 = center_of_mass(stack, background="median")
    x0, y0 = auto_conv(stack, xp.nan_to_num(x0, nan=(n - 1) / 2), xp.nan_to_num(y0, nan=(n - 1) / 2))
    x0, y0 = refine_rounds(stack, x0, y0, _SEED_ROUNDS)
    x0 = xp.nan_to_num(x0, nan=(n - 1) / 2)
    y0 = xp.nan_to_num(y0, nan=(n - 1) / 2)
    z0, a0, b0 = seed_z(radial_profile(stack, x0, y0), x0, y0, model)
    x, y, z, _, _ = fit_stack(stack, model, x0, y0, z0, a0, b0, iterations=iterations, compiled=compiled)
    lost = ~(xp.isfinite(x) & xp.isfinite(y) & (x >= -0.5) & (x <= n - 0.5) & (y >= -0.5) & (y <= n - 0.5))
    x = xp.where(lost, np.nan, x)
    y = xp.where(lost, np.nan, y)
    z_lo, z_hi = model.z_range
    z = xp.where(lost | (z <= z_lo) | (z >= z_hi) | ~xp.isfinite(z), np.nan, z)
    profiles = radial_profile(stack, xp.where(lost, x0, x), xp.where(lost, y0, y))
    return x, y, z, profiles


def model_from_stack(stack, z_nm, *, spacing: float = 0.25, rounds: int = 2,
                     z_smoothing: float = 0.5) -> RadialModel:
    """Learn the image model ``I(r, z)`` from calibration frames of known focus.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_frames) array
        Calibration images of one bead (NumPy or CuPy; float or camera counts).
        Several frames per focus plane average the noise out; beads that
        move a little between frames sample the radius finely.
    z_nm : (n_frames,) array_like
        Focus position of each frame; frames with equal values form a plane.
        At least 4 distinct planes.
    spacing : float, optional
        Knot spacing of the radial spline, px.
    rounds : int, optional
        Refits of each frame's centre, amplitude and background and of the profiles.
    z_smoothing : float, optional
        Third-difference penalty along the planes (see :class:`RadialModel`):
        the default suits 50 nm focus steps (benchmarks/README.md, "Accuracy").

    Returns
    -------
    RadialModel
        ``I(r, z)`` in the units of the calibration frames' background-free
        modulation plus background (amplitude 1 and background 0 reproduce a
        typical calibration frame), z in the units of ``z_nm``.
    """
    stack = as_float_stack(stack)
    xp = array_module(stack)
    spacing = check_positive(spacing, "spacing")
    rounds = check_count(rounds, "rounds")
    n, n_frames = stack.shape[0], stack.shape[2]
    z_nm = np.asarray(to_numpy(z_nm), dtype=np.float64)
    if z_nm.shape != (n_frames,) or not np.all(np.isfinite(z_nm)):
        raise InputError(f"z_nm must be finite with one value per frame, shape ({n_frames},), got {z_nm.shape}")
    planes, plane = np.unique(z_nm, return_inverse=True)
    if planes.size < 4:
        raise InputError(f"z_nm must hold at least 4 distinct focus planes, got {planes.size}")
    x, y, _, _ = stack_to_xyzp(stack)
    centre = (n - 1) / 2
    x = xp.nan_to_num(xp.asarray(x, dtype=np.float64), nan=centre)
    y = xp.nan_to_num(xp.asarray(y, dtype=np.float64), nan=centre)
    a = xp.ones(n_frames)
    b = xp.zeros(n_frames)
    data = _frames(stack)
    px, py = _pixels(xp, n)
    plane_x = xp.asarray(plane)
    samples_plane = xp.repeat(plane_x, n * n)
    # The farthest pixel from any frame's centre: the model need not reach further.
    far = xp.maximum(xp.maximum(x, n - 1 - x), xp.maximum(y, n - 1 - y))
    r_max = float(xp.max(far)) * 2**0.5 + 1.0
    for round_ in range(rounds + 1):
        r = xp.sqrt((px[None, :] - x[:, None]) ** 2 + (py[None, :] - y[:, None]) ** 2)
        values = (data - b[:, None]) / a[:, None]
        coef = fit_planes(r.ravel(), values.ravel(), samples_plane, planes.size, r_max, spacing)
        model = RadialModel(planes, to_numpy(coef), spacing, z_smoothing if round_ == rounds else 0.0, n)
        if round_ == rounds:
            return model
        z = xp.asarray(planes)[plane_x]
        x, y, _, a, b = _fit_blocks(data, model, (x, y, z, a, b), 4, fit_z=False)
    raise AssertionError("unreachable")
