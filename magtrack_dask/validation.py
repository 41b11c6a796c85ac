"""The package's input errors and the option validators every layer shares.

Bad input raises :class:`InputError` (a ``ValueError``) or
:class:`InputTypeError` (also a ``TypeError``), each naming the parameter and
what was expected. The command line exits 2 on these and only these: any other
exception is a bug or a failure, and exits 1 with its traceback in the log.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np

__all__ = [
    "InputError",
    "InputTypeError",
    "check_choice",
    "check_count",
    "check_fraction",
    "check_nonnegative",
    "check_positive",
    "is_scalar",
]


class InputError(ValueError):
    """A parameter, path or file given by the caller is not what was expected."""


class InputTypeError(InputError, TypeError):
    """An input of the wrong type (a ``TypeError`` too, for callers that catch that)."""


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_scalar(value: Any) -> bool:
    """None or a plain number or bytes: never an archive, a store or an array."""
    return value is None or isinstance(value, (bool, int, float, complex, bytes))


def check_count(value: Any, name: str, *, integral_floats: bool = False) -> int:
    """An integer >= 1 such as ``frames_per_task``; bools are refused.

    ``integral_floats`` also accepts floats with an integer value (``2.0``),
    as the reference package's functions do for ``oversample``.
    """
    ok = _is_real(value) and (isinstance(value, (int, np.integer)) or (
        integral_floats and math.isfinite(value) and int(value) == value))
    if not ok or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_positive(value: Any, name: str, what: str = "") -> float:
    """A finite number > 0 such as ``pixel_size_nm`` (``what`` names its unit)."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        unit = f" ({what})" if what else ""
        raise InputError(f"{name} must be a finite number > 0{unit}, got {value!r}")
    return float(value)


def check_nonnegative(value: Any, name: str, what: str = "") -> float:
    """A finite number >= 0 such as ``edge_margin_px``."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        unit = f" ({what})" if what else ""
        raise InputError(f"{name} must be a finite number >= 0{unit}, got {value!r}")
    return float(value)


def check_fraction(value: Any, name: str) -> float:
    """A number in [0, 1] such as ``min_symmetry``."""
    if not _is_real(value) or not 0 <= value <= 1:
        raise InputError(f"{name} must lie in [0, 1]; got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
