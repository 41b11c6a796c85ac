"""Faults, with real processes: a killed worker, a killed job, a corrupt input chunk, an archive
larger than the workers' memory.

Each test compares the results with an uninterrupted run byte for byte (every file of the store);
a resumed run must also leave the files of the chunks finished before untouched.
"""

import importlib.util
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
import zarr
from dask.utils import format_bytes, parse_bytes

from magtrack_dask.core.flags import Flag
from magtrack_dask.info import describe_path, format_info
from magtrack_dask.jobs import job_status, run_job
from magtrack_dask.io.integrity import UNFINISHED_WRITE
from magtrack_dask.sim.archives import write_simulated_archive

from tests.conftest import ROI, Z_RANGE_NM, snapshot, store_bytes

distributed = pytest.importorskip("distributed")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def many_chunks(tmp_path_factory):
    """An archive of 150 shards (tasks, at ``frames_per_task=2``) of 2 frames: a few seconds of work, to kill a
    job part-way (a job's default task size would make 75 tasks of 2 shards)."""
    path = str(tmp_path_factory.mktemp("many") / "archive.zarr")
    write_simulated_archive(path, 300, 3, roi=ROI, shard_frames=2, photons=1e4, seed=3, z_range_nm=Z_RANGE_NM,
                            pixel_size_nm=100.0, frame_rate_hz=50.0)
    return path


@pytest.fixture(scope="module")
def uninterrupted(client, many_chunks, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "uninterrupted.zarr"
    run_job(many_chunks, out, client=client, frames_per_task=2)
    return store_bytes(out)


def written_chunks(store, before: dict, after: dict) -> set[int]:
    """First frames of the frame chunks whose data files changed between two snapshots of ``store``.

    A chunk file written again (even with the same bytes), created or removed (zarr
    drops a chunk that equals the fill value) counts; metadata, the job record and the
    temporary file of a write the kill interrupted (removed by the resume) do not.
    """
    store = os.fspath(store)
    firsts = set()
    for path in set(before) | set(after):
        old, new = before.get(path), after.get(path)
        if old == new or stat.S_IFREG not in (old and old[0], new and new[0]):  # unchanged, or a folder
            continue
        if UNFINISHED_WRITE.search(path):
            continue
        parts = os.path.relpath(path, store).split(os.sep)
        if len(parts) < 3 or parts[1] != "c" or parts[0].startswith("_"):
            continue
        with open(os.path.join(store, parts[0], "zarr.json")) as f:
            meta = json.load(f)
        dims = meta.get("dimension_names") or []
        if "frame" in dims:
            ax = dims.index("frame")
            firsts.add(int(parts[2 + ax]) * meta["chunk_grid"]["configuration"]["chunk_shape"][ax])
    return firsts


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "magtrack_dask.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=120, **kwargs)


def test_killed_worker_job_finishes_with_identical_bytes(client, many_chunks, uninterrupted, tmp_path):
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed_at = []

    def progress(done, total, frames):  # on this process, while the workers run the next chunks
        if done >= 20 and not killed_at:
            os.kill(victim, signal.SIGKILL)  # the worker process, not its nanny: no clean shutdown
            killed_at.append(done)

    report = run_job(many_chunks, tmp_path / "r.zarr", client=client, progress=progress, frames_per_task=2)
    assert killed_at and killed_at[0] < report.n_chunks - 20, "the worker was not killed part-way"
    assert report.complete and report.n_computed == report.n_chunks == 150
    client.wait_for_workers(2, timeout=60)  # the nanny starts a new worker process
    assert victim not in client.run(os.getpid).values()
    assert store_bytes(tmp_path / "r.zarr") == uninterrupted


def test_results_lost_with_their_workers_are_computed_again(client, many_chunks, uninterrupted, tmp_path):
    """Tasks that finished, then lost their results with their workers before the driver took
    them (a cancelled batch job, a killed node), are computed again, not reported failed."""
    lost = []

    def in_flight(dask_scheduler):
        return sum(len(ws.processing) for ws in dask_scheduler.workers.values())

    def in_memory(dask_scheduler):
        return sum(ts.state == "memory" for ts in dask_scheduler.tasks.values())

    def progress(done, total, frames):  # on this process: the results of the tasks in flight wait
        if done >= 10 and not lost:
            while client.run_on_scheduler(in_flight):  # every task in flight finishes, on its worker
                time.sleep(0.01)
            lost.append(client.run_on_scheduler(in_memory))
            old = client.run(os.getpid)
            for pid in old.values():
                os.kill(pid, signal.SIGKILL)  # every worker process: their results are gone
            while set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.workers))) & set(old):
                time.sleep(0.01)

    report = run_job(many_chunks, tmp_path / "r.zarr", client=client, progress=progress, frames_per_task=2)
    assert lost and lost[0] > 0, "no finished result was lost"
    assert report.complete and report.n_computed == report.n_chunks == 150
    client.wait_for_workers(2, timeout=60)  # the nannies start new worker processes
    assert store_bytes(tmp_path / "r.zarr") == uninterrupted


def test_killed_job_resumes_with_identical_bytes(client, many_chunks, uninterrupted, tmp_path):
    out = str(tmp_path / "killed.zarr")
    proc = subprocess.Popen(
        [sys.executable, "-m", "magtrack_dask.cli", "track", many_chunks, "--out", out, "--workers", "1",
         "--no-progress", "--frames-per-task", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    done = 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = int(zarr.open_array(os.path.join(out, "_job", "done"), mode="r")[...].sum())
            except Exception:  # the store is still being created
                done = 0
            if done >= 3:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the job, its scheduler and its workers: one process group
        proc.communicate()
    status = job_status(out)
    n_chunks = status["n_chunks"]
    assert n_chunks == 150 and 3 <= status["n_done"] < n_chunks, "the job was not killed part-way"
    assert not status["complete"]
    n_done = status["n_done"]
    before = snapshot(out)

    # rerun on the module's cluster: only the unfinished chunks are computed (at the store's task size)
    res = cli("track", many_chunks, "--out", out, "--resume", "--no-progress",
              "--scheduler", client.scheduler.address)
    assert res.returncode == 0, res.stderr
    m = re.search(r"(\d+) chunks computed, (\d+) already done, (\d+) in all", res.stdout)
    assert m, res.stdout
    assert (int(m[1]), int(m[2]), int(m[3])) == (n_chunks - n_done, n_done, n_chunks)
    # on disk: exactly the chunks (of 2 frames) not recorded as done were written, none of the others
    assert written_chunks(out, before, snapshot(out)) == {2 * i for i in np.flatnonzero(~status["done"])}
    assert store_bytes(out) == uninterrupted


@pytest.mark.parametrize("chunking", [{"shard_frames": 16}, {"chunk_frames": 16, "shard_frames": 0}],
                         ids=["sharded", "unsharded"])
def test_corrupt_input_chunk_is_flagged_reported_and_refilled_after_repair(client, tmp_path, chunking):
    arch = str(tmp_path / "a.zarr")
    write_simulated_archive(arch, 80, 3, roi=ROI, photons=1e4, seed=5, z_range_nm=Z_RANGE_NM, **chunking)
    chunk = os.path.join(arch, "frames", "c", "2", "0", "0")  # frames 32-47: a chunk, or a shard of 16 chunks
    with open(chunk, "rb") as f:
        intact = f.read()
    with open(chunk, "r+b") as f:  # bytes overwritten on disk, mid-chunk: only the CRC-32C trailer tells
        f.seek(len(intact) // 2)
        f.write(b"\xff" * 16)
    out = tmp_path / "r.zarr"
    address = client.scheduler.address

    res = cli("track", arch, "--out", out, "--no-progress", "--scheduler", address)
    assert res.returncode == 3, res.stdout + res.stderr  # finished what it could; input incomplete
    assert "4 chunks computed, 0 already done, 5 in all" in res.stdout
    assert "unreadable input, frames 32-47" in res.stdout and "--resume" in res.stdout
    status = job_status(out)
    assert list(status["done"]) == [True, True, False, True, True] and not status["complete"]
    assert status["unreadable_frames"] == [[32, 47]]
    assert status["summary"]["flag_counts"]["input_unreadable"] == [16, 16, 16]
    job = describe_path(out)["job"]  # what `magtrack-dask info` shows
    assert job["unreadable_frames"] == [[32, 47]] and job["flag_counts"]["input_unreadable"] == [16, 16, 16]
    assert "unreadable input: frames 32-47" in format_info(describe_path(out))
    ds = xr.open_zarr(out, consolidated=False).compute()
    bad = np.zeros(80, dtype=bool)
    bad[32:48] = True
    f = ds.flags.values
    assert (f[:, bad] & Flag.INPUT_UNREADABLE).all() and (f[:, bad] & Flag.XY_NOT_FOUND).all()
    assert not (f[:, ~bad] & Flag.INPUT_UNREADABLE).any()
    for var in ("x", "y", "z", "profiles"):
        assert np.isnan(ds[var].values[:, bad]).all(), var
    assert np.isfinite(ds.x.values[:, ~bad]).all()  # every other chunk was tracked

    # still damaged: a resume retries that chunk only, and says so again
    before = snapshot(out)
    again = run_job(arch, out, client=client, resume=True)
    assert (again.n_computed, again.n_skipped, again.complete) == (0, 4, False)
    assert again.unreadable_frames == [(32, 47)]
    assert written_chunks(out, before, snapshot(out)) == {32}

    with open(chunk, "wb") as f:
        f.write(intact)  # repaired
    before = snapshot(out)
    res = cli("track", arch, "--out", out, "--resume", "--no-progress", "--scheduler", address)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 chunks computed, 4 already done, 5 in all" in res.stdout and "unreadable" not in res.stdout
    assert written_chunks(out, before, snapshot(out)) == {32}  # just those frames filled in
    assert job_status(out)["complete"]
    run_job(arch, tmp_path / "ref.zarr", client=client)
    assert store_bytes(out) == store_bytes(tmp_path / "ref.zarr")
    assert job_status(out)["unreadable_frames"] == []


def test_archive_larger_than_worker_memory_runs_in_bounded_memory(tmp_path):
    spec = importlib.util.spec_from_file_location("memory_bound", os.path.join(REPO, "benchmarks", "memory_bound.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    limit = "400MiB"
    # 1.25 GiB of decoded camera frames, noise-free so that writing it is quick
    arch = write_simulated_archive(tmp_path / "big.zarr", 640, 16, roi=64, frame_shape=(1024, 1024),
                                   chunk_frames=32, photons=None, seed=0)
    assert arch.data.nbytes >= 3 * parse_bytes(limit)
    res = bench.measure(str(tmp_path / "big.zarr"), str(tmp_path / "r.zarr"), workers=2, memory_limit=limit)
    print("archive", format_bytes(arch.data.nbytes), "limit", limit, "peak RSS",
          {w: format_bytes(v) for w, v in res["peak"].items()})
    assert res["report"].complete and not res["restarted"]
    assert max(res["peak"].values()) < parse_bytes(limit)
