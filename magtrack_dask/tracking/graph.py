"""The task graph of :func:`~magtrack_dask.tracking.track`: one blockwise over the frame chunks."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from magtrack_dask.tracking.schema import N_FIELDS
from magtrack_dask.tracking.source import Source
from magtrack_dask.tracking.task import ChunkSpec, track_chunk, track_zarr_chunk

__all__ = ["build_graph"]


def build_graph(source: Source, zlut: np.ndarray | None, spec: ChunkSpec) -> da.Array:
    """One task per frame chunk of ``source``.

    Parameters
    ----------
    source : Source
    zlut : float64 ndarray or None
        The checked Z-LUT; one graph key, not one copy per task.
    spec : ChunkSpec

    Returns
    -------
    dask.array.Array
        float64 ``(bead, frame, 4 + n_bins)``, one chunk per task along frames
        (:func:`~magtrack_dask.tracking.task.track_chunk`).
    """
    lut = None if zlut is None else dask.delayed(zlut, pure=True)
    common = dict(
        new_axes={"b": source.n_beads, "k": N_FIELDS + spec.n_bins}, concatenate=True, dtype=np.float64,
        meta=np.empty((0, 0, 0), dtype=np.float64), name="track-" + dask.base.tokenize(source.data, zlut, spec),
    )
    ax = source.layout.frame_axis
    if source.frames is not None:  # Zarr input is read inside the task
        index = da.arange(source.n_frames, chunks=(source.frame_chunks,))
        return da.blockwise(track_zarr_chunk, "btk", index, "t", lut, None, frames=source.frames, frame_axis=ax,
                            spec=spec, **common)
    # All non-frame axes are contracted into the task.
    in_ind = "".join("t" if i == ax else "pqr"[i - (i > ax)] for i in range(source.data.ndim))
    return da.blockwise(track_chunk, "btk", source.data, in_ind, lut, None, spec=spec, **common)
