"""The runner: a streaming driver that computes and writes the unfinished frame chunks of a prepared job.

No graph of the whole job is ever built. Tasks are made from the plan's
frame bounds as the job goes (:class:`_StreamTasks`): ``client.map`` of
:func:`~magtrack_dask.jobs.task.run_task` over one batch of chunks at a time,
at most two batches in flight, so the driver's work per chunk is constant and
its memory grows with the chunks in flight, not with the archive. What every
task shares is sent once, as one task the others depend on (the scheduler
can compute it again if every worker is lost). Each task writes its own
shards (:mod:`magtrack_dask.jobs.store`) and returns small sums, which
:class:`_Bookkeeper` folds into the job record (:mod:`magtrack_dask.jobs.record`)
once per half second: no run reads finished results again.

Unfinished writes (the temporary files of a worker or driver killed
mid-write) can only be in the shards of tasks that were in flight: those are
recorded before they are submitted, and cleaned after a killed run and after
a run that lost a worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Callable, Iterator

import numpy as np

from magtrack_dask.jobs.errors import JobError, JobFailed
from magtrack_dask.jobs.record import JOB_GROUP, JobRecord
from magtrack_dask.jobs.store import consolidate
from magtrack_dask.jobs.summary import STUCK_STD_PX, JobReport
from magtrack_dask.jobs.task import TaskContext, run_task
from magtrack_dask.io.integrity import remove_unfinished_writes

__all__ = ["Job"]

log = logging.getLogger(__name__)

_SAVE_EVERY_S = 0.5  # how often finished chunks are recorded while a job runs


def _context(ctx: TaskContext) -> TaskContext:
    """Worker side: the shared part of every task, as a task of its own."""
    return ctx


class Job:
    """A prepared job; build it with :func:`~magtrack_dask.jobs.prepare_job`, then call :meth:`run`.

    Attributes
    ----------
    out : str
        Results store (created by ``prepare_job``).
    plan : TrackingPlan
        What the tasks do (:func:`~magtrack_dask.tracking.plan.plan_tracking`).
    record : JobRecord
        The store's job record.
    bounds : ndarray of int, shape (n_chunks + 1,)
        Frame number where each chunk starts, then the frame count.
    names : tuple of str
        The data variables each task writes.
    """

    def __init__(self, out: str, plan, record: JobRecord, names: tuple[str, ...]):
        self.out = out
        self.plan = plan
        self.record = record
        self.bounds = plan.bounds
        self.names = names
        self._check_alignment()

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    @property
    def n_beads(self) -> int:
        return self.plan.n_beads

    @property
    def n_frames(self) -> int:
        return self.plan.n_frames

    @property
    def done(self) -> np.ndarray:
        """Chunks finished so far, ``(n_chunks,)`` bool."""
        return self.record.done

    @property
    def ds(self):
        """The lazy tracking Dataset (built on demand; the job itself never uses it)."""
        return self.plan.dataset()

    @property
    def fingerprint(self) -> dict:
        """What the results depend on (see :mod:`magtrack_dask.jobs.record`)."""
        return self.record.attrs["fingerprint"]

    def _arrays(self, mode: str = "r") -> dict:
        """The results arrays the tasks write (the data variables, and ``time`` when known)."""
        import zarr

        root = zarr.open_group(self.out, mode=mode, zarr_format=3, use_consolidated=False)
        names = self.names + (("time",) if self.plan.times.known else ())
        return {name: root[name] for name in names}

    def _check_alignment(self) -> None:
        # The only protection against lost writes in Zarr 3: every task region must be whole shards.
        from magtrack_dask.tracking.dataset import variable_attrs

        n, step = self.n_frames, self.plan.task_frames
        starts, stops = self.bounds[:-1], self.bounds[1:]
        if np.any(starts % step) or np.any((stops % step) & (stops != n)):
            raise JobError(f"the tasks' frame ranges are not regular ({step} frames); refusing to write")
        dtypes = {n: d for n, (_, d, _) in variable_attrs(self.plan).items()}
        for name, arr in self._arrays().items():
            ax = (arr.metadata.dimension_names or ("frame",)).index("frame")
            unit = (arr.shards or arr.chunks)[ax]
            if name in dtypes and np.dtype(arr.dtype) != dtypes[name]:
                raise JobError(f"results variable {name!r} is stored as {arr.dtype}, expected {dtypes[name]}")
            if unit != step or arr.shape[ax] != n:
                raise JobError(f"frame chunks of {name!r} ({unit} frames) do not align with the tasks "
                               f"({step} frames); refusing to write (data would be lost)")

    def _token(self) -> str:
        # Unique per job and output: two jobs on one scheduler never share a task's key.
        text = json.dumps([self.fingerprint, self.out], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def shard_keys(self, chunks) -> list[str]:
        """Store keys of the shards (one per results array) that the tasks of ``chunks`` write."""
        keys = []
        for name, arr in self._arrays().items():
            dims = arr.metadata.dimension_names
            ax = dims.index("frame")
            for i in chunks:
                coords = tuple(int(i) if d == ax else 0 for d in range(len(dims)))
                keys.append(f"{name}/{arr.metadata.encode_chunk_key(coords)}")
        return keys

    def run(
        self,
        client=None,
        *,
        progress: Callable[[int, int, int], None] | bool | None = None,
        batch_chunks: int | None = None,
        max_chunks: int | None = None,
        stuck_std_px: float = STUCK_STD_PX,
    ) -> JobReport:
        """Compute and write the chunks not yet done.

        Parameters
        ----------
        client : distributed.Client, optional
            Default: the current client (``distributed.get_client()``); not
            needed when nothing is left to compute.
        progress : callable or bool, optional
            ``progress(n_done, n_total, n_frames_this_run)`` after each chunk;
            True draws a :class:`magtrack_dask.progress.TextProgress` bar.
        batch_chunks : int, optional
            Chunks per submitted batch; default two per worker thread. Up to
            two batches are in flight.
        max_chunks : int, optional
            Stop after this many chunks (the rest on a later resume), e.g. to
            fit a batch system's time limit.
        stuck_std_px : float, optional
            Threshold of the "stuck" beads of the summary (see
            :func:`~magtrack_dask.jobs.summarize_results`).

        Returns
        -------
        JobReport
            ``complete`` is False while chunks are left or input chunks were
            unreadable (``unreadable_frames``): their frames are written as
            NaN with flag 16 and left unfinished, every other chunk is done.

        Raises
        ------
        JobFailed
            A chunk raised; the chunks finished before stay recorded.
            Unreadable input does not raise.
        """
        t0 = time.perf_counter()
        if progress is True:
            from magtrack_dask.progress import TextProgress

            progress = TextProgress()
        todo = np.flatnonzero(~self.done)
        n_skipped = self.n_chunks - len(todo)
        if max_chunks is not None:
            todo = todo[: max(0, int(max_chunks))]
        log.info("job %s: %d chunks (%d frames), %d already done, computing %d",
                 self.out, self.n_chunks, self.n_frames, n_skipped, len(todo))
        killed = self.record.in_flight  # a run stopped with these in flight: their shards may hold leftovers
        lost_workers = False
        n_computed = 0
        if len(todo):
            n_computed, lost_workers = self._compute(todo, client, progress, batch_chunks, n_skipped,
                                                     stuck_std_px)
        # Every task of this run has returned: what a killed process left half-written goes.
        suspects = set(killed) | (set(int(i) for i in todo) if lost_workers else set())
        stale = self._remove_unfinished_writes(sorted(suspects), bool(killed))
        if stale:
            log.info("job %s: removed %d unfinished write(s) of stopped processes", self.out, stale)
        complete = bool(self.done.all())
        if complete:
            self.record.mark_complete()
            consolidate(self.out)
        attrs = self.record.attrs
        report = JobReport(self.out, self.n_chunks, self.n_frames, n_skipped, n_computed, complete,
                           time.perf_counter() - t0, [tuple(r) for r in attrs.get("unreadable_frames", [])],
                           attrs.get("summary"))
        log.info("%s", report.summary())
        return report

    def _remove_unfinished_writes(self, chunks: list[int], killed: bool) -> int:
        if not chunks and not killed:
            return 0
        n = remove_unfinished_writes(self.out, self.shard_keys(chunks))
        if killed:  # the driver's own writes: the record and the root metadata ("zarr.json" -> "zarr.<id>.partial")
            n += remove_unfinished_writes(os.path.join(self.out, JOB_GROUP))
            n += remove_unfinished_writes(self.out, ["zarr"])
            self.record.set_in_flight([])
        return n

    def _compute(self, todo: np.ndarray, client, progress, batch_chunks: int | None, n_skipped: int,
                 stuck_std_px: float) -> tuple[int, bool]:
        """Run the chunks ``todo`` in batches; record each one done as it finishes.

        Returns the number of chunks done and whether a worker was lost meanwhile.
        """
        from distributed import get_client

        client = client or get_client()
        if batch_chunks is None:
            batch_chunks = 2 * (sum(client.nthreads().values()) or 1)
        book = _Bookkeeper(self, client, stuck_std_px)
        window = _StreamTasks(self, client, todo, max(1, int(batch_chunks)), book)
        n_returned = frames = 0
        if progress:
            progress(n_skipped, self.n_chunks, 0)
        window.submit_batch()
        window.submit_batch()
        try:
            for i, fut in window.finished():
                if fut.status != "finished":
                    self._raise_if_failed(i, fut)
                book.add(i, fut)
                n_returned += 1
                frames += int(self.bounds[i + 1] - self.bounds[i])
                if book.due():
                    book.save(window.live_chunks())
                if progress:
                    progress(n_skipped + n_returned, self.n_chunks, frames)
                window.refill()
        finally:
            window.cancel(client)
            book.save(window.live_chunks(), final=True)  # also after a failure or an interrupt
        return book.n_computed, book.lost_workers

    def _raise_if_failed(self, i: int, fut) -> None:
        """Raise :class:`JobFailed` for chunk ``i`` if its task failed or was cancelled.

        A task that finished, then lost its result with its worker (a cancelled
        batch job, a killed process) before this loop took it, is not a failure:
        the scheduler computes it again on another worker, and this waits for that.
        """
        try:
            fut.result()
        except Exception as err:
            raise JobFailed(f"chunk {i} (frames {self.bounds[i]}-{self.bounds[i + 1] - 1}) failed: "
                            f"{type(err).__name__}: {err}") from err


class _StreamTasks:
    """Chunks in flight: made from the bounds and submitted a batch at a time, at most two batches ahead."""

    def __init__(self, job: Job, client, todo: np.ndarray, batch_chunks: int, book: _Bookkeeper):
        from distributed import as_completed

        plan = job.plan
        ctx = TaskContext(frames=plan.source.frames, frame_axis=plan.source.layout.frame_axis,
                          zlut=plan.zlut.table, spec=plan.spec, arrays=job._arrays("r+"),
                          pixel_size_nm=plan.pixel_size_nm, times=plan.times)
        self._token = job._token()
        self._client = client
        self._ctx = client.submit(_context, ctx, key=f"job-context-{self._token}", pure=False)
        self._bounds = job.bounds
        self._record = job.record
        self._book = book
        self._todo = todo
        self._next = 0
        self._batch = batch_chunks
        self._chunk_of: dict[str, int] = {}
        self._live: dict[str, Any] = {}  # futures not yet handled, to cancel on failure or interrupt
        self._ac = as_completed()

    def live_chunks(self) -> list[int]:
        return [self._chunk_of[k] for k in self._live]

    def submit_batch(self) -> None:
        chunks = self._todo[self._next : self._next + self._batch]
        if not len(chunks):
            return
        self._next += len(chunks)
        # Recorded before they run: a killed run leaves unfinished writes only in these tasks' shards.
        self._record.set_in_flight(self.live_chunks() + self._book.unsaved() + [int(i) for i in chunks])
        keys = [f"track-chunk-{self._token}-{int(i)}" for i in chunks]
        futures = self._client.map(run_task, [self._ctx] * len(chunks), self._bounds[chunks].tolist(),
                                   self._bounds[chunks + 1].tolist(), key=keys, pure=False)
        for i, fut in zip(chunks, futures):
            self._chunk_of[fut.key] = int(i)
            self._live[fut.key] = fut
            self._ac.add(fut)

    def refill(self) -> None:
        """Submit the next batch once no more than one batch is left in flight."""
        if self._next < len(self._todo) and self._ac.count() <= self._batch:
            self.submit_batch()

    def finished(self) -> Iterator[tuple[int, Any]]:
        """``(chunk, future)`` of each task as it finishes or fails."""
        for fut in self._ac:
            self._live.pop(fut.key)
            yield self._chunk_of.pop(fut.key), fut

    def cancel(self, client) -> None:
        if self._live:
            client.cancel(list(self._live.values()))
        self._ctx.release()


class _Bookkeeper:
    """Finished chunks -> the job record, in one write for all that finished since the last.

    A crash loses at most the last half second's records (those chunks are
    recomputed), never records data that is not written.
    """

    def __init__(self, job: Job, client, stuck_std_px: float):
        self._job = job
        self._client = client
        self._stuck = stuck_std_px
        self._returned: list[tuple[int, Any]] = []  # (chunk, future) whose small result is not fetched yet
        self._last_save = time.monotonic()
        self._workers = set(client.nthreads())
        self.lost_workers = False
        self.n_computed = 0

    def add(self, chunk: int, fut) -> None:
        self._returned.append((chunk, fut))

    def unsaved(self) -> list[int]:
        return [i for i, _ in self._returned]

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= _SAVE_EVERY_S

    def save(self, live: list[int], final: bool = False) -> None:
        record = self._job.record
        finished, unreadable, frames = {}, {}, {}
        if self._returned:
            # the small results in one gather, not one by one
            results = self._client.gather([f for _, f in self._returned])
            for (i, _), r in zip(self._returned, results):
                if r.n_unreadable:  # written as NaN + flag 16; not done, so a resume retries it
                    unreadable[i], frames[i] = r.sums, r.unreadable_frames
                else:  # the task returned: the chunk's data is on disk
                    finished[i] = r.sums
            self._returned.clear()
        if finished or unreadable:
            record.save(finished, unreadable, self._job.bounds, self._stuck, frames=frames)
        if final:
            record.clear_pending()
            record.set_in_flight(live)
        self.n_computed += len(finished)
        self._last_save = time.monotonic()
        now = set(self._client.nthreads())
        self.lost_workers |= bool(self._workers - now)
        self._workers |= now
