"""The results store of a job, created from the tracking plan with zarr directly (no Dask graph).

Arrays, coordinates and CF attributes are those of the lazy Dataset of
:func:`~magtrack_dask.tracking.track` (the same schema functions make both),
so ``xarray.open_zarr`` reads a job's results as equal to ``track(...)``.

Sharding: every results array is split along frames into one shard per task
(the task's frame range), holding inner chunks of the archive's own chunk
length. A task writes whole shards only, and exactly one task writes each
shard: zarr rewrites a whole shard on any write into it, so two writers of
one shard would lose each other's data silently. When a task is one archive
chunk the shard would hold one chunk, and plain chunks are used instead.
Metadata is consolidated as soon as the store exists, so the store opens
without a warning even after an interrupted run.
"""

from __future__ import annotations

import warnings

import numpy as np
import zarr

from magtrack_dask.tracking.dataset import coordinate_values, results_attrs, variable_attrs

__all__ = ["create_results_store", "consolidate", "results_names", "FLOAT_FILL"]

_COORD_CHUNK = 2**20  # values per chunk of a coordinate (the frame numbers)

#: What xarray writes as the ``_FillValue`` of a float64 variable (NaN, base64 of its bytes).
FLOAT_FILL = "AAAAAAAA+H8="


def results_names(plan) -> tuple[str, ...]:
    """The data variables a job writes per task, in the schema's order."""
    return tuple(variable_attrs(plan))


def _frame_split(plan, ndim: int, frame_ax: int):
    """``(chunks, shards)`` of an array with ``ndim`` dims whose frame axis is ``frame_ax``."""
    def along(n: int) -> tuple[int, ...]:
        return tuple(n if i == frame_ax else -1 for i in range(ndim))
    inner, task = plan.chunk_frames, plan.task_frames
    return along(inner), (along(task) if inner < task else None)


def _full(shape, spec):
    return tuple(s if c == -1 else c for s, c in zip(shape, spec))


def create_results_store(out: str, plan) -> zarr.Group:
    """Create the results store ``out`` of ``plan``: every array at its final shape, no data but coordinates.

    Parameters
    ----------
    out : str
        A path where nothing is.
    plan : TrackingPlan

    Returns
    -------
    zarr.Group
        The store's root group.
    """
    root = zarr.open_group(out, mode="w-", zarr_format=3, attributes=results_attrs(plan))
    coords = coordinate_values(plan)
    others = " ".join(sorted(n for n, (dims, _, _) in coords.items() if dims != (n,)))
    n_beads, n_frames, n_bins = plan.n_beads, plan.n_frames, plan.spec.n_bins
    sizes = {"bead": n_beads, "frame": n_frames, "radius": n_bins}
    for name, (dims, dtype, attrs) in variable_attrs(plan).items():
        shape = tuple(sizes[d] for d in dims)
        chunks, shards = _frame_split(plan, len(dims), dims.index("frame"))
        floating = dtype.kind == "f"
        attrs = {**attrs, "coordinates": others, **({"_FillValue": FLOAT_FILL} if floating else {})}
        root.create_array(name, shape=shape, dtype=dtype, chunks=_full(shape, chunks),
                          shards=None if shards is None else _full(shape, shards),
                          fill_value=np.nan if floating else 0, dimension_names=dims, attributes=attrs)
    for name, (dims, values, attrs) in coords.items():
        dtype = np.dtype("float64") if values is None else np.dtype(values.dtype)
        floating = dtype.kind == "f"
        attrs = {**attrs, **({"_FillValue": FLOAT_FILL} if floating else {})}
        shape = (n_frames,) if values is None else tuple(values.shape)
        if values is None:  # time: written by the tasks, shard per task like the results
            chunks, shards = _frame_split(plan, 1, 0)
            root.create_array(name, shape=shape, dtype=dtype, chunks=_full(shape, chunks),
                              shards=None if shards is None else _full(shape, shards), fill_value=np.nan,
                              dimension_names=dims, attributes=attrs)
            continue
        step = min(shape[0], _COORD_CHUNK) if len(shape) == 1 else shape[0]
        arr = root.create_array(name, shape=shape, dtype=dtype, chunks=(step,) + shape[1:],
                                fill_value=np.nan if floating else 0, dimension_names=dims, attributes=attrs)
        for start in range(0, shape[0], step):  # a piece at a time: the frame numbers grow with the archive
            arr[start : start + step] = values[start : start + step]
    return root


def consolidate(out: str) -> None:
    """Consolidate the store's metadata (what ``xarray.open_zarr`` reads first)."""
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the v3 spec; xarray reads it all the same
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(out, zarr_format=3)
