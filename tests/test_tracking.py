"""The Dask layer (magtrack_dask.tracking) on real clusters, archives and stores."""

import json
import os
import subprocess
import sys
import time

import dask
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import LocalStore, WrapperStore

import magtrack_dask
from magtrack_dask._backend import check_cupy
from magtrack_dask.cluster import start_cluster
from magtrack_dask.io.archive import open_archive
from magtrack_dask.tracking import FLAG_BITS, track, write_results

from conftest import N_FRAMES, ROI

distributed = pytest.importorskip("distributed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARS = ("x", "y", "z", "profiles", "flags")


def _core():
    from magtrack_dask import core

    return core


def in_memory(path, zlut=None):
    """Reference: crop every ROI in memory and run stack_to_xyzp per bead."""
    a = open_archive(path)
    frames = a.data.compute()
    rois = a.rois if a.rois is not None else np.array([[0, ROI, 0, ROI]])
    out = {k: [] for k in ("x", "y", "z", "profiles")}
    for b, (top, bottom, left, right) in enumerate(rois):
        if a.layout == "tyx":
            st = frames[:, top:bottom, left:right].transpose(1, 2, 0)
        elif a.layout == "tbyx":
            st = frames[:, b].transpose(1, 2, 0)
        else:
            st, top, left = frames, 0, 0
        lut = zlut[b] if zlut is not None and zlut.ndim == 3 else zlut
        # Frames-last C order, as a user of the core would stack them (the tracking crops frame-major)
        x, y, z, p = _core().stack_to_xyzp(np.ascontiguousarray(st, dtype=np.float64), lut)
        for k, v in zip(out, (x + left, y + top, z, p.T)):
            out[k].append(v)
    return {k: np.stack(v) for k, v in out.items()}


def assert_matches(ds, ref):
    for k, v in ref.items():
        np.testing.assert_allclose(np.asarray(ds[k]), v, rtol=0, atol=1e-9, err_msg=k)


# -- values --------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["tyx", "tbyx", "yxt"])
def test_equals_in_memory_core_on_local_cluster(client, archives, zlut, layout):
    # 10 frames/task rounds up to 16 (one Zarr chunk): 16, 16, 13 frames
    ds = track(archives[layout], zlut, frames_per_task=10)
    assert ds.x.chunks == ((3 if layout != "yxt" else 1,), (16, 16, 13))
    res = client.compute(ds[list(VARS)]).result()
    assert_matches(res, in_memory(archives[layout], zlut))
    # close to the truth, in full-frame pixels and nm
    g = zarr.open_group(archives[layout], mode="r")
    assert np.abs(res.x.values - g["truth_x"][...]).max() < 0.1
    assert np.abs(res.y.values - g["truth_y"][...]).max() < 0.1
    assert np.abs(res.z.values - g["truth_z"][...]).max() < 300  # swapped beads would be ~1 um off


def test_per_bead_zlut_and_task_size_independence(archives, zlut):
    luts = np.stack([zlut, zlut, zlut])
    luts[1, 0] += 100.0  # bead 1's LUT has a shifted z axis
    with dask.config.set(scheduler="sync"):
        a = track(archives["tyx"], luts).compute()
        lazy = track(archives["tyx"], luts, frames_per_task=20)  # rounded up to 2 Zarr chunks
        assert lazy.x.chunks[1] == (32, 13)
        b = lazy.compute()
    assert_matches(b, {k: a[k].values for k in VARS})  # batch size changes only rounding
    assert_matches(a, in_memory(archives["tyx"], luts))
    np.testing.assert_allclose(a.z.values[1] - 100.0, in_memory(archives["tyx"], zlut)["z"][1], atol=1e-6)
    assert a.attrs["zlut_kind"] == "per-bead"


def test_numpy_and_dask_sources(archives, zlut):
    arch = open_archive(archives["tyx"])
    frames = arch.data.compute()
    with dask.config.set(scheduler="sync"):
        ref = track(LocalStore(archives["tyx"], read_only=True), zlut).compute()  # a Store works too
        from_np = track(frames, zlut, rois=arch.rois, frames_per_task=7).compute()  # 3-D + rois -> tyx
        from_da = track(arch.data.rechunk((11, 20, 30)), zlut, rois=arch.rois).compute()
        yxt = track(open_archive(archives["yxt"]).data.compute(), zlut)  # 3-D, no rois -> yxt
    assert yxt.attrs["layout"] == "yxt"
    for got in (from_np, from_da):
        assert got.attrs["layout"] == "tyx" and got.attrs["source"].startswith("in-memory")
        assert_matches(got, {k: ref[k].values for k in VARS})


def test_stage_options_use_advanced_pipeline(archives):
    opts = {"n auto_conv_multiline_sub_pixel": 2, "radial_profile": {"oversample": 2}}
    with dask.config.set(scheduler="sync"):
        ds = track(archives["tbyx"], **opts)
        res = ds.compute()
    assert ds.sizes["radius"] == ROI  # oversampled x2
    np.testing.assert_allclose(ds.radius.values[:3], [0, 0.5, 1.0])
    arch = open_archive(archives["tbyx"])  # its ROI table gives full-frame offsets
    st = np.ascontiguousarray(arch.data[:, 1].compute().transpose(1, 2, 0), dtype=float)
    x, y, z, p = _core().stack_to_xyzp_advanced(st, None, **opts)
    np.testing.assert_allclose(res.x.values[1], np.asarray(x) + arch.rois[1, 2], atol=1e-9)
    np.testing.assert_allclose(res.profiles.values[1], np.asarray(p).T, atol=1e-9)
    assert json.loads(ds.attrs["parameters"])["stage_options"] == opts
    assert np.isnan(res.z.values).all()


def test_flags(archives, zlut):
    arch = open_archive(archives["tbyx"])
    frames = arch.data.compute()
    frames[5, 2, 3, 4] = np.iinfo(np.uint16).max  # saturate bead 2, frame 5
    with dask.config.set(scheduler="sync"):
        zt = arch.group["truth_z"][...]
        window = np.abs(zlut[0] - np.median(zt)) <= 200  # a narrow LUT: most z lie beyond its ends
        f = track(frames, zlut[:, window], layout="tbyx").flags.values
        g = track(frames, layout="tbyx").flags.values
        h = track(frames, layout="tbyx", edge_margin_px=ROI / 2).flags.values  # every centre is "near"
    assert f.dtype == np.uint8
    sat = (f & FLAG_BITS["saturated"]) > 0
    assert sat[2, 5] and sat.sum() == 1
    assert ((f & FLAG_BITS["z_at_lut_edge_or_nan"]) > 0).any()
    assert not ((g & FLAG_BITS["z_at_lut_edge_or_nan"]) > 0).any()  # no LUT, no z flag
    assert not ((g & FLAG_BITS["near_roi_edge"]) > 0).any()  # beads sit within 1.5 px of the centre
    assert ((h & FLAG_BITS["near_roi_edge"]) > 0).all()
    assert not (g & FLAG_BITS["xy_not_found"]).any()


# -- reads, writes, schema --------------------------------------------------------


class CountingStore(WrapperStore):
    """Logs every get() key to a file (works from any worker process)."""

    def __init__(self, store, log):
        super().__init__(store)
        self.log = str(log)

    def _with_store(self, store):
        return type(self)(store, self.log)

    async def get(self, key, prototype, byte_range=None):
        with open(self.log, "a") as f:
            f.write(key + "\n")
        return await super().get(key, prototype, byte_range)


def test_each_chunk_read_once_and_results_schema(client, archives, zlut, tmp_path):
    log = tmp_path / "reads.log"
    store = CountingStore(LocalStore(archives["tyx"], read_only=True), log)
    ds = track(zarr.open_group(store, mode="r"), zlut)
    log.write_text("")  # count only the job's reads, not the metadata
    out = tmp_path / "results.zarr"
    write_results(ds, out)
    reads = [k for k in log.read_text().split() if k.startswith("frames/c/")]
    assert sorted(reads) == [f"frames/c/{i}/0/0" for i in range(3)]  # 3 chunks, once each

    with pytest.raises(FileExistsError, match="overwrite"):
        write_results(ds, out)
    res = xr.open_zarr(out)
    assert res.x.chunks == ((3,), (16, 16, 13))  # frame chunks as in the input
    assert set(res.dims) == {"bead", "frame", "radius"}
    assert res.profiles.dims == ("bead", "frame", "radius")
    assert {"x", "y", "z", "x_nm", "y_nm", "profiles", "flags"} <= set(res.data_vars)
    for name, var in {**res.data_vars, **res.coords}.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    assert res.x.attrs["units"] == "px" and res.x_nm.attrs["units"] == "nm" and res.z.attrs["units"] == "nm"
    assert res.flags.dtype == np.uint8 and res.flags.attrs["flag_masks"] == [1, 2, 4, 8, 16]
    np.testing.assert_allclose(res.time.values, np.arange(N_FRAMES) / 50.0)
    np.testing.assert_array_equal(res.roi_left.values, open_archive(archives["tyx"]).rois[:, 2])
    assert res.attrs["magtrack_dask_version"] == magtrack_dask.__version__
    assert res.attrs["zlut_source"] == "array" and res.attrs["source"].endswith("tyx.zarr")
    params = json.loads(res.attrs["parameters"])
    assert params["layout"] == "tyx" and params["edge_margin_px"] == ROI / 8
    np.testing.assert_allclose(res.x_nm.values, res.x.values * 100.0)
    assert_matches(res, in_memory(archives["tyx"], zlut))


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
            res = c.compute(track(archives["tbyx"], zlut)[list(VARS)]).result()
            assert len(c.scheduler_info()["workers"]) == 2
        assert_matches(res, in_memory(archives["tbyx"], zlut))
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs[::-1]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


# -- bad input ------------------------------------------------------------------------


def test_bad_input_messages(archives, zlut):
    frames = open_archive(archives["tyx"]).data
    rois = open_archive(archives["tyx"]).rois
    with pytest.raises(ValueError, match="unknown layout 'txy'"):
        track(frames, rois=rois, layout="txy")
    with pytest.raises(ValueError, match="layout='tbyx' does not match"):
        track(archives["tyx"], layout="tbyx")
    with pytest.raises(ValueError, match=r"rois: ROI 1 \[8, 40, 108, 140\] lies outside the frame"):
        track(frames, rois=rois + [[0, 0, 0, 0], [0, 0, 60, 60], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="rois must all have the same size"):
        track(frames, rois=[[0, 32, 0, 32], [40, 56, 40, 56]])
    with pytest.raises(ValueError, match="rois is required"):
        track(frames, layout="tyx")
    with pytest.raises(ValueError, match="zlut holds 2 per-bead tables but the source has 3 beads"):
        track(archives["tyx"], np.stack([zlut, zlut]))
    with pytest.raises(ValueError, match="zlut has 10 profile bins"):
        track(archives["tyx"], zlut[:11])
    with pytest.raises(ValueError, match="device must be"):
        track(archives["tyx"], device="tpu")


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_gpu_without_cupy_names_device(archives):
    with pytest.raises(RuntimeError, match="device='gpu'"):
        track(archives["tyx"], device="gpu")


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_gpu_is_checked_on_the_workers_of_a_client(client, archives):
    # The workers run the tasks, so they are asked, not the process that builds the graph.
    with pytest.raises(RuntimeError, match=r"on every worker; none on tcp://127\.0\.0\.1:\d+, tcp://"):
        track(archives["tyx"], device="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
def test_gpu_matches_cpu(archives, zlut):
    with dask.config.set(scheduler="sync"):
        gpu = track(archives["tyx"], zlut, device="gpu")
        assert isinstance(gpu.x.data._meta, np.ndarray)  # Dask arrays stay NumPy-typed
        gpu = gpu.compute()
        cpu = track(archives["tyx"], zlut).compute()
    np.testing.assert_allclose(gpu.x.values, cpu.x.values, atol=1e-6)
    np.testing.assert_allclose(gpu.y.values, cpu.y.values, atol=1e-6)
    np.testing.assert_allclose(gpu.z.values, cpu.z.values, atol=1e-3)
    np.testing.assert_allclose(gpu.profiles.values, cpu.profiles.values, rtol=1e-6)
    np.testing.assert_array_equal(gpu.flags.values, cpu.flags.values)


@pytest.mark.parametrize("photons", [None, 300.0])
def test_coarse_symmetry_screen_decides_like_the_full_score(photons):
    from magtrack_dask import core
    from magtrack_dask.sim.beads import render_beads
    from magtrack_dask.tracking import _lost_beads, _radial_symmetry

    # Beads drifting out of a 64 px ROI (cut from 160 px frames), then ROIs of background only.
    rng = np.random.default_rng(3)
    n = 240
    x0 = np.linspace(32, -24, n) + 48
    beads = render_beads(x0, 80 + rng.uniform(-3, 3, n), rng.uniform(300, 5000, n), n_pixels=160,
                         photons=photons, seed=1)[48:112, 48:112]
    empty = render_beads(np.full(40, 5.0), np.full(40, 5.0), np.full(40, 1000.0), n_pixels=160,
                         photons=photons or 1000.0, seed=2)[90:154, 90:154]
    stack = np.concatenate([beads, empty], axis=2)
    x, y = core.stack_to_xyzp(stack)[:2]
    full = _radial_symmetry(np, stack, x, y)
    # The tracking crops frame-major: the (roi, roi, n) view of an (n, roi, roi) buffer scores alike.
    by_frame = np.moveaxis(np.ascontiguousarray(np.moveaxis(stack, 2, 0)), 0, 2)
    np.testing.assert_allclose(_radial_symmetry(np, by_frame, x, y), full, rtol=0, atol=1e-12)
    some = np.arange(3, n + 40, 7)
    np.testing.assert_allclose(_radial_symmetry(np, by_frame, x[some], y[some], images=some), full[some], rtol=0,
                               atol=1e-12)
    for threshold in (0.3, 0.5, 0.8):
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(_lost_beads(np, stack, x, y, threshold), full < threshold)
            np.testing.assert_array_equal(_lost_beads(np, by_frame, x, y, threshold), full < threshold)
    assert 0 < (full < 0.5).sum() < n + 40  # both kinds present


def test_saturation_flags_match_a_per_roi_maximum():
    from magtrack_dask.tracking import _saturated

    rng = np.random.default_rng(0)
    rois = np.array([[4, 20, 2, 18], [4, 20, 22, 38], [24, 40, 10, 26]])
    block = rng.integers(0, 60000, (40, 48, 44), dtype=np.uint16)
    # Hot pixels anywhere in frames 6..39; in frames 3, 4, 5 only above, between and below the ROIs.
    for f, yy, xx in zip(rng.integers(6, 40, 30), rng.integers(0, 48, 30), rng.integers(0, 44, 30)):
        block[f, yy, xx] = 65535
    block[3, 2, 5] = block[4, 10, 20] = block[5, 45, 3] = 65535

    def per_roi(frames):
        return np.stack([frames[:, t:b, l:r].max(axis=(1, 2)) == 65535 for t, b, l, r in rois])

    want = per_roi(block)
    assert want.sum() > 5 and not want[:, :6].any()
    np.testing.assert_array_equal(_saturated(block, "tyx", rois), want)
    flipped = block[:, ::-1]  # a chunk that is not C-contiguous
    np.testing.assert_array_equal(_saturated(flipped, "tyx", rois), per_roi(flipped))
    assert not _saturated(block.astype(np.float32), "tyx", rois).any()


def test_screen_sample_from_camera_integers_scores_like_the_float_stack():
    from magtrack_dask import core
    from magtrack_dask.sim.beads import render_beads
    from magtrack_dask.tracking import _crop, _lost_beads, _radial_symmetry, _ring_scores, _screen_sample

    # tyx frames of two beads, one drifting out of its ROI; the same frames as tbyx
    rng = np.random.default_rng(5)
    n = 120
    frames = np.concatenate([
        render_beads(np.linspace(40, 79, n), 40 + rng.uniform(-2, 2, n), rng.uniform(300, 5000, n), n_pixels=80,
                     photons=300.0, seed=4, dtype="float64")[:, :, None],
        render_beads(40 + rng.uniform(-2, 2, n), 40 + rng.uniform(-2, 2, n), rng.uniform(300, 5000, n),
                     n_pixels=80, photons=300.0, seed=5, dtype="float64")[:, :, None],
    ], axis=2)  # (80, 80, 2, n)
    frames = np.clip(np.rint(frames), 0, 65535).astype(np.uint16)
    block = np.zeros((n, 80, 160), dtype=np.uint16)
    block[:, :, :80], block[:, :, 80:] = frames[:, :, 0].transpose(2, 0, 1), frames[:, :, 1].transpose(2, 0, 1)
    rois = np.array([[8, 72, 8, 72], [8, 72, 88, 152]])
    stack = _crop(block, "tyx", rois, np.float64)
    x, y = core.stack_to_xyzp(np.ascontiguousarray(stack))[:2]
    x[3] = np.nan
    sample = _screen_sample(block, "tyx", rois)
    assert sample.dtype == np.uint16 and sample.shape == (2 * n, 16, 16)
    tbyx = np.stack([block[:, t:b, l:r] for t, b, l, r in rois], axis=1)
    np.testing.assert_array_equal(_screen_sample(tbyx, "tbyx", None), sample)
    np.testing.assert_array_equal(_crop(tbyx, "tbyx", None, np.float64), stack)
    assert _screen_sample(block.astype(np.float32), "tyx", rois) is None
    want = _radial_symmetry(np, stack, x, y, step=4)
    got = _ring_scores(np, sample, x, y, 64, 4)  # one bincount for counts and sums (exact integer sums)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.isnan(got[3]) and np.nanmin(want) < 0.5 < np.nanmax(want)
    for threshold in (0.3, 0.5, 0.8):
        np.testing.assert_array_equal(_lost_beads(np, stack, x, y, threshold, sample),
                                      _lost_beads(np, stack, x, y, threshold))
