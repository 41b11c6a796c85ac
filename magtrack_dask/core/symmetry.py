"""Is there a bead at the found centre? The radial symmetry of each image about it.

The pipeline returns a position for any image, even one without a bead (a
blank frame, noise, the rings of a bead that has left its ROI). The fraction of
the image's variance that rings about the found centre explain tells them
apart: near 1 for a bead centred there, near 0 otherwise.

NumPy or CuPy; the result lives where the images live.
"""

from __future__ import annotations

import numpy as np

from magtrack_dask._backend import array_module
from magtrack_dask.core._blocks import blocks
from magtrack_dask.core._checks import quiet
from magtrack_dask.core.profiles import ring_index

__all__ = ["MIN_SYMMETRY", "SCREEN_STEP", "SCREEN_MIN_ROI", "radial_symmetry", "sample_symmetry", "lost_beads"]

#: Default threshold of :func:`lost_beads` (and ``track(min_symmetry=)``): it
#: sits between simulated beads, even in few photons, and empty or half-left ROIs.
MIN_SYMMETRY = 0.5

#: :func:`lost_beads` screens ROIs of ``SCREEN_MIN_ROI`` px and more on every
#: ``SCREEN_STEP``-th row and column first.
SCREEN_STEP, SCREEN_MIN_ROI = 4, 48


def radial_symmetry(stack, x, y, *, step: int = 2, images=None):
    """Fraction of each image's variance that rings about ``(x, y)`` explain.

    ``1 - (sum of squares within 1 px rings) / (sum of squares about the
    mean)``, over the disc of radius ``roi // 2``. Scored on every ``step``-th
    row and column: every second is enough to tell a bead from no bead.

    Parameters
    ----------
    stack : (roi, roi, n_images) float array
        Any memory order.
    x, y : (n_images,) or (len(images),) float64 arrays
        Centres, px.
    step : int, optional
        Sampling step, px. Default 2.
    images : int array, optional
        Score only these images of ``stack``; ``x`` and ``y`` are then theirs.

    Returns
    -------
    score : (n_scored,) float64 array
        NaN where ``x`` or ``y`` is NaN or the image is constant.
    """
    xp = array_module(stack)
    by_image = xp.moveaxis(stack, 2, 0)
    # The sample, copied once image by image (contiguous rows for the blocks of sample_symmetry).
    sample = by_image[:, ::step, ::step] if images is None else by_image[images, ::step, ::step]
    return sample_symmetry(xp.ascontiguousarray(sample), x, y, stack.shape[0], step)


def sample_symmetry(sample, x, y, roi: int, step: int):
    """:func:`radial_symmetry` of images from their sample.

    Parameters
    ----------
    sample : (n_images, w, w) array, C-contiguous
        Every ``step``-th row and column of ``roi`` px images (e.g.
        :func:`magtrack_dask.core.rois.crop_rois` with ``step``): float, or
        camera integers, whose sums are then exact.
    x, y : (n_images,) float64 arrays
        Centres in the full images, px.
    roi : int
        Side of the full images, px.
    step : int
        The sample's step, px.

    Returns
    -------
    score : (n_images,) float64 array
        As :func:`radial_symmetry`.

    Notes
    -----
    Per image, one ``bincount`` gives each ring's count and sum, one masked dot
    product the sum of squares over the disc (the score needs no per-ring sum
    of squares). Integer samples (|value| < 2**32) are counted in the same
    ``bincount`` as the sums: each value is shifted by K, a power of 2 above
    twice any ring's sum, and each sum of ``count * K + sum`` integers is
    exact in float64, so the two come apart exactly. Float samples take a
    second ``bincount`` for the counts.
    """
    xp = array_module(sample, x, y)
    n, width = sample.shape[0], sample.shape[1]
    n_rings = roi // 2
    ok = xp.isfinite(x) & xp.isfinite(y)
    grid = xp.arange(width, dtype=np.float64) * step
    # Centres far outside the ROI are clipped (bounding the slots below); they score low either way.
    dx2 = (xp.clip(xp.where(ok, x, 0.0), -roi, 2 * roi)[:, None] - grid) ** 2  # (image, column)
    dy2 = (xp.clip(xp.where(ok, y, 0.0), -roi, 2 * roi)[:, None] - grid) ** 2  # (image, row)
    # Slots per image: room for the farthest sample from any centre, so no clipping pass.
    slots = max(int(np.sqrt(float(dx2.max() + dy2.max()))) + 2, n_rings)
    level = sample[:, 0, :].mean(axis=1, dtype=np.float64)  # cancels most of the mean before squaring
    shift = _count_shift(sample.dtype, width)
    if shift:
        level = xp.rint(level)  # integer values: every sum below is exact
    sums, s2 = xp.empty((n, slots)), xp.empty(n)
    counts = sums if shift else xp.empty((n, slots))
    buffer = mask = None
    for part in blocks(xp, n, 8 * width * width):  # cache-sized blocks of images
        m = part.stop - part.start
        if buffer is None:  # one allocation, reused by every block
            buffer, mask = xp.empty((2, m, width, width)), xp.empty((m, width * width), dtype=bool)
        dist, value = buffer[0, :m], buffer[1, :m]
        xp.add(dy2[part, :, None], dx2[part, None, :], out=dist)
        first = xp.arange(m, dtype=np.int64) * slots
        index = ring_index(xp, dist, first[:, None, None])
        xp.subtract(sample[part], (level[part] - shift)[:, None, None], out=value)
        size = m * slots
        sums[part] = xp.bincount(index, weights=value.ravel(), minlength=size).reshape(m, slots)
        if shift:
            value -= shift
        else:
            counts[part] = xp.bincount(index, minlength=size).reshape(m, slots)
        # Sum of squares over the disc: rings 0 .. n_rings - 1 of each image.
        inside = mask[:m]
        xp.less(index.reshape(m, -1), (first + n_rings)[:, None], out=inside)
        value = value.reshape(m, -1)
        with quiet(xp):  # inf pixels (inf * 0): that image's score is NaN, not news
            value *= inside
            s2[part] = xp.einsum("ij,ij->i", value, value)
    return _score(xp, sums[:, :n_rings], None if shift else counts[:, :n_rings], s2, shift, ok)


def _count_shift(dtype, width: int) -> float:
    """K of :func:`sample_symmetry`'s combined count and sum, 0.0 where it would not be exact."""
    if not np.issubdtype(dtype, np.integer):
        return 0.0
    span = float(np.iinfo(dtype).max) - float(np.iinfo(dtype).min)
    shift = 2.0 ** int(np.ceil(np.log2(2 * width * width * span + 1)))
    if span >= 2**32 or width * width * (shift + span) >= 2**53:  # not exact: count apart
        return 0.0
    return shift


def _score(xp, sums, counts, s2, shift: float, ok):
    """The score from per-ring sums and counts (``counts`` None: packed into ``sums``)."""
    if shift:
        counts = xp.rint(sums / shift)
        sums = sums - counts * shift
    with np.errstate(divide="ignore", invalid="ignore"):
        within = s2 - (sums * sums / xp.maximum(counts, 1.0)).sum(axis=1)  # an empty ring has sum 0
        total = s2 - sums.sum(axis=1) ** 2 / counts.sum(axis=1)
        score = 1.0 - within / total
    return xp.where(ok & (total > 0), score, np.nan)


def lost_beads(stack, x, y, min_symmetry: float, coarse=None):
    """Which images hold no bead at ``(x, y)``: :func:`radial_symmetry` below ``min_symmetry``.

    A NaN score (no centre, a constant image) is not "lost": x and y are NaN
    already. ROIs of :data:`SCREEN_MIN_ROI` px and more are screened first on
    every :data:`SCREEN_STEP`-th row and column, at a fraction of the cost. Sparser
    rings overstate the score, so an image whose coarse ``1 - score`` is at
    most ``min(0.2, 0.4 * (1 - min_symmetry))`` keeps its bead (in simulated
    beads and empty ROIs no image below 0.5 on the full sample came near that
    on the coarse one); only the rest are scored on every second row and
    column.

    Parameters
    ----------
    stack : (roi, roi, n_images) float array
    x, y : (n_images,) float64 arrays
        The found centres, px.
    min_symmetry : float
        In [0, 1].
    coarse : (n_images, w, w) array, optional
        The screen's sample (:func:`magtrack_dask.core.rois.crop_rois` with
        ``step=SCREEN_STEP``, e.g. from the camera integers); default taken
        from ``stack``.

    Returns
    -------
    lost : (n_images,) bool array
    """
    xp = array_module(stack)
    n, full = stack.shape[2], stack.shape[0]
    if full < SCREEN_MIN_ROI:
        return radial_symmetry(stack, x, y) < min_symmetry  # NaN compares False
    if coarse is None:
        coarse = radial_symmetry(stack, x, y, step=SCREEN_STEP)
    else:
        coarse = sample_symmetry(coarse, x, y, full, SCREEN_STEP)
    unsure = xp.flatnonzero(1.0 - coarse > min(0.2, 0.4 * (1.0 - min_symmetry)))  # NaN compares False
    lost = xp.zeros(n, dtype=bool)
    if unsure.size:
        lost[unsure] = radial_symmetry(stack, x[unsure], y[unsure], images=unsure) < min_symmetry
    return lost
