"""The magnet log: which magnet position and rotation each frame was taken at, and the plateaus they make.

A magnet log is a CSV file with a header row naming its columns: ``time``
(s, on the same clock as the results' ``time`` coordinate), ``position`` (the
magnet position, e.g. mm above the sample) and, optionally, ``rotation``
(turns). Names are matched case-insensitively on their start, so
``time_s``, ``Magnet position (mm)`` and ``rotation_turns`` all do. Each row
holds from its time until the next row's; the last row must be at or after
the last frame (a logger that writes only changes writes a closing row).
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from magtrack_dask.validation import InputError, check_nonnegative

__all__ = ["MagnetLog", "Plateaus", "read_magnet_log", "split_plateaus"]


@dataclasses.dataclass(frozen=True)
class MagnetLog:
    """A magnet log's rows: ``time_s``, ``position``, ``rotation`` (NaN when not logged), shape (n_rows,)."""

    time_s: np.ndarray
    position: np.ndarray
    rotation: np.ndarray
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Plateaus:
    """Frames of constant magnet position and rotation.

    Attributes
    ----------
    labels : numpy.ndarray of int, shape (n_frames,)
        Plateau of each frame; ``-1`` for frames left out (settling after a move).
    position, rotation : numpy.ndarray, shape (n_plateaus,)
        The magnet's position and rotation on each plateau (NaN without a log).
    first_frame, stop_frame : numpy.ndarray of int, shape (n_plateaus,)
        Frame positions ``first <= i < stop`` of each plateau (settling frames included).
    """

    labels: np.ndarray
    position: np.ndarray
    rotation: np.ndarray
    first_frame: np.ndarray
    stop_frame: np.ndarray

    @classmethod
    def single(cls, n_frames: int) -> "Plateaus":
        """Every frame on one plateau (no magnet log)."""
        return cls(np.zeros(n_frames, dtype=np.int64), np.array([np.nan]), np.array([np.nan]),
                   np.array([0]), np.array([n_frames]))


def _column(header: list[str], prefix: str, path: str, required: bool = True) -> int | None:
    for i, name in enumerate(header):
        if name.strip().lower().replace("magnet", "").strip(" _").startswith(prefix):
            return i
    if required:
        raise InputError(f"magnet_log: {path} has no '{prefix}' column (header: {', '.join(header)}); "
                         "expected a header row naming time, position and optionally rotation")
    return None


def read_magnet_log(path) -> MagnetLog:
    """Read a magnet log CSV (see the module docstring).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    InputError
        A missing column, a value that is not a number, fewer than one row, or
        times that go backwards.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"magnet_log: {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputError(f"magnet_log: {path} needs a header row and at least one row of values")
    header = rows[0]
    cols = [_column(header, "time", path), _column(header, "pos", path), _column(header, "rot", path, False)]
    try:
        values = np.array([[float(r[c]) if c is not None else np.nan for c in cols] for r in rows[1:]])
    except (ValueError, IndexError) as err:
        raise InputError(f"magnet_log: {path}: a row is short or holds something that is not a number ({err})") from err
    if np.any(np.diff(values[:, 0]) < 0) or not np.all(np.isfinite(values[:, :2])):
        raise InputError(f"magnet_log: {path}: times must increase and time, position must be finite")
    return MagnetLog(values[:, 0], values[:, 1], values[:, 2], path)


def split_plateaus(log: MagnetLog, frame_times_s, *, settle_s: float = 0.0) -> Plateaus:
    """Label each frame with its plateau of constant magnet position and rotation.

    Parameters
    ----------
    log : MagnetLog
    frame_times_s : array_like, shape (n_frames,)
        The results' ``time`` coordinate (s, same clock as the log).
    settle_s : float, optional
        Leave out the frames within this time after each plateau's first frame
        (the magnet moving and the bead following).

    Raises
    ------
    InputError
        The log does not cover the frames.
    """
    settle_s = check_nonnegative(settle_s, "settle_s", "s")
    t = np.asarray(frame_times_s, dtype=float)
    period = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if t[0] < log.time_s[0] or log.time_s[-1] < t[-1] - period:
        raise InputError(f"magnet_log {log.source}: covers t = {log.time_s[0]:g}..{log.time_s[-1]:g} s but the "
                         f"frames span t = {t[0]:g}..{t[-1]:g} s; the log must start at or before the first frame "
                         "and end at or after the last (same clock as the results' time)")
    row = np.searchsorted(log.time_s, t, side="right") - 1
    pos, rot = log.position[row], log.rotation[row]
    same = (pos[1:] == pos[:-1]) & ((rot[1:] == rot[:-1]) | (np.isnan(rot[1:]) & np.isnan(rot[:-1])))
    starts = np.concatenate([[0], np.flatnonzero(~same) + 1])
    stops = np.concatenate([starts[1:], [t.size]])
    labels = np.repeat(np.arange(starts.size), stops - starts)
    if settle_s:
        labels[t - t[starts][labels] < settle_s] = -1
    return Plateaus(labels, pos[starts], rot[starts], starts, stops)
