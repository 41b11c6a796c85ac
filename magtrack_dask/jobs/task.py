"""One task of a job: read a frame range once, track it, write its results region, return small sums.

The driver (:mod:`magtrack_dask.jobs.runner`) sends the constant part of
every task once (:class:`TaskContext`, scattered to the workers) and then only
``(context, start, stop)`` per task. The task writes every results variable
of its frames straight into the results store with zarr: its region is one
whole shard of each array (:mod:`magtrack_dask.jobs.store`), so no other task
ever writes the same object. It returns a :class:`TaskResult`: what the driver
needs to record the task and to update the job's quality summary without
reading the results again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import zarr

from magtrack_dask.core.flags import Flag
from magtrack_dask.jobs.summary import BeadSums
from magtrack_dask.tracking.plan import FrameTimes
from magtrack_dask.tracking.schema import FIELDS, N_FIELDS
from magtrack_dask.tracking.task import ChunkSpec, track_zarr_chunk

__all__ = ["TaskContext", "TaskResult", "run_task"]


@dataclass(frozen=True, eq=False)
class TaskContext:
    """What every task of one job shares (sent to each worker once).

    Attributes
    ----------
    frames : zarr.Array
        The archive's image array.
    frame_axis : int
    zlut : float64 ndarray or None
        The checked Z-LUT.
    spec : ChunkSpec
        The per-chunk options, passed to the tracking unchanged.
    out : str
        The results store.
    names : tuple of str
        The data variables to write.
    pixel_size_nm : float or None
        For ``x_nm`` and ``y_nm``.
    times : FrameTimes
        For the ``time`` coordinate (when known).
    """

    frames: zarr.Array = field(repr=False)
    frame_axis: int
    zlut: np.ndarray | None = field(repr=False)
    spec: ChunkSpec = field(repr=False)
    out: str
    names: tuple[str, ...]
    pixel_size_nm: float | None
    times: FrameTimes = field(repr=False)


@dataclass(frozen=True)
class TaskResult:
    """What a task returns to the driver.

    Attributes
    ----------
    start, stop : int
        Its frames.
    n_unreadable : int
        Frames whose input could not be read (flag 16): the task is then not done.
    sums : BeadSums
        The per-bead counts and sums of its frames.
    """

    start: int
    stop: int
    n_unreadable: int
    sums: BeadSums


@functools.lru_cache(maxsize=4)
def _results_arrays(out: str, names: tuple[str, ...]) -> dict[str, zarr.Array]:
    """The results store's arrays, opened once per worker process and job."""
    root = zarr.open_group(out, mode="r+", zarr_format=3, use_consolidated=False)
    return {name: root[name] for name in names}


def run_task(ctx: TaskContext, start: int, stop: int) -> TaskResult:
    """Track frames ``start .. stop - 1`` and write their results region.

    Parameters
    ----------
    ctx : TaskContext
    start, stop : int
        One task's frame range: whole shards of every results array.

    Returns
    -------
    TaskResult
    """
    start, stop = int(start), int(stop)
    stacked = track_zarr_chunk(np.array([start, stop - 1]), ctx.zlut, frames=ctx.frames,
                               frame_axis=ctx.frame_axis, spec=ctx.spec)
    fields = {name: stacked[:, :, i] for i, name in enumerate(FIELDS)}
    fields["flags"] = fields["flags"].astype(np.uint8)
    fields["profiles"] = stacked[:, :, N_FIELDS:]
    if ctx.pixel_size_nm:
        fields["x_nm"], fields["y_nm"] = fields["x"] * ctx.pixel_size_nm, fields["y"] * ctx.pixel_size_nm
    names = ctx.names + (("time",) if ctx.times.known else ())
    arrays = _results_arrays(ctx.out, names)
    for name in ctx.names:
        arrays[name][:, start:stop] = fields[name]
    if ctx.times.known:
        arrays["time"][start:stop] = ctx.times(start, stop)
    flags = fields["flags"]
    offsets = ctx.spec.offsets
    # ROI-relative positions: small numbers, so the sums of squares keep their digits.
    sums = BeadSums.of(fields["x"] - offsets[:, 2:3], fields["y"] - offsets[:, 0:1], flags)
    unreadable = int(((flags & int(Flag.INPUT_UNREADABLE)) != 0).any(axis=0).sum())
    return TaskResult(start, stop, unreadable, sums)
