"""The lazy results Dataset of :func:`~magtrack_dask.tracking.track`, from its graph and the schema.

Every variable is a lazy slice of the one task output ``(bead, frame, field)``,
so computing or writing them together runs each task once.
"""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import xarray as xr

from magtrack_dask.core.flags import FLAG_BITS, flag_attrs
from magtrack_dask.core.pipeline import ProfileBins
from magtrack_dask.tracking.lut import TrackZlut
from magtrack_dask.tracking.schema import COORDINATES, FIELDS, N_FIELDS, ROI_EDGES, VARIABLES
from magtrack_dask.tracking.source import Source
from magtrack_dask.tracking.task import ChunkSpec

__all__ = ["assemble_dataset"]


def assemble_dataset(stacked: da.Array, *, source: Source, spec: ChunkSpec, bins: ProfileBins, zlut: TrackZlut,
                     pixel_size_nm: float | None, frame_rate_hz: float | None) -> xr.Dataset:
    """The results Dataset of one :func:`~magtrack_dask.tracking.track` call.

    Parameters
    ----------
    stacked : dask.array.Array
        float64 ``(bead, frame, 4 + n_bins)`` from :func:`~magtrack_dask.tracking.graph.build_graph`.
    source : Source
    spec : ChunkSpec
    bins : ProfileBins
    zlut : TrackZlut
    pixel_size_nm, frame_rate_hz : float or None
        The caller's; the archive's attributes otherwise.

    Returns
    -------
    xarray.Dataset
        The variables and coordinates of :mod:`~magtrack_dask.tracking.schema`.
    """
    arch = source.archive
    px_nm = pixel_size_nm if pixel_size_nm is not None else (arch.pixel_size_nm if arch else None)
    rate = frame_rate_hz if frame_rate_hz is not None else (arch.frame_rate_hz if arch else None)
    params = {
        "layout": source.layout.value, "device": spec.device, "frames_per_task": int(source.frame_chunks[0]),
        "roi_size_px": source.roi_size, "n_beads": source.n_beads, "n_bins": bins.n_bins,
        "edge_margin_px": spec.edge_margin_px, "min_symmetry": spec.min_symmetry,
        "method": spec.method, "pipeline": _core_function(spec),
        "stage_options": spec.pipeline.stage_options() if spec.method == "magtrack" else {}, "zlut_kind": zlut.kind, "pixel_size_nm": px_nm,
        "frame_rate_hz": rate,
    }
    from magtrack_dask import __version__

    attrs = {
        "title": "magtrack-dask bead tracking results",
        "Conventions": "CF-1.10",
        "magtrack_dask_version": __version__,
        "source": source.description,
        "zlut_source": zlut.source,
        "parameters": json.dumps(params, sort_keys=True),
        "flag_bits": json.dumps(FLAG_BITS),
        **{k: v for k, v in params.items() if v is not None and isinstance(v, (str, int, float))},
    }
    time = _frame_times(source, frame_rate_hz, rate)
    return xr.Dataset(_data_vars(stacked, source, spec, px_nm), coords=_coords(source, bins, time), attrs=attrs)


def _core_function(spec: ChunkSpec) -> str:
    """The core function each task calls (the results' ``pipeline`` attribute)."""
    if spec.method != "magtrack":
        return f"track_stack(method={spec.method!r})"
    return "stack_to_xyzp" if spec.pipeline.is_default else "stack_to_xyzp_advanced"


def _data_vars(stacked: da.Array, source: Source, spec: ChunkSpec, px_nm: float | None) -> dict:
    fields = {name: stacked[:, :, i] for i, name in enumerate(FIELDS)}
    fields["flags"] = fields["flags"].astype(np.uint8)
    fields["profiles"] = stacked[:, :, N_FIELDS:]
    if px_nm:
        fields["x_nm"], fields["y_nm"] = fields["x"] * px_nm, fields["y"] * px_nm
    changed = {
        "profiles": {"units": "counts" if source.data.dtype.kind in "ui" else "1"},
        "flags": flag_attrs(min_symmetry=spec.min_symmetry, edge_margin_px=spec.edge_margin_px),
    }
    return {name: (VARIABLES[name].dims, fields[name], VARIABLES[name].attrs(**changed.get(name, {})))
            for name in VARIABLES if name in fields}


def _coords(source: Source, bins: ProfileBins, time) -> dict:
    values = {
        "bead": np.arange(source.n_beads), "frame": np.arange(source.n_frames), "radius": bins.radius,
        **{f"roi_{edge}": source.rois[:, i] for i, edge in enumerate(ROI_EDGES)},
    }
    if time is not None:
        values["time"] = time
    changed = {"radius": {"units": bins.units}}
    return {name: (COORDINATES[name].dims, values[name], COORDINATES[name].attrs(**changed.get(name, {})))
            for name in COORDINATES if name in values}


def _frame_times(source: Source, frame_rate_hz: float | None, rate: float | None):
    """Frame times (s), lazily: the archive's (timestamps or its rate) unless the caller gave a rate."""
    if frame_rate_hz is None and source.archive is not None:
        return source.archive.time()
    if rate:
        return da.arange(source.n_frames, chunks=(source.frame_chunks,)) / float(rate)
    return None
