"""The accurate method's x, y and radial profiles: no pixelation, centres refined to the bound.

Three steps per image, each written once for NumPy and CuPy here (whole
blocks of images, ``bincount`` binning, no per-image Python loops) and once
as a compiled CPU kernel (:mod:`magtrack_dask.core._numba_spline`) that gives
the same numbers to rounding:

1. **Seed.** The x (y) projection of a radially symmetric image, minus its
   mean, is symmetric about the centre, so its convolution with itself peaks
   at twice the centre; a parabola through the peak's three samples gives a
   start within a fraction of a pixel. Pixels are clipped to 6 robust standard
   deviations first (a hot pixel is symmetric about itself), and a fit that
   leaves the image starts again from the image's centre.
2. **Tent profiles.** Every pixel within ``n_bins - 1`` px of the centre
   adds to the two radial samples around its distance ``r``, with linear
   weights ``1 - (r - k)`` and ``r - k`` (``k = floor(r)``): the profile is
   a smooth function of the sub-pixel centre, unlike the 1-px nearest rings of
   :func:`~magtrack_dask.core.profiles.radial_profile`, whose jumps bias z.
   The final profiles are corrected to second order for where the pixels fall
   (:func:`_corrected_profiles`).
3. **Gauss-Newton.** The image is fitted by its own radially symmetric
   model, the profile interpolated at each pixel's distance; each round moves
   the centre by the least-squares step ``-(G^T G)^{-1} G^T (I - M)``, with
   ``G = P'(r) (dx, dy) / r`` the model's gradient (``P'`` central
   differences, cubic Hermite between samples; residuals capped at the ring
   contrast). The fixed point is the centre of symmetry; the
   step's information matrix is the Fisher information of the centre under
   near-uniform noise, which is why the precision reaches the Cramer-Rao bound.

Coordinates follow the core: axis 0 is y (rows), axis 1 is x (columns), pixel
centres at integer coordinates.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._blocks import blocks, for_each_block, frame_run
from magtrack_dask.core._checks import check_centres, check_stack, quiet
from magtrack_dask.validation import InputError, check_count

__all__ = ["REFINE_ROUNDS", "profile_bins_count", "tent_profiles", "symmetric_seed", "refine_centres",
           "accurate_xy_profiles"]

#: Gauss-Newton rounds of the accurate method; each round shrinks a seed's
#: error many-fold, two leave it far below the noise.
REFINE_ROUNDS = 2
#: Smallest ROI side (px) the accurate method tracks: rings out to a few px.
MIN_PIXELS = 8
#: The Gauss-Newton weights fall to 0 over this many px inside the fitted disc.
TAPER_PX = 4.0
#: Pixels beyond ``CLIP`` robust standard deviations of the image (median +-
#: 1.4826 MAD of every ``SAMPLE_STEP``-th pixel) are clipped in the seed: a hot
#: pixel or a speck must not be taken for the bead.
CLIP = 6.0
SAMPLE_STEP = 4


def profile_bins_count(width: int) -> int:
    """Radial samples of a ``width`` px image: ``width // 2``, at radius ``k`` px."""
    return int(width) // 2


# -- the per-block kernels (NumPy or CuPy), images frame-major (n, w, w) float64 -----------------


def _geometry(xp, cx, cy, width: int, n_bins: int):
    """Slots and weights of every pixel of a block: ``(index, frac, dx, dy, r, inside)``.

    ``index`` is the flat (image, k) slot of the inner sample; pixels at
    ``r >= n_bins - 1`` go to two dump slots past the profile, with zero
    fraction, so one ``bincount`` needs no mask.
    """
    n = cx.shape[0]
    slots = n_bins + 2
    grid = xp.arange(width, dtype=np.float64)
    dx = grid[None, None, :] - cx[:, None, None]
    dy = grid[None, :, None] - cy[:, None, None]
    r = xp.sqrt(dx * dx + dy * dy)
    inside = r < n_bins - 1
    k = xp.floor(r)
    frac = xp.where(inside, r - k, 0.0)
    k = xp.where(inside, k, float(n_bins)).astype(np.int64)
    k += (xp.arange(n, dtype=np.int64) * slots)[:, None, None]
    return k.ravel(), frac.ravel(), dx, dy, r, inside


def _corrected_profiles(xp, images, index, frac, n: int, n_bins: int):
    """Tent profiles ``(n, n_bins + 2)`` (the two dump slots 0) and
    ``(n, n_bins)`` corrected to second order for where the pixels fall.

    A tent sample averages ``I(r)`` over ``k - 1 < r < k + 1`` with the
    pixels' own distribution of ``r - k``, which changes with the sub-pixel
    centre: ``P_k = I(k) + I'(k) m1_k + I''(k) m2_k / 2``, with ``m1_k`` and
    ``m2_k`` the tent-weighted mean of ``r - k`` and ``(r - k)^2``. Subtracting
    those terms (derivatives by central differences of ``P``) removes most of
    the profile's dependence on the sub-pixel centre, the largest systematic z
    error left.
    """
    size = n * (n_bins + 2)
    values = images.ravel()
    lo, hi = 1.0 - frac, frac

    def tent(w_lo, w_hi):
        out = xp.bincount(index, weights=w_lo, minlength=size)
        out[1:] += xp.bincount(index, weights=w_hi, minlength=size)[:-1]
        return out

    weight = tent(lo, hi)
    with quiet(xp):
        profile = (tent(lo * values, hi * values) / weight).reshape(n, n_bins + 2)[:, :n_bins]
        offset = hi * lo  # the inner sample sees r - k = frac, the outer frac - 1
        m1 = (tent(offset, -offset) / weight).reshape(n, n_bins + 2)[:, :n_bins]
        m2 = (tent(offset * hi, offset * lo) / weight).reshape(n, n_bins + 2)[:, :n_bins]
    slope = xp.zeros_like(profile)
    slope[:, 1:-1] = 0.5 * (profile[:, 2:] - profile[:, :-2])
    plain = xp.zeros((n, n_bins + 2))
    plain[:, :n_bins] = profile
    curve = xp.zeros_like(profile)
    curve[:, 1:-1] = profile[:, 2:] - 2.0 * profile[:, 1:-1] + profile[:, :-2]
    curve[:, 0] = 2.0 * (profile[:, 1] - profile[:, 0])  # I(-1) = I(1): symmetric about r = 0
    return plain, profile - slope * m1 - 0.5 * curve * m2


def _slope(xp, profile, n_bins: int):
    """dP/dr at the samples: central differences, 0 at r = 0 (symmetry), one-sided at the last."""
    slope = xp.zeros_like(profile)
    slope[:, 1 : n_bins - 1] = 0.5 * (profile[:, 2:n_bins] - profile[:, : n_bins - 2])
    slope[:, n_bins - 1] = profile[:, n_bins - 1] - profile[:, n_bins - 2]
    return slope


def _newton_step(xp, images, profile, geometry, n_bins: int):
    """The Gauss-Newton centre step ``(step_x, step_y)`` of each image of a block."""
    index, frac, dx, dy, r, inside = geometry
    shape = images.shape
    flat = profile.ravel()
    slope = _slope(xp, profile, n_bins).ravel()
    lo, hi = flat[index], flat[index + 1]
    d_lo, d_hi = slope[index], slope[index + 1]
    # cubic Hermite between the samples (Catmull-Rom slopes): the model and its gradient
    t = frac
    t2 = t * t
    h01 = t2 * (3.0 - 2.0 * t)
    model = lo + h01 * (hi - lo) + (t - 2.0 * t2 + t2 * t) * d_lo + (t2 * t - t2) * d_hi
    g01 = 6.0 * (t - t2)
    grad = (g01 * (hi - lo) + (1.0 - 4.0 * t + 3.0 * t2) * d_lo + (3.0 * t2 - 2.0 * t) * d_hi).reshape(shape)
    resid = xp.where(inside, images - model.reshape(shape), 0.0)
    # a residual beyond the whole ring contrast is no part of the bead (a hot pixel, a speck)
    body = profile[:, : n_bins]
    limit = (body.max(axis=1) - body.min(axis=1))[:, None, None]
    resid = xp.minimum(xp.maximum(resid, -limit), limit)
    with quiet(xp):
        grad = xp.where(r > 0, grad / r, 0.0)
    grad *= _taper(xp, r, n_bins)
    gx, gy = grad * dx, grad * dy
    a = (gx * gx).sum(axis=(1, 2))
    b = (gx * gy).sum(axis=(1, 2))
    c = (gy * gy).sum(axis=(1, 2))
    u = (gx * resid).sum(axis=(1, 2))
    v = (gy * resid).sum(axis=(1, 2))
    with quiet(xp):
        det = a * c - b * b
        return -(c * u - b * v) / det, -(a * v - b * u) / det


def _taper(xp, r, n_bins: int):
    t = xp.clip((n_bins - 1 - r) / TAPER_PX, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _robust_scale(xp, images):
    """Median and ``1.4826 * MAD`` of each image of a block ``(n, w, w)``, from every
    :data:`SAMPLE_STEP`-th row and column (exact order statistics: the compiled kernel
    finds the same numbers). ``inf`` scale where the MAD is 0."""
    n = images.shape[0]
    sample = images[:, ::SAMPLE_STEP, ::SAMPLE_STEP].reshape(n, -1)
    level = xp.median(sample, axis=1)
    scale = 1.4826 * xp.median(xp.abs(sample - level[:, None]), axis=1)
    return level, xp.where(scale > 0, scale, np.inf)


def _seed_block(xp, images, level, scale):
    """Symmetric-projection seed ``(x, y)`` of a block ``(n, w, w)``, from pixels clipped to
    ``level +- CLIP * scale`` (a hot pixel would otherwise be the most symmetric thing in the image)."""
    width = images.shape[1]
    low = (level - CLIP * scale)[:, None, None]
    high = (level + CLIP * scale)[:, None, None]
    clipped = xp.minimum(xp.maximum(images, low), high)
    out = []
    for axis in (1, 2):  # summing rows gives the x projection; columns the y
        proj = clipped.sum(axis=axis)
        proj -= proj.mean(axis=1, keepdims=True)
        out.append(_symmetric_peak(xp, proj, width))
    return out[0], out[1]


def _symmetric_peak(xp, proj, width: int):
    """Half the position of the self-convolution's peak of each row of ``proj`` ``(n, w)``,
    with a parabola through its three samples. The peak is searched for centres within
    ``[1, w - 2]`` px."""
    length = 2 * width
    spectrum = xp.fft.rfft(proj, n=length, axis=1)
    conv = xp.fft.irfft(spectrum * spectrum, n=length, axis=1)
    lo, hi = 2, 2 * width - 4  # sums s = 2 x for x in [1, w - 2]
    best = xp.argmax(conv[:, lo : hi + 1], axis=1) + lo
    rows = xp.arange(proj.shape[0])
    left, mid, right = conv[rows, best - 1], conv[rows, best], conv[rows, best + 1]
    curve = left - 2.0 * mid + right
    with quiet(xp):
        shift = xp.where(curve < 0, 0.5 * (left - right) / curve, 0.0)
    return 0.5 * (best + shift)


def _valid(xp, x, y, width: int):
    return xp.isfinite(x) & xp.isfinite(y) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= width - 1)


def _block_images(xp, stack, part: slice):
    """Images ``part`` frame-major ``(n, w, w)`` float64 (a copy)."""
    return xp.ascontiguousarray(xp.moveaxis(stack[:, :, part], 2, 0), dtype=np.float64)


def _track_block(xp, images, n_rounds: int, x=None, y=None):
    """Seed (unless given) and ``n_rounds`` Gauss-Newton rounds of a block; images whose
    seeded fit leaves the image start again from the image's centre (a hot pixel
    or a bright speck can pull the projections' seed far off)."""
    width = images.shape[1]
    level, scale = _robust_scale(xp, images)
    if x is None:
        x, y = _seed_block(xp, images, level, scale)
    n = images.shape[0]
    # a constant image has no centre, one with NaN or inf pixels no trustworthy one: NaN, as
    # the magtrack method gives them
    flat = images.reshape(n, -1)
    usable = (flat.max(axis=1) > flat.min(axis=1)) & xp.isfinite(flat.sum(axis=1))
    x, y, profile = _rounds(xp, images, n_rounds, xp.where(usable, x, np.nan), y)
    again = xp.flatnonzero(usable & xp.isnan(x))
    if again.size:
        centre = xp.full(again.shape, 0.5 * (width - 1))
        x[again], y[again], profile[again] = _rounds(xp, images[again], n_rounds, centre, centre)
    return x, y, profile


def _rounds(xp, images, n_rounds: int, x, y):
    """``n_rounds`` Gauss-Newton rounds from ``(x, y)``.

    The profiles returned are the last round's, about the centre before its
    step: a radial average's error is quadratic in the centre's, and the last
    step is far below the noise, so another pass over the pixels would change
    them by rounding only.
    """
    n, width = images.shape[0], images.shape[1]
    n_bins = profile_bins_count(width)
    for _ in range(n_rounds):
        ok = _valid(xp, x, y, width)
        cx, cy = xp.where(ok, x, 0.0), xp.where(ok, y, 0.0)
        geometry = _geometry(xp, cx, cy, width, n_bins)
        plain, profile = _corrected_profiles(xp, images, geometry[0], geometry[1], n, n_bins)
        sx, sy = _newton_step(xp, images, plain, geometry, n_bins)
        x, y = xp.where(ok, x + sx, np.nan), xp.where(ok, y + sy, np.nan)
    ok = _valid(xp, x, y, width)
    profile[~ok] = np.nan
    return xp.where(ok, x, np.nan), xp.where(ok, y, np.nan), profile


# -- public functions -------------------------------------------------------------------------------


def _checked(stack, min_pixels: int = MIN_PIXELS):
    check_stack(stack, min_pixels=min_pixels)
    return array_module(stack)


def tent_profiles(stack, x, y):
    """Radial profiles with linear (tent) weights about sub-pixel centres.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float32 or float64 array
        NumPy or CuPy; at least 8 px wide.
    x, y : (n_images,) float arrays
        Centres, px.

    Returns
    -------
    profiles : (n_pixels // 2, n_images) array
        Sample ``k`` is the tent-weighted mean of the pixels at ``k - 1 < r < k + 1``
        px from the centre (pixels beyond ``n_pixels // 2 - 1`` px are left
        out); the stack's float type; NaN for centres that are NaN or outside
        the image.
    """
    xp = _checked(stack)
    width, n_images = stack.shape[0], stack.shape[2]
    x, y = check_centres(xp, n_images, x=x, y=y)
    n_bins = profile_bins_count(width)
    out = xp.empty((n_bins, n_images), dtype=stack.dtype)

    def work(part, _):
        images = _block_images(xp, stack, part)
        xs, ys = x[part], y[part]
        ok = _valid(xp, xs, ys, width)
        geometry = _geometry(xp, xp.where(ok, xs, 0.0), xp.where(ok, ys, 0.0), width, n_bins)
        prof = _corrected_profiles(xp, images, geometry[0], geometry[1], part.stop - part.start, n_bins)[1]
        prof[~ok] = np.nan
        out[:, part] = prof.T

    for_each_block(xp, _parts(xp, stack), work)
    return out


def symmetric_seed(stack):
    """Rough centres from the self-convolution of each image's x and y projections.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array

    Returns
    -------
    x, y : (n_images,) float64 arrays
        px; within ``[1, n_pixels - 2]``, typically a tenth of a pixel from
        the centre of symmetry.
    """
    xp = _checked(stack)
    n_images = stack.shape[2]
    x, y = xp.empty(n_images), xp.empty(n_images)

    def work(part, _):
        images = _block_images(xp, stack, part)
        x[part], y[part] = _seed_block(xp, images, *_robust_scale(xp, images))

    for_each_block(xp, _parts(xp, stack), work)
    return x, y


def refine_centres(stack, x, y, n_rounds: int = REFINE_ROUNDS):
    """Centres by Gauss-Newton fits of each image to its own radially symmetric model.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float array
    x, y : (n_images,) float arrays
        Starting centres, px (e.g. :func:`symmetric_seed`); within about
        half a ring spacing of the truth.
    n_rounds : int, optional
        Gauss-Newton rounds, >= 1.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        px; NaN where a centre is NaN or leaves the image.
    """
    xp = _checked(stack)
    n_rounds = check_count(n_rounds, "n_rounds")
    n_images = stack.shape[2]
    x, y = check_centres(xp, n_images, x=x, y=y)
    out_x, out_y = xp.empty(n_images), xp.empty(n_images)

    def work(part, _):
        out_x[part], out_y[part], _p = _track_block(xp, _block_images(xp, stack, part), n_rounds, x[part], y[part])

    for_each_block(xp, _parts(xp, stack), work)
    return out_x, out_y


def _parts(xp, stack) -> list[slice]:
    width = stack.shape[0]
    # a block's float64 temporaries: about a dozen (n, w, w) arrays
    return blocks(xp, stack.shape[2], 12 * 8 * width * width, frame_run(stack))


def accurate_xy_profiles(stack, n_rounds: int = REFINE_ROUNDS, *, compiled: bool | None = None):
    """x, y and tent profiles of every image: seed, Gauss-Newton rounds, final profiles.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) float32 or float64 array
        NumPy or CuPy, at least 8 px wide.
    n_rounds : int, optional
        Gauss-Newton rounds.
    compiled : bool, optional
        Use the numba kernel (NumPy only). Default: when numba imports.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        px; NaN where the fit left the image.
    profiles : (n_pixels // 2, n_images) array
        :func:`tent_profiles` about ``(x, y)``, in the stack's float type.
    """
    xp = _checked(stack)
    n_rounds = check_count(n_rounds, "n_rounds")
    if xp is np and compiled is not False:
        kernel = _compiled_kernel()
        if kernel is not None:
            return _accurate_compiled(stack, n_rounds, kernel)
        if compiled:
            raise InputError("compiled=True needs numba, which is not installed")
    width, n_images = stack.shape[0], stack.shape[2]
    n_bins = profile_bins_count(width)
    x, y = xp.empty(n_images), xp.empty(n_images)
    profiles = xp.empty((n_bins, n_images), dtype=stack.dtype)

    def work(part, _):
        x[part], y[part], prof = _track_block(xp, _block_images(xp, stack, part), n_rounds)
        profiles[:, part] = prof.T

    for_each_block(xp, _parts(xp, stack), work)
    return x, y, profiles


def _compiled_kernel():
    try:
        from magtrack_dask.core._numba_spline import track_images
    except ImportError:  # numba is optional: the NumPy path gives the same numbers
        return None
    return track_images


def _accurate_compiled(stack, n_rounds: int, kernel):
    """:func:`accurate_xy_profiles` by the numba kernel, on frame-major blocks, on the core's threads."""
    width, n_images = stack.shape[0], stack.shape[2]
    n_bins = profile_bins_count(width)
    frame_major = np.moveaxis(stack, 2, 0)
    x, y = np.empty(n_images), np.empty(n_images)
    profiles = np.empty((n_images, n_bins))
    contiguous = frame_major.flags.c_contiguous
    parts = blocks(np, n_images, 8 * width * width, frame_run(stack))

    def work(part, _):
        images = frame_major[part] if contiguous else np.ascontiguousarray(frame_major[part])
        kernel(images, n_rounds, x[part], y[part], profiles[part])

    for_each_block(np, parts, work)
    return x, y, np.ascontiguousarray(profiles.T, dtype=stack.dtype)
