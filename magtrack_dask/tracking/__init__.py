"""The Dask layer: an archive or image array -> a lazy ``xarray.Dataset``, one task per frame chunk.

:func:`track` validates its options, then the data flows through one module each:

``plan``     the options checked and the input resolved from metadata (:class:`~.plan.TrackingPlan`)
``source``   the input resolved once: frames as a Dask array, Layout, ROI table (:class:`~.source.Source`)
``lut``      the Z-LUT loaded and checked against the input
``task``     one task: read, crop, core, lost-bead screen, flags, for every bead of a frame chunk
``graph``    blockwise layers of those tasks over the frame chunks (never a materialized dict)
``schema``   every output variable: dims, dtype, units, long_name
``dataset``  the schema of one run (attrs, coordinates) and the lazy Dataset
``write``    :func:`write_results`; ``gpu``: :func:`require_gpu`
"""

from __future__ import annotations

import xarray as xr

from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.symmetry import MIN_SYMMETRY
from magtrack_dask.io.layout import Layout
from magtrack_dask.tracking.gpu import require_gpu
from magtrack_dask.tracking.plan import TrackingPlan, plan_tracking, resolve_method
from magtrack_dask.tracking.write import write_results

__all__ = ["track", "plan_tracking", "TrackingPlan", "write_results", "require_gpu", "MIN_SYMMETRY", "resolve_method"]


def track(
    source,
    zlut=None,
    *,
    rois=None,
    layout: Layout | str | None = None,
    device: str = "cpu",
    frames_per_task: int | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    edge_margin_px: float | None = None,
    min_symmetry: float = MIN_SYMMETRY,
    pipeline: PipelineOptions | dict | None = None,
    method: str | None = None,
) -> xr.Dataset:
    """Track every bead of every frame, lazily.

    Parameters
    ----------
    source : str, os.PathLike, zarr Store, zarr.Group, zarr.Array, dask or numpy array
        An archive (see :mod:`magtrack_dask.io.archive`) or an image array. For
        arrays without ``layout``: 4-D is ``'tbyx'``; 3-D is ``'tyx'`` when
        ``rois`` is given, else ``'yxt'``.
    zlut : array_like, str, RadialModel or list of RadialModel, optional
        One Z-LUT ``(1 + n_bins, n_ref)`` for all beads, or one per bead
        ``(n_beads, 1 + n_bins, n_ref)``, or a ``.npy``/Zarr path to one.
        Row 0 holds the reference z (nm, normally). Without it z is NaN.
        ``method='fit'`` takes image models instead, and needs them: one
        :class:`~magtrack_dask.core.radial_model.RadialModel` for all beads,
        a list of one per bead (``build_zlut(..., method='fit')``), or the
        Zarr path :func:`magtrack_dask.zlut.save_zlut` wrote them to.
    rois : array_like of int, shape (n_beads, 4), optional
        ``[top, bottom, left, right]``; overrides the archive's table. Required
        for ``'tyx'``; for ``'tbyx'`` it only supplies full-frame offsets.
    layout : Layout or {'tyx', 'tbyx', 'yxt'}, optional
        Axis order of an array source; checked against an archive's.
    device : {'cpu', 'gpu'}
        ``'gpu'`` runs the core on CuPy inside each task; Dask arrays stay
        NumPy-typed.
    frames_per_task : int, optional
        Frames per task. For archives it is rounded up to whole Zarr chunks
        (default: one chunk per task); for NumPy arrays the default is
        ``4096 // n_beads``.
    pixel_size_nm, frame_rate_hz : float, optional
        Override the archive's attributes; enable ``x_nm``, ``y_nm`` and ``time``.
    edge_margin_px : float, optional
        Flag 8 is set when the centre lies closer than this to the ROI border;
        default ``roi / 8`` (8 px for 64 px ROIs: the first rings are cut).
    min_symmetry : float, optional
        A bead is "not found" (x, y, z and profiles NaN, flag 1) where rings
        about the found centre explain less than this fraction of the ROI's
        variance: a blank or noise-only frame, a bead that has left its ROI.
        Default 0.5 (beads score near 1, empty ROIs near 0); 0 turns the check
        off.
    pipeline : PipelineOptions or dict, optional
        Options of the pipeline's stages (a dict takes the keys of
        :func:`magtrack_dask.stack_to_xyzp_advanced`, e.g.
        ``{'radial_profile': {'oversample': 2}}``). Any option off its default
        runs the advanced pipeline, else :func:`magtrack_dask.stack_to_xyzp`.
        Options of the 'magtrack' method.
    method : {'accurate', 'magtrack', 'fit'}, optional
        The core's method (:func:`magtrack_dask.track_stack`). Default
        'accurate', or 'magtrack' when ``pipeline`` is given. A Z-LUT file
        must have been built with the same method; 'fit' fits each ROI to
        its bead's image model (profiles: :func:`~magtrack_dask.core.profiles.radial_profile`
        about the fitted centre, the bins of the other methods).

    Returns
    -------
    ds : xarray.Dataset
        Lazy, dims ``bead``, ``frame``, ``radius``; the variables of
        :mod:`magtrack_dask.tracking.schema`: ``x``, ``y`` (full-frame px),
        ``x_nm``, ``y_nm`` (with a pixel size), ``z``, ``profiles``
        ``(bead, frame, radius)``, ``flags`` (uint8 bit mask, see
        :class:`magtrack_dask.core.flags.Flag` and ``ds.flags.attrs``). Chunked
        along frames like the tasks. Compute or write all variables together
        (``ds.compute()``, :func:`write_results`): computing them one by one
        reruns the tasks.

    Raises
    ------
    InputError
        Unknown ``layout`` or ``device``, bad ``rois``, a ``zlut`` whose shape or
        per-bead count does not fit, a ``zlut`` built with another method
        (method 'fit' without models or with a table), an option out of range or an unknown stage
        option, a source without frames, an archive whose metadata lies
        (:class:`magtrack_dask.io.paths.ArchiveError`), a ``zlut`` whose values
        are malformed (see :func:`magtrack_dask.core.z.check_zlut`). All raised
        before any task runs.
    InputTypeError
        Bool or complex pixels or Z-LUT, a keyword a stage does not take.
    FileNotFoundError
        A missing archive or Z-LUT path.
    RuntimeError
        ``device='gpu'`` without a usable CuPy/CUDA.
    """
    return plan_tracking(source, zlut, rois=rois, layout=layout, device=device, frames_per_task=frames_per_task,
                         pixel_size_nm=pixel_size_nm, frame_rate_hz=frame_rate_hz, edge_margin_px=edge_margin_px,
                         min_symmetry=min_symmetry, pipeline=pipeline, method=method).dataset()
