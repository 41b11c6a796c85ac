"""The Z-LUT of a :func:`~magtrack_dask.tracking.track` call, loaded and checked against the input once.

Every check happens here, on the client: no task checks the table again.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from magtrack_dask.core.z import check_zlut
from magtrack_dask.validation import InputError
from magtrack_dask.zlut import load_zlut

__all__ = ["TrackZlut", "resolve_zlut"]


class TrackZlut(NamedTuple):
    """A checked Z-LUT, or none.

    Attributes
    ----------
    table : float64 ndarray or None
        ``(1 + n_bins, n_ref)`` for every bead, or ``(n_beads, 1 + n_bins, n_ref)``.
    source : str
        Its path, ``'array'`` or ``'none'`` (the results' ``zlut_source``).
    """

    table: np.ndarray | None
    source: str

    @property
    def kind(self) -> str:
        """``'none'``, ``'shared'`` or ``'per-bead'``."""
        if self.table is None:
            return "none"
        return "per-bead" if self.table.ndim == 3 else "shared"


def resolve_zlut(zlut, *, n_beads: int, n_bins: int, roi_size: int) -> TrackZlut:
    """Load a Z-LUT and check it against the input's beads and profile bins.

    Parameters
    ----------
    zlut : str, os.PathLike, array_like or None
        As :func:`magtrack_dask.zlut.load_zlut` takes it.
    n_beads : int
        Beads of the input (a per-bead table must hold as many).
    n_bins : int
        Bins of the profiles the pipeline makes (:func:`magtrack_dask.core.pipeline.profile_bins`).
    roi_size : int
        ROI side, px (named in the messages).

    Returns
    -------
    TrackZlut

    Raises
    ------
    InputError
        A table that is not 2-D or 3-D, holds another number of beads or bins,
        or whose values are malformed (:func:`magtrack_dask.core.z.check_zlut`:
        non-monotonic or duplicate z, NaN or inf).
    InputTypeError, FileNotFoundError
        From :func:`magtrack_dask.zlut.load_zlut`.
    """
    if zlut is None:
        return TrackZlut(None, "none")
    table = load_zlut(zlut)[0]
    source = os.fspath(zlut) if isinstance(zlut, (str, os.PathLike)) else "array"
    if table.ndim not in (2, 3):
        raise InputError(f"zlut must be 2-D (1 + n_bins, n_ref) or 3-D per bead; got shape {table.shape}")
    if table.ndim == 3 and table.shape[0] != n_beads:
        raise InputError(f"zlut holds {table.shape[0]} per-bead tables but the source has {n_beads} beads")
    if table.shape[-2] - 1 != n_bins:
        raise InputError(f"zlut has {table.shape[-2] - 1} profile bins but the profiles of {roi_size} px ROIs "
                         f"have {n_bins}")
    for b, one in enumerate(table if table.ndim == 3 else [table]):
        check_zlut(one, n_bins, name=f"zlut[{b}]" if table.ndim == 3 else "zlut")
    return TrackZlut(table, source)
