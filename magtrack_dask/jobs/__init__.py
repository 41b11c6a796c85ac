"""Resumable, idempotent tracking jobs: archive -> results store, chunk by chunk.

:func:`prepare_job` checks the inputs and creates (or reopens) the results
store (:mod:`~magtrack_dask.jobs.prepare`; :mod:`~magtrack_dask.jobs.store`:
zarr arrays sharded one task per shard, made from metadata); :meth:`Job.run`
streams the chunks not yet done to the cluster (:mod:`~magtrack_dask.jobs.runner`,
one :mod:`~magtrack_dask.jobs.task` each) and records each one in the store's
job record (:mod:`~magtrack_dask.jobs.record`) with the per-bead sums its task
returned, from which the quality summary is made (:mod:`~magtrack_dask.jobs.summary`).
:func:`run_job` does both steps.
"""

from magtrack_dask.jobs.errors import JobError, JobFailed
from magtrack_dask.jobs.prepare import prepare_job, run_job
from magtrack_dask.jobs.record import JOB_GROUP, job_status
from magtrack_dask.jobs.runner import Job
from magtrack_dask.jobs.summary import STUCK_STD_PX, JobReport, format_bead_summary, summarize_results

__all__ = ["Job", "JobError", "JobFailed", "JobReport", "prepare_job", "run_job", "job_status", "summarize_results",
           "format_bead_summary", "JOB_GROUP", "STUCK_STD_PX"]
