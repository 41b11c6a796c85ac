"""The runner: computes and writes the unfinished frame chunks of a prepared job.

One Dask task per frame chunk tracks the chunk and writes every variable's
region of it. Regions are the output's own Zarr chunks (checked before
anything runs), so no two tasks ever write the same chunk; there is no lock.
Chunks are submitted in batches (a few per worker thread) and new batches
follow as ``distributed.as_completed`` reports finished ones, so progress is
known chunk by chunk. Finished chunks go to the job record
(:mod:`magtrack_dask.jobs.record`) in one write per half second. Metadata is
written unconsolidated and consolidated once when the last chunk is done.

The pieces are apart so that each can change alone: :class:`_GraphTasks`
makes the tasks of some chunks, :class:`_Window` keeps a bounded number of
them in flight, :class:`_Bookkeeper` records what finished.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import zarr

from magtrack_dask.core.flags import Flag
from magtrack_dask.jobs.errors import JobError, JobFailed
from magtrack_dask.jobs.record import JobRecord
from magtrack_dask.jobs.summary import STUCK_STD_PX, JobReport, summarize_results
from magtrack_dask.io.integrity import remove_unfinished_writes

__all__ = ["Job"]

log = logging.getLogger(__name__)

_SAVE_EVERY_S = 0.5  # how often finished chunks are recorded while a job runs


def _write_chunk(*blocks, targets, axes, flags_at):
    """Worker side: write one frame chunk of every variable.

    The last block holds the chunk's frame numbers, which give the region.
    Returns ``[frames, unreadable frames]``: the client marks the chunk done
    only when no frame carries flag 16 (its input could not be read).
    """
    frames = blocks[-1]
    start, stop = int(frames[0]), int(frames[-1]) + 1
    for block, target, ax in zip(blocks[:-1], targets, axes):
        region = tuple(slice(start, stop) if i == ax else slice(None) for i in range(block.ndim))
        target[region] = block
    unreadable = (blocks[flags_at] & int(Flag.INPUT_UNREADABLE)).any(axis=0)  # (frame,)
    return np.array([stop - start, int(unreadable.sum())], dtype=np.int64)


class Job:
    """A prepared job; build it with :func:`~magtrack_dask.jobs.prepare_job`, then call :meth:`run`.

    Attributes
    ----------
    out : str
        Results store (created by ``prepare_job``).
    ds : xarray.Dataset
        The lazy tracking Dataset.
    record : JobRecord
        The store's job record.
    bounds : ndarray of int, shape (n_chunks + 1,)
        Frame number where each chunk starts, then the frame count.
    """

    def __init__(self, out: str, ds, record: JobRecord):
        self.out = out
        self.ds = ds
        self.record = record
        self.bounds = np.cumsum((0,) + tuple(ds.chunks["frame"])).astype(np.int64)
        self._root = zarr.open_group(out, mode="r+", zarr_format=3)
        self._names = [n for n, v in ds.variables.items() if "frame" in v.dims and v.chunks is not None]
        self._check_alignment()

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

    @property
    def done(self) -> np.ndarray:
        """Chunks finished so far, ``(n_chunks,)`` bool."""
        return self.record.done

    @property
    def fingerprint(self) -> dict:
        """What the results depend on (see :mod:`magtrack_dask.jobs.record`)."""
        return self.record.attrs["fingerprint"]

    def _check_alignment(self) -> None:
        # The only protection against lost writes in Zarr 3: every task region must be whole chunks.
        n = int(self.bounds[-1])
        for name in self._names:
            arr = self._root[name]
            ax = self.ds[name].dims.index("frame")
            step = (arr.shards or arr.chunks)[ax]
            if np.dtype(arr.dtype) != self.ds[name].dtype:
                raise JobError(f"results variable {name!r} is stored as {arr.dtype}, expected {self.ds[name].dtype}")
            starts, stops = self.bounds[:-1], self.bounds[1:]
            if np.any(starts % step) or np.any((stops % step) & (stops != n)):
                raise JobError(f"frame chunks of {name!r} ({step} frames) do not align with the tasks; "
                               f"refusing to write (data would be lost)")

    def _write_graph(self):
        """One lazy int64 block per chunk; computing block i writes chunk i."""
        import dask.array as da

        args, targets, axes = [], [], []
        for name in self._names:
            var = self.ds[name]
            ind = "".join("f" if d == "frame" else chr(ord("a") + i) for i, d in enumerate(var.dims))
            args += [var.data, ind]
            targets.append(self._root[name])
            axes.append(var.dims.index("frame"))
        frames = da.arange(int(self.bounds[-1]), chunks=(self.ds.chunks["frame"],), dtype=np.int64)
        args += [frames, "f"]
        return da.blockwise(
            _write_chunk, "f", *args, adjust_chunks={"f": 2}, concatenate=True, dtype=np.int64,
            meta=np.empty((0,), dtype=np.int64), targets=targets, axes=axes, flags_at=self._names.index("flags"),
            name="write-results-" + self._token(),
        )

    def _token(self) -> str:
        # Unique per job and output: two jobs on one scheduler never share a write task's key.
        text = json.dumps([self.fingerprint, self.out], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

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
        todo = [int(i) for i in np.flatnonzero(~self.done)]
        n_skipped = self.n_chunks - len(todo)
        if max_chunks is not None:
            todo = todo[: max(0, int(max_chunks))]
        log.info("job %s: %d chunks (%d frames), %d already done, computing %d",
                 self.out, self.n_chunks, int(self.bounds[-1]), n_skipped, len(todo))
        # Chunks found unreadable by an earlier run stay so until a run reads them.
        unreadable = self.record.unreadable_chunks(self.bounds) - set(todo)
        n_computed = self._compute(todo, client, progress, batch_chunks, n_skipped, unreadable) if todo else 0
        # Every task of this run has returned: what a killed worker left half-written goes.
        stale = remove_unfinished_writes(self.out)
        if stale:
            log.info("job %s: removed %d unfinished chunk write(s) of stopped workers", self.out, stale)
        complete = bool(self.done.all())
        ranges = [[int(self.bounds[i]), int(self.bounds[i + 1]) - 1] for i in sorted(unreadable)]
        beads = self._summary(bool(todo), unreadable, ranges, client, stuck_std_px)
        if complete:
            self._finish()
        report = JobReport(self.out, self.n_chunks, int(self.bounds[-1]), n_skipped, n_computed, complete,
                           time.perf_counter() - t0, [tuple(r) for r in ranges], beads)
        log.info("%s", report.summary())
        return report

    def _compute(self, todo: list[int], client, progress, batch_chunks: int | None, n_skipped: int,
                 unreadable: set[int]) -> int:
        """Run the chunks ``todo`` in batches; record each one done as it finishes.

        Chunks whose input turns out unreadable are added to ``unreadable``
        instead; returns the number of chunks done.
        """
        from distributed import get_client

        client = client or get_client()
        if batch_chunks is None:
            batch_chunks = 2 * (sum(client.nthreads().values()) or 1)
        window = _Window(_GraphTasks(self, client), todo, max(1, int(batch_chunks)))
        book = _Bookkeeper(self.record, client, unreadable)
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
                    book.save()
                if progress:
                    progress(n_skipped + n_returned, self.n_chunks, frames)
                window.refill()
        finally:
            window.cancel(client)
            book.save()  # also after a failure or an interrupt: those chunks are finished
        return book.n_computed

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

    def _summary(self, computed: bool, unreadable: set[int], ranges: list[list[int]], client,
                 stuck_std_px: float) -> dict | None:
        """The per-bead summary of the finished and unreadable chunks, recounted when this run wrote any."""
        beads = self.record.attrs.get("summary")
        if computed or beads is None:
            covered = self.done.copy()
            covered[sorted(unreadable)] = True  # written as NaN + flag 16: counted too
            beads = summarize_results(self.out, chunks=covered, bounds=self.bounds, client=client,
                                      stuck_std_px=stuck_std_px)
            self.record.save_summary(ranges, beads)
        return beads

    def _finish(self) -> None:
        self.record.mark_complete()
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not in the v3 spec; xarray reads it all the same
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(self.out, zarr_format=3)


class _GraphTasks:
    """The write tasks of some chunks, taken from one graph of the whole job."""

    def __init__(self, job: Job, client):
        marks = job._write_graph()
        self._client = client
        self._graph, self._keys = marks.__dask_graph__(), marks.__dask_keys__()

    def submit(self, chunks: list[int]) -> list:
        """Futures of the write tasks of ``chunks``, in that order."""
        keys = [self._keys[i] for i in chunks]
        # The culled graph, not optimised: optimisation renames fused tasks after their block
        # position in the submitted piece, so two batches would send different tasks under
        # one key. Original keys are unique per chunk and mean the same task in every batch.
        return self._client.get(self._graph.cull(set(keys)), keys, sync=False)


class _Window:
    """Chunks in flight: submitted a batch at a time, at most two batches ahead of the results."""

    def __init__(self, tasks: _GraphTasks, todo: list[int], batch_chunks: int):
        from distributed import as_completed

        self._tasks = tasks
        self._pending = collections.deque(todo)
        self._batch = batch_chunks
        self._chunk_of: dict[str, int] = {}
        self._live: dict[str, Any] = {}  # futures not yet handled, to cancel on failure or interrupt
        self._ac = as_completed()

    def submit_batch(self) -> None:
        chunks = [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]
        if not chunks:  # an empty cull would ship the whole graph
            return
        for i, fut in zip(chunks, self._tasks.submit(chunks)):
            self._chunk_of[fut.key] = i
            self._live[fut.key] = fut
            self._ac.add(fut)

    def refill(self) -> None:
        """Submit the next batch once no more than one batch is left in flight."""
        if self._pending and self._ac.count() <= self._batch:
            self.submit_batch()

    def finished(self) -> Iterator[tuple[int, Any]]:
        """``(chunk, future)`` of each task as it finishes or fails."""
        for fut in self._ac:
            self._live.pop(fut.key)
            yield self._chunk_of.pop(fut.key), fut

    def cancel(self, client) -> None:
        if self._live:
            client.cancel(list(self._live.values()))


class _Bookkeeper:
    """Finished chunks -> the job record, in one write for all that finished since the last.

    A crash loses at most the last half second's records (those chunks are
    recomputed), never records data that is not written.
    """

    def __init__(self, record: JobRecord, client, unreadable: set[int]):
        self._record = record
        self._client = client
        self._unreadable = unreadable
        self._returned: list[tuple[int, Any]] = []  # (chunk, future) whose small result is not fetched yet
        self._last_save = time.monotonic()
        self.n_computed = 0

    def add(self, chunk: int, fut) -> None:
        self._returned.append((chunk, fut))

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= _SAVE_EVERY_S

    def save(self) -> None:
        finished = []
        if self._returned:
            # the results ([frames, unreadable frames]) in one gather, not one by one
            counts = self._client.gather([f for _, f in self._returned])
            for (i, _), c in zip(self._returned, counts):
                if c[1]:  # written as NaN + flag 16; not done, so a resume retries it
                    self._unreadable.add(i)
                else:  # the task returned: the chunk's data is on disk
                    finished.append(i)
            self._returned.clear()
        self._record.mark_done(finished)
        self.n_computed += len(finished)
        self._last_save = time.monotonic()
