"""Input validation shared by the core functions.

Every error names the parameter and says what was expected, so a user who passes
a (frames, y, x) stack where (y, x, frames) is wanted learns it from the message.
"""

from __future__ import annotations

import contextlib

import numpy as np
from magtrack_dask.validation import InputError, InputTypeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
CAMERA_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def check_stack(stack, *, name: str = "stack", square: bool = True, even: bool = False, min_pixels: int = 3) -> None:
    """Validate a float image stack of shape (n_pixels, n_pixels, n_images), at least ``min_pixels`` wide."""
    shape = getattr(stack, "shape", None)
    if shape is None or len(shape) != 3:
        raise InputError(
            f"{name} must be a 3-D array of shape (n_pixels, n_pixels, n_images), "
            f"got shape {shape}"
        )
    if square and shape[0] != shape[1]:
        raise InputError(
            f"{name} images must be square: shape (n_pixels, n_pixels, n_images) expected, "
            f"got {tuple(shape)} (is the frame axis last?)"
        )
    if shape[0] < min_pixels or shape[1] < min_pixels:
        raise InputError(f"{name} images must be at least {min_pixels} x {min_pixels} pixels, got {tuple(shape)}")
    if even and shape[0] % 2:
        raise InputError(f"{name} images must have an even width, got {shape[0]} pixels")
    if np.dtype(stack.dtype) not in FLOAT_DTYPES:
        raise InputTypeError(
            f"{name} must be float32 or float64, got {stack.dtype}; convert camera integers "
            "with stack.astype(numpy.float64) (stack_to_xyzp does this for uint8/uint16)"
        )


def check_centres(xp, n_images: int, **centres):
    """Return the centre arrays as float64 1-D arrays of length ``n_images``."""
    out = []
    for name, value in centres.items():
        arr = xp.asarray(value)
        if arr.ndim != 1 or arr.shape[0] != n_images:
            raise InputError(
                f"{name} must be a 1-D array with one value per image ({n_images}), "
                f"got shape {arr.shape}"
            )
        if arr.dtype.kind not in "fiu":
            raise InputTypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
        out.append(arr.astype(np.float64, copy=False))
    return out


def check_odd_int(value, name: str, minimum: int = 3) -> int:
    """Validate an odd integer such as ``n_local``."""
    if isinstance(value, (bool, np.bool_)) or int(value) != value or value < minimum or value % 2 == 0:
        raise InputError(f"{name} must be an odd integer >= {minimum}, got {value!r}")
    return int(value)


def pixel_index(xp, coord, size: int):
    """Nearest pixel index of each coordinate and whether that pixel exists.

    Coordinates that are NaN or round outside ``0 .. size-1`` are invalid: the
    callers give NaN for those images instead of raising IndexError or wrapping
    around to the other edge. Invalid entries get index 0 so gathers stay legal.
    """
    rounded = xp.rint(xp.where(xp.isfinite(coord), coord, -1.0))
    valid = (rounded >= 0) & (rounded <= size - 1)
    return xp.where(valid, rounded, 0).astype(np.int64), valid


def quiet(xp):
    """Silence NumPy's divide/invalid warnings locally (CuPy never warns)."""
    if xp is np:
        return np.errstate(divide="ignore", invalid="ignore")
    return contextlib.nullcontext()
