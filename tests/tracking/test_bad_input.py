"""Bad input to track and write_results (nothing is computed: every check is up front): the stated error, naming the parameter; nothing created or changed (tests/bad_input.py)."""

import numpy as np
import pytest
import zarr

from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.tracking import track, write_results

from tests.bad_input import Case, _nonmono, _per_bead_dup, run_case, stack, zlut_with

CASES = [
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
         r"source images are 0 x 0 px; tracking needs at least 8 x 8 px \(method 'accurate'\)"),
    Case("track-empty-images-magtrack", lambda c: track(stack((0, 0, 4)), method="magtrack"), ValueError,
         r"source images are 0 x 0 px; tracking needs at least 5 x 5 px \(the sub-pixel fit's n_local\)"),
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
         r"rois are 4 x 4 px; tracking needs at least 8 x 8 px \(method 'accurate'\)"),
    Case("track-rois-too-small-magtrack", lambda c: track(stack((4, 64, 64)), rois=[[0, 4, 0, 4]], pipeline={}),
         ValueError, r"rois are 4 x 4 px; tracking needs at least 5 x 5 px"),
    Case("track-method-unknown", lambda c: track(stack((32, 32, 4)), method="best"), ValueError,
         r"method must be one of 'magtrack', 'accurate', 'fit'; got 'best'"),
    Case("track-method-with-stage-options",
         lambda c: track(stack((32, 32, 4)), method="accurate", pipeline={"n auto_conv_multiline_sub_pixel": 2}),
         ValueError, r"pipeline stage options apply to method='magtrack' only; got method='accurate'"),
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


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ctx, unchanged):
    run_case(case, ctx)


# -- what is data, not bad input ---------------------------------------------------------------------------------------


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
