"""The tracking methods behind one API: Z-LUTs from calibration frames and x, y, z of a stack.

``"magtrack"``
    The reference pipeline, number for number: :func:`~magtrack_dask.core.pipeline.stack_to_xyzp`
    (1-px nearest-ring profiles, Pearson correlation and a 7-point parabola).
``"accurate"``
    Tent profiles about sub-pixel centres refined by Gauss-Newton fits of each
    image to its own radial model (:mod:`~magtrack_dask.core.spline_profile`), and
    z by a weighted least-squares match with intensity scale and offset on a
    Z-LUT refined along z by a cubic spline (:func:`~magtrack_dask.core.fit_z.fit_z`).
``"fit"``
    A maximum-likelihood fit of the whole image to a model learned from the
    calibration frames (:mod:`magtrack_dask.core.fit`).

A Z-LUT belongs to the method that built it: profiles of one method do not
match a table of another.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module, to_numpy
from magtrack_dask.core.fit_z import fit_z
from magtrack_dask.core.lut_smoothing import smooth_planes
from magtrack_dask.core.pipeline import as_float_stack, stack_to_xyzp
from magtrack_dask.core.spline_profile import MIN_PIXELS, accurate_xy_profiles, profile_bins_count
from magtrack_dask.core.z import check_zlut
from magtrack_dask.validation import InputError, check_choice

__all__ = ["METHODS", "DEFAULT_METHOD", "check_method", "zlut_from_stack", "track_stack", "min_method_pixels"]

METHODS = ("magtrack", "accurate", "fit")
DEFAULT_METHOD = "accurate"


def check_method(method, name: str = "method") -> str:
    """``method`` if it is one of :data:`METHODS`, else an InputError naming them."""
    return check_choice(method, name, METHODS)


def min_method_pixels(method: str) -> int:
    """Smallest image side (px) a method tracks with its default options."""
    return 5 if method == "magtrack" else MIN_PIXELS


def _profiles(stack, method: str):
    """x, y and profiles ``(n_bins, n_images)`` of a float stack by ``method`` ('magtrack' or 'accurate')."""
    if method == "magtrack":
        x, y, _, profiles = stack_to_xyzp(stack)
        return x, y, profiles
    return accurate_xy_profiles(stack)


def zlut_from_stack(stack, z_nm, *, method: str = DEFAULT_METHOD):
    """A Z-LUT from calibration frames with the focus z of each frame.

    Each frame is tracked by ``method`` and profiled about its own centre; the
    profiles of the frames that share a z value are averaged. For 'accurate'
    each bin is then smoothed along z to the scatter of its frames
    (:func:`~magtrack_dask.core.lut_smoothing.smooth_planes`; with at least two
    frames per plane), which removes most calibration noise from the LUT.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_frames) array
        Calibration frames (float32/float64 or uint8/uint16), NumPy or CuPy.
    z_nm : (n_frames,) array_like
        The bead's z in each frame (nm, the sign convention of the results);
        frames with equal values form one plane, NaN frames are skipped.
    method : {'accurate', 'magtrack', 'fit'}, optional
        The method that will track with this LUT.

    Returns
    -------
    zlut : (1 + n_bins, n_ref) float64 array
        Row 0 the distinct z (increasing), rows below the mean profiles, on the
        stack's device; ``n_bins = n_pixels // 2``. For ``'fit'``: the model of
        :func:`magtrack_dask.core.fit.model_from_stack`.

    Raises
    ------
    InputError
        An unknown method, ``z_nm`` of another length than the frames, fewer than
        2 distinct z, or a plane whose every frame failed to track.
    """
    method = check_method(method)
    if method == "fit":
        from magtrack_dask.core.fit import model_from_stack

        return model_from_stack(stack, z_nm)
    stack = as_float_stack(stack, min_pixels=min_method_pixels(method))
    xp = array_module(stack)
    z = np.asarray(to_numpy(z_nm))
    if z.dtype.kind not in "fiu" or z.shape != (stack.shape[2],):
        raise InputError(f"z_nm must be real numbers, one per frame, shape ({stack.shape[2]},); "
                         f"got shape {z.shape} dtype {z.dtype}")
    z = z.astype(np.float64)
    finite = np.isfinite(z)
    planes, plane_of = np.unique(z[finite], return_inverse=True)
    if len(planes) < 2:
        raise InputError(f"z_nm must hold at least 2 distinct finite z values; got {len(planes)}")
    _, _, profiles = _profiles(stack, method)
    profiles = profiles.astype(np.float64)
    onehot = np.zeros((stack.shape[2], len(planes)))
    onehot[np.flatnonzero(finite), plane_of] = 1.0
    tracked = to_numpy(xp.isfinite(profiles[1:]).all(axis=0))
    onehot[~tracked] = 0.0
    counts = onehot.sum(axis=0)
    if not counts.min() > 0:
        raise InputError(f"no frame of the plane at z = {planes[int(np.argmin(counts))]:g} nm could be tracked")
    profiles = xp.where(xp.isfinite(profiles), profiles, 0.0)
    mean = to_numpy(profiles @ xp.asarray(onehot / counts))
    if method == "accurate":
        squares = to_numpy((profiles * profiles) @ xp.asarray(onehot))
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (squares - counts * mean**2) / (counts - 1)
            sem = np.sqrt(np.maximum(var, 0.0) / counts)
        sem[:, counts < 2] = np.nan
        mean = smooth_planes(planes, mean, sem)
    zlut = np.empty((1 + mean.shape[0], len(planes)))
    zlut[0] = planes
    zlut[1:] = mean
    return xp.asarray(zlut)


def track_stack(stack, zlut=None, *, method: str = DEFAULT_METHOD):
    """x, y, z and profiles of every image by one method.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) array
        float32/float64 or uint8/uint16 (converted to float64), NumPy or CuPy.
    zlut : (1 + n_bins, n_ref) array or RadialModel, optional
        Built by :func:`zlut_from_stack` with the same ``method`` (any
        seed-format table for 'magtrack' and 'accurate'); without it z is NaN.
        'fit' needs its :class:`~magtrack_dask.core.radial_model.RadialModel`.
    method : {'accurate', 'magtrack', 'fit'}, optional
        'magtrack' is :func:`~magtrack_dask.core.pipeline.stack_to_xyzp`.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        px; NaN where the bead was not found.
    z : (n_images,) float64 array
        In the units of ``zlut[0]``; NaN without a LUT or at its ends.
    profiles : (n_bins, n_images) array
        Radial profiles (radius ``k`` px), the stack's float type.

    Raises
    ------
    InputError
        An unknown method, malformed input, a LUT whose bin count does not fit
        the images (both sizes named).
    """
    method = check_method(method)
    if method == "fit":
        from magtrack_dask.core.fit import track_fit

        return track_fit(stack, zlut)
    if method == "magtrack":
        return stack_to_xyzp(stack, zlut)
    stack = as_float_stack(stack, min_pixels=MIN_PIXELS)
    xp = array_module(stack)
    if zlut is not None:
        zlut = xp.asarray(zlut)
        check_zlut(zlut, profile_bins_count(stack.shape[0]))  # fail before the work
    x, y, profiles = accurate_xy_profiles(stack)
    z = xp.full(x.shape, np.nan) if zlut is None else fit_z(profiles, zlut)
    return x, y, z, profiles
