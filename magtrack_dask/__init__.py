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
    core_threads,
    crop_stack_to_rois,
    fit_z,
    fft_profile,
    fft_profile_with_center,
    gaussian,
    gaussian_2d,
    get_core_threads,
    lookup_z,
    parabolic_vertex,
    pearson,
    qi,
    radial_profile,
    stack_to_xyzp,
    stack_to_xyzp_advanced,
    track_stack,
    zlut_from_stack,
)
__version__ = "0.1.0"


# Workflow entry points load on first use: importing the package stays cheap
# and never imports dask, zarr or xarray (which probe for CuPy) by itself.
_LAZY = {
    "Archive": "io.archive",
    "create_archive": "io.archive",
    "describe_archive": "io.archive",
    "open_archive": "io.archive",
    "write_simulated_archive": "sim.archives",
    "write_simulated_calibration": "sim.archives",
    "render_beads": "sim.beads",
    "make_zlut": "sim.beads",
    "FLAG_BITS": "core.flags",
    "Flag": "core.flags",
    "PipelineOptions": "core.options",
    "Layout": "io.layout",
    "InputError": "validation",
    "InputTypeError": "validation",
    "start_cluster": "cluster",
    "require_gpu": "tracking",
    "track": "tracking",
    "write_results": "tracking",
    "build_zlut": "zlut",
    "load_zlut": "zlut",
    "save_zlut": "zlut",
    "run_job": "jobs.prepare",
    "ForceCalibration": "analysis.force",
    "calibrate_force": "analysis.force",
    "simulate_drift": "sim.brownian",
    "simulate_tethered_bead": "sim.brownian",
    "analyze": "analysis.analyze",
    "correct_drift": "analysis.drift",
    "extension": "analysis.extension",
    "summarize_results": "jobs.summary",
    "find_beads": "core.find_beads",
    "crlb": "core.crlb",
}


def __getattr__(name):
    # ``cp`` resolves lazily so that importing the package never imports CuPy:
    # CuPy when importable, else NumPy with CuPy's asnumpy, get_array_module and
    # cuda.is_available() (``_backend.NUMPY_AS_CUPY``), as the reference's ``cp``.
    if name == "cp":
        from magtrack_dask._backend import get_cp

        return get_cp()
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"magtrack_dask.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'magtrack_dask' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | {"cp"})
