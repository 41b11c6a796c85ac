"""Shared fixtures and helpers: small simulated archives in every layout, a matching Z-LUT,
one real Dask cluster per test module, and the helpers several test modules use."""

import logging
import os
import stat
import warnings

import numpy as np
import pytest

ROI = 32  # px; small ROIs keep the suite fast
N_FRAMES = 45  # not a multiple of CHUNK_FRAMES: the last chunk is short
CHUNK_FRAMES = 16
Z_RANGE_NM = (800.0, 2400.0)  # rings fit in 32 px ROIs
CALIBRATION_STEPS = np.arange(Z_RANGE_NM[0] - 300, Z_RANGE_NM[1] + 301, 50.0)  # focus steps, nm


@pytest.fixture(scope="session")
def archives(tmp_path_factory):
    """Paths of simulated archives, one per layout (3 beads; 1 for 'yxt')."""
    from magtrack_dask.sim.archives import write_simulated_archive

    root = tmp_path_factory.mktemp("archives")
    paths = {}
    for layout, n_beads in (("tyx", 3), ("tbyx", 3), ("yxt", 1)):
        paths[layout] = str(root / f"{layout}.zarr")
        write_simulated_archive(
            paths[layout], N_FRAMES, n_beads, roi=ROI, layout=layout, chunk_frames=4, shard_frames=CHUNK_FRAMES,
            photons=1e4, seed=7, z_range_nm=Z_RANGE_NM, pixel_size_nm=100.0, frame_rate_hz=50.0,
        )
    return paths


@pytest.fixture(scope="session")
def calibration(tmp_path_factory):
    """A calibration archive of the 3 beads of the 'tyx' archive (same ROI grid), 6 frames per step."""
    from magtrack_dask.sim.archives import write_simulated_calibration

    path = str(tmp_path_factory.mktemp("calibration") / "calibration.zarr")
    write_simulated_calibration(path, CALIBRATION_STEPS, 3, roi=ROI, frames_per_step=6, photons=1e4, seed=5)
    return path


@pytest.fixture(scope="session")
def zlut():
    """A Z-LUT (1 + ROI // 2, n_ref) covering the archives' z range with margin."""
    from magtrack_dask.sim.beads import make_zlut

    # averaged over sub-pixel positions: a LUT of a perfectly centred bead biases z by ~150 nm
    return make_zlut(np.arange(Z_RANGE_NM[0] - 500, Z_RANGE_NM[1] + 501, 50.0), n_pixels=ROI, oversample_frames=16)


@pytest.fixture(scope="session")
def fit_models(calibration):
    """The 'fit' method's image models of the 3 calibration beads (build_zlut), one per bead."""
    from magtrack_dask.zlut import build_zlut

    return build_zlut(calibration, method="fit", frames_per_task=40)


@pytest.fixture(scope="session")
def fit_zlut_path(tmp_path_factory, fit_models, calibration):
    """``fit_models`` saved as a Z-LUT (a Zarr group recording method 'fit')."""
    from magtrack_dask.zlut import save_zlut

    path = str(tmp_path_factory.mktemp("fit-zlut") / "fit.zarr")
    save_zlut(path, fit_models, source=calibration, roi_size_px=ROI)
    return path


@pytest.fixture(scope="module")
def client():
    """start_cluster's LocalCluster: 2 worker processes, 1 thread each, one per test module.

    Every test that needs a cluster uses this one (subprocesses connect to
    ``client.scheduler.address``).
    """
    distributed = pytest.importorskip("distributed")
    from magtrack_dask.cluster import close_client, start_cluster

    c = start_cluster(2, dashboard_address=":0")
    assert isinstance(c.cluster, distributed.LocalCluster)
    assert sorted(c.nthreads().values()) == [1, 1]
    yield c
    close_client(c)


def _simulated_beads(n: int, rng_seed: int, **render_options):
    """(stack, x, y): ``n`` 64 px beads within 3 px of the centre, z 0.8-4 um."""
    from magtrack_dask.sim.beads import render_beads

    rng = np.random.default_rng(rng_seed)
    x = 31.5 + rng.uniform(-3, 3, n)
    y = 31.5 + rng.uniform(-3, 3, n)
    z = rng.uniform(800, 4000, n)
    return render_beads(x, y, z, n_pixels=64, **render_options), x, y


@pytest.fixture(scope="session")
def simulated_beads():
    """The factory ``simulated_beads(n, rng_seed, **render_options)``."""
    return _simulated_beads


@pytest.fixture(autouse=True)
def _package_logger_as_it_was():
    """A CLI main() run in the test process sets up the package's logger (a handler on that
    test's captured stderr, a level): the next test gets it back as it was."""
    logger = logging.getLogger("magtrack_dask")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def no_warnings():
    """Every warning becomes an error inside the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def snapshot(*roots) -> dict:
    """Every path under ``roots`` with its kind, size and mtime."""
    out = {}
    for root in roots:
        root = os.fspath(root)
        if not os.path.lexists(root):
            out[root] = None
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [".", *dirnames, *filenames]:
                path = os.path.normpath(os.path.join(dirpath, name))
                st = os.lstat(path)
                out[path] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return out


def store_bytes(path) -> dict:
    """{relative path: bytes} of every file of a store."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def sabotage_kernel(chunk_mean):
    """On a worker (``client.run``): the kernel raises (a bug, not bad input) on the
    chunk whose pixels have this mean. None undoes it."""
    from magtrack_dask.tracking import task

    crop = task._crop_unpatched = getattr(task, "_crop_unpatched", task.crop_chunk)

    def buggy(block, *args):
        if block.mean() == chunk_mean:
            raise IndexError("a bug in the kernel")
        return crop(block, *args)

    task.crop_chunk = crop if chunk_mean is None else buggy


def periodic_intervals_ms(server) -> dict:
    """The periodic callbacks' intervals of a scheduler or worker, in ms (None: not run)."""
    callbacks = server.periodic_callbacks
    return {name: (callbacks[name].callback_time if name in callbacks else None)
            for name in ("tick", "monitor", "profile", "stealing")}


def worker_intervals(dask_worker) -> dict:
    """On a worker (``client.run``): its housekeeping intervals in ms, memory monitor included."""
    return {**periodic_intervals_ms(dask_worker), "memory": 1000 * dask_worker.memory_manager.memory_monitor_interval}


#: The variables a tracking run computes (x_nm, y_nm are derived).
TRACKED = ("x", "y", "z", "profiles", "flags")


def track_in_memory(path, zlut=None, method="accurate") -> dict:
    """The reference of the Dask layer: every ROI cropped in memory, ``track_stack(method=)`` per bead
    (``'magtrack'``: stack_to_xyzp; ``'accurate'``, the workflow's default; ``'fit'`` with a model,
    or a list of one per bead, as ``zlut``).

    Returns ``{name: (bead, frame[, radius]) ndarray}`` for x, y (full-frame px), z, profiles.
    """
    from magtrack_dask import core
    from magtrack_dask.io.archive import open_archive

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
        lut = zlut[b] if isinstance(zlut, list) or (isinstance(zlut, np.ndarray) and zlut.ndim == 3) else zlut
        # Frames-last C order, as a user of the core would stack them (the tracking crops frame-major)
        x, y, z, p = core.track_stack(np.ascontiguousarray(st, dtype=np.float64), lut, method=method)
        for k, v in zip(out, (x + left, y + top, z, p.T)):
            out[k].append(v)
    return {k: np.stack(v) for k, v in out.items()}


def assert_matches(ds, ref) -> None:
    """Every variable of ``ref`` equals the Dataset's to 1e-9."""
    for k, v in ref.items():
        np.testing.assert_allclose(np.asarray(ds[k]), v, rtol=0, atol=1e-9, err_msg=k)


# -- bad input (tests/bad_input.py and each package's test_bad_input.py) ------------------------


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, zlut):
    """Bad inputs on disk, made once: Z-LUT files and archives that are not quite archives."""
    import zarr

    from magtrack_dask.io.archive import create_archive

    root = tmp_path_factory.mktemp("bad-inputs")
    paths = {}

    def npy(name, arr):
        paths[name] = str(root / f"{name}.npy")
        np.save(paths[name], arr)

    nonmono = zlut.copy()
    nonmono[0, [3, 4]] = nonmono[0, [4, 3]]
    npy("zlut_nonmono", nonmono)
    nan = zlut.copy()
    nan[5, 7] = np.nan
    npy("zlut_nan", nan)
    npy("zlut_small", zlut[:9])
    npy("zlut_two_beads", np.stack([zlut, zlut]))
    paths["zlut_garbage"] = str(root / "zlut_garbage.npy")
    with open(paths["zlut_garbage"], "w") as f:
        f.write("z,profile\n1,2\n")  # a CSV under a .npy name
    paths["xyz"] = str(root / "xyz.zarr")
    create_archive(paths["xyz"], np.ones((4, 40, 40), "uint16"), rois=[[4, 36, 4, 36]])
    zarr.open_group(paths["xyz"], mode="r+").attrs["layout"] = "xyz"
    paths["empty"] = str(root / "empty.zarr")  # an archive whose frames array holds no frames
    create_archive(paths["empty"], np.ones((4, 40, 40), "uint16"), rois=[[4, 36, 4, 36]])
    zarr.open_group(paths["empty"], mode="r+")["frames"].resize((0, 40, 40))
    paths["plain"] = str(root / "plain.zarr")
    zarr.open_group(paths["plain"], mode="w", zarr_format=3)
    paths["folder"] = str(root / "folder")
    os.makedirs(paths["folder"])
    with open(os.path.join(paths["folder"], "notes.txt"), "w") as f:
        f.write("not an archive")
    try:
        import tifffile
    except ImportError:  # the CLI import cases skip
        return paths
    paths["tif"] = str(root / "frames.tif")
    tifffile.imwrite(paths["tif"], np.ones((4, 64, 64), "uint16"), photometric="minisblack")
    for name, rois in (("outside", [[0, 16, 0, 16], [56, 72, 0, 16]]), ("unequal", [[0, 16, 0, 16], [0, 8, 0, 8]])):
        paths[f"rois_{name}"] = str(root / f"rois_{name}.csv")
        np.savetxt(paths[f"rois_{name}"], rois, fmt="%d", delimiter=",", header="top,bottom,left,right", comments="")
    return paths


@pytest.fixture
def ctx(tmp_path, archives, zlut, inputs):
    from tests.bad_input import Ctx  # it imports this module

    ws = tmp_path / "ws"
    (ws / "folder").mkdir(parents=True)
    (ws / "folder" / "notes.txt").write_text("keep me")
    (ws / "file.txt").write_text("not a store")
    return Ctx(str(ws), archives, zlut, inputs)


@pytest.fixture
def unchanged(ctx, inputs, archives):
    """Assert after the test that nothing was created or changed anywhere a case could write."""
    roots = [ctx.ws, os.path.dirname(inputs["xyz"]), *archives.values()]
    before = snapshot(*roots)
    yield
    after = snapshot(*roots)
    added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), f"created {added}, removed {removed}, changed {changed}"
