"""Bad input, table-driven: the core API, track, write_results, jobs, archives and the CLI.

Every case must raise the stated exception (the CLI: exit 2 with one line on
stderr) whose message names the parameter and says what was expected, and
must create or change nothing on disk: the work folder, the inputs and the
shared archives are snapshotted (paths, sizes, mtimes) before and after.

Semantics chosen where the issue left them open:

* NaN and inf pixels are *data*, not bad input: the core returns NaN x, y for
  those images (no exception, no warning) and ``track`` flags them (bit 1).
* The core kernels need float32/float64 (TypeError otherwise); the pipelines
  also take uint8/uint16 camera counts; bool, complex and other integers are
  a TypeError. ``track`` takes any integer or float pixels (it converts per
  chunk) and refuses bool and complex with a TypeError.
* A Z-LUT's z row must be finite and strictly monotonic (a duplicate z makes
  the lookup ambiguous); profile rows 2.. must be finite; row 1 (the central
  bin, never correlated) may be NaN.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import zarr

from magtrack_dask import core
from magtrack_dask.cli import main
from magtrack_dask.jobs import JobError, prepare_job, run_job
from magtrack_dask.io.archive import create_archive, open_archive
from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.tracking import track, write_results

from tests.conftest import ROI, snapshot

N_BINS = ROI // 2
RNG = np.random.default_rng(5)


def stack(shape, dtype=np.float64):
    """Random pixels of any shape and dtype: the checks come before the pixels matter."""
    data = RNG.uniform(0, 200, shape)
    if np.dtype(dtype).kind == "c":
        return (data + 1j * data).astype(dtype)
    return data.astype(dtype)


@dataclass
class Ctx:
    """What a case may use: a work folder ``ws`` and read-only inputs."""

    ws: str
    arch: dict  # layout -> simulated archive (conftest)
    zlut: np.ndarray  # (1 + N_BINS, n_ref), fits the archives
    inputs: dict  # name -> path of a prepared bad input

    def __call__(self, name: str) -> str:
        return os.path.join(self.ws, name)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, zlut):
    """Bad inputs on disk, made once: Z-LUT files and archives that are not quite archives."""
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


def tif(c: Ctx) -> str:
    """The 4-frame 64 px TIFF of ``inputs`` (skips without tifffile)."""
    pytest.importorskip("tifffile")
    return c.inputs["tif"]


def zlut_with(c: Ctx, **rows) -> np.ndarray:
    lut = c.zlut.copy()
    for key, value in rows.items():
        row, col = map(int, key[1:].split("_"))
        lut[row, col] = value
    return lut


def _dup_z(c: Ctx) -> np.ndarray:
    lut = c.zlut.copy()
    lut[0, 5] = lut[0, 4]
    return lut


def _nonmono(c: Ctx) -> np.ndarray:
    lut = c.zlut.copy()
    lut[0, [3, 4]] = lut[0, [4, 3]]
    return lut


def _per_bead_dup(c: Ctx) -> np.ndarray:
    luts = np.stack([c.zlut] * 3)
    luts[1, 0, 5] = luts[1, 0, 4]
    return luts


ROIS3 = np.array([[0, 16, 0, 16], [16, 32, 16, 32], [40, 56, 40, 56]])


@dataclass
class Case:
    id: str
    call: Callable[[Ctx], object]
    exc: type
    match: str


# -- the core API ---------------------------------------------------------------------------------------------------

CORE = [
    Case("stack_to_xyzp-2d", lambda c: core.stack_to_xyzp(stack((32, 32))), ValueError,
         r"stack must be a 3-D array of shape \(n_pixels, n_pixels, n_images\), got shape \(32, 32\)"),
    Case("stack_to_xyzp-4d", lambda c: core.stack_to_xyzp(stack((32, 32, 4, 2))), ValueError,
         r"stack must be a 3-D array .* got shape \(32, 32, 4, 2\)"),
    Case("stack_to_xyzp-list", lambda c: core.stack_to_xyzp([[1.0, 2.0], [3.0, 4.0]]), TypeError,
         r"stack must be a NumPy or CuPy array \(n_pixels, n_pixels, n_images\), got list"),
    Case("stack_to_xyzp-non-square", lambda c: core.stack_to_xyzp(stack((32, 30, 4))), ValueError,
         r"stack images must be square: shape \(n_pixels, n_pixels, n_images\) expected, got \(32, 30, 4\)"),
    Case("stack_to_xyzp-empty-images", lambda c: core.stack_to_xyzp(stack((0, 0, 4))), ValueError,
         r"stack images must be at least 5 x 5 pixels, got \(0, 0, 4\)"),
    Case("stack_to_xyzp-4px", lambda c: core.stack_to_xyzp(stack((4, 4, 4))), ValueError,
         r"stack images must be at least 5 x 5 pixels, got \(4, 4, 4\)"),
    Case("advanced-narrower-than-n_local",
         lambda c: core.stack_to_xyzp_advanced(stack((8, 8, 2)), auto_conv_multiline_sub_pixel={"n_local": 9}),
         ValueError, r"stack images must be at least 9 x 9 pixels, got \(8, 8, 2\)"),
    Case("stack_to_xyzp-zero-frames", lambda c: core.stack_to_xyzp(stack((32, 32, 0))), ValueError,
         r"stack has no images: shape \(n_pixels, n_pixels, 0\)"),
    Case("stack_to_xyzp-int32", lambda c: core.stack_to_xyzp(stack((32, 32, 4), np.int32)), TypeError,
         r"stack must be float32, float64, uint8 or uint16, got int32"),
    Case("stack_to_xyzp-bool", lambda c: core.stack_to_xyzp(stack((32, 32, 4)) > 100), TypeError,
         r"stack must be float32, float64, uint8 or uint16, got bool"),
    Case("stack_to_xyzp-complex", lambda c: core.stack_to_xyzp(stack((32, 32, 4), np.complex128)), TypeError,
         r"stack must be float32, float64, uint8 or uint16, got complex128"),
    Case("stack_to_xyzp-zlut-bins", lambda c: core.stack_to_xyzp(stack((32, 32, 4)), c.zlut[:11]), ValueError,
         r"profiles have 16 radial bins but zlut has 10 .*expected \(1 \+ 16, n_ref\)"),
    Case("stack_to_xyzp-zlut-nan", lambda c: core.stack_to_xyzp(stack((32, 32, 4)), zlut_with(c, r5_7=np.nan)),
         ValueError, r"zlut contains NaN or inf \(at row 5, column 7\)"),
    Case("advanced-unknown-option",
         lambda c: core.stack_to_xyzp_advanced(stack((32, 32, 4)), radial={"oversample": 2}), ValueError,
         r"unknown stage option 'radial'; expected one of \["),
    Case("advanced-option-type",
         lambda c: core.stack_to_xyzp_advanced(stack((32, 32, 4)), **{"use fft_profile": "yes"}), ValueError,
         r"stage option 'use fft_profile' must be a bool"),
    Case("center_of_mass-uint16", lambda c: core.center_of_mass(stack((32, 32, 4), np.uint16)), TypeError,
         r"stack must be float32 or float64, got uint16"),
    Case("center_of_mass-background", lambda c: core.center_of_mass(stack((32, 32, 4)), background="mode"),
         ValueError, r"background must be 'none', 'mean' or 'median', got 'mode'"),
    Case("radial_profile-x-length", lambda c: core.radial_profile(stack((32, 32, 4)), np.ones(3), np.ones(4)),
         ValueError, r"x must be a 1-D array with one value per image \(4\), got shape \(3,\)"),
    Case("radial_profile-complex-y",
         lambda c: core.radial_profile(stack((32, 32, 4)), np.ones(4), np.ones(4) * 1j), TypeError,
         r"y must be real numbers, got dtype complex128"),
    Case("radial_profile-oversample", lambda c: core.radial_profile(stack((32, 32, 4)), np.ones(4), np.ones(4), 0),
         ValueError, r"oversample must be an integer >= 1, got 0"),
    Case("auto_conv_multiline_sub_pixel-n_local",
         lambda c: core.auto_conv_multiline_sub_pixel(stack((32, 32, 4)), np.ones(4) * 16, np.ones(4) * 16,
                                                      n_local=4),
         ValueError, r"n_local must be an odd integer >= 3, got 4"),
    Case("lookup_z-zlut-1d", lambda c: core.lookup_z(stack((16, 4)), c.zlut[0]), ValueError,
         r"zlut must be 2-D, shape \(1 \+ n_bins, n_ref\), got shape \(\d+,\)"),
    Case("lookup_z-zlut-bins", lambda c: core.lookup_z(stack((16, 4)), c.zlut[:11]), ValueError,
         r"profiles have 16 radial bins but zlut has 10"),
    Case("lookup_z-non-monotonic-z", lambda c: core.lookup_z(stack((16, 4)), _nonmono(c)), ValueError,
         r"zlut\[0\] \(the z positions\) must be strictly increasing or decreasing.*z\[4\] = \S+ reverses"),
    Case("lookup_z-duplicate-z", lambda c: core.lookup_z(stack((16, 4)), _dup_z(c)), ValueError,
         r"zlut\[0\] \(the z positions\) must be strictly .*without duplicates; z\[5\] = \S+ repeats"),
    Case("lookup_z-nan-z", lambda c: core.lookup_z(stack((16, 4)), zlut_with(c, r0_2=np.nan)), ValueError,
         r"zlut contains NaN or inf \(at row 0, column 2\)"),
    Case("lookup_z-inf-profile", lambda c: core.lookup_z(stack((16, 4)), zlut_with(c, r9_0=np.inf)), ValueError,
         r"zlut contains NaN or inf \(at row 9, column 0\)"),
    Case("lookup_z-complex-zlut", lambda c: core.lookup_z(stack((16, 4)), c.zlut.astype(complex)), TypeError,
         r"zlut must be real numbers, got dtype complex128"),
    Case("crop-roi-outside", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), [[0, 16, 0, 16], [56, 72, 0, 16]]),
         ValueError, r"rois \[1\] extend outside the frame of 64 x 64 pixels"),
    Case("crop-rois-unequal", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), [[0, 16, 0, 16], [0, 8, 0, 8]]),
         ValueError, r"rois must all be squares of the same positive size; got heights \[16, 8\]"),
    Case("crop-rois-float", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), np.array([[0.0, 16, 0, 16]])),
         TypeError, r"rois must be integers \[top, bottom, left, right\], got dtype float64"),
    Case("crop-rois-shape", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), [0, 16, 0, 16]), ValueError,
         r"rois must have shape \(n_roi, 4\) with n_roi >= 1, got \(4,\)"),
    Case("crop-stack-2d", lambda c: core.crop_stack_to_rois(stack((64, 64)), [[0, 16, 0, 16]]), ValueError,
         r"stack must be a 3-D array \(n_rows, n_cols, n_images\), got shape \(64, 64\)"),
]

# -- track and write_results (nothing is computed: every check is up front) -----------------------------------------

TRACK = [
    Case("track-2d", lambda c: track(stack((32, 32))), ValueError, r"source must be 3-D or 4-D .*got 2-D"),
    Case("track-5d", lambda c: track(stack((2, 2, 2, 32, 32))), ValueError, r"source must be 3-D or 4-D"),
    Case("track-layout-ndim", lambda c: track(stack((4, 32, 32)), layout="tbyx"), ValueError,
         r"layout 'tbyx' needs a 4-D source; got 3-D"),
    Case("track-bool", lambda c: track(stack((32, 32, 4)) > 100), TypeError,
         r"source must hold integer or float pixels; got dtype bool"),
    Case("track-complex", lambda c: track(stack((32, 32, 4), np.complex64)), TypeError,
         r"source must hold integer or float pixels; got dtype complex64"),
    Case("track-zero-frames", lambda c: track(stack((32, 32, 0))), ValueError,
         r"source has no frames: shape \(32, 32, 0\) \(layout 'yxt', frame axis 2\)"),
    Case("track-non-square", lambda c: track(stack((4, 2, 32, 30))), ValueError,
         r"layout 'tbyx' needs square images; got 32 x 30 px"),
    Case("track-frames-first-no-layout", lambda c: track(stack((45, 32, 32))), ValueError,
         r"layout 'yxt' needs square images; got 32 x 45 px \(layout 'yxt' was inferred from a 3-D array without "
         r"rois; \(frame, y, x\) frames need layout='tyx' and rois\)"),
    Case("track-zarr-array-no-layout", lambda c: track(zarr.open_array(c.arch["tyx"] + "/frames", mode="r")),
         ValueError, r"layout 'yxt' needs square images; got \d+ x 45 px \(layout 'yxt' was inferred"),
    Case("track-empty-images", lambda c: track(stack((0, 0, 4))), ValueError,
         r"source images are 0 x 0 px; tracking needs at least 5 x 5 px"),
    Case("track-no-beads", lambda c: track(stack((4, 0, 32, 32))), ValueError,
         r"source has no beads: shape \(4, 0, 32, 32\) \(layout 'tbyx', bead axis 1\)"),
    Case("track-source-none", lambda c: track(None), TypeError,
         r"source must be an archive \(a path, zarr\.Group or Zarr store\) or an image array; got NoneType"),
    Case("track-rois-missing", lambda c: track(stack((4, 64, 64)), layout="tyx"), ValueError,
         r"rois is required for layout 'tyx' \(an \(n_beads, 4\)"),
    Case("track-roi-outside", lambda c: track(stack((4, 64, 64)), rois=[[0, 32, 0, 32], [40, 72, 0, 32]]),
         ValueError, r"rois: ROI 1 \[40, 72, 0, 32\] lies outside the frame of shape \(height=64, width=64\)"),
    Case("track-rois-unequal", lambda c: track(stack((4, 64, 64)), rois=[[0, 32, 0, 32], [32, 48, 32, 48]]),
         ValueError, r"rois must all have the same size; got sizes \[16, 32\] px"),
    Case("track-rois-empty", lambda c: track(stack((4, 64, 64)), rois=np.empty((0, 4), int)), ValueError,
         r"rois must have shape \(n_beads, 4\) \[top, bottom, left, right\] with n_beads >= 1; got \(0, 4\)"),
    Case("track-rois-too-small", lambda c: track(stack((4, 64, 64)), rois=[[0, 4, 0, 4]]), ValueError,
         r"rois are 4 x 4 px; tracking needs at least 5 x 5 px"),
    Case("track-rois-for-yxt", lambda c: track(stack((32, 32, 4)), layout="yxt", rois=[[0, 32, 0, 32]] * 2),
         ValueError, r"rois has 2 ROIs of 32 px; the source has 1 beads of 32 px"),
    Case("track-zlut-bins", lambda c: track(c.arch["tyx"], c.zlut[:11]), ValueError,
         r"zlut has 10 profile bins but the profiles of 32 px ROIs have 16"),
    Case("track-zlut-4d", lambda c: track(c.arch["tyx"], c.zlut[None, None]), ValueError,
         r"zlut must be 2-D \(1 \+ n_bins, n_ref\) or 3-D per bead; got shape \(1, 1, 17, \d+\)"),
    Case("track-zlut-per-bead-count", lambda c: track(c.arch["tyx"], np.stack([c.zlut] * 2)), ValueError,
         r"zlut holds 2 per-bead tables but the source has 3 beads"),
    Case("track-zlut-non-monotonic", lambda c: track(c.arch["tyx"], _nonmono(c)), ValueError,
         r"zlut\[0\] \(the z positions\) must be strictly increasing or decreasing"),
    Case("track-zlut-duplicate-z-per-bead", lambda c: track(c.arch["tyx"], _per_bead_dup(c)), ValueError,
         r"zlut\[1\]\[0\] \(the z positions\) .*without duplicates; z\[5\] = \S+ repeats"),
    Case("track-zlut-nan", lambda c: track(c.arch["tyx"], zlut_with(c, r5_7=np.nan)), ValueError,
         r"zlut contains NaN or inf \(at row 5, column 7\)"),
    Case("track-zlut-complex", lambda c: track(c.arch["tyx"], c.zlut.astype(np.complex128)), TypeError,
         r"zlut must be real numbers, got dtype complex128"),
    Case("track-zlut-missing-npy", lambda c: track(c.arch["tyx"], c("nope.npy")), FileNotFoundError,
         r"zlut: .*nope\.npy does not exist; expected a \.npy file or a Zarr v3 array"),
    Case("track-zlut-not-npy", lambda c: track(c.arch["tyx"], c.inputs["zlut_garbage"]), ValueError,
         r"zlut: .*zlut_garbage\.npy is not a readable \.npy array \(.*\); expected a \(1 \+ n_bins, n_ref\) table"),
    Case("track-zlut-folder", lambda c: track(c.arch["tyx"], c("folder")), ValueError,
         r"zlut: .*folder is a folder but not a Zarr store; expected a Zarr v3 array"),
    Case("track-zlut-is-archive", lambda c: track(c.arch["tyx"], c.arch["yxt"]), ValueError,
         r"zlut: .*yxt\.zarr is a Zarr group; expected a Zarr v3 array"),
    Case("track-source-missing", lambda c: track(c("missing.zarr")), FileNotFoundError,
         r"source: .*missing\.zarr does not exist; expected a Zarr v3 group"),
    Case("track-source-file", lambda c: track(c("file.txt")), ValueError,
         r"source: .*file\.txt is a file; expected a Zarr v3 group"),
    Case("track-source-folder", lambda c: track(c("folder")), ValueError,
         r"source: .*folder is a folder but not a Zarr store"),
    Case("track-source-frames-array", lambda c: track(c.arch["tyx"] + "/frames"), ValueError,
         r"source: .*frames is a Zarr array; expected a Zarr v3 group \(an archive is the group"),
    Case("track-archive-no-frames", lambda c: track(c.inputs["empty"]), ValueError,
         r"source has no frames: shape \(0, 40, 40\) \(layout 'tyx', frame axis 0\)"),
    Case("track-unknown-layout-attr", lambda c: track(c.inputs["xyz"]), ArchiveError,
         r"archive attribute 'layout' is 'xyz'; expected one of 'tyx', 'tbyx', 'yxt'"),
    Case("track-layout-conflict", lambda c: track(c.arch["tyx"], layout="tbyx"), ValueError,
         r"layout='tbyx' does not match the archive's layout 'tyx'"),
    Case("track-unknown-layout", lambda c: track(stack((32, 32, 4)), layout="xyt"), ValueError,
         r"unknown layout 'xyt': layout must be one of 'tyx', 'tbyx', 'yxt'"),
    Case("track-frames_per_task-0", lambda c: track(c.arch["tyx"], frames_per_task=0), ValueError,
         r"frames_per_task must be an integer >= 1, got 0"),
    Case("track-frames_per_task-float", lambda c: track(stack((32, 32, 4)), frames_per_task=2.5), ValueError,
         r"frames_per_task must be an integer >= 1, got 2\.5"),
    Case("track-device", lambda c: track(c.arch["tyx"], device="tpu"), ValueError,
         r"device must be one of 'cpu', 'gpu'; got 'tpu'"),
    Case("track-pixel_size_nm", lambda c: track(c.arch["tyx"], pixel_size_nm=-100), ValueError,
         r"pixel_size_nm must be a finite number > 0 \(nm per pixel\), got -100"),
    Case("track-frame_rate_hz", lambda c: track(c.arch["tyx"], frame_rate_hz=0.0), ValueError,
         r"frame_rate_hz must be a finite number > 0 \(frames per second\), got 0\.0"),
    Case("track-edge_margin_px", lambda c: track(c.arch["tyx"], edge_margin_px=float("nan")), ValueError,
         r"edge_margin_px must be a finite number >= 0 \(px\), got nan"),
    Case("track-unknown-stage-option",
         lambda c: track(c.arch["tyx"], pipeline={"radial": {"oversample": 2}}), ValueError,
         r"unknown stage option 'radial'"),
    Case("write_results-not-dataset", lambda c: write_results({"x": 1}, c("r.zarr")), TypeError,
         r"ds must be an xarray\.Dataset from track\(\), got dict"),
    Case("write_results-path-exists", lambda c: write_results(track(c.arch["yxt"]), c("file.txt")), FileExistsError,
         r"path: .*file\.txt exists; pass overwrite=True"),
    Case("write_results-overwrite-file",
         lambda c: write_results(track(c.arch["yxt"]), c("file.txt"), overwrite=True), ValueError,
         r"path: refusing to overwrite .*file\.txt: it is a file, not a Zarr store"),
    Case("write_results-overwrite-folder",
         lambda c: write_results(track(c.arch["yxt"]), c("folder"), overwrite=True), ValueError,
         r"path: refusing to overwrite .*folder: it is a folder, not a Zarr store"),
]

# -- jobs -----------------------------------------------------------------------------------------------------------

JOBS = [
    Case("run_job-resume-and-overwrite", lambda c: run_job(c.arch["yxt"], c("r.zarr"), resume=True, overwrite=True),
         JobError, r"resume and overwrite exclude each other"),
    Case("run_job-archive-missing", lambda c: run_job(c("missing.zarr"), c("r.zarr")), JobError,
         r"archive not found: .*missing\.zarr"),
    Case("run_job-zlut-missing", lambda c: run_job(c.arch["yxt"], c("r.zarr"), c("nope.zarr")), JobError,
         r"Z-LUT not found: .*nope\.zarr"),
    Case("run_job-zlut-nan", lambda c: run_job(c.arch["yxt"], c("r.zarr"), zlut_with(c, r5_7=np.nan)), JobError,
         r"cannot track .*: zlut contains NaN or inf \(at row 5, column 7\)"),
    Case("run_job-out-is-file", lambda c: run_job(c.arch["yxt"], c("file.txt")), JobError,
         r"file\.txt exists and is not a magtrack-dask results store"),
    Case("run_job-overwrite-file", lambda c: run_job(c.arch["yxt"], c("file.txt"), overwrite=True), JobError,
         r"refusing to overwrite .*file\.txt: it is a file, not a Zarr store"),
    Case("run_job-out-is-archive", lambda c: run_job(c.arch["yxt"], c.arch["yxt"], overwrite=True), JobError,
         r"out: .*yxt\.zarr overlaps the archive .*yxt\.zarr; the results store must be a separate path"),
    Case("run_job-out-inside-archive", lambda c: run_job(c.arch["yxt"], c.arch["yxt"] + "/results"), JobError,
         r"out: .*yxt\.zarr/results overlaps the archive"),
    Case("run_job-rois-too-small", lambda c: run_job(c.arch["tyx"], c("r.zarr"), rois=[[0, 4, 0, 4]]), JobError,
         r"cannot track .*: rois are 4 x 4 px; tracking needs at least 5 x 5 px"),
    Case("prepare_job-frames_per_task", lambda c: prepare_job(c.arch["yxt"], c("r.zarr"), frames_per_task=-4),
         JobError, r"frames_per_task must be an integer >= 1, got -4"),
    Case("prepare_job-unknown-option",
         lambda c: prepare_job(c.arch["yxt"], c("r.zarr"), pipeline={"rios": [[0, 32, 0, 32]]}),
         JobError, r"unknown stage option 'rios'"),
]

# -- archives -------------------------------------------------------------------------------------------------------

ARCHIVES = [
    Case("open_archive-missing", lambda c: open_archive(c("missing.zarr")), FileNotFoundError,
         r"source: .*missing\.zarr does not exist; expected a Zarr v3 group"),
    Case("open_archive-none", lambda c: open_archive(None), TypeError,
         r"source must be an archive path, a zarr\.Group or a Zarr store; got NoneType"),
    Case("open_archive-file", lambda c: open_archive(c("file.txt")), ValueError, r"source: .*file\.txt is a file"),
    Case("open_archive-plain-group", lambda c: open_archive(c.inputs["plain"]), ValueError,
         r"plain\.zarr' is not a magtrack-dask archive \(no 'layout' attribute or 'frames' array\)"),
    Case("open_archive-array", lambda c: open_archive(c.arch["tyx"] + "/rois"), ValueError,
         r"source: .*rois is a Zarr array; expected a Zarr v3 group"),
    Case("open_archive-unknown-layout", lambda c: open_archive(c.inputs["xyz"]), ArchiveError,
         r"archive attribute 'layout' is 'xyz'"),
    Case("open_archive-frames_per_task", lambda c: open_archive(c.arch["tyx"], frames_per_task=0), ValueError,
         r"frames_per_task must be an integer >= 1, got 0"),
    Case("create_archive-exists", lambda c: create_archive(c("file.txt"), shape=(4, 8, 8), layout="tyx",
                                                           rois=[[0, 8, 0, 8]]), FileExistsError,
         r"path: .*file\.txt exists; pass overwrite=True"),
    Case("create_archive-overwrite-folder",
         lambda c: create_archive(c("folder"), shape=(4, 8, 8), layout="tyx", rois=[[0, 8, 0, 8]], overwrite=True),
         ValueError, r"path: refusing to overwrite .*folder: it is a folder, not a Zarr store"),
    Case("create_archive-zero-frames", lambda c: create_archive(c("a.zarr"), shape=(0, 8, 8), rois=[[0, 8, 0, 8]]),
         ValueError, r"shape: expected at least one frame and one pixel along every axis \('frame', 'y', 'x'\)"),
    Case("create_archive-complex", lambda c: create_archive(c("a.zarr"), stack((8, 8, 3), np.complex64), layout="yxt"),
         TypeError, r"data: expected integer or float pixels \(uint8, uint16, float32...\), got complex64"),
    Case("create_archive-bool", lambda c: create_archive(c("a.zarr"), shape=(8, 8, 3), dtype=bool, layout="yxt"),
         TypeError, r"dtype: expected integer or float pixels .*got bool"),
    Case("create_archive-wrong-ndim", lambda c: create_archive(c("a.zarr"), stack((8, 8)), layout="yxt"), ValueError,
         r"layout 'yxt' needs a 3-D array \('y', 'x', 'frame'\); got shape \(8, 8\)"),
    Case("create_archive-non-square", lambda c: create_archive(c("a.zarr"), shape=(4, 2, 8, 6), layout="tbyx"),
         ValueError, r"layout 'tbyx' needs square ROIs; got 8 x 6 px"),
    Case("create_archive-roi-outside",
         lambda c: create_archive(c("a.zarr"), shape=(4, 20, 24), rois=[[0, 8, 0, 8], [16, 24, 0, 8]]), ValueError,
         r"rois: ROI 1 \[16, 24, 0, 8\] lies outside the frame of shape \(height=20, width=24\)"),
    Case("create_archive-timestamps", lambda c: create_archive(c("a.zarr"), shape=(8, 8, 3), layout="yxt",
                                                               timestamps=[0.0, 0.1]), ValueError,
         r"timestamps must have shape \(3,\); got \(2,\)"),
    Case("create_archive-chunk_frames", lambda c: create_archive(c("a.zarr"), shape=(8, 8, 3), layout="yxt",
                                                                 chunk_frames=0), ValueError,
         r"chunk_frames must be an integer >= 1, got 0"),
    Case("create_archive-shard_frames", lambda c: create_archive(c("a.zarr"), shape=(8, 8, 8), layout="yxt",
                                                                 chunk_frames=4, shard_frames=6), ValueError,
         r"shard_frames \(6\) must be a multiple of chunk_frames \(4\)"),
    Case("create_archive-pixel_size_nm", lambda c: create_archive(c("a.zarr"), shape=(8, 8, 3), layout="yxt",
                                                                  pixel_size_nm=-65), ValueError,
         r"pixel_size_nm must be a finite number > 0 \(nm per pixel\), got -65"),
    Case("create_archive-rois-for-yxt", lambda c: create_archive(c("a.zarr"), shape=(8, 8, 3), layout="yxt",
                                                                 rois=[[0, 8, 0, 8]]), ValueError,
         r"rois is not used with layout 'yxt'"),
]

CASES = CORE + TRACK + JOBS + ARCHIVES


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 45 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ctx, unchanged):
    with pytest.raises(case.exc, match=case.match):
        case.call(ctx)


# -- the command line: exit 2, one line naming the option, nothing written ------------------------------------------

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
    ("import-pixel-size", lambda c: ["import", c("nope.tif"), "--out", c("a.zarr"), "--pixel-size-nm", "nan"],
     r"argument --pixel-size-nm: value must be a finite number > 0, got nan"),
    ("info-missing", lambda c: ["info", c("missing.zarr")], r"not found: .*missing\.zarr"),
    ("demo-roi", lambda c: ["demo", "--roi", "8", "--out", c("demo")], r"--roi must be at least 16 px; got 8"),
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


# -- what is data, not bad input ---------------------------------------------------------------------------------------


def test_nan_and_inf_pixels_give_nan_positions(simulated_beads, no_warnings):
    images, x, _ = simulated_beads(4, 3)
    images[10, 20, 1] = np.nan
    images[30, 30, 2] = np.inf
    got_x, got_y, z, profiles = core.stack_to_xyzp(images)
    assert np.isnan(got_x[[1, 2]]).all() and np.isnan(got_y[[1, 2]]).all()
    np.testing.assert_allclose(got_x[[0, 3]], x[[0, 3]], atol=0.05)
    assert np.isnan(z).all() and profiles.shape == (32, 4)


def test_track_flags_nan_and_inf_frames_and_takes_camera_integers(simulated_beads, no_warnings):
    import dask

    images, _, _ = simulated_beads(4, 4)
    with_nan = images.copy()
    with_nan[5, 5, 2] = np.nan
    with_nan[40, 20, 3] = -np.inf
    with dask.config.set(scheduler="synchronous"):
        ds = track(with_nan).compute()
        flags = ds.flags.values[0]
        assert (flags[[2, 3]] & 1).all() and not (flags[[0, 1]] & 1).any()
        assert np.isnan(ds.x.values[0, [2, 3]]).all() and np.isfinite(ds.x.values[0, [0, 1]]).all()
        for dtype in (np.uint8, np.uint16, np.int16, np.int32):
            counts = np.clip(np.rint(images * 100 / images.max()), 0, 100).astype(dtype)
            assert np.isfinite(track(counts).x.values).all(), dtype


def test_zlut_central_bin_may_be_nan(zlut):
    lut = zlut.copy()
    lut[1, 3] = np.nan  # the central pixel: never correlated
    profiles = zlut[1:, 10:12].copy()
    np.testing.assert_allclose(core.lookup_z(profiles, lut), core.lookup_z(profiles, zlut), rtol=1e-9)
