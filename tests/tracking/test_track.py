"""track(): values on real clusters, per-bead Z-LUTs, task sizes, pipeline options, the GPU."""

import json
import os
import subprocess
import sys
import time

import dask
import numpy as np
import pytest

from magtrack_dask import core
from magtrack_dask._backend import check_cupy
from magtrack_dask.cluster import start_cluster
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.io.archive import open_archive
from magtrack_dask.tracking import track

from tests.conftest import ROI, TRACKED, assert_matches, track_in_memory

distributed = pytest.importorskip("distributed")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_equals_in_memory_core_on_local_cluster(client, archives, zlut, layout):
    import zarr

    # 10 frames/task rounds up to 16 (one Zarr chunk): 16, 16, 13 frames
    ds = track(archives[layout], zlut, frames_per_task=10)
    assert ds.x.chunks == ((3 if layout != "yxt" else 1,), (16, 16, 13))
    res = client.compute(ds[list(TRACKED)]).result()
    assert_matches(res, track_in_memory(archives[layout], zlut))
    # close to the truth, in full-frame pixels and nm
    g = zarr.open_group(archives[layout], mode="r")
    assert np.abs(res.x.values - g["truth_x"][...]).max() < 0.1
    assert np.abs(res.y.values - g["truth_y"][...]).max() < 0.1
    assert np.abs(res.z.values - g["truth_z"][...]).max() < 300  # swapped beads would be ~1 um off


@pytest.mark.parametrize("method", ["accurate", "magtrack"])
def test_per_bead_zlut_and_task_size_independence(archives, zlut, method):
    luts = np.stack([zlut, zlut, zlut])
    luts[1, 0] += 100.0  # bead 1's LUT has a shifted z axis
    with dask.config.set(scheduler="sync"):
        a = track(archives["tyx"], luts, method=method).compute()
        lazy = track(archives["tyx"], luts, frames_per_task=20, method=method)  # rounded up to 2 Zarr chunks
        assert lazy.x.chunks[1] == (32, 13)
        b = lazy.compute()
    assert_matches(b, {k: a[k].values for k in TRACKED})  # batch size changes only rounding
    assert_matches(a, track_in_memory(archives["tyx"], luts, method))
    shared = track_in_memory(archives["tyx"], zlut, method)["z"][1]
    np.testing.assert_allclose(a.z.values[1] - 100.0, shared, atol=1e-6)
    assert np.isfinite(shared).mean() > 0.9
    assert a.attrs["zlut_kind"] == "per-bead" and a.attrs["method"] == method


def test_fit_method_tracks_to_the_truth_with_the_cores_numbers(client, archives, fit_models):
    """method='fit' with per-bead models (from the calibration of the 'tyx' beads) and a shared one ('yxt')."""
    import zarr

    ds = track(archives["tyx"], fit_models, method="fit", frames_per_task=10)
    assert ds.profiles.shape == (3, ds.sizes["frame"], ROI // 2)  # the schema's bins: radial_profile's
    res = client.compute(ds[list(TRACKED)]).result()
    assert res.attrs["method"] == "fit" and res.attrs["zlut_kind"] == "per-bead"
    assert_matches(res, track_in_memory(archives["tyx"], fit_models, method="fit"))
    assert (res.flags.values == 0).all()
    g = zarr.open_group(archives["tyx"], mode="r")
    assert np.abs(res.x.values - g["truth_x"][...]).max() < 0.02  # px; 0.003 px rms when written
    assert np.abs(res.y.values - g["truth_y"][...]).max() < 0.02
    # 1e4 photons per pixel give ~2 nm rms (the Cramer-Rao bound's order); a frame fitted to a
    # wrong plane or a swapped bead's model would be off by far more than half a 50 nm step.
    err = res.z.values - g["truth_z"][...]
    assert np.sqrt(np.mean(err**2)) < 10 and np.abs(err).max() < 25, err
    shared = track(archives["yxt"], fit_models[0], method="fit").compute()
    assert shared.attrs["zlut_kind"] == "shared"
    assert_matches(shared, track_in_memory(archives["yxt"], fit_models[0], method="fit"))


def test_method_defaults_to_accurate_and_to_magtrack_with_stage_options(archives):
    assert track(archives["yxt"]).attrs["method"] == "accurate"
    assert track(archives["yxt"], pipeline={}).attrs["method"] == "magtrack"
    assert track(archives["yxt"], pipeline=PipelineOptions(), method="accurate").attrs["method"] == "accurate"
    params = json.loads(track(archives["yxt"], method="magtrack").attrs["parameters"])
    assert params["method"] == "magtrack" and params["pipeline"] == "stack_to_xyzp"


@pytest.mark.parametrize("given", ["dict", "options"])
def test_pipeline_options_run_the_advanced_pipeline(archives, given):
    opts = {"n auto_conv_multiline_sub_pixel": 2, "radial_profile": {"oversample": 2}}
    pipeline = opts if given == "dict" else PipelineOptions(refine_rounds=2, radial_profile={"oversample": 2})
    with dask.config.set(scheduler="sync"):
        ds = track(archives["tbyx"], pipeline=pipeline)
        res = ds.compute()
    assert ds.sizes["radius"] == ROI  # oversampled x2
    np.testing.assert_allclose(ds.radius.values[:3], [0, 0.5, 1.0])
    arch = open_archive(archives["tbyx"])  # its ROI table gives full-frame offsets
    st = np.ascontiguousarray(arch.data[:, 1].compute().transpose(1, 2, 0), dtype=float)
    x, y, z, p = core.stack_to_xyzp_advanced(st, None, **opts)
    np.testing.assert_allclose(res.x.values[1], np.asarray(x) + arch.rois[1, 2], atol=1e-9)
    np.testing.assert_allclose(res.profiles.values[1], np.asarray(p).T, atol=1e-9)
    params = json.loads(ds.attrs["parameters"])
    assert params["stage_options"] == opts and params["pipeline"] == "stack_to_xyzp_advanced"
    assert np.isnan(res.z.values).all()


def test_default_options_run_the_plain_pipeline(archives):
    # Options equal to the defaults are the defaults: the same graph as none at all.
    plain = track(archives["yxt"], method="magtrack")
    same = track(archives["yxt"], pipeline={"n auto_conv_multiline_sub_pixel": 5, "radial_profile": {}})
    assert json.loads(same.attrs["parameters"])["pipeline"] == "stack_to_xyzp"
    assert same.x.data.name == plain.x.data.name


def test_options_are_checked_before_any_task(archives):
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'gpu'; got 'tpu'"):
        track(archives["tyx"], device="tpu")
    with pytest.raises(ValueError, match=r"min_symmetry must lie in \[0, 1\]; got 1\.5"):
        track(archives["tyx"], min_symmetry=1.5)
    with pytest.raises(ValueError, match="unknown stage option 'radial'"):
        track(archives["tyx"], pipeline={"radial": {"oversample": 2}})
    with pytest.raises(TypeError, match="stage option 'center_of_mass': got an unexpected keyword argument 'bg'"):
        track(archives["tyx"], pipeline={"center_of_mass": {"bg": "mean"}})
    with pytest.raises(ValueError, match="pipeline must be a PipelineOptions or a dict"):
        track(archives["tyx"], pipeline=["radial_profile"])
    with pytest.raises(ValueError, match="oversample must be an integer >= 1, got 0"):
        track(archives["tyx"], pipeline={"radial_profile": {"oversample": 0}})
    with pytest.raises(ValueError, match="need images of even width; got 33 px"):
        track(np.ones((33, 33, 4)), pipeline={"use fft_profile": True})
    with pytest.raises(TypeError):  # stage options are no longer keyword arguments of track
        track(archives["tyx"], radial_profile={"oversample": 2})


# -- a cluster started from the command line --------------------------------------------


def test_command_line_cluster(archives, zlut, tmp_path):
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    bindir = os.path.dirname(sys.executable)
    procs = []
    try:
        procs.append(subprocess.Popen(
            [os.path.join(bindir, "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen(
                [os.path.join(bindir, "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard", "--memory-limit", "2GiB"],
                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with start_cluster(scheduler_address=address) as c:
            c.wait_for_workers(2, timeout=60)
            res = c.compute(track(archives["tbyx"], zlut)[list(TRACKED)]).result()
            assert len(c.scheduler_info()["workers"]) == 2
        assert_matches(res, track_in_memory(archives["tbyx"], zlut))
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs[::-1]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# -- the GPU ---------------------------------------------------------------------------------


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_gpu_without_cupy_names_device(archives):
    with pytest.raises(RuntimeError, match="device='gpu'"):
        track(archives["tyx"], device="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_gpu_matches_cpu(archives, zlut, layout):
    luts = np.stack([zlut] * 3) if layout == "tbyx" else zlut  # per-bead lookups on the GPU too
    with dask.config.set(scheduler="sync"):
        gpu = track(archives[layout], luts, device="gpu")
        assert isinstance(gpu.x.data._meta, np.ndarray)  # Dask arrays stay NumPy-typed
        gpu = gpu.compute()
        cpu = track(archives[layout], luts).compute()
    np.testing.assert_allclose(gpu.x.values, cpu.x.values, atol=1e-6)
    np.testing.assert_allclose(gpu.y.values, cpu.y.values, atol=1e-6)
    np.testing.assert_allclose(gpu.z.values, cpu.z.values, atol=1e-3)
    np.testing.assert_allclose(gpu.profiles.values, cpu.profiles.values, rtol=1e-6)
    np.testing.assert_array_equal(gpu.flags.values, cpu.flags.values)
