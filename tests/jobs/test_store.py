"""The results store (magtrack_dask.jobs.store): made from metadata, sharded one task per shard, opened by xarray."""

import os
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from dask.highlevelgraph import MaterializedLayer

from magtrack_dask.jobs import JobError, job_status, prepare_job, run_job
from magtrack_dask.jobs.record import open_record_group
from magtrack_dask.sim.archives import write_simulated_archive
from magtrack_dask.tracking import track

from tests.conftest import ROI, Z_RANGE_NM, snapshot, store_bytes

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def small_chunks(tmp_path_factory):
    """60 frames of 2 beads in archive chunks of 5 frames: tasks of 10 frames hold two chunks each."""
    options = dict(roi=ROI, chunk_frames=5, shard_frames=5, photons=1e4, seed=11, z_range_nm=Z_RANGE_NM, frame_rate_hz=50.0)
    return write_simulated_archive(str(tmp_path_factory.mktemp("small") / "a.zarr"), 60, 2, pixel_size_nm=100.0,
                                   **options).path


def shard_files(out) -> dict:
    """{variable: sorted stored objects} of the results arrays."""
    out = os.fspath(out)
    return {name: sorted(os.path.relpath(os.path.join(d, f), os.path.join(out, name))
                         for d, _, files in os.walk(os.path.join(out, name)) for f in files if f != "zarr.json")
            for name in ("x", "profiles", "flags", "time")}


def test_one_shard_per_task_equal_to_track(client, small_chunks, tmp_path):
    out = tmp_path / "r.zarr"
    report = run_job(small_chunks, out, client=client, frames_per_task=10)
    assert report.complete and report.n_chunks == 6
    x = zarr.open_array(str(out / "x"), mode="r")
    assert x.shards == (2, 10) and x.chunks == (2, 5)  # a shard per task, the archive's chunks inside
    files = shard_files(out)
    assert files["x"] == [os.path.join("c", "0", str(i)) for i in range(6)]  # one file per task, not per chunk
    assert files["profiles"] == [os.path.join("c", "0", str(i), "0") for i in range(6)]
    assert files["time"] == [os.path.join("c", str(i)) for i in range(6)]
    assert files["flags"] == []  # no flag set: all fill value, nothing stored
    got = xr.open_zarr(out).compute()
    xr.testing.assert_identical(got, track(small_chunks, frames_per_task=10).compute())


def test_a_resumed_run_writes_only_the_shards_of_its_own_tasks(client, small_chunks, tmp_path):
    """Exactly one task ever writes a shard: a resume rewrites no shard of a finished task, and a shard
    never mixes two tasks' frames (zarr rewrites a whole shard on any write, losing the other's data)."""
    full, part = tmp_path / "full.zarr", tmp_path / "part.zarr"
    run_job(small_chunks, full, client=client, frames_per_task=10)
    run_job(small_chunks, part, client=client, frames_per_task=10, max_chunks=2)
    done = job_status(part)["done"]
    before = snapshot(part)
    run_job(small_chunks, part, client=client, frames_per_task=10, resume=True)
    after = snapshot(part)
    changed = {os.path.relpath(p, part) for p in set(before) | set(after)
               if before.get(p) != after.get(p) and os.path.isfile(p) and f"{os.sep}c{os.sep}" in p}
    x_shards = sorted(int(p.split(os.sep)[-1]) for p in changed if p.startswith("x" + os.sep))
    assert x_shards == [int(i) for i in np.flatnonzero(~done)] and len(x_shards) == 4
    assert store_bytes(part) == store_bytes(full)


def test_tasks_that_do_not_fill_whole_shards_refuse(client, small_chunks, tmp_path):
    out = tmp_path / "r.zarr"
    prepare_job(small_chunks, out, frames_per_task=10)
    zarr.open_group(str(out), mode="r+", use_consolidated=False).create_array(
        "x", shape=(2, 60), chunks=(2, 5), shards=(2, 20), dtype="float64", dimension_names=("bead", "frame"),
        overwrite=True)
    with pytest.raises(JobError, match=r"frame chunks of 'x' \(20 frames\) do not align with the tasks \(10"):
        prepare_job(small_chunks, out, frames_per_task=10, resume=True)


def test_an_interrupted_store_opens_without_a_warning(client, small_chunks, tmp_path):
    out = tmp_path / "r.zarr"
    run_job(small_chunks, out, client=client, max_chunks=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(out)
    x = ds.x.values
    assert np.isfinite(x[:, :15]).all() and np.isnan(x[:, 15:]).all()  # three tasks of 5 frames written
    assert ds.flags.dtype == np.uint8 and "time" in ds.coords and ds.attrs["frames_per_task"] == 5


def test_in_memory_sources_and_old_records_refuse(client, small_chunks, tmp_path):
    frames = zarr.open_group(small_chunks, mode="r")["frames"][...]
    rois = zarr.open_group(small_chunks, mode="r")["rois"][...]
    with pytest.raises(JobError, match="archive: a job reads its frames from an archive"):
        prepare_job(frames, tmp_path / "r.zarr", rois=rois, layout="tyx")
    assert not (tmp_path / "r.zarr").exists()
    out = tmp_path / "old.zarr"
    run_job(small_chunks, out, client=client, max_chunks=1)
    open_record_group(str(out), "r+").attrs["magtrack_dask_job"] = 1  # as an older version wrote it
    with pytest.raises(JobError, match=r"job record format 1, this one writes 2.*pass --overwrite"):
        prepare_job(small_chunks, out, resume=True)


def test_the_lazy_dataset_has_no_materialized_layer(small_chunks):
    ds = track(small_chunks)
    for name in ("x", "profiles", "flags", "x_nm"):
        layers = ds[name].data.dask.layers.values()
        assert not [layer for layer in layers if isinstance(layer, MaterializedLayer)], name


def test_a_store_replaced_at_the_same_path_is_written_with_its_own_metadata(client, small_chunks, tmp_path):
    """The workers that wrote shards of 10 frames write the new store's 5-frame chunks (no stale metadata)."""
    out = tmp_path / "r.zarr"
    run_job(small_chunks, out, client=client, frames_per_task=10)
    run_job(small_chunks, out, client=client, overwrite=True)
    xr.testing.assert_identical(xr.open_zarr(out).compute(), track(small_chunks).compute())
