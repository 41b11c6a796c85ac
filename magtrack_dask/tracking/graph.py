"""The lazy graph of :func:`~magtrack_dask.tracking.track`: blockwise layers only, one task per frame chunk.

No layer is a materialized dict: the graph costs the same to build at 1e3
and 1e6 chunks, and a task exists only when Dask computes it. Archive input
is read inside the task (:func:`~magtrack_dask.tracking.task.track_zarr_chunk`);
each variable is a blockwise view of the task's one output.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from magtrack_dask.tracking.schema import FIELDS, N_FIELDS
from magtrack_dask.tracking.task import track_chunk, track_zarr_chunk

__all__ = ["build_graph", "build_fields", "build_times"]

_META = np.empty((0, 0), dtype=np.float64)


def _zarr_block(zlut, *, frames, frame_axis: int, spec, step: int, n_frames: int, block_id=None):
    start = block_id[1] * step
    return track_zarr_chunk(np.array([start, min(start + step, n_frames) - 1]), zlut, frames=frames,
                            frame_axis=frame_axis, spec=spec)


def build_graph(plan) -> da.Array:
    """One task per frame chunk of ``plan``.

    Returns
    -------
    dask.array.Array
        float64 ``(bead, frame, 4 + n_bins)``, one chunk per task along frames
        (:func:`~magtrack_dask.tracking.task.track_chunk`).
    """
    source, spec, zlut = plan.source, plan.spec, plan.zlut.table
    # One graph key, not one copy per task; a tuple of per-bead models stays one object.
    lut = None if zlut is None else dask.delayed(zlut, pure=True, traverse=False)
    k = N_FIELDS + spec.n_bins
    name = "track-" + dask.base.tokenize(source.data.name, zlut, spec)
    meta = np.empty((0, 0, 0), dtype=np.float64)
    ax = source.layout.frame_axis
    if source.frames is not None:  # Zarr input is read inside the task; tasks are regular but for the last
        chunks = ((source.n_beads,), source.frame_chunks, (k,))
        return da.map_blocks(_zarr_block, lut, chunks=chunks, dtype=np.float64, meta=meta, name=name,
                             frames=source.frames, frame_axis=ax, spec=spec, step=plan.task_frames,
                             n_frames=plan.n_frames)
    # All non-frame axes are contracted into the task.
    in_ind = "".join("t" if i == ax else "pqr"[i - (i > ax)] for i in range(source.data.ndim))
    return da.blockwise(track_chunk, "btk", source.data, in_ind, lut, None, spec=spec, name=name,
                        new_axes={"b": source.n_beads, "k": k}, concatenate=True, dtype=np.float64, meta=meta)


def _field(block: np.ndarray, i: int, dtype) -> np.ndarray:
    return block[:, :, i].astype(dtype)


def _profiles(block: np.ndarray) -> np.ndarray:
    return block[:, :, N_FIELDS:]


def build_fields(plan) -> dict[str, da.Array]:
    """Every data variable of ``plan`` as a lazy view of :func:`build_graph` (``x_nm``, ``y_nm`` with a pixel size)."""
    stacked = build_graph(plan)
    out = {name: stacked.map_blocks(_field, i, np.uint8 if name == "flags" else np.float64, drop_axis=2,
                                    dtype=np.uint8 if name == "flags" else np.float64,
                                    meta=np.empty((0, 0), np.uint8 if name == "flags" else np.float64))
           for i, name in enumerate(FIELDS)}
    out["profiles"] = stacked.map_blocks(_profiles, dtype=np.float64,
                                         chunks=stacked.chunks[:2] + ((plan.spec.n_bins,),),
                                         meta=np.empty((0, 0, 0)), name="profiles-" + stacked.name)
    if plan.pixel_size_nm:
        out["x_nm"], out["y_nm"] = out["x"] * plan.pixel_size_nm, out["y"] * plan.pixel_size_nm
    return out


def _times_block(*, times, step: int, n_frames: int, block_id=None) -> np.ndarray:
    start = block_id[0] * step
    return times(start, min(start + step, n_frames))


def build_times(plan) -> da.Array:
    """The frame times (s) of ``plan``, lazily, chunked like the tasks."""
    t = plan.times
    name = "frame-times-" + dask.base.tokenize(plan.source.description, t.rate_hz, t.timestamps is not None,
                                              plan.source.frame_chunks[:1], plan.n_frames)
    return da.map_blocks(_times_block, chunks=(plan.source.frame_chunks,), dtype=np.float64, meta=np.empty((0,)),
                         name=name, times=t, step=plan.task_frames, n_frames=plan.n_frames)
