"""magtrack-dask: sub-pixel bead tracking from NumPy/CuPy arrays to Dask clusters."""

from magtrack_dask._backend import check_cupy, is_cupy_available

__version__ = "0.1.0"


def __getattr__(name):
    # ``cp`` resolves lazily so that importing the package never imports CuPy.
    if name == "cp":
        from magtrack_dask._backend import get_cp

        return get_cp()
    raise AttributeError(f"module 'magtrack_dask' has no attribute {name!r}")
