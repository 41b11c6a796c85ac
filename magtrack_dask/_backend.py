"""Array-module selection: NumPy or CuPy, chosen from the input array.

CuPy is imported lazily, the first time a CuPy array is seen or ``cp`` is asked
for, so importing magtrack_dask costs nothing and warns nothing on a machine
without a GPU. Without CuPy, ``magtrack_dask.cp`` is NumPy plus the three CuPy
calls that code written for the reference package makes on any machine
(:data:`NUMPY_AS_CUPY`).
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType, SimpleNamespace

import numpy as np

__all__ = ["array_module", "is_cupy_available", "check_cupy", "get_cp", "to_numpy", "NUMPY_AS_CUPY"]


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


def _asnumpy(a):
    """``cp.asnumpy`` without CuPy: ``a`` itself, as the reference's CPU fallback
    returns it (arrays without CuPy already live in host memory)."""
    return a


def _get_array_module(*arrays) -> ModuleType:
    """``cp.get_array_module`` without CuPy: NumPy, whatever the arguments."""
    return np


def _numpy_as_cupy() -> ModuleType:
    """A module that is NumPy except for ``asnumpy``, ``get_array_module`` and
    ``cuda.is_available()`` (False), which behave as CuPy's would on arrays in
    host memory and as magtrack 1.0.0's ``cp`` does without CuPy."""
    module = ModuleType("magtrack_dask.cp", "NumPy standing in for CuPy on a machine without CuPy.")
    module.asnumpy = _asnumpy
    module.get_array_module = _get_array_module
    module.cuda = SimpleNamespace(is_available=lambda: False)
    own = set(vars(module))

    def __getattr__(name):  # everything else: NumPy's own (PEP 562)
        if name in ("__file__", "__path__"):  # not NumPy's files: this module has none
            raise AttributeError(name)
        try:
            return getattr(np, name)
        except AttributeError:
            raise AttributeError(f"module 'magtrack_dask.cp' (NumPy without CuPy) has no attribute {name!r}") from None

    def __dir__():
        return sorted(own | set(dir(np)))

    module.__getattr__, module.__dir__ = __getattr__, __dir__
    return module


NUMPY_AS_CUPY = _numpy_as_cupy()


def get_cp() -> ModuleType:
    """The module behind ``magtrack_dask.cp``: CuPy when importable, else
    :data:`NUMPY_AS_CUPY`."""
    return _import_cupy() or NUMPY_AS_CUPY


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
