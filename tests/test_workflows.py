"""workflows/reprocess.py: the scheduled job, run as a subprocess against a real cluster."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import zarr

from magtrack_dask.jobs import job_status, run_job
from magtrack_dask.sim.archives import write_simulated_archive
from magtrack_dask.sim.archives import write_simulated_calibration

from tests.conftest import ROI, Z_RANGE_NM

distributed = pytest.importorskip("distributed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "workflows", "reprocess.py")


@pytest.fixture()
def site(tmp_path):
    """Three runs in their own folders, each with a calibration archive (no Z-LUT yet)."""
    for name, seed in (("day1", 1), ("day2", 2), ("day3", 3)):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        write_simulated_archive(folder / "run.zarr", 60, 2, roi=ROI, shard_frames=12, photons=1e4, seed=seed,
                                z_range_nm=Z_RANGE_NM, pixel_size_nm=100.0)
        write_simulated_calibration(folder / "calibration.zarr", np.arange(500.0, 2701.0, 100.0), 2, roi=ROI,
                                    frames_per_step=3, seed=seed)
    return tmp_path


def workflow_module():
    """workflows/reprocess.py imported as a module."""
    sys.path.insert(0, os.path.join(REPO, "workflows"))
    try:
        import reprocess
    finally:
        sys.path.pop(0)
    return reprocess


def write_config(path, text):
    path.write_text(text)
    return path


def reprocess(config, *extra):
    return subprocess.run([sys.executable, SCRIPT, str(config), *extra], capture_output=True, text=True,
                          cwd=REPO, timeout=180)


def toml(address, tracking=""):
    return f"""
[input]
archives = ["data/*/run.zarr"]
[zlut]
path = "{{parent}}/zlut.zarr"
calibration = "{{parent}}/calibration.zarr"
[output]
folder = "results"
name = "{{parent_name}}_{{stem}}.zarr"
[tracking]
{tracking}
[cluster]
kind = "scheduler"
address = "{address}"
"""


def test_reprocess_tracks_skips_and_resumes(site, client):
    config = write_config(site / "reprocess.toml", toml(client.scheduler.address))
    results = site / "results"

    res = reprocess(config, "--dry-run")
    assert res.returncode == 0 and res.stderr.count("[dry run]") == 3 and "(missing)" in res.stderr
    res = reprocess(config)
    assert res.returncode == 0, res.stderr
    for day in ("day1", "day2", "day3"):
        assert job_status(results / f"{day}_run.zarr")["complete"]
        assert (site / "data" / day / "zlut.zarr").exists()  # built from the calibration
    assert "summary: 3 done, 0 partial, 0 skipped, 0 failed" in res.stderr
    log = (results / "reprocess.log").read_text()
    assert "built Z-LUT" in log and "track " in log

    # an interrupted store is resumed, complete ones are skipped
    status = job_status(results / "day2_run.zarr")
    done = np.asarray(status["done"])
    # forget two finished chunks, as if the run had died before recording them
    rec = zarr.open_array(str(results / "day2_run.zarr" / "_job" / "done"), mode="r+")
    rec[3:5] = 0
    zarr.open_group(str(results / "day2_run.zarr" / "_job"), mode="r+").attrs["complete"] = False
    res = reprocess(config)
    assert res.returncode == 0, res.stderr
    assert "resume" in res.stderr and "2 chunks computed, 3 already done, 5 in all" in res.stderr
    assert "summary: 1 done, 0 partial, 2 skipped, 0 failed" in res.stderr
    assert job_status(results / "day2_run.zarr")["done"].tolist() == done.tolist()

    res = reprocess(config)
    assert "summary: 0 done, 0 partial, 3 skipped, 0 failed" in res.stderr
    assert "(pid" in (results / "reprocess.log").read_text()  # the log file is appended to


def tree(path):
    return {os.path.relpath(os.path.join(r, f), path): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(path) for f in fs}


def test_same_bytes_as_a_direct_job_and_changed_parameters_refused(site, client, tmp_path):
    config = write_config(site / "a.toml", toml(client.scheduler.address))
    assert reprocess(config).returncode == 0
    arch = site / "data" / "day1" / "run.zarr"
    run_job(arch, tmp_path / "direct.zarr", site / "data" / "day1" / "zlut.zarr", client=client)
    before = tree(site / "results" / "day1_run.zarr")
    assert before == tree(tmp_path / "direct.zarr")
    changed = write_config(site / "b.toml", toml(client.scheduler.address, "frames_per_task = 24"))
    res = reprocess(changed)
    assert res.returncode == 1
    assert res.stderr.count("other inputs or parameters") == 3
    assert "summary: 0 done, 0 partial, 0 skipped, 3 failed" in res.stderr
    assert tree(site / "results" / "day1_run.zarr") == before


def test_local_cluster_json_config_and_time_budget(site):
    cfg = {
        "input": {"archives": "data/day1/run.zarr"},
        "output": {"folder": "out", "log": "logs/run.log"},
        "tracking": {"max_chunks_per_run": 3},
        "cluster": {"kind": "local", "workers": 1},
    }
    config = write_config(site / "c.json", json.dumps(cfg))
    res = reprocess(config)
    assert res.returncode == 0, res.stderr
    assert "summary: 0 done, 1 partial" in res.stderr
    assert job_status(site / "out" / "run.results.zarr")["n_done"] == 3
    res = reprocess(config)
    assert "summary: 1 done, 0 partial" in res.stderr
    assert (site / "logs" / "run.log").exists()


def test_lock_bad_config_and_failures(site, client, tmp_path):
    config = write_config(site / "d.toml", toml(client.scheduler.address))
    (site / "results").mkdir()
    lock = site / "results" / ".reprocess.lock"

    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # a live run: this test
    res = reprocess(config)
    assert res.returncode == 3 and "another run holds" in res.stderr
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))  # a dead one
    # one archive cannot be tracked (its calibration is missing): the others still are
    shutil.rmtree(site / "data" / "day3" / "calibration.zarr")
    res = reprocess(config)
    assert res.returncode == 1
    assert "calibration archive not found" in res.stderr
    assert "summary: 2 done, 0 partial, 0 skipped, 1 failed" in res.stderr
    assert not lock.exists()  # released

    bad = write_config(tmp_path / "bad.toml", "[input]\narchives = []\n[output]\nfolder = 'x'\n")
    res = reprocess(bad)
    assert res.returncode == 2 and "archives is required" in res.stderr
    res = reprocess(write_config(tmp_path / "bad2.toml", "[cluster]\nkind = 'cloud'\n"))
    assert res.returncode == 2 and "config error" in res.stderr
    res = reprocess(write_config(tmp_path / "bad3.toml", "this is = = not toml"))
    assert res.returncode == 2 and "invalid TOML" in res.stderr
    res = reprocess(write_config(tmp_path / "bad4.toml", toml(client.scheduler.address, "rios = 3")))
    assert res.returncode == 2 and "[tracking] unknown stage option 'rios'" in res.stderr
    clash = toml(client.scheduler.address).replace('name = "{parent_name}_{stem}.zarr"', 'name = "{stem}.zarr"')
    res = reprocess(write_config(site / "e.toml", clash))
    assert res.returncode == 2 and "would both write" in res.stderr


def test_example_config_parses():
    wf = workflow_module()
    cfg = wf.load_config(os.path.join(REPO, "workflows", "config.example.toml"))
    assert cfg["cluster"]["kind"] == "local" and cfg["cluster"]["slurm"]["cores"] == 8
    assert cfg["zlut"]["path"] == "{parent}/zlut.zarr"
    assert wf._fill(cfg["output"]["name"], "/data/day1/run_3.zarr") == "day1_run_3.results.zarr"


def test_tracking_section_gives_prepare_job_keywords_and_one_pipeline(tmp_path):
    from magtrack_dask.core.options import PipelineOptions

    wf = workflow_module()
    config = write_config(tmp_path / "t.toml", toml("tcp://127.0.0.1:1", """frames_per_task = 24
max_chunks_per_run = 2
"n auto_conv_multiline_sub_pixel" = 3
radial_profile = { oversample = 2 }
"""))
    tracking = wf.load_config(str(config))["tracking"]
    assert tracking == {"device": "cpu", "frames_per_task": 24, "max_chunks_per_run": 2, "method": "accurate",
                        "pipeline": PipelineOptions(refine_rounds=3, radial_profile={"oversample": 2})}
    with pytest.raises(wf.ConfigError, match=r"\[tracking\] stage option 'radial_profile' must be a dict"):
        wf.load_config(str(write_config(tmp_path / "u.toml", toml("tcp://127.0.0.1:1", "radial_profile = 2"))))
