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

from dataclasses import dataclass, field
from typing import Any

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
    zlut : float64 ndarray, RadialModel, tuple of RadialModel or None
        The checked Z-LUT (:attr:`TrackZlut.table <magtrack_dask.tracking.lut.TrackZlut>`):
        a table, or the 'fit' method's image models.
    spec : ChunkSpec
        The per-chunk options, passed to the tracking unchanged.
    arrays : dict of str to zarr.Array
        The results arrays to write (the data variables, and ``time`` when
        the frame times are known), opened by the driver for this run: their
        metadata travels with them, never an older store's at the same path.
    pixel_size_nm : float or None
        For ``x_nm`` and ``y_nm``.
    times : FrameTimes
        For the ``time`` coordinate (when known).
    """

    frames: zarr.Array = field(repr=False)
    frame_axis: int
    zlut: Any = field(repr=False)
    spec: ChunkSpec = field(repr=False)
    arrays: dict = field(repr=False)
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
    unreadable_frames : tuple of (int, int)
        ``(first, last)`` of each run of those frames: a task of many shards
        reports its damaged shards, not its whole range.
    """

    start: int
    stop: int
    n_unreadable: int
    sums: BeadSums
    unreadable_frames: tuple = ()


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
    for name, arr in ctx.arrays.items():
        if name == "time":
            arr[start:stop] = ctx.times(start, stop)
        else:
            arr[:, start:stop] = fields[name]
    flags = fields["flags"]
    offsets = ctx.spec.offsets
    # ROI-relative positions: small numbers, so the sums of squares keep their digits.
    sums = BeadSums.of(fields["x"] - offsets[:, 2:3], fields["y"] - offsets[:, 0:1], flags)
    bad = ((flags & int(Flag.INPUT_UNREADABLE)) != 0).any(axis=0)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))  # run starts, stops
    runs = tuple((start + int(a), start + int(b) - 1) for a, b in zip(edges[::2], edges[1::2]))
    return TaskResult(start, stop, int(bad.sum()), sums, runs)
