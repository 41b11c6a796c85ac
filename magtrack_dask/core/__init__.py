"""Array-agnostic tracking algorithms (NumPy or CuPy), no Dask, no I/O."""

from magtrack_dask.core._blocks import core_threads, get_core_threads
from magtrack_dask.core.helpers import (
    binmean,
    crop_stack_to_rois,
    gaussian,
    gaussian_2d,
    parabolic_vertex,
    pearson,
)
from magtrack_dask.core.fit_z import fit_z
from magtrack_dask.core.methods import METHODS, track_stack, zlut_from_stack
from magtrack_dask.core.pipeline import stack_to_xyzp, stack_to_xyzp_advanced
from magtrack_dask.core.profiles import fft_profile, fft_profile_with_center, radial_profile
from magtrack_dask.core.xy import (
    _qi_quadratic_offsets,
    _qi_sample_axis_profiles,
    auto_conv,
    auto_conv_multiline,
    auto_conv_multiline_sub_pixel,
    auto_conv_sub_pixel,
    center_of_mass,
    qi,
)
from magtrack_dask.core.z import lookup_z

__all__ = [
    "binmean",
    "pearson",
    "gaussian",
    "gaussian_2d",
    "crop_stack_to_rois",
    "parabolic_vertex",
    "_qi_sample_axis_profiles",
    "_qi_quadratic_offsets",
    "qi",
    "center_of_mass",
    "auto_conv",
    "auto_conv_sub_pixel",
    "auto_conv_multiline",
    "auto_conv_multiline_sub_pixel",
    "radial_profile",
    "fft_profile",
    "fft_profile_with_center",
    "lookup_z",
    "stack_to_xyzp",
    "stack_to_xyzp_advanced",
    "METHODS",
    "zlut_from_stack",
    "track_stack",
    "fit_z",
    "core_threads",
    "get_core_threads",
]
