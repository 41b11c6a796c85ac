"""A tracking task keeps nothing per chunk: read + track of many distinct chunks in a plain loop.

The worker-memory creep of long jobs is dask's own bounded key cache
(benchmarks/README.md, "Worker memory over a long run"); this guards the
package's side: no cache or module state of ours may grow with the chunks.
"""

import gc
import tracemalloc

import numpy as np
import pytest

from magtrack_dask.core.pipeline import check_stage_keywords, profile_bins
from magtrack_dask.core.symmetry import MIN_SYMMETRY
from magtrack_dask.io.archive import create_archive
from magtrack_dask.sim.beads import render_beads
from magtrack_dask.tracking.source import resolve_source
from magtrack_dask.tracking.task import ChunkSpec, track_zarr_chunk

N_CHUNKS = 300  # one frame each: every task reads a chunk no task read before
WARM_UP = 80  # first calls fill the library caches (numba dispatch, zarr metadata), which stay bounded
ROI = 16


def _archive(path, shard_frames):
    """``tbyx`` archive of one bead, one frame per chunk (and per shard, when sharded): 8 bead images repeated
    with fresh shot noise. One task reads one whole chunk or shard, as in a job."""
    rng = np.random.default_rng(3)
    imgs = render_beads(7.5 + rng.uniform(-1, 1, 8), 7.5 + rng.uniform(-1, 1, 8), rng.uniform(800, 2400, 8),
                        n_pixels=ROI, dtype="float64")  # (roi, roi, 8)
    means = np.tile(imgs, (1, 1, -(-N_CHUNKS // 8)))[:, :, :N_CHUNKS]  # (roi, roi, N_CHUNKS)
    frames = rng.poisson(means.transpose(2, 0, 1)[:, None]).astype(np.uint16)
    create_archive(path, frames, layout="tbyx", chunk_frames=1, shard_frames=shard_frames)
    return resolve_source(str(path))


@pytest.mark.parametrize("shard_frames", [0, 1], ids=["unsharded", "sharded"])
def test_task_keeps_nothing_per_chunk(tmp_path, shard_frames):
    src = _archive(tmp_path / "a.zarr", shard_frames)
    pipeline = check_stage_keywords(None)
    spec = ChunkSpec(layout=src.layout, rois=src.crop_rois, offsets=src.rois,
                     n_bins=profile_bins(src.roi_size, pipeline).n_bins, pipeline=pipeline, device="cpu",
                     edge_margin_px=2.0, min_symmetry=MIN_SYMMETRY)

    def run(chunks):
        for i in chunks:
            out = track_zarr_chunk(np.array([i]), None, frames=src.frames, frame_axis=0, spec=spec)
            assert np.isfinite(out[0, 0, :2]).all()  # x, y tracked: a real task, not an unreadable chunk

    run(range(WARM_UP))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(range(WARM_UP, N_CHUNKS))
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # One leaked (key, value) pair or result array per chunk is >= 150 B a chunk; what stays now is ~tens of B.
    assert kept / (N_CHUNKS - WARM_UP) < 100, f"{kept} B kept over {N_CHUNKS - WARM_UP} chunks"
