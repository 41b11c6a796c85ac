"""Resumable jobs (magtrack_dask.jobs) on a real LocalCluster and real Zarr stores."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import xarray as xr
import zarr

from magtrack_dask.jobs import JobError, JobFailed, job_status, prepare_job, run_job
from magtrack_dask.storage import write_simulated_archive
from magtrack_dask.tracking import track, write_results
from magtrack_dask.zlut import save_zlut

from conftest import CHUNK_FRAMES, N_FRAMES, ROI, Z_RANGE_NM

distributed = pytest.importorskip("distributed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def zlut_path(tmp_path_factory, zlut):
    path = str(tmp_path_factory.mktemp("zlut") / "zlut.zarr")
    save_zlut(path, zlut, source="make_zlut")
    return path


@pytest.fixture(scope="module")
def many_chunks(tmp_path_factory):
    """An archive of 150 chunks of 2 frames: a few seconds of work, to kill a job part-way."""
    path = str(tmp_path_factory.mktemp("many") / "archive.zarr")
    write_simulated_archive(path, 300, 3, roi=ROI, chunk_frames=2, photons=1e4, seed=3, z_range_nm=Z_RANGE_NM,
                            pixel_size_nm=100.0, frame_rate_hz=50.0)
    return path


def store_bytes(path):
    """{relative path: bytes} of every file of a store."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "magtrack_dask.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, **kwargs)


# -- results ------------------------------------------------------------------------


def test_results_equal_track_and_write_results(client, archives, zlut_path, tmp_path):
    report = run_job(archives["tyx"], tmp_path / "job.zarr", zlut_path, client=client)
    n_chunks = -(-N_FRAMES // CHUNK_FRAMES)
    assert (report.n_chunks, report.n_computed, report.n_skipped, report.complete) == (n_chunks, n_chunks, 0, True)
    got = xr.open_zarr(tmp_path / "job.zarr").compute()
    ref = track(os.path.abspath(archives["tyx"]), zlut_path).compute()
    xr.testing.assert_identical(got, ref)
    # the same store write_results makes, plus the job record
    write_results(track(os.path.abspath(archives["tyx"]), zlut_path), tmp_path / "plain.zarr")
    xr.testing.assert_identical(got, xr.open_zarr(tmp_path / "plain.zarr").compute())
    status = job_status(tmp_path / "job.zarr")
    assert status["complete"] and status["n_done"] == n_chunks
    # metadata consolidated at the end
    assert "consolidated_metadata" in zarr.open_group(str(tmp_path / "job.zarr")).metadata.to_dict()


def test_max_chunks_then_resume_gives_identical_bytes(client, archives, zlut_path, tmp_path):
    full = run_job(archives["tbyx"], tmp_path / "full.zarr", zlut_path, client=client)
    part = run_job(archives["tbyx"], tmp_path / "part.zarr", zlut_path, client=client, max_chunks=1, progress=False)
    assert (part.n_computed, part.complete) == (1, False)
    assert job_status(tmp_path / "part.zarr")["n_done"] == 1
    rest = run_job(archives["tbyx"], tmp_path / "part.zarr", zlut_path, client=client, resume=True)
    assert (rest.n_skipped, rest.n_computed, rest.complete) == (1, full.n_chunks - 1, True)
    assert store_bytes(tmp_path / "part.zarr") == store_bytes(tmp_path / "full.zarr")
    again = run_job(archives["tbyx"], tmp_path / "part.zarr", zlut_path, client=client, resume=True)
    assert (again.n_computed, again.n_skipped) == (0, full.n_chunks)


def test_progress_callback_counts_chunks(client, archives, tmp_path):
    calls = []
    run_job(archives["yxt"], tmp_path / "r.zarr", client=client, batch_chunks=1,
            progress=lambda done, total, frames: calls.append((done, total, frames)))
    assert calls[0] == (0, 3, 0) and calls[-1] == (3, 3, N_FRAMES)
    assert [c[0] for c in calls] == [0, 1, 2, 3]


# -- refusals --------------------------------------------------------------------------


def test_existing_results_refuse_without_resume_or_overwrite(client, archives, tmp_path):
    out = tmp_path / "r.zarr"
    run_job(archives["yxt"], out, client=client)
    before = store_bytes(out)
    with pytest.raises(JobError, match="--resume"):
        prepare_job(archives["yxt"], out)
    with pytest.raises(JobError, match=r"other inputs or parameters \(.*parameters.frames_per_task: 16 -> 32\)"
                                       r"; pass --overwrite"):
        prepare_job(archives["yxt"], out, frames_per_task=32, resume=True)
    with pytest.raises(JobError, match="source"):
        prepare_job(archives["tbyx"], out, resume=True)
    assert store_bytes(out) == before  # refused runs touch nothing
    report = run_job(archives["yxt"], out, client=client, frames_per_task=32, overwrite=True)
    assert report.n_chunks == 2 and report.complete


def test_refuses_to_overwrite_what_is_not_a_store(archives, tmp_path):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(JobError, match="not a Zarr store"):
        prepare_job(archives["yxt"], folder, overwrite=True)
    with pytest.raises(JobError, match="not a magtrack-dask results store"):
        prepare_job(archives["yxt"], folder, resume=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    with pytest.raises(JobError, match="archive not found"):
        prepare_job(tmp_path / "missing.zarr", tmp_path / "r.zarr")
    with pytest.raises(JobError, match="exclude each other"):
        prepare_job(archives["yxt"], tmp_path / "r.zarr", resume=True, overwrite=True)


def test_failing_chunk_raises_and_keeps_the_others(client, tmp_path):
    arch = str(tmp_path / "a.zarr")
    write_simulated_archive(arch, 48, 2, roi=ROI, chunk_frames=16, seed=1, z_range_nm=Z_RANGE_NM)
    with open(os.path.join(arch, "frames", "c", "1", "0", "0"), "wb") as f:
        f.write(b"not a blosc chunk")  # a damaged chunk on disk
    with pytest.raises(JobFailed, match=r"chunk 1 \(frames 16-31\) failed"):
        run_job(arch, tmp_path / "r.zarr", client=client, batch_chunks=1)
    status = job_status(tmp_path / "r.zarr")
    assert not status["complete"] and not status["done"][1]


# -- a crash ------------------------------------------------------------------------------


def test_killed_job_resumes_with_identical_bytes(client, many_chunks, tmp_path):
    out = str(tmp_path / "killed.zarr")
    proc = subprocess.Popen(
        [sys.executable, "-m", "magtrack_dask.cli", "track", many_chunks, "--out", out, "--workers", "1",
         "--no-progress"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
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

    # rerun on the module's cluster
    res = cli("track", many_chunks, "--out", out, "--resume", "--no-progress",
              "--scheduler", client.scheduler.address)
    assert res.returncode == 0, res.stderr
    m = re.search(r"(\d+) chunks computed, (\d+) already done, (\d+) in all", res.stdout)
    assert m, res.stdout
    assert (int(m[1]), int(m[2]), int(m[3])) == (n_chunks - n_done, n_done, n_chunks)

    run_job(many_chunks, tmp_path / "uninterrupted.zarr", client=client)
    assert store_bytes(out) == store_bytes(tmp_path / "uninterrupted.zarr")
