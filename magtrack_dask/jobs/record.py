"""The job record: what a results store says about the job that writes it.

The record is the subgroup ``_job`` of the results store (xarray ignores it):

``_job`` attributes
    ``magtrack_dask_job`` (format version), ``fingerprint`` (everything that
    determines the bytes of the results: the archive, the Z-LUT's SHA-256, the
    tracking parameters and stage options, the chunking), ``n_chunks``,
    ``complete``; after a run also ``unreadable_frames`` (``[first, last]``
    frames of the chunks whose input could not be read when last tried) and
    ``summary`` (the per-bead counts of :mod:`magtrack_dask.jobs.summary`).
``_job/done``
    ``(n_chunks,)`` uint8: 1 once every variable of that frame chunk is
    written. The runner sets it only after the chunk's write task returned,
    never before, so a crash can leave written chunks unmarked (they are
    recomputed, giving the same bytes) but never a marked chunk unwritten.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import zarr

from magtrack_dask.io.paths import is_zarr_store

__all__ = ["JOB_FORMAT", "JOB_GROUP", "JobRecord", "fingerprint_changes", "job_status"]

JOB_FORMAT = 1
JOB_GROUP = "_job"
_DONE = "done"


class JobRecord:
    """The ``_job`` group of a results store, with its ``done`` marks in memory.

    Build it with :meth:`create` or :meth:`open`.

    Attributes
    ----------
    group : zarr.Group
        The ``_job`` group.
    done : ndarray of bool, shape (n_chunks,)
        Chunks finished so far (what :meth:`mark_done` last saved, and more
        only in between).
    """

    def __init__(self, group: zarr.Group, done: np.ndarray):
        self.group = group
        self.done = done

    @classmethod
    def create(cls, root: zarr.Group, fingerprint: dict, n_chunks: int) -> JobRecord:
        """A new record of ``n_chunks`` unfinished chunks in the results store ``root``."""
        group = root.create_group(JOB_GROUP, attributes={
            "magtrack_dask_job": JOB_FORMAT, "fingerprint": fingerprint, "n_chunks": n_chunks, "complete": False,
        })
        group.create_array(_DONE, shape=(n_chunks,), dtype="uint8", chunks=(min(n_chunks, 4096),), fill_value=0,
                           dimension_names=("chunk",))
        return cls(group, np.zeros(n_chunks, dtype=bool))

    @classmethod
    def open(cls, root: zarr.Group) -> JobRecord:
        """The record of the results store ``root``; KeyError when it has none."""
        group = root[JOB_GROUP]
        return cls(group, np.asarray(group[_DONE][...], dtype=bool))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def n_chunks(self) -> int:
        return int(self.done.size)

    def mark_done(self, chunks: Iterable[int]) -> None:
        """Record ``chunks`` as finished: one write covering them all."""
        chunks = list(chunks)
        if not chunks:
            return
        self.done[chunks] = True
        lo, hi = min(chunks), max(chunks) + 1
        self.group[_DONE][lo:hi] = self.done[lo:hi].astype(np.uint8)

    def unreadable_chunks(self, bounds: np.ndarray) -> set[int]:
        """Unfinished chunks that the record lists as unreadable (found by their first frame).

        ``bounds`` holds the first frame of each chunk, then the frame count.
        """
        firsts = [r[0] for r in self.group.attrs.get("unreadable_frames", [])]
        return {int(i) for i in np.searchsorted(bounds, firsts) if i < self.n_chunks and not self.done[i]}

    def save_summary(self, unreadable_frames: list[list[int]], summary: dict) -> None:
        """Record the unreadable frame ranges and the per-bead summary of a run."""
        self.group.attrs.update({"unreadable_frames": unreadable_frames, "summary": summary})

    def mark_complete(self) -> None:
        self.group.attrs["complete"] = True


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
        per-bead counts of :func:`~magtrack_dask.jobs.summarize_results`, or
        None); None when ``out`` holds no job record.
    """
    out = os.fspath(out)
    if not is_zarr_store(out):
        return None
    try:
        record = JobRecord.open(zarr.open_group(out, mode="r", zarr_format=3))
        attrs = record.attrs
    except (KeyError, FileNotFoundError, ValueError, TypeError, zarr.errors.GroupNotFoundError):
        return None
    if "fingerprint" not in attrs:
        return None
    done = record.done
    return {
        "fingerprint": attrs["fingerprint"],
        "n_chunks": int(attrs.get("n_chunks", done.size)),
        "n_done": int(done.sum()),
        "done": done,
        "complete": bool(attrs.get("complete", False)) and bool(done.all()),
        "unreadable_frames": [list(r) for r in attrs.get("unreadable_frames", [])],
        "summary": attrs.get("summary"),
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
