"""Bad input to the resumable job: the stated error, naming the parameter; nothing created or changed (tests/bad_input.py)."""

import numpy as np
import pytest

from magtrack_dask.jobs import JobError, prepare_job, run_job

from tests.bad_input import Case, run_case, zlut_with

CASES = [
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
         r"cannot track .*: rois are 4 x 4 px; tracking needs at least 8 x 8 px \(method 'accurate'\)"),
    Case("run_job-rois-too-small-magtrack",
         lambda c: run_job(c.arch["tyx"], c("r.zarr"), rois=[[0, 4, 0, 4]], method="magtrack"), JobError,
         r"cannot track .*: rois are 4 x 4 px; tracking needs at least 5 x 5 px"),
    Case("run_job-method-unknown", lambda c: run_job(c.arch["tyx"], c("r.zarr"), method="QI"), JobError,
         r"cannot track .*: method must be one of 'magtrack', 'accurate', 'fit'; got 'QI'"),
    Case("prepare_job-frames_per_task", lambda c: prepare_job(c.arch["yxt"], c("r.zarr"), frames_per_task=-4),
         JobError, r"frames_per_task must be an integer >= 1, got -4"),
    Case("prepare_job-unknown-option",
         lambda c: prepare_job(c.arch["yxt"], c("r.zarr"), pipeline={"rios": [[0, 32, 0, 32]]}),
         JobError, r"unknown stage option 'rios'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ctx, unchanged):
    run_case(case, ctx)
