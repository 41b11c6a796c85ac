"""The job record: what a results store says about the job that writes it.

The record is the subgroup ``_job`` of the results store (xarray ignores it):

``_job`` attributes
    ``magtrack_dask_job`` (format version, :data:`JOB_FORMAT`), ``fingerprint``
    (everything that determines the bytes of the results: the archive, the
    Z-LUT's SHA-256, the tracking parameters and stage options, the chunking),
    ``n_chunks``, ``complete``; ``sums`` (the per-bead counts and exact sums of
    the finished chunks, :class:`~magtrack_dask.jobs.summary.BeadSums`),
    ``unreadable`` (the same per chunk whose input could not be read when last
    tried), ``unreadable_runs`` (per such chunk, ``[first, last]`` of each run
    of its unreadable frames, when its task reported them), ``unreadable_frames``
    (those runs of every such chunk, in order),
    ``summary`` (the per-bead quality summary made from both) and
    ``pending_done`` (chunks whose sums are saved, marked done next).
``_job/done``
    ``(n_chunks,)`` uint8: 1 once every variable of that frame chunk is
    written. The runner sets it only after the chunk's task returned, never
    before, so a crash can leave written chunks unmarked (they are
    recomputed, giving the same bytes) but never a marked chunk unwritten.
``_job/in_flight`` attributes
    ``chunks``: the tasks submitted and not yet recorded, saved before they
    are submitted: where a killed run can have left unfinished writes.

A finished chunk's sums are saved (with it in ``pending_done``) before its
done mark, and :meth:`JobRecord.open` marks the pending ones done: a crash
between the two neither loses a chunk's sums nor counts them twice.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import zarr

from magtrack_dask.io.paths import is_zarr_store
from magtrack_dask.jobs.summary import STUCK_STD_PX, BeadSums

__all__ = ["JOB_FORMAT", "JOB_GROUP", "JobRecord", "fingerprint_changes", "job_status", "open_record_group"]

#: 2: incremental sums and pending marks (format 1 recounted the results after each run).
JOB_FORMAT = 2
JOB_GROUP = "_job"
_DONE = "done"
_IN_FLIGHT = "in_flight"


def open_record_group(out: str, mode: str = "r") -> zarr.Group:
    """The ``_job`` group of a results store, never from consolidated metadata (which may be older)."""
    return zarr.open_group(os.fspath(out), path=JOB_GROUP, mode=mode, zarr_format=3, use_consolidated=False)


class JobRecord:
    """The ``_job`` group of a results store, with its ``done`` marks and sums in memory.

    Build it with :meth:`create` or :meth:`open`.

    Attributes
    ----------
    group : zarr.Group
        The ``_job`` group.
    done : ndarray of bool, shape (n_chunks,)
        Chunks finished so far (what :meth:`mark_done` last saved, and more
        only in between).
    sums : BeadSums or None
        Of the finished chunks (None for a record without beads yet).
    unreadable : dict of int to BeadSums
        Chunks whose input was unreadable when last tried, with their sums
        (their frames are NaN with flag 16 and count in the summary).
    """

    def __init__(self, group: zarr.Group, done: np.ndarray):
        self.group = group
        self.done = done
        attrs = dict(group.attrs)
        self.sums = None if attrs.get("sums") is None else BeadSums.from_json(attrs["sums"])
        self.unreadable = {int(k): BeadSums.from_json(v) for k, v in (attrs.get("unreadable") or {}).items()}
        # the unreadable frames of each such chunk; a record without them (older) has the chunk's bounds
        self._unreadable_runs = {int(k): [list(r) for r in v]
                                 for k, v in (attrs.get("unreadable_runs") or {}).items()}

    @classmethod
    def create(cls, root: zarr.Group, fingerprint: dict, n_chunks: int, n_beads: int | None = None) -> JobRecord:
        """A new record of ``n_chunks`` unfinished chunks of ``n_beads`` beads in the results store ``root``."""
        # Every key from the start: later updates keep the order, so records of the same job match byte for byte.
        group = root.create_group(JOB_GROUP, attributes={
            "magtrack_dask_job": JOB_FORMAT, "fingerprint": fingerprint, "n_chunks": n_chunks, "complete": False,
            "sums": None if n_beads is None else BeadSums.zeros(n_beads).to_json(), "unreadable": {},
            "unreadable_runs": {}, "unreadable_frames": [], "summary": None, "pending_done": [],
        })
        group.create_array(_DONE, shape=(n_chunks,), dtype="uint8", chunks=(min(n_chunks, 65536),), fill_value=0,
                           dimension_names=("chunk",))
        group.create_group(_IN_FLIGHT, attributes={"chunks": []})
        return cls(group, np.zeros(n_chunks, dtype=bool))

    @classmethod
    def open(cls, root: zarr.Group | str) -> JobRecord:
        """The record of the results store ``root`` (a path or group); KeyError when it has none.

        Chunks left pending by a run that stopped between saving their sums
        and their done marks are marked done here (when writable).
        """
        group = _record_group(root)
        record = cls(group, np.asarray(group[_DONE][...], dtype=bool))
        pending = [int(i) for i in group.attrs.get("pending_done", [])]
        if pending and not group.read_only:
            record.mark_done(pending)
            group.attrs["pending_done"] = []
        elif pending:
            record.done[pending] = True
        return record

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def n_chunks(self) -> int:
        return int(self.done.size)

    @property
    def in_flight(self) -> list[int]:
        """Chunks submitted by the last run and not recorded since (all of them, if it was killed)."""
        return [int(i) for i in self.group[_IN_FLIGHT].attrs.get("chunks", [])]

    def set_in_flight(self, chunks: Iterable[int]) -> None:
        self.group[_IN_FLIGHT].attrs["chunks"] = sorted(int(i) for i in chunks)

    def mark_done(self, chunks: Iterable[int]) -> None:
        """Record ``chunks`` as finished: one write covering them all."""
        chunks = list(chunks)
        if not chunks:
            return
        self.done[chunks] = True
        lo, hi = min(chunks), max(chunks) + 1
        self.group[_DONE][lo:hi] = self.done[lo:hi].astype(np.uint8)

    def unreadable_chunks(self) -> set[int]:
        """Unfinished chunks whose input was unreadable when last tried."""
        return {i for i in self.unreadable if not self.done[i]}

    def save(self, finished: dict[int, BeadSums], unreadable: dict[int, BeadSums], bounds: np.ndarray,
             stuck_std_px: float = STUCK_STD_PX, frames: dict | None = None) -> None:
        """Fold the sums of newly ``finished`` and ``unreadable`` chunks into the record, then mark the finished done.

        ``bounds`` holds the first frame of each chunk, then the frame count;
        ``frames`` the ``(first, last)`` runs of unreadable frames of some of
        the ``unreadable`` chunks (the others count as unreadable throughout).
        """
        for i, sums in finished.items():
            self.sums = sums if self.sums is None else self.sums.add(sums)
            self.unreadable.pop(i, None)
            self._unreadable_runs.pop(i, None)
        self.unreadable.update(unreadable)
        for i in self.unreadable:  # a chunk's runs: as its task reported them, else the whole chunk
            runs = (frames or {}).get(i) if i in unreadable else self._unreadable_runs.get(i)
            self._unreadable_runs[i] = [[int(a), int(b)] for a, b in runs] if runs else \
                [[int(bounds[i]), int(bounds[i + 1]) - 1]]
        total = self.sums
        for i in sorted(self.unreadable):  # written as NaN + flag 16: counted too
            total = self.unreadable[i] if total is None else total.add(self.unreadable[i])
        self.group.attrs.update({
            "sums": None if self.sums is None else self.sums.to_json(),
            "unreadable": {str(i): self.unreadable[i].to_json() for i in sorted(self.unreadable)},
            "unreadable_runs": {str(i): self._unreadable_runs[i] for i in sorted(self.unreadable)},
            "unreadable_frames": [run for i in sorted(self.unreadable) for run in self._unreadable_runs[i]],
            "summary": None if total is None else total.summary(stuck_std_px),
            "pending_done": sorted(finished),
        })
        self.mark_done(finished)

    def clear_pending(self) -> None:
        """After the done marks of the last :meth:`save` are written."""
        if self.group.attrs.get("pending_done"):
            self.group.attrs["pending_done"] = []

    def mark_complete(self) -> None:
        self.group.attrs["complete"] = True


def _record_group(root) -> zarr.Group:
    if isinstance(root, (str, os.PathLike)):
        return open_record_group(os.fspath(root), "r+")
    return root[JOB_GROUP]


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
        ``complete``, ``unreadable_frames`` (``[first, last]`` of each run of
        frames whose input was unreadable when last tried), ``summary`` (the
        per-bead counts of :func:`~magtrack_dask.jobs.summarize_results`, or
        None), ``format`` (the record's format version); None when ``out``
        holds no job record.
    """
    out = os.fspath(out)
    if not is_zarr_store(out):
        return None
    try:
        group = open_record_group(out, "r")
        record = JobRecord(group, np.asarray(group[_DONE][...], dtype=bool))
        attrs = record.attrs
    except (KeyError, FileNotFoundError, ValueError, TypeError, zarr.errors.GroupNotFoundError):
        return None
    if "fingerprint" not in attrs:
        return None
    done = record.done
    done[[int(i) for i in attrs.get("pending_done") or []]] = True
    return {
        "fingerprint": attrs["fingerprint"],
        "n_chunks": int(attrs.get("n_chunks", done.size)),
        "n_done": int(done.sum()),
        "done": done,
        "complete": bool(attrs.get("complete", False)) and bool(done.all()),
        "unreadable_frames": [list(r) for r in attrs.get("unreadable_frames", [])],
        "summary": attrs.get("summary"),
        "format": attrs.get("magtrack_dask_job"),
    }


def _short(value: Any) -> Any:
    return value[:12] + "..." if isinstance(value, str) and len(value) > 40 else value


def fingerprint_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """What differs between two fingerprints, one ``"key: old -> new"`` line per leaf."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += fingerprint_changes(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {_short(a)!r} -> {_short(b)!r}")
    return out
