"""The job runner (magtrack_dask.jobs.runner) on a real LocalCluster and real Zarr stores."""

import os

import pytest
import xarray as xr
import zarr

from magtrack_dask.jobs import JobError, JobFailed, job_status, prepare_job, run_job
from magtrack_dask.jobs.record import JobRecord
from magtrack_dask.sim.archives import write_simulated_archive
from magtrack_dask.tracking import track, write_results
from magtrack_dask.zlut import save_zlut

from tests.conftest import CHUNK_FRAMES, N_FRAMES, ROI, Z_RANGE_NM, sabotage_kernel, store_bytes

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def zlut_path(tmp_path_factory, zlut):
    path = str(tmp_path_factory.mktemp("zlut") / "zlut.zarr")
    save_zlut(path, zlut, source="make_zlut")
    return path


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


def test_fit_method_job_equals_track_and_the_core(client, archives, fit_zlut_path, fit_models, tmp_path):
    """method='fit': the models travel to the workers with the task context; the results are track()'s."""
    from tests.conftest import TRACKED, assert_matches, track_in_memory

    report = run_job(archives["tyx"], tmp_path / "fit.zarr", fit_zlut_path, client=client, method="fit")
    assert report.complete and report.n_computed == -(-N_FRAMES // CHUNK_FRAMES)
    got = xr.open_zarr(tmp_path / "fit.zarr").compute()
    xr.testing.assert_identical(got, track(os.path.abspath(archives["tyx"]), fit_zlut_path, method="fit").compute())
    assert got.attrs["method"] == "fit" and got.attrs["zlut_source"] == fit_zlut_path
    assert_matches(got[list(TRACKED)], track_in_memory(archives["tyx"], fit_models, method="fit"))


def test_stage_options_reach_the_tracking(client, archives, tmp_path):
    """pipeline= gives the results of track() with the same options, which differ from the defaults'."""
    pipeline = {"n auto_conv_multiline_sub_pixel": 0}
    run_job(archives["tbyx"], tmp_path / "r.zarr", client=client, pipeline=pipeline)
    got = xr.open_zarr(tmp_path / "r.zarr").compute()
    xr.testing.assert_identical(got, track(os.path.abspath(archives["tbyx"]), pipeline=pipeline).compute())
    plain = track(os.path.abspath(archives["tbyx"])).compute()
    assert not (got.x.values == plain.x.values).all()


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


def test_one_chunk_batches_of_a_small_job(client, archives, tmp_path):
    """More batch room than chunks (one batch holds them all) and batches of one give the same bytes."""
    run_job(archives["yxt"], tmp_path / "big.zarr", client=client, batch_chunks=100)
    run_job(archives["yxt"], tmp_path / "one.zarr", client=client, batch_chunks=1)
    assert store_bytes(tmp_path / "big.zarr") == store_bytes(tmp_path / "one.zarr")


def test_unfinished_writes_are_looked_for_only_in_the_shards_in_flight(client, archives, tmp_path):
    """A run killed with chunk 1 in flight (as its record says) may have left zarr's temporary files in
    chunk 1's shards and in the record: the next run (here a resume with nothing left to do) removes
    those, and looks nowhere else (tests/reliability/test_faults.py kills workers and jobs for real)."""
    out = tmp_path / "r.zarr"
    run_job(archives["yxt"], out, client=client)
    chunks = lambda: {k: v for k, v in store_bytes(out).items() if f"{os.sep}c{os.sep}" in k}  # noqa: E731
    before = chunks()
    JobRecord.open(str(out)).set_in_flight([1])
    hex_id = "0123456789abcdef0123456789abcdef"
    stale = [out / "x" / "c" / "0" / f"1.{hex_id}.partial", out / "profiles" / "c" / "0" / "1" / f"0.{hex_id}.partial",
             out / "_job" / f"zarr.{hex_id}.partial"]
    elsewhere = out / "x" / "c" / "0" / f"2.{hex_id}.partial"  # not in flight: not looked for
    keep = out / "x" / "notes.partial"  # not a zarr temporary: left alone
    for path in stale + [elsewhere, keep]:
        path.write_bytes(b"half a chunk")
    again = run_job(archives["yxt"], out, client=client, resume=True)
    assert again.n_computed == 0 and not any(p.exists() for p in stale) and keep.exists() and elsewhere.exists()
    assert JobRecord.open(str(out)).in_flight == []
    elsewhere.unlink()
    assert chunks() == before and len(before) > 3


def test_progress_callback_counts_chunks(client, archives, tmp_path):
    calls = []
    run_job(archives["yxt"], tmp_path / "r.zarr", client=client, batch_chunks=1,
            progress=lambda done, total, frames: calls.append((done, total, frames)))
    assert calls[0] == (0, 3, 0) and calls[-1] == (3, 3, N_FRAMES)
    assert [c[0] for c in calls] == [0, 1, 2, 3]


def test_nothing_to_do_needs_no_cluster(client, archives, tmp_path):
    run_job(archives["yxt"], tmp_path / "r.zarr", client=client)
    job = prepare_job(archives["yxt"], tmp_path / "r.zarr", resume=True)
    report = job.run(None)  # no client given and none needed
    assert (report.n_computed, report.n_skipped, report.complete) == (0, 3, True)


def test_misaligned_results_chunks_refuse_to_write(client, archives, tmp_path):
    """Region writes that are not whole chunks would lose data: the runner refuses before any task."""
    out = tmp_path / "r.zarr"
    prepare_job(archives["yxt"], out)
    zarr.open_group(str(out), mode="r+").create_array("x", shape=(1, N_FRAMES), chunks=(1, 10), dtype="float64",
                                                       dimension_names=("bead", "frame"), overwrite=True)
    with pytest.raises(JobError, match=r"frame chunks of 'x' \(10 frames\) do not align with the tasks"):
        prepare_job(archives["yxt"], out, resume=True)


def test_failing_chunk_raises_and_keeps_the_others(client, tmp_path):
    # Damaged input is flagged (tests/reliability/test_faults.py); an error of the code still fails the job.
    arch = str(tmp_path / "a.zarr")
    write_simulated_archive(arch, 48, 2, roi=ROI, shard_frames=16, seed=1, z_range_nm=Z_RANGE_NM)
    client.run(sabotage_kernel, float(zarr.open_group(arch, mode="r")["frames"][16:32].mean()))
    try:
        with pytest.raises(JobFailed, match=r"chunk 1 \(frames 16-31\) failed: IndexError: a bug in the kernel"):
            run_job(arch, tmp_path / "r.zarr", client=client, batch_chunks=1)
    finally:
        client.run(sabotage_kernel, None)
    status = job_status(tmp_path / "r.zarr")
    assert not status["complete"] and not status["done"][1]
