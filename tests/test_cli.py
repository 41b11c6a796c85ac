"""The magtrack-dask command, run as a subprocess: exit codes, messages, every subcommand."""

import json
import logging
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from magtrack_dask._backend import check_cupy
from magtrack_dask.cli import main
from magtrack_dask.io.archive import open_archive
from magtrack_dask.io.rois import read_rois
from magtrack_dask.sim.archives import write_simulated_archive, write_simulated_calibration
from magtrack_dask.zlut import load_zlut, save_zlut

from tests.bad_input import tif
from tests.conftest import N_FRAMES, ROI, Z_RANGE_NM, sabotage_kernel, worker_intervals

distributed = pytest.importorskip("distributed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "magtrack_dask.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env=None if env is None else {**os.environ, **env})


def assert_usage_error(res, pattern):
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("magtrack-dask: error: "), res.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def scheduler(client):
    """The address of the module's cluster, for ``--scheduler``."""
    return client.scheduler.address


@pytest.fixture(scope="module")
def zlut_path(tmp_path_factory, zlut):
    path = str(tmp_path_factory.mktemp("cli-zlut") / "zlut.zarr")
    save_zlut(path, zlut)
    return path


# -- usage -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["demo"], ["track"], ["zlut"], ["zlut", "build"], ["import"], ["info"],
                                  ["find-beads"], ["analyze"]])
def test_help_everywhere(args):
    res = cli(*args, "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: magtrack-dask"), res.stderr
    assert "--help" in res.stdout


def test_console_script_and_version():
    script = os.path.join(os.path.dirname(sys.executable), "magtrack-dask")
    if not os.path.exists(script):
        pytest.skip("package not installed with its console script")
    res = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and re.match(r"magtrack-dask \d", res.stdout)


def test_bad_usage_exits_2_with_one_message(archives, tmp_path, zlut):
    arch = archives["tyx"]
    out = tmp_path / "r.zarr"
    assert_usage_error(cli(), "a command is needed")
    assert_usage_error(cli("frobnicate"), "invalid choice: 'frobnicate'")
    assert_usage_error(cli("track"), "required: ARCHIVE, --out")
    assert_usage_error(cli("track", arch, "--out", out, "--resume", "--overwrite"), "not allowed with argument")
    assert_usage_error(cli("track", arch, "--out", out, "--workers", "0"),
                       r"argument --workers: value must be an integer >= 1, got 0")
    assert_usage_error(cli("track", arch, "--out", out, "--workers", "two"),
                       r"argument --workers: value must be an integer >= 1, got 'two'")
    assert_usage_error(cli("track", tmp_path / "missing.zarr", "--out", out), "archive not found")
    assert_usage_error(cli("track", arch, "--out", out, "--zlut", tmp_path / "nope.zarr"), "Z-LUT not found")
    np.save(tmp_path / "small.npy", zlut[:9])  # 8 bins, the ROIs give 16
    assert_usage_error(cli("track", arch, "--out", out, "--zlut", tmp_path / "small.npy"),
                       "zlut has 8 profile bins but the profiles of 32 px ROIs have 16")
    assert_usage_error(cli("demo", "--roi", "8"), "at least 16 px")
    assert_usage_error(cli("info", tmp_path / "missing"), "not found")
    (tmp_path / "empty").mkdir()
    assert_usage_error(cli("info", tmp_path / "empty"), "is not an archive, results store or Z-LUT: not a Zarr store")
    assert_usage_error(cli("zlut"), "needs an action: build")
    assert_usage_error(cli("zlut", "build", arch, "--out", tmp_path / "z.zarr"),
                       "no 'calibration_z' array: not a calibration archive")
    assert not out.exists()


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_gpu_without_gpu_is_bad_usage(archives, tmp_path):
    assert_usage_error(cli("track", archives["yxt"], "--out", tmp_path / "r.zarr", "--gpu"), "--gpu needs CuPy")


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_gpu_on_a_remote_cluster_is_checked_on_its_workers(archives, scheduler, tmp_path):
    out = tmp_path / "r.zarr"
    res = cli("track", archives["yxt"], "--out", out, "--gpu", "--scheduler", scheduler)
    assert_usage_error(res, r"CuPy and a working CUDA GPU on every worker; none on tcp://127\.0\.0\.1:\d+")
    assert not out.exists()


# -- track ---------------------------------------------------------------------------------


def test_track_refuse_resume_overwrite(archives, zlut_path, scheduler, tmp_path):
    arch, out = archives["tbyx"], tmp_path / "r.zarr"
    res = cli("track", arch, "--out", out, "--zlut", zlut_path, "--workers", "1", "--plots", tmp_path / "png")
    assert res.returncode == 0, res.stderr
    assert "dashboard: http" in res.stdout
    assert re.search(r"3 chunks computed, 0 already done, 3 in all \(45 frames\), complete", res.stdout)
    assert "tracking [" in res.stderr and "100.0% 3/3 chunks" in res.stderr  # the progress bar
    assert sorted(os.listdir(tmp_path / "png")) == ["traces.png", "xy.png", "zlut.png"]
    assert_usage_error(cli("track", arch, "--out", out, "--zlut", zlut_path), "complete.*--resume.*--overwrite")
    res = cli("track", arch, "--out", out, "--zlut", zlut_path, "--resume")
    assert res.returncode == 0 and "0 chunks computed, 3 already done" in res.stdout
    assert "dashboard" not in res.stdout  # nothing to do: no cluster started
    assert_usage_error(cli("track", arch, "--out", out, "--resume"),
                       r"other inputs or parameters \(.*zlut_sha256.*\); pass --overwrite")
    res = cli("track", arch, "--out", out, "--overwrite", "--frames-per-task", 32, "--scheduler", scheduler,
              "--no-progress")
    assert res.returncode == 0 and "2 chunks computed" in res.stdout and res.stderr == ""


def test_max_chunks_then_resume(archives, scheduler, tmp_path):
    out = tmp_path / "r.zarr"
    res = cli("track", archives["yxt"], "--out", out, "--max-chunks", 2, "--scheduler", scheduler, "--no-progress")
    assert res.returncode == 0 and "incomplete (2/3)" in res.stdout and "--resume" in res.stdout
    res = cli("info", out)
    assert "finished chunks: 2/3 (incomplete, missing chunks [2])" in res.stdout
    res = cli("track", archives["yxt"], "--out", out, "--resume", "--scheduler", scheduler, "--no-progress")
    assert "1 chunks computed, 2 already done" in res.stdout


def test_job_failure_exits_1(client, scheduler, tmp_path):
    arch = str(tmp_path / "a.zarr")
    write_simulated_archive(arch, 32, 1, roi=ROI, layout="yxt", shard_frames=16, z_range_nm=Z_RANGE_NM)
    # an error in the code, not in the data (unreadable input exits 3: tests/reliability/test_faults.py)
    client.run(sabotage_kernel, float(zarr.open_group(arch, mode="r")["frames"][:, :, 16:32].mean()))
    try:
        res = cli("track", arch, "--out", tmp_path / "r.zarr", "--scheduler", scheduler, "--no-progress")
    finally:
        client.run(sabotage_kernel, None)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert re.search(r"magtrack-dask: job failed: chunk 1 \(frames 16-31\) failed", res.stderr)


@pytest.mark.parametrize(("where", "exc"), [
    ("magtrack_dask.jobs.prepare.plan_tracking", ValueError),  # inside prepare_job, where input errors become JobError
    ("magtrack_dask.jobs.prepare.create_results_store", TypeError),
    ("magtrack_dask.jobs.runner.consolidate", ValueError),  # after the chunks are written
])
def test_a_bug_exits_1_with_its_traceback_logged(where, exc, archives, scheduler, tmp_path, monkeypatch, capsys,
                                                 caplog):
    """A ValueError or TypeError of a bug is not bad input: exit 1, and the traceback in the log."""

    def buggy(*args, **kwargs):
        raise exc("a bug deep in the job")

    monkeypatch.setattr(where, buggy)
    code = main(["track", archives["yxt"], "--out", str(tmp_path / "r.zarr"), "--scheduler", scheduler,
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"magtrack-dask: failed: {exc.__name__}: a bug deep in the job" in err
    assert "Traceback (most recent call last)" in err and "in buggy\n    raise exc(" in err
    (record,) = [r for r in caplog.records if r.name == "magtrack_dask.cli" and r.levelno >= logging.ERROR]
    assert record.exc_info[0] is exc


def test_verbose_logs_the_traceback_of_bad_input(archives, tmp_path, capsys):


    argv = ["track", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "r.zarr")]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["-v", *argv]) == 2
    err = capsys.readouterr().err
    assert "magtrack-dask: error: archive not found" in err and "Traceback" in err and "JobError" in err


def test_unreachable_scheduler_is_bad_usage(archives, tmp_path):
    res = cli("track", archives["yxt"], "--out", tmp_path / "r.zarr", "--scheduler", "tcp://127.0.0.1:9",
              env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
    assert_usage_error(res, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")


# -- zlut, import, info ----------------------------------------------------------------------


def test_zlut_build_then_track_and_info(archives, scheduler, tmp_path):
    cal = str(tmp_path / "cal.zarr")
    write_simulated_calibration(cal, np.arange(500.0, 2701.0, 100.0), 3, roi=ROI, frames_per_step=3, seed=2)
    lut = tmp_path / "zlut.zarr"
    res = cli("zlut", "build", cal, "--out", lut, "--png", tmp_path / "zlut.png", "--scheduler", scheduler)
    assert res.returncode == 0, res.stderr
    assert "Z-LUT of 3 beads, 16 radial bins, 23 steps from z = 500.0 to 2700.0 nm" in res.stdout
    arr, attrs = load_zlut(lut)
    assert arr.shape == (3, 17, 23) and attrs["source"] == cal and attrs["roi_size_px"] == ROI
    assert attrs["method"] == "accurate"  # the default; tracking with --method magtrack refuses this LUT
    assert os.path.getsize(tmp_path / "zlut.png") > 10_000
    assert_usage_error(cli("zlut", "build", cal, "--out", lut), "exists; pass --overwrite")
    res = cli("info", lut)
    assert res.returncode == 0 and "zlut" in res.stdout and "z: 500 to 2700 nm" in res.stdout
    res = cli("info", cal, "--json")
    info = json.loads(res.stdout)
    assert info["kind"] == "calibration archive" and info["calibration_z_range_nm"] == [500.0, 2700.0]
    res = cli("track", archives["tyx"], "--out", tmp_path / "r.zarr", "--zlut", lut, "--scheduler", scheduler,
              "--no-progress")
    assert res.returncode == 0, res.stderr
    res = cli("info", tmp_path / "r.zarr", "--json")
    info = json.loads(res.stdout)
    assert info["kind"] == "results" and info["job"]["complete"] and info["n_beads"] == 3
    assert info["variables"]["z"]["units"] == "nm" and info["variables"]["profiles"]["chunks"] == [3, 4, 16]
    assert info["parameters"]["zlut_kind"] == "per-bead" and info["parameters"]["method"] == "accurate"
    res = cli("track", archives["tyx"], "--out", tmp_path / "m.zarr", "--zlut", lut, "--method", "magtrack")
    assert res.returncode == 2 and "was built with method 'accurate'; tracking with method 'magtrack'" in res.stderr
    text = cli("info", tmp_path / "r.zarr").stdout
    assert "finished chunks: 3/3 (complete)" in text and "profiles" in text


def test_zlut_build_fit_then_info_and_track(archives, calibration, fit_models, scheduler, tmp_path):
    lut = tmp_path / "fit.zarr"
    res = cli("zlut", "build", calibration, "--out", lut, "--method", "fit", "--frames-per-task", 40,
              "--png", tmp_path / "fit.png", "--scheduler", scheduler)
    assert res.returncode == 0, res.stderr
    assert "image models (method fit) of 3 beads, 45 planes from z = 500.0 to 2700.0 nm" in res.stdout
    models, attrs = load_zlut(lut)
    assert attrs["method"] == "fit" and attrs["roi_size_px"] == ROI and attrs["source"] == calibration
    for got, want in zip(models, fit_models):  # build_zlut's models, on the cluster
        np.testing.assert_array_equal(got.coef, want.coef)
    assert os.path.getsize(tmp_path / "fit.png") > 10_000
    text = cli("info", lut).stdout
    assert "image models of method fit: 3 per-bead, 45 focus planes" in text and "z: 500 to 2700 nm" in text
    res = cli("track", archives["tyx"], "--out", tmp_path / "r.zarr", "--zlut", lut, "--method", "fit",
              "--scheduler", scheduler, "--no-progress")
    assert res.returncode == 0, res.stderr
    info = json.loads(cli("info", tmp_path / "r.zarr", "--json").stdout)
    assert info["job"]["complete"] and info["parameters"]["method"] == "fit"
    assert info["parameters"]["zlut_kind"] == "per-bead"
    assert_usage_error(cli("track", archives["tyx"], "--out", tmp_path / "a.zarr", "--zlut", lut),
                       "was built with method 'fit'; tracking with method 'accurate'")
    assert_usage_error(cli("track", archives["tyx"], "--out", tmp_path / "n.zarr", "--method", "fit"),
                       "method 'fit' needs a Z-LUT")


def test_import_tiff_layouts(archives, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = open_archive(archives["tyx"])
    frames = a.data.compute()
    tifffile.imwrite(tmp_path / "run_000.tif", frames[:20])
    tifffile.imwrite(tmp_path / "run_001.tif", frames[20:], imagej=True)
    np.savetxt(tmp_path / "rois.csv", a.rois, fmt="%d", delimiter=",", header="top,bottom,left,right", comments="")
    out = tmp_path / "imported.zarr"
    res = cli("import", tmp_path / "run_000.tif", tmp_path / "run_001.tif", "--out", out, "--rois",
              tmp_path / "rois.csv", "--chunk-frames", 4, "--shard-frames", 16, "--pixel-size-nm", 100)
    assert res.returncode == 0, res.stderr
    assert f"tyx archive, 3 beads x {N_FRAMES} frames" in res.stdout
    got = open_archive(out)
    np.testing.assert_array_equal(got.data.compute(), frames)
    np.testing.assert_array_equal(got.rois, a.rois)
    assert got.data.chunks[0] == (16, 16, 13) and got.pixel_size_nm == 100.0
    info = json.loads(cli("info", out, "--json").stdout)
    assert info["kind"] == "archive" and info["layout"] == "tyx" and info["chunks"][0] == 4
    assert info["shard_frames"] == 16 and info["nbytes_stored_estimate"] is None  # recorded by the import
    res = cli("import", tmp_path / "run_000.tif", tmp_path / "run_001.tif", "--out", out, "--rois",
              tmp_path / "rois.csv", "--resume")  # nothing left to import
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(open_archive(out).data.compute(), frames)
    # one pre-cropped bead: yxt, on request only (full frames are often square too)
    crop = frames[:, 8:40, 8:40]
    tifffile.imwrite(tmp_path / "bead.tif", crop)
    assert_usage_error(cli("import", tmp_path / "bead.tif", "--out", tmp_path / "bead.zarr"),
                       r"need an ROI table \(--rois FILE\).*--layout yxt")
    assert cli("import", tmp_path / "bead.tif", "--out", tmp_path / "bead.zarr", "--layout", "yxt").returncode == 0
    np.testing.assert_array_equal(open_archive(tmp_path / "bead.zarr").data.compute(), crop.transpose(1, 2, 0))
    # 4-D hyperstacks: (frame, bead, y, x)
    tbyx = open_archive(archives["tbyx"]).data.compute()
    tifffile.imwrite(tmp_path / "hyper.tif", tbyx, imagej=True, metadata={"axes": "TCYX"})
    assert cli("import", tmp_path / "hyper.tif", "--out", tmp_path / "hyper.zarr").returncode == 0
    np.testing.assert_array_equal(open_archive(tmp_path / "hyper.zarr").data.compute(), tbyx)
    # full frames without ROIs, a bad ROI table, an existing archive
    assert_usage_error(cli("import", tmp_path / "run_000.tif", "--out", tmp_path / "x.zarr"), "--rois")
    (tmp_path / "bad.json").write_text(json.dumps({"rois": [[0, 10, 0, 12]]}))
    assert_usage_error(cli("import", tmp_path / "run_000.tif", "--out", tmp_path / "x.zarr", "--rois",
                           tmp_path / "bad.json"), "rois must be square")
    assert_usage_error(cli("import", tmp_path / "bead.tif", "--out", tmp_path / "bead.zarr", "--layout", "yxt"),
                       "exists|overwrite")
    assert_usage_error(cli("import", tmp_path / "nope.tif", "--out", tmp_path / "y.zarr"), "TIFF file not found")


# -- demo ---------------------------------------------------------------------------------------


def test_demo_smoke(tmp_path):
    out = tmp_path / "demo"
    res = cli("demo", "--frames", 40, "--beads", 2, "--roi", 32, "--workers", 1, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "dashboard: http" in res.stdout and "tracking [" in res.stderr
    m = re.search(r"RMS error vs ground truth \(method accurate\): x ([\d.]+) nm, y ([\d.]+) nm, z ([\d.]+) nm",
                  res.stdout)
    assert m, res.stdout
    x, y, z = map(float, m.groups())
    assert x < 5 and y < 5 and z < 20  # nm, the accurate method
    ratios = re.search(r"RMS / Cramer-Rao bound: x ([\d.]+), y ([\d.]+), z ([\d.]+) \(bound x ([\d.]+) nm", res.stdout)
    assert ratios, res.stdout
    assert all(0.5 < float(r) < 100 for r in ratios.groups()[:3]) and 0.1 < float(ratios.group(4)) < 10
    assert sorted(os.listdir(out)) == ["analysis.zarr", "archive.zarr", "calibration.zarr", "magnet_log.csv", "plots",
                                       "results.zarr", "zlut.zarr"]
    assert sorted(os.listdir(out / "plots")) == ["calibration_bead_000.png", "corrected_traces.png", "errors.png",
                                                 "force_vs_magnet.png", "traces.png", "xy.png", "zlut.png"]
    forces = re.findall(r"plateau (\d), magnet [\d.]+ mm: true ([\d.]+) pN, measured \(PSD fit\) (.*) pN", res.stdout)
    assert [p for p, _, _ in forces] == ["1", "2"], res.stdout
    for _, true, measured in forces:
        for f, e in (map(float, m.split(" ± ")) for m in measured.split(", ")):
            assert abs(f - float(true)) < 4 * e
    assert zarr.open_group(str(out / "results.zarr"))["_job"].attrs["complete"]


@pytest.mark.parametrize(("flag", "profile_ms"), [([], None), (["--dask-defaults"], 10)])
def test_local_cluster_housekeeping(archives, tmp_path, flag, profile_ms):
    """`track --workers N` starts the batch-tuned cluster; --dask-defaults keeps Dask's settings."""
    from magtrack_dask.cli import _client, build_parser
    from magtrack_dask.cluster import close_client

    args = build_parser().parse_args(["track", archives["tyx"], "--out", str(tmp_path / "r.zarr"), "--workers", "1",
                                      *flag])
    client = _client(args)
    try:
        (intervals,) = client.run(worker_intervals).values()
        assert intervals["profile"] == profile_ms
        assert intervals["tick"] == (20 if flag else 500)
    finally:
        close_client(client)


def test_missing_optional_extras_are_usage_errors_before_any_work(archives, tmp_path, monkeypatch, capsys):
    import importlib.util



    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tifffile", "matplotlib") else find_spec(name, *a))
    out = tmp_path / "r.zarr"
    assert main(["import", str(tmp_path / "a.tif"), "--out", str(tmp_path / "a.zarr")]) == 2
    assert main(["track", archives["yxt"], "--out", str(out), "--plots", str(tmp_path / "png")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["magtrack-dask: error: import needs tifffile: pip install 'magtrack-dask[tiff]'",
                   "magtrack-dask: error: --plots needs matplotlib: pip install 'magtrack-dask[plot]'"]
    assert not out.exists() and not (tmp_path / "png").exists()


# -- bad input: exit 2, one line naming the option, nothing written (tests/bad_input.py) -------------------------

CLI = [
    ("track-archive-missing", lambda c: ["track", c("missing.zarr"), "--out", c("r.zarr")],
     r"archive not found: .*missing\.zarr"),
    ("track-archive-file", lambda c: ["track", c("file.txt"), "--out", c("r.zarr")],
     r"source: .*file\.txt is a file; expected a Zarr v3 group"),
    ("track-archive-folder", lambda c: ["track", c("folder"), "--out", c("r.zarr")],
     r"source: .*folder is a folder but not a Zarr store"),
    ("track-archive-is-array", lambda c: ["track", c.arch["tyx"] + "/frames", "--out", c("r.zarr")],
     r"source: .*frames is a Zarr array; expected a Zarr v3 group"),
    ("track-unknown-layout", lambda c: ["track", c.inputs["xyz"], "--out", c("r.zarr")],
     r"archive attribute 'layout' is 'xyz'; expected one of"),
    ("track-out-is-file", lambda c: ["track", c.arch["yxt"], "--out", c("file.txt")],
     r"file\.txt exists and is not a magtrack-dask results store"),
    ("track-out-folder-overwrite", lambda c: ["track", c.arch["yxt"], "--out", c("folder"), "--overwrite"],
     r"out: refusing to overwrite .*folder: it is a folder, not a Zarr store"),
    ("track-out-is-archive", lambda c: ["track", c.arch["yxt"], "--out", c.arch["yxt"], "--overwrite"],
     r"out: .*yxt\.zarr overlaps the archive"),
    ("track-resume-and-overwrite", lambda c: ["track", c.arch["yxt"], "--out", c("r.zarr"), "--resume",
                                              "--overwrite"],
     r"argument --overwrite: not allowed with argument --resume"),
    ("track-frames-per-task-0", lambda c: ["track", c.arch["yxt"], "--out", c("r.zarr"), "--frames-per-task", "0"],
     r"argument --frames-per-task: value must be an integer >= 1, got 0"),
    ("track-workers-and-scheduler", lambda c: ["track", c.arch["yxt"], "--out", c("r.zarr"), "--workers", "2",
                                               "--scheduler", "tcp://localhost:1"],
     r"argument --scheduler: not allowed with argument --workers"),
    ("track-zlut-missing", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--zlut", c("nope.zarr")],
     r"Z-LUT not found: .*nope\.zarr"),
    ("track-archive-no-frames", lambda c: ["track", c.inputs["empty"], "--out", c("r.zarr")],
     r"source has no frames: shape \(0, 40, 40\)"),
    ("track-zlut-not-npy", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--zlut",
                                      c.inputs["zlut_garbage"]],
     r"zlut: .*zlut_garbage\.npy is not a readable \.npy array"),
    ("track-plots-is-file", lambda c: ["track", c.arch["yxt"], "--out", c("r.zarr"), "--plots", c("file.txt")],
     r"--plots: .*file\.txt is a file; expected a folder"),
    ("track-plots-under-file", lambda c: ["track", c.arch["yxt"], "--out", c("r.zarr"), "--plots",
                                          os.path.join(c("file.txt"), "png")],
     r"--plots: cannot create .*file\.txt/png: .*file\.txt is a file"),
    ("track-zlut-folder", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--zlut", c("folder")],
     r"zlut: .*folder is a folder but not a Zarr store; expected a Zarr v3 array"),
    ("track-zlut-non-monotonic", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--zlut",
                                            c.inputs["zlut_nonmono"]],
     r"zlut\[0\] \(the z positions\) must be strictly increasing or decreasing"),
    ("track-zlut-nan", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--zlut", c.inputs["zlut_nan"]],
     r"zlut contains NaN or inf \(at row 5, column 7\)"),
    ("track-zlut-bins", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--zlut", c.inputs["zlut_small"]],
     r"zlut has 8 profile bins but the profiles of 32 px ROIs have 16"),
    ("track-zlut-per-bead-count", lambda c: ["track", c.arch["yxt"], "--out", c("r.zarr"), "--zlut",
                                             c.inputs["zlut_two_beads"]],
     r"zlut holds 2 per-bead tables but the source has 1 beads"),
    ("zlut-build-missing", lambda c: ["zlut", "build", c("missing.zarr"), "--out", c("z.zarr")],
     r"calibration archive not found: .*missing\.zarr"),
    ("zlut-build-resolution", lambda c: ["zlut", "build", c.arch["tyx"], "--out", c("z.zarr"), "--z-resolution-nm",
                                         "-1"],
     r"argument --z-resolution-nm: value must be a finite number > 0, got -1\.0"),
    ("zlut-build-out-exists", lambda c: ["zlut", "build", c.arch["tyx"], "--out", c("file.txt")],
     r"file\.txt exists; pass --overwrite to replace it"),
    ("zlut-build-png-is-folder", lambda c: ["zlut", "build", c.arch["tyx"], "--out", c("z.zarr"), "--png",
                                            c("folder")],
     r"--png: .*folder is a folder; expected the name of a PNG file"),
    ("import-rois-outside", lambda c: ["import", tif(c), "--out", c("a.zarr"), "--rois", c.inputs["rois_outside"]],
     r"rois: ROI 1 \[56, 72, 0, 16\] lies outside the frame of shape \(height=64, width=64\)"),
    ("import-rois-unequal", lambda c: ["import", tif(c), "--out", c("a.zarr"), "--rois", c.inputs["rois_unequal"]],
     r"rois must all have the same size; got sizes \[8, 16\] px"),
    ("import-tiff-missing", lambda c: ["import", c("nope.tif"), "--out", c("a.zarr")],
     r"TIFF file not found: .*nope\.tif"),
    ("import-chunk-frames", lambda c: ["import", c("nope.tif"), "--out", c("a.zarr"), "--chunk-frames", "-2"],
     r"argument --chunk-frames: value must be an integer >= 1, got -2"),
    ("import-shard-frames", lambda c: ["import", c("nope.tif"), "--out", c("a.zarr"), "--shard-frames", "x"],
     r"argument --shard-frames: value must be an integer >= 1, got 'x'"),
    ("import-resume-overwrite", lambda c: ["import", c("nope.tif"), "--out", c("a.zarr"), "--resume", "--overwrite"],
     r"argument --overwrite: not allowed with argument --resume"),
    ("import-pixel-size", lambda c: ["import", c("nope.tif"), "--out", c("a.zarr"), "--pixel-size-nm", "nan"],
     r"argument --pixel-size-nm: value must be a finite number > 0, got nan"),
    ("info-missing", lambda c: ["info", c("missing.zarr")], r"not found: .*missing\.zarr"),
    ("demo-roi", lambda c: ["demo", "--roi", "8", "--out", c("demo")], r"--roi must be at least 16 px; got 8"),
    ("find-beads-roi-too-big", lambda c: ["find-beads", c.arch["tyx"], "--roi", "500"],
     r"roi must be 8 px to the frame's smaller side \(88 px\); got 500"),
    ("find-beads-min-symmetry", lambda c: ["find-beads", c.arch["tyx"], "--roi", "32", "--min-symmetry", "2"],
     r"min_symmetry"),
    ("find-beads-missing", lambda c: ["find-beads", c("nope.tif"), "--roi", "32"], r"not found: .*nope\.tif"),
    ("find-beads-out-type", lambda c: ["find-beads", c.arch["tyx"], "--roi", "32", "--out", c("t.xls")],
     r"unknown ROI file type '\.xls'"),
    ("track-rois-missing", lambda c: ["track", c.arch["tyx"], "--out", c("r.zarr"), "--rois", c("nope.csv")],
     r"ROI file not found: .*nope\.csv"),
]


@pytest.mark.parametrize("make_argv, match", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_bad_input_exits_2(make_argv, match, ctx, unchanged, capsys):
    code = main([str(a) for a in make_argv(ctx)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("magtrack-dask: error: "), err
    assert re.search(match, lines[0]), lines[0]


def _assert_subprocess_usage_error(res, pattern):
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("magtrack-dask: error: "), res.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_python_dash_m_bad_input(ctx, unchanged):
    res = subprocess.run([sys.executable, "-m", "magtrack_dask", "track", ctx("file.txt"), "--out", ctx("r.zarr")],
                         capture_output=True, text=True, timeout=120)
    _assert_subprocess_usage_error(res, r"source: .*file\.txt is a file; expected a Zarr v3 group")


def test_console_script_bad_input(ctx, unchanged):
    script = os.path.join(os.path.dirname(sys.executable), "magtrack-dask")
    if not os.path.exists(script):
        pytest.skip("package not installed with its console script")
    res = subprocess.run([script, "track", ctx.arch["tyx"], "--out", ctx("r.zarr"), "--zlut", ctx.inputs["zlut_nan"]],
                         capture_output=True, text=True, timeout=120)
    _assert_subprocess_usage_error(res, r"zlut contains NaN or inf")


# -- find-beads ---------------------------------------------------------------------------------


def test_find_beads_then_import_and_track(archives, scheduler, tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("matplotlib")
    a = open_archive(archives["tyx"])
    table, png = tmp_path / "found.csv", tmp_path / "overlay.png"
    assert main(["find-beads", archives["tyx"], "--roi", str(ROI), "--frames", "4", "--out", str(table),
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "3 beads in" in out and f"ROI table: {table}" in out and os.path.getsize(png) > 10_000
    found = read_rois(table)
    truth_x, truth_y = a.group["truth_x"][:, :4].mean(axis=1), a.group["truth_y"][:, :4].mean(axis=1)
    np.testing.assert_allclose(found[:, 2] + (ROI - 1) / 2, truth_x, atol=1.0)  # each ROI centred on its bead
    np.testing.assert_allclose(found[:, 0] + (ROI - 1) / 2, truth_y, atol=1.0)
    # The table as 'import --rois' reads it (from a TIFF of the frames) and as 'track --rois' reads it.
    tifffile.imwrite(tmp_path / "frames.tif", a.data[:4].compute(), photometric="minisblack")
    assert main(["find-beads", str(tmp_path / "frames.tif"), "--roi", str(ROI), "--frames", "4", "--out",
                 str(tmp_path / "from_tif.json")]) == 0
    np.testing.assert_array_equal(read_rois(tmp_path / "from_tif.json"), found)
    assert main(["import", str(tmp_path / "frames.tif"), "--out", str(tmp_path / "i.zarr"), "--rois",
                 str(table)]) == 0
    np.testing.assert_array_equal(open_archive(tmp_path / "i.zarr").rois, found)
    assert main(["track", archives["tyx"], "--out", str(tmp_path / "r.zarr"), "--rois", str(table),
                 "--scheduler", scheduler, "--no-progress"]) == 0
    ds = xr.open_zarr(tmp_path / "r.zarr")
    np.testing.assert_array_equal(ds["roi_top"].values, found[:, 0])
    np.testing.assert_allclose(ds["x"].values[:, :4].mean(axis=1), truth_x, atol=0.05)
    # An existing table is kept; a missing matplotlib is found before the work.
    capsys.readouterr()
    assert main(["find-beads", archives["tyx"], "--roi", str(ROI), "--out", str(table)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["find-beads", archives["tbyx"], "--roi", str(ROI)]) == 2
    assert "finding beads needs full camera frames" in capsys.readouterr().err


def test_find_beads_without_matplotlib_is_a_usage_error(archives, tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    assert main(["find-beads", archives["tyx"], "--roi", str(ROI), "--out", str(tmp_path / "t.csv"), "--plot",
                 str(tmp_path / "o.png")]) == 2
    assert capsys.readouterr().err == "magtrack-dask: error: --plot needs matplotlib: pip install 'magtrack-dask[plot]'\n"
    assert not (tmp_path / "t.csv").exists()
# -- analyze ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyze_inputs(tmp_path_factory):
    """A results store of 1 tethered and 3 stuck beads under drift, 3 magnet plateaus, and its magnet log."""
    from tests.analysis.conftest import force_results

    root = tmp_path_factory.mktemp("analyze")
    ds, truth = force_results(root / "magnet.csv", frames_per_plateau=600, n_tethered=1)
    with warnings.catch_warnings():  # as write_results: consolidated metadata is not in the v3 spec
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        ds.to_zarr(root / "results.zarr", zarr_format=3, consolidated=True)
    return str(root / "results.zarr"), str(root / "magnet.csv"), truth


def test_analyze_writes_the_store_exports_and_plots(analyze_inputs, tmp_path, capsys):
    import h5py
    import xarray as xr

    results, log, truth = analyze_inputs
    out = tmp_path / "analysis.zarr"
    args = ["analyze", results, "--out", out, "--radius-nm", 1400, "--magnet-log", log, "--reference-beads", "1,2,3",
            "--csv", tmp_path / "csv", "--hdf5", tmp_path / "a.h5", "--plots", tmp_path / "png"]
    assert main(list(map(str, args))) == 0
    text = capsys.readouterr().out
    assert "reference beads 1, 2, 3; residual drift between them (RMS) x 1." in text
    forces = xr.open_zarr(out)
    f = forces["force_pn"].values[:1, 1:]
    assert np.all(np.abs(f / truth["force"][1:] - 1) < 0.3)
    assert sorted(os.listdir(tmp_path / "csv")) == [f"bead_00{b}.csv" for b in range(4)] + ["forces.csv"]
    trace = np.loadtxt(tmp_path / "csv" / "bead_000.csv", delimiter=",", skiprows=1, usecols=2)  # tweezepy-style
    assert trace.shape == (1800,)
    rows = np.genfromtxt(tmp_path / "csv" / "forces.csv", delimiter=",", names=True)
    np.testing.assert_allclose(rows["force_pn"].reshape(4, 3)[:1, 1:], f)
    with h5py.File(tmp_path / "a.h5") as h5:
        assert h5["beads/000/x_nm"].attrs["units"] == "nm" and h5["beads/003"].attrs["is_reference"]
        assert not h5["beads/000"].attrs["is_reference"]
        np.testing.assert_allclose(h5["beads/000/x_nm"][...], np.loadtxt(
            tmp_path / "csv" / "bead_000.csv", delimiter=",", skiprows=1, usecols=2), atol=1e-3)
        np.testing.assert_allclose(h5["forces/force_pn"][...], rows["force_pn"])
    assert sorted(os.listdir(tmp_path / "png")) == ["calibration_bead_000.png", "corrected_traces.png",
                                                    "force_vs_magnet.png"]
    assert main(list(map(str, args))) == 2  # exists: --overwrite needed
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_analyze_bad_input_exits_2_before_any_work(analyze_inputs, tmp_path, monkeypatch, capsys):
    import importlib.util

    results, log, _ = analyze_inputs
    out = str(tmp_path / "a.zarr")
    base = ["analyze", results, "--out", out, "--radius-nm", "1400"]
    short = tmp_path / "short.csv"
    short.write_text("time,position\n10,2\n12,1\n")
    cases = [
        (["--reference-beads", "3,x"], r"--reference-beads must be 'auto' or bead ids such as 0,3; got '3,x'"),
        (["--magnet-log", log, "--reference-beads", "3,17"], r"bead\(s\) 17 are not in the results"),
        (["--magnet-log", str(short)], r"covers t = 10..12 s but the frames span t = 10..27.99 s"),
        ([], r"length_nm: without a magnet log"),
        (["--surface-frames", "a:b"], r"--surface-frames must be FIRST:STOP"),
    ]
    for extra, pattern in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(pattern, err[0]), (extra, err)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else find_spec(name, *a))
    assert main(base + ["--hdf5", str(tmp_path / "a.h5")]) == 2
    assert capsys.readouterr().err.strip() == "magtrack-dask: error: --hdf5 needs h5py: pip install 'magtrack-dask[hdf5]'"
    assert not os.path.exists(out)
