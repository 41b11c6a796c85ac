"""Every bead of a chunk of frames as one image-major stack, and its saturated pixels.

A chunk of camera frames ``(frame, y, x)`` with an ROI table, or of pre-cropped
ROIs ``(frame, bead, y, x)``, becomes one stack ``(n_beads * n_frames, w, w)``,
bead by bead (image ``b * n_frames + t`` is bead ``b`` in frame ``t``). Its
``(w, w, n)`` view (``moveaxis(images, 0, 2)``) is what the pipeline takes: the
core accepts any memory order, and runs faster on frame-major images than on a
frames-last copy. Each ROI row is one contiguous copy.

NumPy or CuPy; the result lives where the chunk lives. The ROI table is trusted:
the caller checks it once (``check_rois``), not every chunk.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module

__all__ = ["crop_rois", "crop_beads", "saturated_rois", "saturated_beads", "saturated_stack"]


def crop_rois(frames, rois, *, dtype=None, step: int = 1):
    """Every ROI of every frame, image-major, bead by bead.

    Parameters
    ----------
    frames : (n_frames, height, width) array
        Camera frames, any dtype and memory order.
    rois : (n_beads, 4) int array
        ``[top, bottom, left, right]`` of each ROI (bottom and right
        exclusive); squares of one size inside the frame.
    dtype : numpy dtype, optional
        Of the result; default ``frames.dtype``.
    step : int, optional
        Take every ``step``-th row and column, from each ROI's top left pixel.

    Returns
    -------
    images : (n_beads * n_frames, w, w) array
        ``w = ceil(roi / step)``; image ``b * n_frames + t`` is ROI ``b`` of frame ``t``.
    """
    xp = array_module(frames)
    rois = np.asarray(rois)
    n_frames = frames.shape[0]
    width = -(-int(rois[0, 1] - rois[0, 0]) // step)
    out = xp.empty((len(rois) * n_frames, width, width), dtype=frames.dtype if dtype is None else dtype)
    for b, (top, bottom, left, right) in enumerate(rois):
        out[b * n_frames : (b + 1) * n_frames] = frames[:, top:bottom:step, left:right:step]
    return out


def crop_beads(images, *, dtype=None, step: int = 1):
    """Pre-cropped ROIs ``(frame, bead, y, x)`` image-major, bead by bead.

    Parameters
    ----------
    images : (n_frames, n_beads, roi, roi) array
    dtype : numpy dtype, optional
        Of the result; default ``images.dtype``.
    step : int, optional
        Take every ``step``-th row and column.

    Returns
    -------
    images : (n_beads * n_frames, w, w) array
        As :func:`crop_rois`.
    """
    xp = array_module(images)
    n_frames, n_beads, roi = images.shape[0], images.shape[1], images.shape[2]
    width = -(-roi // step)
    out = xp.empty((n_beads, n_frames, width, width), dtype=images.dtype if dtype is None else dtype)
    out[...] = images[:, :, ::step, ::step].transpose(1, 0, 2, 3)
    return out.reshape(n_beads * n_frames, width, width)


def _camera_max(dtype) -> int | None:
    """The largest value of an integer dtype (a saturated camera pixel); None for floats."""
    return int(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else None


def saturated_rois(frames, rois):
    """Which ROIs of which frames hold a pixel at the integer dtype's maximum.

    Parameters
    ----------
    frames : (n_frames, height, width) array
        Camera frames; float frames are never saturated.
    rois : (n_beads, 4) int array
        As :func:`crop_rois`.

    Returns
    -------
    saturated : (n_beads, n_frames) bool array
    """
    xp = array_module(frames)
    rois = np.asarray(rois)
    n_frames = frames.shape[0]
    top = _camera_max(frames.dtype)
    out = xp.zeros((len(rois), n_frames), dtype=bool)
    if top is None:
        return out
    # Each frame's maximum over the rows the ROIs span (one contiguous pass);
    # only frames that reach the top are looked at ROI by ROI.
    rows = frames[:, rois[:, 0].min() : rois[:, 1].max()]
    hot = xp.flatnonzero(rows.reshape(n_frames, -1).max(axis=1) == top)
    if hot.size:
        hit = frames[hot]
        out[:, hot] = xp.stack([hit[:, t:b, l:r].max(axis=(1, 2)) == top for t, b, l, r in rois])
    return out


def saturated_beads(images):
    """:func:`saturated_rois` of pre-cropped ROIs.

    Parameters
    ----------
    images : (n_frames, n_beads, roi, roi) array

    Returns
    -------
    saturated : (n_beads, n_frames) bool array
    """
    xp = array_module(images)
    top = _camera_max(images.dtype)
    if top is None:
        return xp.zeros((images.shape[1], images.shape[0]), dtype=bool)
    return (images.max(axis=(2, 3)) == top).T


def saturated_stack(stack):
    """:func:`saturated_rois` of one bead's stack in the core's layout.

    Parameters
    ----------
    stack : (roi, roi, n_images) array

    Returns
    -------
    saturated : (n_images,) bool array
    """
    xp = array_module(stack)
    top = _camera_max(stack.dtype)
    if top is None:
        return xp.zeros(stack.shape[2], dtype=bool)
    return stack.max(axis=(0, 1)) == top
