"""magtrack-dask: sub-pixel bead tracking from NumPy/CuPy arrays to Dask clusters."""

from magtrack_dask._backend import check_cupy, is_cupy_available
from magtrack_dask.core import (
    _qi_quadratic_offsets,
    _qi_sample_axis_profiles,
    auto_conv,
    auto_conv_multiline,
    auto_conv_multiline_sub_pixel,
    auto_conv_sub_pixel,
    binmean,
    center_of_mass,
    crop_stack_to_rois,
    fft_profile,
    fft_profile_with_center,
    gaussian,
    gaussian_2d,
    lookup_z,
    parabolic_vertex,
    pearson,
    qi,
    radial_profile,
    stack_to_xyzp,
    stack_to_xyzp_advanced,
)
from magtrack_dask.storage import (
    Archive,
    create_archive,
    describe_archive,
    open_archive,
    write_simulated_archive,
)
from magtrack_dask.tracking import FLAG_BITS, start_cluster, track, write_results
from magtrack_dask.zlut import build_zlut, load_zlut, save_zlut
from magtrack_dask.jobs import run_job

__version__ = "0.1.0"


def __getattr__(name):
    # ``cp`` resolves lazily so that importing the package never imports CuPy.
    if name == "cp":
        from magtrack_dask._backend import get_cp

        return get_cp()
    raise AttributeError(f"module 'magtrack_dask' has no attribute {name!r}")
