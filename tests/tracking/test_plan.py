"""The tracking plan (magtrack_dask.tracking.plan): a run resolved from metadata, the one source of track()."""

import numpy as np
import pytest
import zarr

from magtrack_dask.tracking import plan_tracking, track

from tests.conftest import CHUNK_FRAMES, N_FRAMES


def test_bounds_chunks_and_times_from_metadata(archives):
    plan = plan_tracking(archives["tyx"], frames_per_task=20)  # rounded up to whole shards of 16
    assert plan.bounds.tolist() == [0, 32, N_FRAMES] and plan.bounds.dtype == np.int64
    inner = zarr.open_group(archives["tyx"], mode="r")["frames"].chunks[0]  # the archive's (inner) chunks: the results' chunks
    assert (plan.task_frames, plan.chunk_frames, plan.n_chunks) == (2 * CHUNK_FRAMES, inner, 2) and inner < CHUNK_FRAMES
    np.testing.assert_array_equal(plan.times(30, 34), np.arange(30, 34) / 50.0)  # the archive's frame rate
    ds = plan.dataset()
    assert ds.x.chunks[1] == (32, 13) and ds.attrs["frames_per_task"] == 32
    assert plan_tracking(archives["tyx"], frame_rate_hz=10.0).times(0, 2).tolist() == [0.0, 0.1]


def test_the_same_checks_as_track(archives):
    with pytest.raises(TypeError, match="unexpected keyword argument.*'frame_rate'"):
        plan_tracking(archives["tyx"], frame_rate=10.0)
    for bad in ({"device": "tpu"}, {"min_symmetry": 2.0}, {"frames_per_task": 0}):
        with pytest.raises(ValueError) as a:
            track(archives["tyx"], **bad)
        with pytest.raises(ValueError) as b:
            plan_tracking(archives["tyx"], **bad)
        assert str(a.value) == str(b.value)
