"""The tracking pipeline: stack -> x, y, z and radial profiles."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, NamedTuple

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._checks import CAMERA_DTYPES, FLOAT_DTYPES, check_odd_int, check_stack
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.profiles import fft_profile_with_center, fourier_bins, radial_bins, radial_profile
from magtrack_dask.core.xy import auto_conv, auto_conv_multiline_sub_pixel, center_of_mass, refine_rounds
from magtrack_dask.core.z import check_zlut, lookup_z
from magtrack_dask.validation import InputError, InputTypeError, check_count

__all__ = [
    "stack_to_xyzp",
    "stack_to_xyzp_advanced",
    "as_float_stack",
    "min_image_pixels",
    "check_stage_keywords",
    "ProfileBins",
    "profile_bins",
]

# The seed of the pipeline: |pixel - median| makes the bead's rings, not the
# bright background, carry the mass. The reference pipeline uses it too.
_SEED_BACKGROUND = "median"

def as_float_stack(stack, min_pixels: int = 3):
    """Validate a pipeline input and return it as float32/float64.

    uint8 and uint16 camera data are converted to float64 (exactly); float
    stacks are returned as they are, without a copy. Images narrower than
    ``min_pixels`` are a ValueError.
    """
    if not hasattr(stack, "dtype"):  # np.dtype(None) would pass for float64
        raise InputTypeError(f"stack must be a NumPy or CuPy array (n_pixels, n_pixels, n_images), "
                        f"got {type(stack).__name__}")
    dtype = np.dtype(stack.dtype)
    if dtype in CAMERA_DTYPES:
        stack = stack.astype(np.float64)
    elif dtype not in FLOAT_DTYPES:
        raise InputTypeError(f"stack must be float32, float64, uint8 or uint16, got {dtype}")
    check_stack(stack, min_pixels=min_pixels)
    if stack.shape[2] == 0:
        raise InputError("stack has no images: shape (n_pixels, n_pixels, 0)")
    return stack


def _check_stage_options(options: dict) -> int:
    """Validate the stage options of :func:`stack_to_xyzp_advanced`; return the refinement rounds."""
    return PipelineOptions.from_stage_options(options).refine_rounds


def _min_pixels(n_refine: int, refine: dict | None) -> int:
    # The refinement fits a parabola to n_local points of a convolution as long as the image.
    if n_refine == 0:
        return 3
    return max(3, check_odd_int((refine or {}).get("n_local", 5), "n_local"))


def min_image_pixels(**stage_options) -> int:
    """Smallest image side (px) that the pipeline can track with these stage options.

    Parameters
    ----------
    **stage_options
        As :func:`stack_to_xyzp_advanced` takes them (none: :func:`stack_to_xyzp`).

    Returns
    -------
    int
        ``n_local`` of the sub-pixel refinement (default 5), or 3 without
        refinement rounds.

    Raises
    ------
    ValueError
        An unknown stage option or a value of the wrong type.
    """
    n_refine = _check_stage_options(stage_options)
    return _min_pixels(n_refine, stage_options.get("auto_conv_multiline_sub_pixel"))


#: The core function that takes each stage's keyword dictionary (refinement
#: rounds take those of one round), and its leading array arguments.
_STAGE_FUNCTIONS = {
    "center_of_mass": (center_of_mass, 1),
    "auto_conv": (auto_conv, 3),
    "auto_conv_multiline_sub_pixel": (auto_conv_multiline_sub_pixel, 3),
    "fft_profile": (fft_profile_with_center, 3),
    "radial_profile": (radial_profile, 3),
    "lookup_z": (lookup_z, 2),
}


def _stage_arguments(stage: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Every keyword of ``stage``'s core function: ``options`` over the defaults."""
    function, n_arrays = _STAGE_FUNCTIONS[stage]
    try:
        bound = inspect.signature(function).bind(*([None] * n_arrays), **options)
    except TypeError as err:
        raise InputTypeError(f"stage option {stage!r}: {err}") from None
    bound.apply_defaults()
    return dict(list(bound.arguments.items())[n_arrays:])


def check_stage_keywords(pipeline: PipelineOptions | Mapping[str, Any] | None) -> PipelineOptions:
    """Check that every stage's dictionary names keywords its core function takes.

    Parameters
    ----------
    pipeline : PipelineOptions, dict of stage options or None

    Returns
    -------
    PipelineOptions

    Raises
    ------
    InputError
        An unknown stage option or a value of the wrong type
        (:meth:`PipelineOptions.coerce`).
    InputTypeError
        A keyword the stage's function does not take, or one given twice.
    """
    pipeline = PipelineOptions.coerce(pipeline)
    for stage in _STAGE_FUNCTIONS:
        _stage_arguments(stage, getattr(pipeline, stage))
    return pipeline


class ProfileBins(NamedTuple):
    """The bins of the pipeline's profiles (:func:`profile_bins`)."""

    n_bins: int
    radius: np.ndarray
    units: str


def profile_bins(roi_size: int, pipeline: PipelineOptions | Mapping[str, Any] | None = None) -> ProfileBins:
    """The profiles' length and bins for images of ``roi_size`` px, without running the pipeline.

    Parameters
    ----------
    roi_size : int
        Image side, px.
    pipeline : PipelineOptions, dict of stage options or None
        As the pipeline gets them (None: :func:`stack_to_xyzp`).

    Returns
    -------
    ProfileBins
        ``(n_bins, radius, units)``.
    n_bins : int
        Rows of the profiles (and of a Z-LUT's profile part).
    radius : (n_bins,) float64 ndarray
        Each bin's radius in px for :func:`radial_profile` (``k / oversample``);
        the bin number for :func:`fft_profile_with_center`.
    units : {'px', '1'}
        Units of ``radius``.

    Raises
    ------
    ValueError
        Profile options the profile function refuses (``oversample``, ``rmin``,
        ``rmax``), or an odd ``roi_size`` for Fourier profiles.
    InputTypeError
        A keyword the profile function does not take.
    """
    pipeline = PipelineOptions.coerce(pipeline)
    if pipeline.use_fft_profile:
        kwargs = _stage_arguments("fft_profile", pipeline.fft_profile)
        if roi_size % 2:
            raise InputError(f"Fourier profiles ('use fft_profile') need images of even width; got {roi_size} px")
        oversample = check_count(kwargs["oversample"], "oversample", integral_floats=True)
        start, stop = fourier_bins(roi_size, oversample, kwargs["rmin"], kwargs["rmax"])
        return ProfileBins(stop - start, np.arange(stop - start, dtype=np.float64), "1")
    kwargs = _stage_arguments("radial_profile", pipeline.radial_profile)
    oversample = check_count(kwargs["oversample"], "oversample", integral_floats=True)
    n_bins = radial_bins(roi_size, oversample)
    return ProfileBins(n_bins, np.arange(n_bins, dtype=np.float64) / oversample, "px")


def _run(stack, zlut, *, com=None, conv=None, n_refine=5, refine=None, use_fft=False, fft=None, radial=None, lut=None):
    xp = array_module(stack)
    stack = as_float_stack(stack, min_pixels=_min_pixels(n_refine, refine))
    if zlut is not None:
        zlut = xp.asarray(zlut)
        check_zlut(zlut)  # fail before the work, not after it
    x, y = center_of_mass(stack, **({"background": _SEED_BACKGROUND} | (com or {})))
    x, y = auto_conv(stack, x, y, **(conv or {}))
    # n_refine rounds of auto_conv_multiline_sub_pixel, re-reading only moved lines
    x, y = refine_rounds(stack, x, y, n_refine, **(refine or {}))
    if use_fft:
        # Weighting happens in place: never on the caller's array.
        profiles = fft_profile_with_center(stack.copy(), x, y, **(fft or {}))
    else:
        profiles = radial_profile(stack, x, y, **(radial or {}))
    if zlut is None:
        z = xp.full(x.shape, np.nan)
    else:
        z = lookup_z(profiles, zlut, **(lut or {}))
    return x, y, z, profiles


def stack_to_xyzp(stack, zlut=None):
    """x, y, z and radial profiles of every image of a stack.

    Centre of mass (``background='median'``) seeds :func:`auto_conv`, five
    rounds of :func:`auto_conv_multiline_sub_pixel` refine x and y,
    :func:`radial_profile` gives the profiles, and :func:`lookup_z` matches them
    against ``zlut`` when one is given.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) array
        Square images of at least 5 x 5 pixels: float32, float64, or
        uint8/uint16 camera counts (converted to float64). NumPy or CuPy.
    zlut : (1 + n_bins, n_ref) array, optional
        Z look-up table (see :func:`lookup_z`), ``n_bins = n_pixels // 2``.

    Returns
    -------
    x, y : (n_images,) float64 arrays
        Centres in pixels; NaN where the bead was not found.
    z : (n_images,) float64 array
        In the units of ``zlut[0]``; NaN without a LUT or where the match lies
        at the LUT's ends.
    profiles : (n_bins, n_images) array
        Radial profiles, float32 for float32 stacks, else float64.

    Raises
    ------
    ValueError
        When ``zlut`` does not have ``1 + n_pixels // 2`` rows (the reference
        warns and returns NaN instead), or on malformed input.
    """
    return _run(stack, zlut)


def stack_to_xyzp_advanced(stack, zlut=None, **kwargs):
    """:func:`stack_to_xyzp` with options for every stage.

    Parameters
    ----------
    stack : (n_pixels, n_pixels, n_images) array
        As :func:`stack_to_xyzp`; never modified.
    zlut : (1 + n_bins, n_ref) array, optional
        As :func:`stack_to_xyzp`; ``n_bins`` follows the profile options.
    **kwargs
        Stage options, under these exact keys:

        ``"center_of_mass"`` : dict
            For :func:`center_of_mass`; ``background`` defaults to ``'median'``.
        ``"auto_conv"`` : dict
            For :func:`auto_conv`.
        ``"n auto_conv_multiline_sub_pixel"`` : int
            Refinement rounds, default 5.
        ``"auto_conv_multiline_sub_pixel"`` : dict
            For :func:`auto_conv_multiline_sub_pixel`.
        ``"use fft_profile"`` : bool
            Profiles from :func:`fft_profile_with_center` instead of
            :func:`radial_profile`. Default False.
        ``"fft_profile"`` : dict
            For :func:`fft_profile_with_center`.
        ``"radial_profile"`` : dict
            For :func:`radial_profile`.
        ``"lookup_z"`` : dict
            For :func:`lookup_z`.

    Returns
    -------
    x, y, z, profiles
        As :func:`stack_to_xyzp`, on the input's device.

    Raises
    ------
    ValueError
        For an unknown key (so that a typo does not silently fall back to a
        default) or a value of the wrong type.
    """
    n_refine = _check_stage_options(kwargs)
    return _run(
        stack,
        zlut,
        com=kwargs.get("center_of_mass"),
        conv=kwargs.get("auto_conv"),
        n_refine=n_refine,
        refine=kwargs.get("auto_conv_multiline_sub_pixel"),
        use_fft=kwargs.get("use fft_profile", False),
        fft=kwargs.get("fft_profile"),
        radial=kwargs.get("radial_profile"),
        lut=kwargs.get("lookup_z"),
    )
