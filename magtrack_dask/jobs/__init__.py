"""Resumable, idempotent tracking jobs: archive -> results store, chunk by chunk.

:func:`prepare_job` checks the inputs and creates (or reopens) the results
store (:mod:`~magtrack_dask.jobs.prepare`); :meth:`Job.run` computes the
chunks not yet done (:mod:`~magtrack_dask.jobs.runner`) and records each one
in the store's job record (:mod:`~magtrack_dask.jobs.record`); after each run
the quality summary counts the flags per bead (:mod:`~magtrack_dask.jobs.summary`).
:func:`run_job` does both steps.
"""

from magtrack_dask.jobs.errors import JobError, JobFailed
from magtrack_dask.jobs.prepare import prepare_job, run_job
from magtrack_dask.jobs.record import JOB_GROUP, job_status
from magtrack_dask.jobs.runner import Job
from magtrack_dask.jobs.summary import STUCK_STD_PX, JobReport, format_bead_summary, summarize_results

__all__ = ["Job", "JobError", "JobFailed", "JobReport", "prepare_job", "run_job", "job_status", "summarize_results",
           "format_bead_summary", "JOB_GROUP", "STUCK_STD_PX"]
