"""The results' schema for one run (attrs, variables, coordinates) and the lazy Dataset of :func:`~magtrack_dask.tracking.track`.

The schema functions take only a :class:`~magtrack_dask.tracking.plan.TrackingPlan`:
the jobs create their results store from them without any Dask graph
(:mod:`magtrack_dask.jobs.store`). Every lazy variable is a blockwise view of
the one task output ``(bead, frame, field)`` (:mod:`~magtrack_dask.tracking.graph`),
so computing or writing them together runs each task once.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from magtrack_dask.core.flags import FLAG_BITS, flag_attrs
from magtrack_dask.tracking.schema import COORDINATES, ROI_EDGES, VARIABLES

__all__ = ["assemble_dataset", "results_attrs", "variable_attrs", "coordinate_values"]


def results_attrs(plan) -> dict:
    """The Dataset's attributes (CF conventions, source, parameters) of ``plan``."""
    source, spec, bins, zlut = plan.source, plan.spec, plan.bins, plan.zlut
    params = {
        "layout": source.layout.value, "device": spec.device, "frames_per_task": plan.task_frames,
        "roi_size_px": source.roi_size, "n_beads": source.n_beads, "n_bins": bins.n_bins,
        "edge_margin_px": spec.edge_margin_px, "min_symmetry": spec.min_symmetry,
        "method": spec.method, "pipeline": _core_function(spec),
        "stage_options": spec.pipeline.stage_options() if spec.method == "magtrack" else {},
        "zlut_kind": zlut.kind, "pixel_size_nm": plan.pixel_size_nm, "frame_rate_hz": plan.frame_rate_hz,
    }
    from magtrack_dask import __version__

    return {
        "title": "magtrack-dask bead tracking results",
        "Conventions": "CF-1.10",
        "magtrack_dask_version": __version__,
        "source": source.description,
        "zlut_source": zlut.source,
        "parameters": json.dumps(params, sort_keys=True),
        "flag_bits": json.dumps(FLAG_BITS),
        **{k: v for k, v in params.items() if v is not None and isinstance(v, (str, int, float))},
    }


def _core_function(spec) -> str:
    """The core function each task calls (the results' ``pipeline`` attribute)."""
    if spec.method != "magtrack":
        return f"track_stack(method={spec.method!r})"
    return "stack_to_xyzp" if spec.pipeline.is_default else "stack_to_xyzp_advanced"


def variable_attrs(plan) -> dict[str, tuple[tuple[str, ...], np.dtype, dict]]:
    """``{name: (dims, dtype, attrs)}`` of the data variables of ``plan``, in the schema's order."""
    changed = {
        "profiles": {"units": "counts" if plan.source.dtype.kind in "ui" else "1"},
        "flags": flag_attrs(min_symmetry=plan.spec.min_symmetry, edge_margin_px=plan.spec.edge_margin_px),
    }
    names = [n for n in VARIABLES if plan.pixel_size_nm or n not in ("x_nm", "y_nm")]
    return {n: (VARIABLES[n].dims, np.dtype(VARIABLES[n].dtype), VARIABLES[n].attrs(**changed.get(n, {})))
            for n in names}


class _Range:
    """``np.arange(n)`` made a slice at a time (the results store writes it so); ``np.asarray`` makes it all."""

    def __init__(self, n: int):
        self.shape, self.dtype = (n,), np.dtype(np.int64)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.arange(*sl.indices(self.shape[0]), dtype=np.int64)

    def __array__(self, dtype=None, copy=None):
        return np.arange(self.shape[0], dtype=dtype or np.int64)


def coordinate_values(plan) -> dict[str, tuple[tuple[str, ...], np.ndarray | None, dict]]:
    """``{name: (dims, values, attrs)}`` of the coordinates; ``time`` has values None (read per task)."""
    source = plan.source
    values = {
        "bead": np.arange(source.n_beads), "frame": _Range(plan.n_frames), "radius": plan.bins.radius,
        **{f"roi_{edge}": source.rois[:, i] for i, edge in enumerate(ROI_EDGES)},
    }
    if plan.times.known:
        values["time"] = None
    changed = {"radius": {"units": plan.bins.units}}
    return {name: (COORDINATES[name].dims, values[name], COORDINATES[name].attrs(**changed.get(name, {})))
            for name in COORDINATES if name in values}


def assemble_dataset(plan) -> xr.Dataset:
    """The lazy results Dataset of ``plan``: the variables and coordinates of :mod:`~magtrack_dask.tracking.schema`.

    Parameters
    ----------
    plan : TrackingPlan

    Returns
    -------
    xarray.Dataset
    """
    from magtrack_dask.tracking.graph import build_fields, build_times

    fields = build_fields(plan)
    data_vars = {n: (dims, fields[n], attrs) for n, (dims, _, attrs) in variable_attrs(plan).items()}
    coords = {n: (dims, build_times(plan) if values is None else np.asarray(values), attrs)
              for n, (dims, values, attrs) in coordinate_values(plan).items()}
    return xr.Dataset(data_vars, coords=coords, attrs=results_attrs(plan))
