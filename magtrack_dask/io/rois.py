"""ROI tables: check them, lay them out on a grid, read and write them as files.

An ROI table is ``(n_beads, 4)`` int ``[top, bottom, left, right]`` in camera
pixels, bottom and right exclusive; every ROI is square and all have the same
size, because the core tracks all beads of a chunk in one vectorised call.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from magtrack_dask.validation import InputError

__all__ = ["check_rois", "read_rois", "roi_file_suffix", "roi_grid", "write_rois"]

#: The ROI file types :func:`read_rois` and :func:`write_rois` know.
ROI_SUFFIXES = (".csv", ".txt", ".json", ".npy")


def check_rois(rois, frame_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate an ROI table.

    Parameters
    ----------
    rois : array_like of int, shape (n_beads, 4)
        ``[top, bottom, left, right]`` per bead, in pixels; bottom and right are
        exclusive.
    frame_shape : tuple of int, optional
        ``(height, width)`` of the camera frame the ROIs must lie inside.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray

    Raises
    ------
    InputError
        If the table has the wrong shape, an ROI is not square, the ROIs differ
        in size, or an ROI lies outside the frame. The message names ``rois``.
    """
    arr = np.asarray(rois)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] < 1:
        raise InputError(f"rois must have shape (n_beads, 4) [top, bottom, left, right] with n_beads >= 1; "
                         f"got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError("rois must hold whole pixel numbers")
    arr = arr.astype(np.int64)
    heights, widths = arr[:, 1] - arr[:, 0], arr[:, 3] - arr[:, 2]
    if np.any(heights <= 0) or np.any(heights != widths):
        bad = int(np.flatnonzero((heights <= 0) | (heights != widths))[0])
        raise InputError(
            f"rois must be square with bottom > top: ROI {bad} {arr[bad].tolist()} is "
            f"{heights[bad]} x {widths[bad]} px"
        )
    if np.any(heights != heights[0]):
        raise InputError(f"rois must all have the same size; got sizes {sorted(set(heights.tolist()))} px")
    if frame_shape is not None:
        h, w = frame_shape
        out = (arr[:, 0] < 0) | (arr[:, 2] < 0) | (arr[:, 1] > h) | (arr[:, 3] > w)
        if np.any(out):
            bad = int(np.flatnonzero(out)[0])
            raise InputError(
                f"rois: ROI {bad} {arr[bad].tolist()} lies outside the frame of shape "
                f"(height={h}, width={w})"
            )
    return arr


def roi_grid(
    n_beads: int, roi: int, frame_shape: tuple[int, int] | None = None, gap: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Lay ``n_beads`` square ROIs out on a grid.

    Parameters
    ----------
    n_beads : int
    roi : int
        ROI side in pixels.
    frame_shape : tuple of int, optional
        ``(height, width)``; default: the smallest near-square frame that fits.
    gap : int, optional
        Pixels between ROIs and around the grid; default ``roi // 4``.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray
    frame_shape : tuple of int
        ``(height, width)``, px.

    Raises
    ------
    InputError
        ``frame_shape`` cannot hold the grid.
    """
    gap = roi // 4 if gap is None else gap
    if frame_shape is None:
        cols = math.ceil(math.sqrt(n_beads))
        rows = math.ceil(n_beads / cols)
        frame_shape = (gap + rows * (roi + gap), gap + cols * (roi + gap))
    h, w = frame_shape
    cols = max(1, (w - gap) // (roi + gap))
    rows = math.ceil(n_beads / cols)
    if rows * (roi + gap) + gap > h or roi + 2 * gap > w:
        raise InputError(f"frame_shape {frame_shape} cannot hold {n_beads} ROIs of {roi} px")
    idx = np.arange(n_beads)
    top = gap + (idx // cols) * (roi + gap)
    left = gap + (idx % cols) * (roi + gap)
    return np.stack([top, top + roi, left, left + roi], axis=1).astype(np.int64), (int(h), int(w))


def roi_file_suffix(path, action: str = "read") -> str:
    """The ROI file type of ``path`` (its lower-case suffix), checked.

    Parameters
    ----------
    path : str or os.PathLike
    action : str, optional
        ``'read'`` or ``'write'``, for the message.

    Raises
    ------
    InputError
        A suffix not in :data:`ROI_SUFFIXES`.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in ROI_SUFFIXES:
        raise InputError(f"cannot {action} ROI table {path}: unknown ROI file type {ext!r}: use .csv, .txt, .json "
                         "or .npy")
    return ext


def read_rois(path) -> np.ndarray:
    """Read an ROI table ``(n_beads, 4)`` ``[top, bottom, left, right]`` from a file.

    Parameters
    ----------
    path : str or os.PathLike
        ``.csv``/``.txt`` (4 columns ``top, bottom, left, right``, an optional
        header line), ``.json`` (a list of rows, or an object with a ``rois``
        list) or ``.npy``.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray
        Checked by :func:`check_rois` (square, equal sizes).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    InputError
        An unknown file type, an unreadable file or a bad table.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ROI file not found: {path}")
    ext = roi_file_suffix(path, "read")
    try:
        rois = _read_table(path, ext)
    except (OSError, KeyError, ValueError) as err:  # JSONDecodeError is a ValueError
        raise InputError(f"cannot read ROI table {path}: {err}") from err
    return check_rois(rois)


def _read_table(path: str, ext: str) -> np.ndarray:
    if ext == ".npy":
        return np.load(path)  # allow_pickle=False: a table, never code
    if ext == ".json":
        with open(path) as f:
            obj = json.load(f)
        return np.asarray(obj["rois"] if isinstance(obj, dict) else obj)
    with open(path) as f:
        first = f.readline()
    header = any(c.isalpha() for c in first)
    return np.loadtxt(path, delimiter="," if "," in first else None, skiprows=int(header), ndmin=2)


#: The header of the CSV tables :func:`write_rois` writes (and :func:`read_rois` skips).
CSV_HEADER = "top,bottom,left,right"


def write_rois(path, rois, *, overwrite: bool = False, extra: dict | None = None) -> str:
    """Write an ROI table as a file :func:`read_rois` reads back.

    Parameters
    ----------
    path : str or os.PathLike
        ``.csv``/``.txt`` (a ``top,bottom,left,right`` header, one ROI per
        line), ``.json`` (``{"rois": [[top, bottom, left, right], ...]}`` plus
        ``extra``) or ``.npy``.
    rois : array_like of int, shape (n_beads, 4)
        Checked by :func:`check_rois`.
    overwrite : bool, optional
        Replace an existing file.
    extra : dict, optional
        More JSON-serialisable entries for a ``.json`` file (e.g. per-bead
        scores); ignored by :func:`read_rois`.

    Returns
    -------
    path : str

    Raises
    ------
    InputError
        An unknown file type or a bad table.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = os.fspath(path)
    ext = roi_file_suffix(path, "write")
    rois = check_rois(rois)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    if ext == ".npy":
        with open(path, "wb") as f:
            np.save(f, rois)
    elif ext == ".json":
        rows = ",\n  ".join(json.dumps(row) for row in rois.tolist())  # one ROI per line
        more = "".join(f',\n "{k}": {json.dumps(v)}' for k, v in (extra or {}).items() if k != "rois")
        with open(path, "w") as f:
            f.write(f'{{"rois": [\n  {rows}\n ]{more}\n}}\n')
    else:
        np.savetxt(path, rois, fmt="%d", delimiter=",", header=CSV_HEADER, comments="")
    return path
