"""A job's default task size: whole archive shards, many per task, read one shard at a time."""

import os

import numpy as np
import pytest
import xarray as xr

from magtrack_dask.core.flags import Flag
from magtrack_dask.jobs import job_status, prepare_job, run_job
from magtrack_dask.jobs.prepare import JOB_TASK_BYTES, MIN_JOB_TASKS, job_task_frames
from magtrack_dask.jobs.store import results_names
from magtrack_dask.sim.archives import write_simulated_archive
from magtrack_dask.tracking import track, write_results

from tests.conftest import ROI, Z_RANGE_NM, store_bytes

distributed = pytest.importorskip("distributed")

N_FRAMES = 263  # 132 shards of 2 frames, the last one short: 2 shards per task by the task-count cap
SHARD = 2


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("many") / "a.zarr")
    write_simulated_archive(path, N_FRAMES, 2, roi=ROI, layout="tbyx", chunk_frames=1, shard_frames=SHARD,
                            photons=1e4, seed=3, z_range_nm=Z_RANGE_NM, pixel_size_nm=100.0, frame_rate_hz=50.0)
    return path


@pytest.mark.parametrize("unit_frames, unit_bytes, n_frames, expected", [
    (40, 32_768_000, 122_070_000, 40 * 32),  # 100 TB of 100 beads: 32 shards of 32.8 MB, ~1 GiB
    (40, 32_768_000, 40 * 64 * 5, 40 * 5),  # 320 shards: capped to keep 64 tasks
    (40, 32_768_000, 40 * 127, 40),  # fewer than 128 shards: two per task would leave < 64 tasks
    (16, JOB_TASK_BYTES * 2, 16 * 10_000, 16),  # a shard over the target: one per task, never less
    (16, 2**20, 45, 16),  # a small archive
])
def test_default_task_size(unit_frames, unit_bytes, n_frames, expected):
    got = job_task_frames(unit_frames, unit_bytes, n_frames)
    assert got == expected
    n_tasks = -(-n_frames // got)
    assert got // unit_frames * unit_bytes <= max(JOB_TASK_BYTES, unit_bytes)
    assert n_tasks >= min(MIN_JOB_TASKS, -(-n_frames // unit_frames))


def result_files(out, names) -> dict:
    """{array: number of stored objects (not metadata)}."""
    return {n: sum(f != "zarr.json" for _, _, files in os.walk(os.path.join(out, n)) for f in files) for n in names}


def test_several_shards_per_task_by_default_equal_to_track(client, many_shards, tmp_path):
    out = str(tmp_path / "job.zarr")
    job = prepare_job(many_shards, out)
    task = SHARD * ((-(-N_FRAMES // SHARD)) // MIN_JOB_TASKS)
    assert task == 2 * SHARD and job.plan.task_frames == task and job.plan.n_chunks == -(-N_FRAMES // task)
    report = job.run(client, progress=False)
    assert report.complete and report.n_chunks == job.plan.n_chunks

    got = xr.open_zarr(out).compute()
    xr.testing.assert_identical(got, track(many_shards, frames_per_task=task).compute())
    # the tracked values are those of one shard per task (track()'s default); only the task size differs
    one = track(many_shards).compute()
    assert one.attrs["frames_per_task"] == SHARD and got.attrs["frames_per_task"] == task
    for name in results_names(job.plan):
        np.testing.assert_array_equal(got[name].values, one[name].values, err_msg=name)
    # the store write_results makes of the same tasks, plus the job record
    write_results(track(many_shards, frames_per_task=task), tmp_path / "plain.zarr")
    xr.testing.assert_identical(got, xr.open_zarr(tmp_path / "plain.zarr").compute())

    # one results file per task and per variable written by the tasks (time included); zarr writes
    # no file for a shard that is all fill value (z without a Z-LUT, flags all 0)
    per_task = [*results_names(job.plan), "time"]
    files = result_files(out, per_task)
    data = ("x", "y", "x_nm", "y_nm", "profiles", "time")
    assert {n: files[n] for n in data} == dict.fromkeys(data, job.plan.n_chunks)
    assert (files["z"], files["flags"]) == (0, 0) and np.isnan(got.z.values).all() and not got.flags.values.any()
    # the rest (metadata, coordinates, job record) does not grow with the number of tasks
    one_out = str(tmp_path / "one.zarr")
    run_job(many_shards, one_out, client=client, frames_per_task=SHARD)
    one_files = result_files(one_out, per_task)
    assert one_files["x"] == 132
    n_files = {p: sum(len(f) for _, _, f in os.walk(p)) for p in (out, one_out)}
    assert n_files[out] - sum(files.values()) == n_files[one_out] - sum(one_files.values())


def test_resume_keeps_the_task_size_the_store_was_made_with(client, many_shards, tmp_path):
    """A store made with another task size (an older default, say) resumes at that size, not refused."""
    out = str(tmp_path / "r.zarr")
    run_job(many_shards, out, client=client, frames_per_task=SHARD, max_chunks=3)
    job = prepare_job(many_shards, out, resume=True)
    assert job.plan.task_frames == SHARD and int(job.done.sum()) == 3
    report = job.run(client, progress=False)
    assert report.complete and (report.n_skipped, report.n_computed) == (3, 132 - 3)
    run_job(many_shards, tmp_path / "ref.zarr", client=client, frames_per_task=SHARD)
    assert store_bytes(out) == store_bytes(tmp_path / "ref.zarr")


def test_damaged_shard_in_a_task_of_several_flags_its_frames_only(client, tmp_path):
    arch = str(tmp_path / "a.zarr")
    write_simulated_archive(arch, 80, 3, roi=ROI, photons=1e4, seed=5, z_range_nm=Z_RANGE_NM, shard_frames=16)
    shard = os.path.join(arch, "frames", "c", "2", "0", "0")  # frames 32-47, in task 0 (frames 0-47)
    with open(shard, "rb") as f:
        intact = f.read()
    with open(shard, "r+b") as f:  # mid-shard bytes overwritten: only the CRC-32C trailer tells
        f.seek(len(intact) // 2)
        f.write(b"\xff" * 16)
    out = tmp_path / "r.zarr"
    report = run_job(arch, out, client=client, frames_per_task=48)
    assert report.n_chunks == 2 and not report.complete
    assert list(job_status(out)["done"]) == [False, True]  # the task is retried on resume
    # the damaged shard's frames are reported, not the whole task's
    assert report.unreadable_frames == [(32, 47)] and job_status(out)["unreadable_frames"] == [[32, 47]]
    ds = xr.open_zarr(out, consolidated=False).compute()
    bad = np.zeros(80, dtype=bool)
    bad[32:48] = True
    f = ds.flags.values
    assert (f[:, bad] & Flag.INPUT_UNREADABLE).all() and not (f[:, ~bad] & Flag.INPUT_UNREADABLE).any()
    assert np.isnan(ds.x.values[:, bad]).all() and np.isfinite(ds.x.values[:, ~bad]).all()
    # the other shards of the damaged task are tracked as in an intact job
    with open(shard, "wb") as f:
        f.write(intact)
    ref = track(arch).compute()
    for name in ("x", "y", "z", "profiles"):
        np.testing.assert_array_equal(ds[name].values[:, ~bad], ref[name].values[:, ~bad], err_msg=name)
    # repaired: a resume fills in that task
    again = run_job(arch, out, client=client, resume=True)
    assert again.complete and (again.n_computed, again.n_skipped) == (1, 1)
    run_job(arch, tmp_path / "ref.zarr", client=client, frames_per_task=48)
    assert store_bytes(out) == store_bytes(tmp_path / "ref.zarr")
