"""Array-module selection: NumPy or CuPy, chosen from the input array.

CuPy is imported lazily, the first time a CuPy array is seen or ``cp`` is asked
for, so importing magtrack_dask costs nothing and warns nothing on a machine
without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

import numpy as np

__all__ = ["array_module", "is_cupy_available", "check_cupy", "get_cp", "to_numpy"]


@functools.lru_cache(maxsize=1)
def _import_cupy() -> ModuleType | None:
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy
    except Exception:  # a broken CUDA install must not break the CPU path
        return None
    return cupy


def is_cupy_available() -> bool:
    """Return True when the real CuPy package is importable."""
    return _import_cupy() is not None


@functools.lru_cache(maxsize=1)
def check_cupy() -> bool:
    """Return True when CuPy is importable *and* a CUDA device runs a kernel.

    ``is_cupy_available`` only says CuPy imports; CuPy installs fine on a
    machine without a GPU, so GPU code paths and tests gate on this instead.
    """
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        if not cupy.cuda.is_available():
            return False
        int(cupy.arange(3).sum())
    except Exception:
        return False
    return True


def get_cp() -> ModuleType:
    """The module behind ``magtrack_dask.cp``: CuPy when importable, else NumPy."""
    return _import_cupy() or np


def _is_cupy_array(a) -> bool:
    return type(a).__module__.split(".", 1)[0] == "cupy"


def array_module(*arrays) -> ModuleType:
    """NumPy, or CuPy when any argument is a CuPy array."""
    for a in arrays:
        if _is_cupy_array(a):
            return _import_cupy()
    return np


def to_numpy(a):
    """Bring an array (NumPy or CuPy) to host memory as a NumPy array."""
    return a.get() if _is_cupy_array(a) else np.asarray(a)
