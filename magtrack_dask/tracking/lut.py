"""The Z-LUT of a :func:`~magtrack_dask.tracking.track` call, loaded and checked against the input once.

Every check happens here, on the client: no task checks the table again.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from magtrack_dask.core.radial_model import RadialModel
from magtrack_dask.core.z import check_zlut
from magtrack_dask.validation import InputError
from magtrack_dask.zlut import fit_models, load_zlut, zlut_method

__all__ = ["TrackZlut", "resolve_zlut"]


class TrackZlut(NamedTuple):
    """A checked Z-LUT, or none.

    Attributes
    ----------
    table : float64 ndarray, RadialModel, tuple of RadialModel or None
        ``(1 + n_bins, n_ref)`` for every bead, or ``(n_beads, 1 + n_bins, n_ref)``;
        for method 'fit' the image model of every bead, or a tuple of one per
        bead (small: the tasks get them pickled).
    source : str
        Its path, ``'array'`` (an in-memory table or models) or ``'none'`` (the
        results' ``zlut_source``).
    """

    table: np.ndarray | RadialModel | tuple[RadialModel, ...] | None
    source: str

    @property
    def kind(self) -> str:
        """``'none'``, ``'shared'`` or ``'per-bead'``."""
        if self.table is None:
            return "none"
        if isinstance(self.table, RadialModel):
            return "shared"
        return "per-bead" if isinstance(self.table, tuple) or self.table.ndim == 3 else "shared"


def resolve_zlut(zlut, *, n_beads: int, n_bins: int, roi_size: int, method: str = "magtrack") -> TrackZlut:
    """Load a Z-LUT and check it against the input's beads and profile bins.

    Parameters
    ----------
    zlut : str, os.PathLike, array_like, RadialModel, list of RadialModel or None
        As :func:`magtrack_dask.zlut.load_zlut` takes it: a table, or for
        method 'fit' its image models (required: the fit has no other z).
    n_beads : int
        Beads of the input (a per-bead table must hold as many).
    n_bins : int
        Bins of the profiles the pipeline makes (:func:`magtrack_dask.core.pipeline.profile_bins`).
    roi_size : int
        ROI side, px (named in the messages).
    method : str, optional
        The tracking method; a Z-LUT file that records another one is refused.

    Returns
    -------
    TrackZlut

    Raises
    ------
    InputError
        A Z-LUT file built with another method than ``method`` (both named);
        a table that is not 2-D or 3-D, holds another number of beads or bins,
        or whose values are malformed (:func:`magtrack_dask.core.z.check_zlut`:
        non-monotonic or duplicate z, NaN or inf). For method 'fit': no Z-LUT,
        a table instead of models, another number of models than beads, or a
        model learned from images of another size than the ROIs; for the
        other methods: models.
    InputTypeError, FileNotFoundError
        From :func:`magtrack_dask.zlut.load_zlut`.
    """
    if zlut is None:
        if method == "fit":
            raise InputError("method 'fit' needs a Z-LUT: the image model it fits to each ROI (zlut build --method "
                             "fit, or build_zlut(calibration, method='fit'))")
        return TrackZlut(None, "none")
    table, attrs = load_zlut(zlut)
    built = zlut_method(zlut, attrs)
    source = os.fspath(zlut) if isinstance(zlut, (str, os.PathLike)) else "array"
    if built is not None and built != method:
        what = f"zlut {source}" if source != "array" else "zlut (image models, RadialModel)"
        raise InputError(f"{what} was built with method {built!r}; tracking with method {method!r} "
                         f"needs a Z-LUT built with {method!r} (zlut build --method {method})")
    if method == "fit":
        return TrackZlut(_check_models(table, n_beads, roi_size), source)
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


def _check_models(models, n_beads: int, roi_size: int) -> RadialModel | tuple[RadialModel, ...]:
    """The 'fit' method's models checked against the beads and ROIs: one shared, or a tuple per bead."""
    if fit_models(models) is None:
        raise InputError(f"method 'fit' needs image models (a RadialModel, or one per bead: zlut build --method fit); "
                         f"got a table of shape {np.shape(models)}, which other methods use")
    shared = isinstance(models, RadialModel)
    if not shared and len(models) != n_beads:
        raise InputError(f"zlut holds {len(models)} per-bead models but the source has {n_beads} beads")
    for b, model in enumerate([models] if shared else models):
        if model.n_pixels is not None and model.n_pixels != roi_size:
            name = "zlut" if shared else f"zlut[{b}]"
            raise InputError(f"{name} is a model of {model.n_pixels} px images but the ROIs are {roi_size} px")
    return models if shared else tuple(models)
