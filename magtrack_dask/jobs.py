"""Resumable, idempotent tracking jobs: archive -> results store, chunk by chunk.

A job writes the lazy Dataset of :func:`magtrack_dask.tracking.track` to a
Zarr v3 results store one frame chunk at a time, and records each finished
chunk in the store itself, so that a job killed part-way can be rerun and
computes only what is missing.

Store layout
------------
The results store is the Dataset as :func:`magtrack_dask.tracking.write_results`
writes it (open it with ``xarray.open_zarr``), plus a subgroup ``_job`` that
xarray ignores:

``_job`` attributes
    ``magtrack_dask_job`` (format version), ``fingerprint`` (everything that
    determines the bytes of the results: the archive, the Z-LUT's SHA-256, the
    tracking parameters, the chunking), ``n_chunks``, ``complete``.
``_job/done``
    ``(n_chunks,)`` uint8: 1 once every variable of that frame chunk is
    written. It is set by the client after the chunk's write task returned,
    never before (in one write per half second for all chunks finished
    meanwhile), so a crash can leave written chunks unmarked (they are
    recomputed, giving the same bytes) but never a marked chunk unwritten.

How the work runs
-----------------
One Dask task per frame chunk tracks the chunk and writes every variable's
region of it. Regions are the output's own Zarr chunks (checked before
anything runs), so no two tasks ever write the same chunk; there is no lock.
Chunks are submitted in batches (a few per worker thread) and new batches
follow as ``distributed.as_completed`` reports finished ones, so the graph of
a job of a million chunks is never built at once and progress is known chunk
by chunk. Metadata is written unconsolidated and consolidated once when the
last chunk is done.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from typing import Any, Callable

import numpy as np
import zarr

from magtrack_dask.io.integrity import remove_unfinished_writes

__all__ = ["Job", "JobError", "JobFailed", "JobReport", "prepare_job", "run_job", "job_status", "summarize_results",
           "format_bead_summary", "JOB_GROUP", "STUCK_STD_PX"]

log = logging.getLogger(__name__)

JOB_FORMAT = 1
JOB_GROUP = "_job"
_DONE = "done"
_SAVE_EVERY_S = 0.5  # how often finished chunks are recorded while a job runs
#: A bead whose x and y standard deviations over the job are both below this
#: (px) is reported as stuck: a tethered bead fluctuates by 0.05-1 px at
#: 100 nm/px, while tracking noise alone is ~0.005-0.02 px.
STUCK_STD_PX = 0.03
_MIN_STUCK_FRAMES = 10  # fewer tracked frames say nothing about motion


class JobError(ValueError):
    """The job cannot start: bad input, or existing results that differ."""


class JobFailed(RuntimeError):
    """A chunk failed while the job ran; finished chunks stay recorded."""


@dataclasses.dataclass
class JobReport:
    """What one run of a job did.

    Attributes
    ----------
    out : str
        The results store.
    n_chunks, n_frames : int
        Frame chunks and frames of the whole job.
    n_skipped : int
        Chunks already finished by an earlier run.
    n_computed : int
        Chunks computed by this run.
    complete : bool
        Every chunk is finished (metadata consolidated).
    elapsed_s : float
        Wall time of this run.
    unreadable_frames : list of (int, int)
        ``(first, last)`` frame of each chunk whose input could not be read
        (flag 16): written as NaN but not finished; repair the archive and
        rerun with ``resume=True`` to fill them in.
    beads : dict or None
        Per-bead quality counts of the finished (and unreadable) chunks, see
        :func:`summarize_results`; also stored in the job record.
    """

    out: str
    n_chunks: int
    n_frames: int
    n_skipped: int
    n_computed: int
    complete: bool
    elapsed_s: float
    unreadable_frames: list = dataclasses.field(default_factory=list)
    beads: dict | None = None

    @property
    def incomplete_input(self) -> bool:
        """Some input could not be read: the job cannot complete until it is repaired."""
        return bool(self.unreadable_frames)

    def summary(self) -> str:
        state = "complete" if self.complete else f"incomplete ({self.n_skipped + self.n_computed}/{self.n_chunks})"
        text = (f"{self.out}: {self.n_computed} chunks computed, {self.n_skipped} already done, "
                f"{self.n_chunks} in all ({self.n_frames} frames), {state}, {self.elapsed_s:.1f} s")
        if self.unreadable_frames:
            text += ("\nunreadable input, frames " + ", ".join(f"{a}-{b}" for a, b in self.unreadable_frames)
                     + ": flagged 16 and left unfinished; repair the archive and rerun with --resume")
        return text

    def bead_table(self, max_rows: int = 20) -> str:
        """The per-bead counts as text (see :func:`format_bead_summary`)."""
        return format_bead_summary(self.beads, max_rows=max_rows) if self.beads else ""


# -- helpers -------------------------------------------------------------------


def _zlut_digest(zlut) -> str:
    if zlut is None:
        return "none"
    from magtrack_dask.zlut import load_zlut

    arr = load_zlut(zlut)[0] if isinstance(zlut, (str, os.PathLike)) else np.asarray(zlut, dtype=np.float64)
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def _is_zarr_store(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in ("zarr.json", ".zgroup"))


def _remove_store(path: str) -> None:
    # Never rmtree something that is not a Zarr store: --out may be mistyped.
    if os.path.isdir(path) and not _is_zarr_store(path):
        raise JobError(f"refusing to overwrite {path}: it is a folder but not a Zarr store")
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        raise JobError(f"refusing to overwrite {path}: it is a file, not a Zarr store")


def job_status(out) -> dict[str, Any] | None:
    """Read the job record of a results store.

    Parameters
    ----------
    out : str or os.PathLike
        Results store.

    Returns
    -------
    dict or None
        ``fingerprint``, ``n_chunks``, ``n_done``, ``done`` (bool array),
        ``complete``, ``unreadable_frames`` (``[first, last]`` frames of the
        chunks whose input was unreadable when last tried), ``summary`` (the
        per-bead counts of :func:`summarize_results`, or None); None when
        ``out`` holds no job record.
    """
    out = os.fspath(out)
    if not _is_zarr_store(out):
        return None
    try:
        grp = zarr.open_group(out, mode="r", zarr_format=3)
        job = grp[JOB_GROUP]
        attrs = dict(job.attrs)
        done = np.asarray(job[_DONE][...], dtype=bool)
    except (KeyError, FileNotFoundError, ValueError, TypeError, zarr.errors.GroupNotFoundError):
        return None
    if "fingerprint" not in attrs:
        return None
    return {
        "fingerprint": attrs["fingerprint"],
        "n_chunks": int(attrs.get("n_chunks", done.size)),
        "n_done": int(done.sum()),
        "done": done,
        "complete": bool(attrs.get("complete", False)) and bool(done.all()),
        "unreadable_frames": [list(r) for r in attrs.get("unreadable_frames", [])],
        "summary": attrs.get("summary"),
    }


def summarize_results(out, *, chunks=None, bounds=None, client=None,
                      stuck_std_px: float = STUCK_STD_PX) -> dict[str, Any]:
    """Per-bead quality counts of a results store: how often each flag is set, and stuck beads.

    Reads ``flags``, ``x`` and ``y`` (17 bytes per bead and frame, a small
    fraction of what tracking read) chunk by chunk on the cluster.

    Parameters
    ----------
    out : str or os.PathLike
        Results store (from :func:`run_job` or :func:`magtrack_dask.write_results`).
    chunks : array_like of bool, optional
        With ``bounds``: count only the frames of these frame chunks (a job's
        finished ones); default every frame.
    bounds : array_like of int, optional
        First frame of each chunk, then the frame count (:attr:`Job.bounds`).
    client : distributed.Client, optional
        Compute on it; default the current scheduler.
    stuck_std_px : float, optional
        A bead with at least 10 tracked frames whose x and y standard deviations
        are both below this is listed as stuck (default :data:`STUCK_STD_PX`).

    Returns
    -------
    dict
        JSON-ready: ``n_frames`` (frames counted), ``flag_counts``
        ``{flag name: [frames per bead]}`` for every bit of
        :data:`magtrack_dask.FLAG_BITS`, ``n_flagged`` (frames with any flag,
        per bead), ``xy_std_px`` (``[std x, std y]`` per bead over its tracked
        frames, None when fewer than 2), ``stuck_std_px`` and ``stuck`` (the
        stuck beads' indices).
    """
    import dask
    import dask.array as da

    from magtrack_dask.tracking import FLAG_BITS

    root = zarr.open_group(os.fspath(out), mode="r", zarr_format=3)
    n_beads, n_frames = root["flags"].shape
    step = max(root["flags"].chunks[1], (2**20 // max(n_beads, 1)) // root["flags"].chunks[1] * root["flags"].chunks[1])
    flags, x, y = (da.from_zarr(root[n], chunks=(n_beads, step)) for n in ("flags", "x", "y"))
    if chunks is not None and not np.all(chunks):
        sel = np.repeat(np.asarray(chunks, dtype=bool), np.diff(np.asarray(bounds)))
        flags, x, y = flags[:, sel], x[:, sel], y[:, sel]
    # ROI-relative positions: small numbers, so the sums of squares keep their digits.
    x = x - root["roi_left"][...][:, None]
    y = y - root["roi_top"][...][:, None]
    ok = da.isfinite(x) & da.isfinite(y)
    x0, y0 = da.where(ok, x, 0.0), da.where(ok, y, 0.0)
    sums = [ok.sum(axis=1), x0.sum(axis=1), y0.sum(axis=1), (x0 * x0).sum(axis=1), (y0 * y0).sum(axis=1),
            (flags != 0).sum(axis=1)] + [((flags & bit) != 0).sum(axis=1) for bit in FLAG_BITS.values()]
    n, sx, sy, sxx, syy, n_flagged, *counts = dask.compute(*sums, scheduler=client)
    std = []
    for b in range(n_beads):
        if n[b] < 2:
            std.append(None)
            continue
        mx, my = sx[b] / n[b], sy[b] / n[b]
        std.append([float(np.sqrt(max(sxx[b] / n[b] - mx * mx, 0.0))), float(np.sqrt(max(syy[b] / n[b] - my * my, 0.0)))])
    stuck = [b for b in range(n_beads) if std[b] is not None and n[b] >= _MIN_STUCK_FRAMES and max(std[b]) < stuck_std_px]
    return {
        "n_frames": int(flags.shape[1]),
        "flag_counts": {name: [int(v) for v in c] for name, c in zip(FLAG_BITS, counts)},
        "n_flagged": [int(v) for v in n_flagged],
        "xy_std_px": std,
        "stuck_std_px": float(stuck_std_px),
        "stuck": stuck,
    }


def format_bead_summary(summary: dict, *, max_rows: int = 20) -> str:
    """A text table of :func:`summarize_results`: one row per bead with a flag or stuck.

    Parameters
    ----------
    summary : dict
        From :func:`summarize_results` (or ``job_status(out)["summary"]``).
    max_rows : int, optional
        Beads listed at most (the most flagged first); the rest are counted.
    """
    names = list(summary["flag_counts"])
    short = {"xy_not_found": "no_xy", "z_at_lut_edge_or_nan": "z_edge", "saturated": "saturated",
             "near_roi_edge": "near_edge", "input_unreadable": "unreadable"}
    stuck = set(summary["stuck"])
    rows = [b for b, k in enumerate(summary["n_flagged"]) if k or b in stuck]
    rows.sort(key=lambda b: -summary["n_flagged"][b])
    head = (f"per bead, of {summary['n_frames']} frames: {len(rows)} of {len(summary['n_flagged'])} beads "
            f"flagged or stuck (xy std < {summary['stuck_std_px']:g} px)")
    if not rows:
        return head
    cols = ["bead", "flagged"] + [short.get(n, n) for n in names] + ["xy_std_px", "stuck"]
    lines = [head, "  ".join(f"{c:>10}" for c in cols)]
    for b in rows[:max_rows]:
        std = summary["xy_std_px"][b]
        cells = [b, summary["n_flagged"][b]] + [summary["flag_counts"][n][b] for n in names]
        cells += ["-" if std is None else f"{max(std):.3g}", "yes" if b in stuck else ""]
        lines.append("  ".join(f"{c:>10}" for c in cells))
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more (job_status(out)['summary'] has them all)")
    return "\n".join(lines)


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            short = (lambda v: v[:12] + "..." if isinstance(v, str) and len(v) > 40 else v)
            out.append(f"{prefix}{k}: {short(a)!r} -> {short(b)!r}")
    return out


def _write_chunk(*blocks, targets, axes, flags_at):
    """Worker side: write one frame chunk of every variable.

    The last block holds the chunk's frame numbers, which give the region.
    Returns ``[frames, unreadable frames]``: the client marks the chunk done
    only when no frame carries flag 16 (its input could not be read).
    """
    from magtrack_dask.tracking import FLAG_BITS

    frames = blocks[-1]
    start, stop = int(frames[0]), int(frames[-1]) + 1
    for block, target, ax in zip(blocks[:-1], targets, axes):
        region = tuple(slice(start, stop) if i == ax else slice(None) for i in range(block.ndim))
        target[region] = block
    unreadable = (blocks[flags_at] & FLAG_BITS["input_unreadable"]).any(axis=0)  # (frame,)
    return np.array([stop - start, int(unreadable.sum())], dtype=np.int64)


# -- the job ---------------------------------------------------------------------


class Job:
    """A prepared job; build it with :func:`prepare_job`, then call :meth:`run`.

    Attributes
    ----------
    out : str
        Results store (created by :func:`prepare_job`).
    ds : xarray.Dataset
        The lazy tracking Dataset.
    bounds : ndarray of int, shape (n_chunks + 1,)
        Frame number where each chunk starts, then the frame count.
    done : ndarray of bool, shape (n_chunks,)
        Chunks finished so far.
    fingerprint : dict
        What the results depend on (see the module docstring).
    """

    def __init__(self, out: str, ds, fingerprint: dict, done: np.ndarray):
        self.out = out
        self.ds = ds
        self.fingerprint = fingerprint
        self.bounds = np.cumsum((0,) + tuple(ds.chunks["frame"])).astype(np.int64)
        self.done = done
        self._root = zarr.open_group(out, mode="r+", zarr_format=3)
        self._names = [n for n, v in ds.variables.items() if "frame" in v.dims and v.chunks is not None]
        self._check_alignment()

    @property
    def n_chunks(self) -> int:
        return len(self.bounds) - 1

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
            :func:`summarize_results`).

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
        unreadable = self._recorded_unreadable() - set(todo)
        n_computed = self._compute(todo, client, progress, batch_chunks, n_skipped, unreadable) if todo else 0
        # Every task of this run has returned: what a killed worker left half-written goes.
        stale = remove_unfinished_writes(self.out)
        if stale:
            log.info("job %s: removed %d unfinished chunk write(s) of stopped workers", self.out, stale)
        complete = bool(self.done.all())
        job_attrs = self._root[JOB_GROUP].attrs
        ranges = [[int(self.bounds[i]), int(self.bounds[i + 1]) - 1] for i in sorted(unreadable)]
        beads = job_attrs.get("summary")
        if todo or beads is None:
            covered = self.done.copy()
            covered[sorted(unreadable)] = True  # written as NaN + flag 16: counted too
            beads = summarize_results(self.out, chunks=covered, bounds=self.bounds, client=client,
                                      stuck_std_px=stuck_std_px)
            job_attrs.update({"unreadable_frames": ranges, "summary": beads})
        if complete:
            self._finish()
        report = JobReport(self.out, self.n_chunks, int(self.bounds[-1]), n_skipped, n_computed, complete,
                           time.perf_counter() - t0, [tuple(r) for r in ranges], beads)
        log.info("%s", report.summary())
        return report

    def _recorded_unreadable(self) -> set[int]:
        """Chunks that the job record lists as unreadable (by their first frame)."""
        firsts = [r[0] for r in self._root[JOB_GROUP].attrs.get("unreadable_frames", [])]
        return {int(i) for i in np.searchsorted(self.bounds, firsts) if i < self.n_chunks and not self.done[i]}

    def _compute(self, todo: list[int], client, progress, batch_chunks: int | None, n_skipped: int,
                 unreadable: set[int]) -> int:
        """Run the chunks ``todo`` in batches; mark each one done as it finishes.

        Chunks whose input turns out unreadable are added to ``unreadable``
        instead; returns the number of chunks done.
        """
        from distributed import as_completed, get_client

        client = client or get_client()
        if batch_chunks is None:
            batch_chunks = 2 * (sum(client.nthreads().values()) or 1)
        batch_chunks = max(1, int(batch_chunks))
        done_arr = self._root[JOB_GROUP][_DONE]
        marks = self._write_graph()
        graph, keys = marks.__dask_graph__(), marks.__dask_keys__()
        pending = collections.deque(todo)
        index: dict[str, int] = {}
        live: dict[str, Any] = {}  # futures not yet handled, to cancel on failure or interrupt
        ac = as_completed()

        def submit_batch() -> None:
            ids = [pending.popleft() for _ in range(min(batch_chunks, len(pending)))]
            batch_keys = [keys[i] for i in ids]
            # The culled graph, not optimised: optimisation renames fused tasks after their block
            # position in the submitted piece, so two batches would send different tasks under
            # one key. Original keys are unique per chunk and mean the same task in every batch.
            futures = client.get(graph.cull(set(batch_keys)), batch_keys, sync=False)
            for i, fut in zip(ids, futures):
                index[fut.key] = i
                live[fut.key] = fut
                ac.add(fut)

        n_computed = n_returned = frames = 0
        unsaved: list[int] = []  # finished chunks not yet recorded in the store
        returned: list[tuple[int, Any]] = []  # (chunk, future) whose small result is not fetched yet
        last_save = time.monotonic()

        def save_done() -> None:
            # One write for all chunks finished since the last: a crash loses at most a
            # second's records (those chunks are recomputed), never records unwritten data.
            # Their results ([frames, unreadable frames]) come in one gather, not one by one.
            nonlocal last_save, n_computed
            if returned:
                counts = client.gather([f for _, f in returned])
                for (i, _), c in zip(returned, counts):
                    if c[1]:  # written as NaN + flag 16; not done, so a resume retries it
                        unreadable.add(i)
                    else:
                        self.done[i] = True  # the task returned: the chunk's data is on disk
                        unsaved.append(i)
                        n_computed += 1
                returned.clear()
            if unsaved:
                lo, hi = min(unsaved), max(unsaved) + 1
                done_arr[lo:hi] = self.done[lo:hi].astype(np.uint8)
                unsaved.clear()
            last_save = time.monotonic()

        if progress:
            progress(n_skipped, self.n_chunks, 0)
        submit_batch()
        submit_batch()
        try:
            for fut in ac:
                i = index.pop(fut.key)
                live.pop(fut.key)
                if fut.status != "finished":
                    try:
                        fut.result()
                        raise RuntimeError(f"task {fut.status}")
                    except Exception as err:
                        raise JobFailed(f"chunk {i} (frames {self.bounds[i]}-{self.bounds[i + 1] - 1}) failed: "
                                        f"{type(err).__name__}: {err}") from err
                returned.append((i, fut))
                n_returned += 1
                frames += int(self.bounds[i + 1] - self.bounds[i])
                if time.monotonic() - last_save >= _SAVE_EVERY_S:
                    save_done()
                if progress:
                    progress(n_skipped + n_returned, self.n_chunks, frames)
                if pending and ac.count() <= batch_chunks:
                    submit_batch()
        finally:
            if live:
                client.cancel(list(live.values()))
            save_done()  # also after a failure or an interrupt: those chunks are finished
        return n_computed

    def _finish(self) -> None:
        self._root[JOB_GROUP].attrs["complete"] = True
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not in the v3 spec; xarray reads it all the same
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(self.out, zarr_format=3)


def prepare_job(
    archive,
    out,
    zlut=None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    frames_per_task: int | None = None,
    **track_options: Any,
) -> Job:
    """Check the inputs and the results store, create it if needed.

    Parameters
    ----------
    archive : str or os.PathLike
        Archive to track (see :mod:`magtrack_dask.io.format`).
    out : str or os.PathLike
        Results store (a Zarr v3 folder).
    zlut : str, os.PathLike or array_like, optional
        Z-LUT as :func:`magtrack_dask.tracking.track` takes it (a Zarr array
        from :func:`magtrack_dask.zlut.save_zlut`, a ``.npy`` file or an array).
    resume : bool, optional
        Continue a store made by the same job (same fingerprint): only the
        missing chunks are computed. Without it an existing store refuses.
    overwrite : bool, optional
        Delete an existing store first (it must be a Zarr store).
    device : {'cpu', 'gpu'}, optional
    frames_per_task : int, optional
        Frames per task (rounded to whole archive chunks by ``track``).
    **track_options
        More keyword arguments of ``track`` (``rois``, ``pixel_size_nm``,
        ``edge_margin_px``, stage options...).

    Returns
    -------
    Job

    Raises
    ------
    JobError
        Missing or invalid input, both ``resume`` and ``overwrite``, or an
        existing store that was made with other parameters or is not a job's.
    """
    from magtrack_dask.tracking import track

    if resume and overwrite:
        raise JobError("resume and overwrite exclude each other")
    out = os.path.abspath(os.fspath(out))
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
    try:
        ds = track(archive, zlut, device=device, frames_per_task=frames_per_task, **track_options)
        digest = _zlut_digest(zlut)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        raise JobError(f"cannot track {archive}: {err}") from err
    # Everything the bytes of the results depend on; the package version is left
    # out on purpose (a bug-fix release should not block resuming).
    fingerprint = {
        "format": JOB_FORMAT,
        "source": ds.attrs.get("source"),
        "zlut_sha256": digest,
        "parameters": json.loads(ds.attrs["parameters"]),
        "n_beads": int(ds.sizes["bead"]),
        "n_frames": int(ds.sizes["frame"]),
        "chunk_frames": int(ds.chunks["frame"][0]),
        "variables": sorted(ds.variables),
    }
    n_chunks = len(ds.chunks["frame"])

    if os.path.exists(out):
        if overwrite:
            _remove_store(out)
        else:
            status = job_status(out)
            if status is None:
                raise JobError(f"{out} exists and is not a magtrack-dask results store; "
                               "choose another output or pass --overwrite to replace it")
            changes = _diff(status["fingerprint"], fingerprint)
            if changes:
                raise JobError(f"{out} holds results made with other inputs or parameters "
                               f"({'; '.join(changes)}); pass --overwrite to replace them")
            if not resume:
                state = "complete" if status["complete"] else f"{status['n_done']}/{status['n_chunks']} chunks done"
                raise JobError(f"{out} already holds results of this job ({state}); "
                               "pass --resume to finish it or --overwrite to start again")
            return Job(out, ds, fingerprint, status["done"].copy())

    ds.to_zarr(out, mode="w-", compute=False, consolidated=False, zarr_format=3)
    root = zarr.open_group(out, mode="r+", zarr_format=3)
    job = root.create_group(JOB_GROUP, attributes={
        "magtrack_dask_job": JOB_FORMAT, "fingerprint": fingerprint, "n_chunks": n_chunks, "complete": False,
    })
    job.create_array(_DONE, shape=(n_chunks,), dtype="uint8", chunks=(min(n_chunks, 4096),), fill_value=0,
                     dimension_names=("chunk",))
    return Job(out, ds, fingerprint, np.zeros(n_chunks, dtype=bool))


def run_job(
    archive,
    out,
    zlut=None,
    *,
    client=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int, int], None] | bool | None = None,
    batch_chunks: int | None = None,
    max_chunks: int | None = None,
    stuck_std_px: float = STUCK_STD_PX,
    **options: Any,
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
    job = prepare_job(archive, out, zlut, resume=resume, overwrite=overwrite, **options)
    return job.run(client, progress=progress, batch_chunks=batch_chunks, max_chunks=max_chunks,
                   stuck_std_px=stuck_std_px)
