"""Bad input to archives: the stated error, naming the parameter; nothing created or changed (tests/bad_input.py)."""

import numpy as np
import pytest

from magtrack_dask.io.archive import create_archive, open_archive
from magtrack_dask.io.paths import ArchiveError

from tests.bad_input import Case, run_case, stack

CASES = [
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


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ctx, unchanged):
    run_case(case, ctx)
