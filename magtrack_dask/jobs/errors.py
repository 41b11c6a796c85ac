"""Why a job does not start, and why it stops."""

from __future__ import annotations

from magtrack_dask.validation import InputError

__all__ = ["JobError", "JobFailed"]


class JobError(InputError):
    """The job cannot start: bad input, or existing results that differ.

    An :class:`~magtrack_dask.validation.InputError`: the command line exits 2.
    """


class JobFailed(RuntimeError):
    """A chunk failed while the job ran; finished chunks stay recorded."""
