"""Starting a job: check the inputs, then create the results store or reopen it to resume.

A job tracks an archive into a Zarr v3 results store one frame chunk at a
time and records each finished chunk in the store itself
(:mod:`magtrack_dask.jobs.record`), so that a job killed part-way can be
rerun and computes only what is missing (:mod:`magtrack_dask.jobs.runner`).
Everything is made from the archive's metadata
(:func:`~magtrack_dask.tracking.plan.plan_tracking`): the results store
(:mod:`magtrack_dask.jobs.store`) and the tasks, never a graph of the whole
job. Bad input is refused before anything is created.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import numpy as np

from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.radial_model import RadialModel
from magtrack_dask.io.paths import check_replaceable, remove_store
from magtrack_dask.jobs.errors import JobError
from magtrack_dask.jobs.record import JOB_FORMAT, JobRecord, fingerprint_changes, job_status
from magtrack_dask.jobs.runner import Job
from magtrack_dask.jobs.store import consolidate, create_results_store, results_names
from magtrack_dask.jobs.summary import STUCK_STD_PX, JobReport
from magtrack_dask.tracking import MIN_SYMMETRY, resolve_method
from magtrack_dask.tracking.dataset import coordinate_values, results_attrs
from magtrack_dask.tracking.plan import TrackingPlan, plan_tracking
from magtrack_dask.validation import InputError
from magtrack_dask.zlut import load_zlut

__all__ = ["JOB_TASK_BYTES", "MIN_JOB_TASKS", "job_task_frames", "prepare_job", "run_job"]

#: Input bytes (decoded frames) a job's task covers by default, in whole
#: archive shards. Every task writes one file per results variable and costs
#: the driver the same bookkeeping whatever its size, so bigger tasks mean
#: fewer files and a lighter driver: at one 32 MiB shard per task a 100 TB
#: archive would write ~2e7 results files, at 1 GiB ~7e5. A task still reads
#: and tracks one shard at a time (:func:`~magtrack_dask.tracking.task.track_zarr_chunk`),
#: so worker memory stays that of one shard.
JOB_TASK_BYTES = 2**30

#: Fewest tasks the default task size leaves a job with (when the archive has
#: that many shards): enough for every worker of a sizeable cluster to get
#: several, so that a small archive is not made into a handful of tasks that
#: leave most workers idle.
MIN_JOB_TASKS = 64


def job_task_frames(unit_frames: int, unit_bytes: int, n_frames: int) -> int:
    """A job's default frames per task: whole archive shards covering about :data:`JOB_TASK_BYTES`.

    Parameters
    ----------
    unit_frames : int
        Frames per archive shard (per chunk when unsharded).
    unit_bytes : int
        Decoded bytes of one such shard.
    n_frames : int
        Frames of the archive.

    Returns
    -------
    int
        ``k * unit_frames`` with ``k >= 1`` shards: at most :data:`JOB_TASK_BYTES`
        of frames and at most ``n_shards // MIN_JOB_TASKS`` shards, so a job of
        at least :data:`MIN_JOB_TASKS` shards keeps at least that many tasks.

    Examples
    --------
    >>> job_task_frames(40, 32_768_000, 122_070_000)  # 100 TB: 100 beads of 64 px uint16, 32.8 MB shards
    1280
    >>> job_task_frames(16, 2**20, 45)  # 3 shards: one per task
    16
    """
    n_units = -(-int(n_frames) // int(unit_frames))
    k = min(JOB_TASK_BYTES // max(int(unit_bytes), 1), n_units // MIN_JOB_TASKS)
    return int(unit_frames) * max(1, int(k))


def _zlut_digest(zlut) -> str:
    if zlut is None:
        return "none"
    lut = load_zlut(zlut)[0]
    if isinstance(lut, np.ndarray):
        arr = np.ascontiguousarray(lut, dtype=np.float64)
        return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()
    # The 'fit' method's image models: every field, and whether one model is shared by all beads.
    shared = isinstance(lut, RadialModel)
    h = hashlib.sha256(b"fit shared" if shared else b"fit per-bead")
    for model in [lut] if shared else lut:
        z, coef = (np.ascontiguousarray(a, dtype=np.float64) for a in (model.z, model.coef))
        h.update(repr((z.shape, coef.shape, float(model.spacing), float(model.z_smoothing), model.n_pixels)).encode())
        h.update(z.tobytes() + coef.tobytes())
    return h.hexdigest()


def _check_paths(archive, out: str, zlut, overwrite: bool):
    """The archive as an absolute path (other sources as given); JobError for missing or clashing paths."""
    if isinstance(archive, (str, os.PathLike)):
        archive = os.path.abspath(os.fspath(archive))
        if not os.path.exists(archive):
            raise JobError(f"archive not found: {archive}")
    if isinstance(zlut, (str, os.PathLike)) and not os.path.exists(zlut):
        raise JobError(f"Z-LUT not found: {os.fspath(zlut)}")
    # --overwrite would delete an input that the output overlaps.
    for name, path in (("archive", archive), ("zlut", zlut)):
        if isinstance(path, (str, os.PathLike)):
            a, b = os.path.realpath(out), os.path.realpath(os.fspath(path))
            if os.path.commonpath([a, b]) in (a, b):
                raise JobError(f"out: {out} overlaps the {name} {os.fspath(path)}; "
                               "the results store must be a separate path")
    if overwrite:
        try:
            check_replaceable(out, "out")
        except InputError as err:
            raise JobError(str(err)) from err
    return archive


def _fingerprint(plan: TrackingPlan, zlut, pipeline: PipelineOptions, method: str) -> dict:
    """Everything the bytes of the results depend on.

    The package version is left out on purpose: a bug-fix release should not
    block resuming.
    """
    attrs = results_attrs(plan)
    return {
        "format": JOB_FORMAT,
        "source": attrs.get("source"),
        "zlut_sha256": _zlut_digest(zlut),
        "method": method,
        "parameters": json.loads(attrs["parameters"]),
        "stage_options": json.loads(json.dumps(pipeline.stage_options())),  # as the record stores it
        "n_beads": plan.n_beads,
        "n_frames": plan.n_frames,
        "chunk_frames": plan.task_frames,
        "variables": sorted(results_names(plan) + tuple(coordinate_values(plan))),
    }


def _default_task_frames(plan: TrackingPlan) -> int:
    """:func:`job_task_frames` of a plan made with one archive shard (chunk) per task."""
    frames = plan.source.frames
    frame_bytes = frames.dtype.itemsize * int(np.prod(frames.shape)) // max(plan.n_frames, 1)
    return job_task_frames(plan.task_frames, plan.task_frames * frame_bytes, plan.n_frames)


def _stored_task_frames(out: str) -> int | None:
    """The task size of the job already in ``out`` (None: no job's store there).

    Kept when the caller gives none, so that a store made with another default
    task size resumes instead of being refused.
    """
    if not os.path.exists(out):
        return None
    status = job_status(out)  # None for anything but a job's store: _reopen says what is wrong
    if status is None or status["format"] != JOB_FORMAT:
        return None
    frames = status["fingerprint"].get("chunk_frames")
    return int(frames) if isinstance(frames, int) and frames > 0 else None


def _reopen(out: str, fingerprint: dict, resume: bool) -> JobRecord:
    """The record of the existing store ``out`` when it holds this job and ``resume`` is asked."""
    status = job_status(out)
    if status is None:
        raise JobError(f"{out} exists and is not a magtrack-dask results store; "
                       "choose another output or pass --overwrite to replace it")
    if status["format"] != JOB_FORMAT:
        raise JobError(f"{out} was made by another version of magtrack-dask (job record format "
                       f"{status['format']}, this one writes {JOB_FORMAT}) and cannot be resumed; "
                       "pass --overwrite to start again")
    changes = fingerprint_changes(status["fingerprint"], fingerprint)
    if changes:
        raise JobError(f"{out} holds results made with other inputs or parameters "
                       f"({'; '.join(changes)}); pass --overwrite to replace them")
    if not resume:
        state = "complete" if status["complete"] else f"{status['n_done']}/{status['n_chunks']} chunks done"
        raise JobError(f"{out} already holds results of this job ({state}); "
                       "pass --resume to finish it or --overwrite to start again")
    return JobRecord.open(out)


def _create_store(out: str, plan: TrackingPlan, fingerprint: dict) -> JobRecord:
    """The results store's metadata (no data yet, but coordinates) and a new job record, consolidated."""
    root = create_results_store(out, plan)
    record = JobRecord.create(root, fingerprint, plan.n_chunks, plan.n_beads)
    consolidate(out)
    return record


def prepare_job(
    archive,
    out,
    zlut=None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    pipeline: PipelineOptions | dict | None = None,
    device: str = "cpu",
    frames_per_task: int | None = None,
    rois=None,
    layout: str | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    edge_margin_px: float | None = None,
    min_symmetry: float = MIN_SYMMETRY,
    method: str | None = None,
) -> Job:
    """Check the inputs and the results store, create it if needed.

    Parameters
    ----------
    archive : str, os.PathLike, zarr.Group or zarr.Array
        Archive to track (see :mod:`magtrack_dask.io.format`); in-memory
        arrays are refused (a job's workers read the archive themselves).
    out : str or os.PathLike
        Results store (a Zarr v3 folder).
    zlut : str, os.PathLike, array_like, RadialModel or list of RadialModel, optional
        Z-LUT as :func:`magtrack_dask.zlut.load_zlut` reads it (a Zarr array
        from :func:`magtrack_dask.zlut.save_zlut`, a ``.npy`` file or an array;
        for ``method='fit'`` the image models, or the group ``save_zlut``
        writes of them: required).
    resume : bool, optional
        Continue a store made by the same job (same fingerprint): only the
        missing chunks are computed. Without it an existing store refuses.
    overwrite : bool, optional
        Delete an existing store first (it must be a Zarr store).
    pipeline : PipelineOptions or dict, optional
        Stage options of the tracking pipeline (a dict uses the reference's
        keys, see :meth:`PipelineOptions.from_stage_options`); default the
        plain :func:`magtrack_dask.stack_to_xyzp`.
    frames_per_task : int, optional
        Frames per task, rounded up to whole archive shards (chunks when
        unsharded). Default: whole shards covering about
        :data:`JOB_TASK_BYTES` of frames, but at least :data:`MIN_JOB_TASKS`
        tasks (:func:`job_task_frames`); a resume without it keeps the task
        size of the job already in ``out``. Unlike :func:`~magtrack_dask.tracking.track`,
        whose default is one shard per task: a job's task writes one file
        per results variable, so fewer, bigger tasks write fewer files. A
        task reads one shard at a time whatever its size.
    device, rois, layout, pixel_size_nm, frame_rate_hz, edge_margin_px, min_symmetry
        As :func:`magtrack_dask.tracking.track` takes them.
    method : {'accurate', 'magtrack', 'fit'}, optional
        As :func:`magtrack_dask.tracking.track`: default 'accurate', or
        'magtrack' when ``pipeline`` is given. Part of the job's fingerprint:
        resuming with another method is refused.

    Returns
    -------
    Job

    Raises
    ------
    JobError
        Missing or invalid input, both ``resume`` and ``overwrite``, or an
        existing store that was made with other parameters or is not a job's.
    """
    if resume and overwrite:
        raise JobError("resume and overwrite exclude each other")
    out = os.path.abspath(os.fspath(out))
    archive = _check_paths(archive, out, zlut, overwrite)
    try:
        method = resolve_method(method, pipeline)
        pipeline = PipelineOptions.coerce(pipeline)
        options = dict(rois=rois, layout=layout, device=device, pixel_size_nm=pixel_size_nm,
                       frame_rate_hz=frame_rate_hz, edge_margin_px=edge_margin_px, min_symmetry=min_symmetry,
                       pipeline=pipeline, method=method)
        if frames_per_task is None:
            frames_per_task = None if overwrite else _stored_task_frames(out)
        plan = plan_tracking(archive, zlut, frames_per_task=frames_per_task, **options)
        if plan.source.frames is not None and frames_per_task is None:
            # planned one shard per task: now at the job's default size
            task_frames = _default_task_frames(plan)
            if task_frames != plan.task_frames:
                plan = plan_tracking(archive, zlut, frames_per_task=task_frames, **options)
        fingerprint = _fingerprint(plan, zlut, pipeline, method)
    except (InputError, FileNotFoundError) as err:  # bad input only: a bug keeps its own type
        raise JobError(f"cannot track {archive}: {err}") from err
    if plan.source.frames is None:
        raise JobError(f"archive: a job reads its frames from an archive (a path, zarr.Group or Zarr array); "
                       f"got {plan.source.description}. Write it to an archive first "
                       "(magtrack_dask.create_archive) or use track() and write_results()")
    if os.path.exists(out) and not overwrite:
        record = _reopen(out, fingerprint, resume)
    else:
        if overwrite:
            remove_store(out, "out")  # a Zarr store: checked above
        record = _create_store(out, plan, fingerprint)
    return Job(out, plan, record, results_names(plan))


def run_job(
    archive,
    out,
    zlut=None,
    *,
    client=None,
    resume: bool = False,
    overwrite: bool = False,
    pipeline: PipelineOptions | dict | None = None,
    device: str = "cpu",
    frames_per_task: int | None = None,
    rois=None,
    layout: str | None = None,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    edge_margin_px: float | None = None,
    min_symmetry: float = MIN_SYMMETRY,
    method: str | None = None,
    progress: Callable[[int, int, int], None] | bool | None = None,
    batch_chunks: int | None = None,
    max_chunks: int | None = None,
    stuck_std_px: float = STUCK_STD_PX,
) -> JobReport:
    """Track an archive into a results store, resumably.

    :func:`prepare_job` then :meth:`Job.run`; see both for the parameters.

    Returns
    -------
    JobReport

    Examples
    --------
    >>> from magtrack_dask.cluster import start_cluster   # doctest: +SKIP
    >>> client = start_cluster(2)                           # doctest: +SKIP
    >>> run_job("archive.zarr", "results.zarr", "zlut.zarr", client=client, progress=True)  # doctest: +SKIP
    """
    job = prepare_job(archive, out, zlut, resume=resume, overwrite=overwrite, pipeline=pipeline, device=device,
                      frames_per_task=frames_per_task, rois=rois, layout=layout, pixel_size_nm=pixel_size_nm,
                      frame_rate_hz=frame_rate_hz, edge_margin_px=edge_margin_px, min_symmetry=min_symmetry,
                      method=method)
    return job.run(client, progress=progress, batch_chunks=batch_chunks, max_chunks=max_chunks,
                   stuck_std_px=stuck_std_px)
