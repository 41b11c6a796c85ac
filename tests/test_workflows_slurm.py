"""workflows/reprocess.py on a real SLURM: a private single-node cluster (tests/slurm_site.py) whose
worker jobs dask-jobqueue submits. Skipped, with the reason, where SLURM cannot be started (not root,
slurm-wlm or munge missing, no dask-jobqueue); ``make test`` installs the packages where it can."""

import json
import os
import sys

import dask
import pytest

from magtrack_dask.cluster import close_client
from magtrack_dask.jobs import job_status, run_job
from magtrack_dask.sim.archives import write_simulated_archive

from tests import slurm_site
from tests.conftest import ROI, Z_RANGE_NM, snapshot, store_bytes
from tests.test_workflows import workflow_module

distributed = pytest.importorskip("distributed")
N_CHUNKS = 20


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The running cluster, ``SLURM_CONF`` set for this process; every job cancelled and every daemon
    ended at the end, whatever the tests did."""
    reason = slurm_site.unavailable()
    if reason:
        pytest.skip(f"SLURM tests: {reason}")
    site = slurm_site.SlurmSite(tmp_path_factory.mktemp("slurm"))
    try:
        site.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", site.conf)  # sbatch, squeue, scancel of dask-jobqueue and of the tests
            yield site
    finally:
        site.stop()


@pytest.fixture()
def site(slurm):
    """The cluster for one test: a failed test's worker jobs do not serve the next one. The workflow's
    Adaptive looks every 0.2 s (default 1 s) and gives a lost worker up after 0.2 s (default 15 s)."""
    with dask.config.set({"distributed.adaptive.interval": "200ms", "distributed.deploy.lost-worker-timeout": "200ms"}):
        yield slurm
    slurm.cancel_all()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """1 bead, 32 px ROIs, 20 chunks of 2 frames: enough tasks to cancel a worker part-way."""
    path = str(tmp_path_factory.mktemp("slurm-data") / "run.zarr")
    write_simulated_archive(path, 2 * N_CHUNKS, 1, roi=ROI, shard_frames=2, photons=1e4, seed=7,
                            z_range_nm=Z_RANGE_NM, pixel_size_nm=100.0)
    return path


@pytest.fixture(scope="module")
def local_results(archive, tmp_path_factory):
    """The job's results store from an in-process local cluster: what SLURM must reproduce."""
    out = tmp_path_factory.mktemp("local") / "run.results.zarr"
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0") as client:
        run_job(archive, out, client=client)
    return store_bytes(out)


def slurm_config(folder, archive, **cluster) -> str:
    """A JSON workflow config: worker jobs of 1 core on the test partition, logs in ``folder``."""
    slurm = {"queue": slurm_site.PARTITION, "cores": 1, "processes": 1, "memory": "1GB", "walltime": "00:10:00",
             "account": None, "job_script_prologue": [], "log_directory": str(folder / "worker-logs"),
             "local_directory": str(folder / "worker-space"), "scheduler_options": {"dashboard_address": ":0"}}
    cfg = {"input": {"archives": archive}, "output": {"folder": str(folder / "results")},
           "cluster": {"kind": "slurm", "jobs": 1, "wait_for_workers_s": 60, "slurm": slurm, **cluster}}
    path = folder / "reprocess.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_job_on_slurm_equals_a_local_run_and_a_rerun_skips(site, archive, local_results, tmp_path, capsys):
    wf = workflow_module()
    config = slurm_config(tmp_path, archive, adapt=True)  # adaptive: the job starts with the tasks
    assert wf.main([config]) == 0  # the script's main(), in this process: no second interpreter to start
    log = capsys.readouterr().err
    assert "SLURM cluster: jobs=1, adapt=True" in log and "#SBATCH" in log
    assert "summary: 1 done, 0 partial, 0 skipped, 0 failed" in log
    out = tmp_path / "results" / "run.results.zarr"
    assert store_bytes(out) == local_results
    assert os.listdir(tmp_path / "worker-logs"), "no worker job ran"
    assert not site.wait_gone(), "worker jobs left behind"

    before = snapshot(out)
    assert wf.main([config]) == 0  # complete: skipped, no cluster started, nothing written
    log = capsys.readouterr().err
    assert "summary: 0 done, 0 partial, 1 skipped, 0 failed" in log
    assert "SLURM cluster" not in log and not site.job_ids()
    assert snapshot(out) == before


def test_cancelled_worker_job_is_replaced_with_identical_results(site, archive, local_results, tmp_path):
    wf = workflow_module()
    cfg = wf.load_config(slurm_config(tmp_path, archive))  # jobs = 1: the run needs the replacement
    cancelled = {}

    def progress(done, total, frames):  # on the driver, while the worker has tasks
        if done >= 2 and not cancelled:
            cancelled.update(jobs=site.job_ids(), at=done)
            site.run("scancel", *cancelled["jobs"])
            # hold the driver until the job's processes are gone: the chunks left need a new worker
            cancelled["left"] = site.wait_gone(cancelled["jobs"], 30)

    client = wf.start_client(cfg["cluster"], "cpu")
    try:
        report = run_job(archive, tmp_path / "r.zarr", client=client, progress=progress)
        assert cancelled and cancelled["at"] < N_CHUNKS - 2, "the worker job was not cancelled part-way"
        assert len(cancelled["jobs"]) == 1 and not cancelled["left"]
        assert report.complete and report.n_computed == report.n_chunks == N_CHUNKS
        replacement = site.job_ids()
        assert replacement and not replacement & cancelled["jobs"], "no replacement worker job"
    finally:
        close_client(client)
    assert not site.wait_gone(), "worker jobs left behind"
    assert job_status(tmp_path / "r.zarr")["complete"]
    assert store_bytes(tmp_path / "r.zarr") == local_results


def test_workers_that_never_arrive_fail_the_archive_and_leave_no_job(site, archive, tmp_path, capsys):
    wf = workflow_module()
    config = slurm_config(tmp_path, archive, wait_for_workers_s=3)
    cfg = json.loads(open(config).read())
    cfg["cluster"]["slurm"]["job_script_prologue"] = ["sleep 60"]  # the job runs, its worker does not come
    open(config, "w").write(json.dumps(cfg))
    assert wf.main([config]) == 1
    log = capsys.readouterr().err
    assert "SLURM cluster: jobs=1" in log and "summary: 0 done, 0 partial, 0 skipped, 1 failed" in log
    assert os.listdir(tmp_path / "worker-logs"), "no worker job started"
    assert not site.wait_gone(), "the worker job was left behind"


def test_slurm_config_without_dask_jobqueue_or_with_bad_jobs_is_a_usage_error(monkeypatch, tmp_path):
    wf = workflow_module()
    for jobs in (0, 1.5, "2"):
        with pytest.raises(wf.ConfigError, match=rf"\[cluster\] jobs must be a positive integer .*got {jobs!r}"):
            wf.load_config(slurm_config(tmp_path, "run.zarr", jobs=jobs))
    config = slurm_config(tmp_path, "run.zarr")
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # what a Python without it raises: ImportError
    with pytest.raises(wf.ConfigError, match=r"kind = 'slurm' needs dask-jobqueue: pip install"):
        wf.load_config(config)
