"""What a :func:`~magtrack_dask.tracking.track` call will do, from the input's metadata only.

:func:`plan_tracking` checks every option and resolves the input, the Z-LUT
and the profile bins once, and returns a :class:`TrackingPlan`: the per-chunk
options (:class:`~magtrack_dask.tracking.task.ChunkSpec`), the tasks' frame
bounds as one NumPy array, and everything the results schema needs (attrs,
coordinates, the frame times). Nothing is read but metadata and no Dask graph
is built, so a plan costs the same at 1e3 and 1e6 chunks (bar the bounds
array); the lazy Dataset (:meth:`TrackingPlan.dataset`) and the jobs'
streaming driver are both made from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import zarr

from magtrack_dask.core.methods import check_method, min_method_pixels
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.pipeline import ProfileBins, check_stage_keywords, min_image_pixels, profile_bins
from magtrack_dask.core.symmetry import MIN_SYMMETRY
from magtrack_dask.io.format import TIMESTAMPS
from magtrack_dask.io.layout import Layout
from magtrack_dask.tracking.lut import TrackZlut, resolve_zlut
from magtrack_dask.tracking.source import Source, resolve_source
from magtrack_dask.tracking.task import ChunkSpec
from magtrack_dask.validation import (
    InputError,
    check_choice,
    check_count,
    check_fraction,
    check_nonnegative,
    check_positive,
)

__all__ = ["FrameTimes", "OPTIONS", "TrackingPlan", "plan_tracking", "resolve_method"]


@dataclass(frozen=True)
class FrameTimes:
    """Frame times (s) of a frame range: the archive's timestamps, or frame / rate.

    Attributes
    ----------
    timestamps : zarr.Array or None
        The archive's ``timestamps`` array ``(frame,)``, read a range at a time.
    rate_hz : float or None
        Used when there are no timestamps (or the caller gave a rate).
    """

    timestamps: zarr.Array | None = field(default=None, repr=False)
    rate_hz: float | None = None

    @property
    def known(self) -> bool:
        return self.timestamps is not None or bool(self.rate_hz)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        """float64 ``(stop - start,)`` times of frames ``start .. stop - 1``."""
        if self.timestamps is not None:
            return np.asarray(self.timestamps[start:stop], dtype=np.float64)
        return np.arange(start, stop) / float(self.rate_hz)  # as dask's arange / rate computes it


@dataclass(frozen=True, eq=False)
class TrackingPlan:
    """One tracking run, resolved from metadata.

    Attributes
    ----------
    source : Source
    zlut : TrackZlut
    spec : ChunkSpec
        What every task does besides its frames.
    bins : ProfileBins
    pixel_size_nm, frame_rate_hz : float or None
        The caller's, else the archive's.
    times : FrameTimes
    bounds : (n_chunks + 1,) int64 ndarray
        First frame of each task, then the frame count.
    """

    source: Source
    zlut: TrackZlut
    spec: ChunkSpec
    bins: ProfileBins
    pixel_size_nm: float | None
    frame_rate_hz: float | None
    times: FrameTimes
    bounds: np.ndarray = field(repr=False)

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    @property
    def n_frames(self) -> int:
        return int(self.bounds[-1])

    @property
    def n_beads(self) -> int:
        return self.source.n_beads

    @property
    def task_frames(self) -> int:
        """Frames of every task but the last (which may be shorter)."""
        return int(self.bounds[1] - self.bounds[0])

    @property
    def chunk_frames(self) -> int:
        """Frames of the input's own (inner) Zarr chunks, at most :attr:`task_frames`: the results' chunks."""
        frames = self.source.frames
        if frames is None:
            return self.task_frames
        return min(int(frames.chunks[self.source.layout.frame_axis]), self.task_frames)

    def dataset(self):
        """The lazy results ``xarray.Dataset`` (:func:`~magtrack_dask.tracking.dataset.assemble_dataset`)."""
        from magtrack_dask.tracking.dataset import assemble_dataset

        return assemble_dataset(self)


#: The keywords of :func:`plan_tracking` (those of :func:`~magtrack_dask.tracking.track`) and their defaults.
OPTIONS = {"rois": None, "layout": None, "device": "cpu", "frames_per_task": None, "pixel_size_nm": None,
           "frame_rate_hz": None, "edge_margin_px": None, "min_symmetry": MIN_SYMMETRY, "pipeline": None,
           "method": None}


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


def plan_tracking(source, zlut=None, **options) -> TrackingPlan:
    """Check the options and resolve the input of a tracking run; see :func:`~magtrack_dask.tracking.track`.

    Takes the arguments and keywords of :func:`~magtrack_dask.tracking.track`
    (:data:`OPTIONS`) and raises what it raises.

    Returns
    -------
    TrackingPlan
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"plan_tracking() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}")
    return _plan(source, zlut, **{**OPTIONS, **options})


def _plan(source, zlut, *, rois, layout, device: str, frames_per_task, pixel_size_nm, frame_rate_hz,
          edge_margin_px, min_symmetry, pipeline, method) -> TrackingPlan:
    device = check_choice(device, "device", ("cpu", "gpu"))
    if device == "gpu":
        from magtrack_dask.tracking.gpu import require_gpu

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
    arch = src.archive
    px_nm = pixel_size_nm if pixel_size_nm is not None else (arch.pixel_size_nm if arch else None)
    rate = frame_rate_hz if frame_rate_hz is not None else (arch.frame_rate_hz if arch else None)
    stamps = arch.group[TIMESTAMPS] if frame_rate_hz is None and arch is not None and TIMESTAMPS in arch.group \
        else None
    bounds = src.frame_bounds
    return TrackingPlan(source=src, zlut=lut, spec=spec, bins=bins, pixel_size_nm=px_nm, frame_rate_hz=rate,
                        times=FrameTimes(stamps, rate), bounds=bounds)
