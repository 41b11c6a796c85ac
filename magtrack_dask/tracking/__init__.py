"""The Dask layer: an archive or image array -> a lazy ``xarray.Dataset``, one task per frame chunk.

:func:`track` validates its options, then the data flows through one module each:

``source``   the input resolved once: frames as a Dask array, Layout, ROI table (:class:`~.source.Source`)
``lut``      the Z-LUT loaded and checked against the input
``task``     one task: read, crop, core, lost-bead screen, flags, for every bead of a frame chunk
``graph``    one blockwise of those tasks over the frame chunks
``schema``   every output variable: dims, dtype, units, long_name
``dataset``  the lazy Dataset, each variable a slice of the tasks' one output
``write``    :func:`write_results`; ``gpu``: :func:`require_gpu`
"""

from __future__ import annotations

import xarray as xr

from magtrack_dask.core.methods import check_method, min_method_pixels
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.pipeline import check_stage_keywords, min_image_pixels, profile_bins
from magtrack_dask.core.symmetry import MIN_SYMMETRY
from magtrack_dask.io.layout import Layout
from magtrack_dask.tracking.dataset import assemble_dataset
from magtrack_dask.tracking.gpu import require_gpu
from magtrack_dask.tracking.graph import build_graph
from magtrack_dask.tracking.lut import resolve_zlut
from magtrack_dask.tracking.source import resolve_source
from magtrack_dask.tracking.task import ChunkSpec
from magtrack_dask.tracking.write import write_results
from magtrack_dask.validation import (
    InputError,
    check_choice,
    check_count,
    check_fraction,
    check_nonnegative,
    check_positive,
)

__all__ = ["track", "write_results", "require_gpu", "MIN_SYMMETRY", "resolve_method"]


def resolve_method(method: str | None, pipeline) -> str:
    """The workflow's method: ``method`` as given; None is 'accurate', or 'magtrack' when
    ``pipeline`` options are given (they are the magtrack method's).

    Raises
    ------
    InputError
        An unknown method, or stage options off their defaults with another
        method than 'magtrack'.
    """
    if method is None:
        return "accurate" if pipeline is None else "magtrack"
    method = check_method(method)
    if method != "magtrack" and pipeline is not None and not PipelineOptions.coerce(pipeline).is_default:
        raise InputError(f"pipeline stage options apply to method='magtrack' only; got method={method!r} with "
                         f"{PipelineOptions.coerce(pipeline).stage_options()}")
    return method


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
    zlut : array_like or str, optional
        One Z-LUT ``(1 + n_bins, n_ref)`` for all beads, or one per bead
        ``(n_beads, 1 + n_bins, n_ref)``, or a ``.npy``/Zarr path to one.
        Row 0 holds the reference z (nm, normally). Without it z is NaN.
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
        must have been built with the same method.

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
        per-bead count does not fit, an option out of range or an unknown stage
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
    device = check_choice(device, "device", ("cpu", "gpu"))
    if device == "gpu":
        require_gpu()
    layout = None if layout is None else Layout.parse(layout)
    # Options first: a bad value fails here, before any archive is opened or output made.
    frames_per_task = None if frames_per_task is None else check_count(frames_per_task, "frames_per_task")
    if pixel_size_nm is not None:
        pixel_size_nm = check_positive(pixel_size_nm, "pixel_size_nm", "nm per pixel")
    if frame_rate_hz is not None:
        frame_rate_hz = check_positive(frame_rate_hz, "frame_rate_hz", "frames per second")
    if edge_margin_px is not None:
        edge_margin_px = check_nonnegative(edge_margin_px, "edge_margin_px", "px")
    min_symmetry = check_fraction(min_symmetry, "min_symmetry")
    method = resolve_method(method, pipeline)
    pipeline = check_stage_keywords(pipeline)

    src = resolve_source(source, layout=layout, rois=rois, frames_per_task=frames_per_task)
    if method == "magtrack":
        need, why = min_image_pixels(**pipeline.stage_options()), "the sub-pixel fit's n_local"
    else:
        need, why = min_method_pixels(method), f"method {method!r}"
    if src.roi_size < need:
        what = "rois are" if src.layout.full_frames else "source images are"
        raise InputError(f"{what} {src.roi_size} x {src.roi_size} px; tracking needs at least {need} x {need} px "
                         f"({why})")
    bins = profile_bins(src.roi_size, pipeline if method == "magtrack" else None)
    lut = resolve_zlut(zlut, n_beads=src.n_beads, n_bins=bins.n_bins, roi_size=src.roi_size, method=method)
    spec = ChunkSpec(
        layout=src.layout, rois=src.crop_rois, offsets=src.rois, n_bins=bins.n_bins, pipeline=pipeline,
        device=device, edge_margin_px=src.roi_size / 8 if edge_margin_px is None else edge_margin_px,
        min_symmetry=min_symmetry, method=method,
    )
    return assemble_dataset(build_graph(src, lut.table, spec), source=src, spec=spec, bins=bins, zlut=lut,
                            pixel_size_nm=pixel_size_nm, frame_rate_hz=frame_rate_hz)
