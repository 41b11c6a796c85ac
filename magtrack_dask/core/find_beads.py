"""Bead finding: an ROI table proposed from one camera frame (or the mean of a few).

Before the first ``import`` or ``track`` a user needs an ROI table: one square
ROI per bead, centred on it. :func:`find_beads` proposes one from a full
frame, in five steps:

1. **Flatten** the illumination: the frame divided by a smooth background
   (block means, a median over twice the ROI, a Gaussian, interpolated back),
   minus 1, so every bead is measured as a contrast whatever the local light.
2. **Vote** for centres (a fast radial symmetry transform, after Loy &
   Zelinsky, IEEE TPAMI 25:959, 2003): every pixel with a strong gradient
   votes along its gradient line, both ways, at each distance up to half an
   ROI; the rings of a bead all point at its centre, so votes pile up there
   while debris, fibres and noise scatter theirs.
3. **Refine** each vote peak to a sub-pixel centre with the tracker's own
   auto-convolution (:func:`magtrack_dask.core.xy.refine_rounds`), on an ROI
   cropped about it, twice (the second ROI centred on the first estimate).
4. **Score** each candidate about that centre: rings (its radial contrast
   profile changes sign, significantly, at least twice: a bead's core and
   rings, not a blob or a speck), pattern radius, radial symmetry
   (:func:`magtrack_dask.core.symmetry.radial_symmetry` on a window fitted to
   the pattern, of the lightly smoothed contrast: fibres and irregular debris
   score low), saturated pixels.
5. **Select**: ROI corner ``round(centre - (roi - 1) / 2)`` (the ROI's centre
   within half a pixel of the bead's); ROIs that leave the frame (beads cut by
   the edge) and beads whose ROI would overlap another object's (a bead or
   debris), or lie closer than ``min_distance``, are rejected.

NumPy; a CuPy frame is copied to the host first (one frame: the cost is the
copy). The ROI table is NumPy, as every ROI table of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from magtrack_dask._backend import to_numpy
from magtrack_dask.core.profiles import radial_profile
from magtrack_dask.core.symmetry import radial_symmetry
from magtrack_dask.core.xy import refine_rounds
from magtrack_dask.validation import InputError, InputTypeError, check_count, check_fraction, check_positive

__all__ = ["BeadCandidates", "find_beads", "flatten_illumination"]

#: Reasons a candidate is not proposed, in the order they are checked.
REASONS = ("edge", "saturated", "not_ring", "asymmetric", "size", "overlap")

#: A vote peak is a candidate when it stands this many robust spreads above the
#: vote map's median (noise peaks reach ~4, the faintest beads of the test
#: fields ~10-15) ...
PEAK_SPREADS = 10.0
#: ... and the smoothed contrast energy there is this many times the noise's
#: (votes that pile up on empty background from distant rings stay below ~3).
MIN_ENERGY = 4.0


@dataclass(frozen=True)
class BeadCandidates:
    """Every candidate :func:`find_beads` looked at, accepted or not.

    Attributes
    ----------
    x, y : (n,) float64 ndarray
        Refined centres, full-frame px (pixel centres at integers).
    votes : (n,) float64 ndarray
        Height of the centre-vote peak (noise-normalised gradient votes).
    symmetry : (n,) float64 ndarray
        Radial symmetry of the signal about the centre, in [0, 1] (1: rings only).
    rings : (n,) int64 ndarray
        Significant sign changes of the radial contrast profile.
    radius : (n,) float64 ndarray
        Pattern radius, px: 90 % of the profile's contrast energy lies inside.
    reason : (n,) str ndarray
        ``''`` for a proposed bead, else the first of :data:`REASONS` that applies.
    rois : (n, 4) int64 ndarray
        ``[top, bottom, left, right]`` of each candidate's ROI (possibly outside the frame).
    """

    x: np.ndarray
    y: np.ndarray
    votes: np.ndarray
    symmetry: np.ndarray
    rings: np.ndarray
    radius: np.ndarray
    reason: np.ndarray
    rois: np.ndarray

    @property
    def accepted(self) -> np.ndarray:
        """(n,) bool: the candidates proposed as beads."""
        return self.reason == ""

    @property
    def table_order(self) -> np.ndarray:
        """Indices of the proposed beads in the ROI table's order (by top, then left)."""
        ok = np.flatnonzero(self.accepted)
        return ok[np.lexsort((self.rois[ok, 2], self.rois[ok, 0]))]


def _check_frame(frame) -> tuple[np.ndarray, np.ndarray | None]:
    """The frame as float64 (the mean of a stack) and its saturated pixels (None for float input)."""
    frame = to_numpy(frame)
    if not isinstance(frame, np.ndarray) or frame.dtype.kind not in "uif":
        kind = getattr(frame, "dtype", type(frame).__name__)
        raise InputTypeError(f"frame must be an array of integer or float pixels; got {kind}")
    if frame.ndim not in (2, 3) or min(frame.shape) < 1:
        raise InputError(f"frame must be 2-D (height, width) or 3-D (frame, height, width); got shape {frame.shape}")
    saturated = None
    if frame.dtype.kind in "ui":
        top = np.iinfo(frame.dtype).max
        saturated = (frame == top) if frame.ndim == 2 else (frame == top).any(axis=0)
    image = frame.astype(np.float64) if frame.ndim == 2 else frame.mean(axis=0, dtype=np.float64)
    if not np.all(np.isfinite(image)):
        raise InputError("frame must hold finite pixels (NaN or inf found)")
    return image, saturated


def flatten_illumination(image: np.ndarray, scale: int) -> np.ndarray:
    """The frame as a contrast against its smooth background: ``image / background - 1``.

    Parameters
    ----------
    image : (height, width) float64 ndarray
    scale : int
        Size of the objects to keep, px (the ROI side): the background is the
        median over ``2 * scale`` px, so beads and small debris do not bend it.

    Returns
    -------
    contrast : (height, width) float64 ndarray
    """
    h, w = image.shape
    step = max(1, scale // 8)  # the background is smooth: medians on a coarse grid are enough
    hp, wp = -(-h // step) * step, -(-w // step) * step
    coarse = np.pad(image, ((0, hp - h), (0, wp - w)), mode="edge").reshape(hp // step, step, wp // step, step)
    coarse = ndimage.median_filter(coarse.mean(axis=(1, 3)), size=2 * (scale // step) + 1, mode="nearest")
    coarse = ndimage.gaussian_filter(coarse, scale / step / 4, mode="nearest")
    background = ndimage.zoom(coarse, step, order=1, mode="nearest", grid_mode=True)[:h, :w]
    floor = max(np.abs(background).max() * 1e-6, np.finfo(np.float64).tiny)
    return image / np.maximum(background, floor) - 1.0


def _noise(values: np.ndarray) -> float:
    """Robust standard deviation (median absolute deviation) of mostly-background pixels.

    Of a regular sample of about 2**16 pixels: enough for a spread, and a
    fraction of a full-frame median's cost.
    """
    sample = values.ravel()[:: max(1, values.size // 65536)]
    sigma = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    return sigma if sigma > 0 else float(np.std(sample)) or 1.0


def _centre_votes(contrast: np.ndarray, r_max: int) -> np.ndarray:
    """Radial-symmetry votes: each strong-gradient pixel votes at distances 2..r_max, both ways.

    A vote weighs the gradient over its noise level, capped (so a saturated
    blob's hard edge does not drown the beads). Returns the vote map,
    smoothed over 1.5 px.
    """
    gy, gx = np.gradient(ndimage.gaussian_filter(contrast, 0.8))
    sigma = _noise(gx)
    mag = np.hypot(gx, gy)
    strong = np.flatnonzero(mag > 3 * sigma)
    h, w = contrast.shape
    py, px = np.divmod(strong, w)
    m = mag.ravel()[strong]
    ux, uy = (gx.ravel()[strong] / m).astype(np.float32), (gy.ravel()[strong] / m).astype(np.float32)
    px, py = px.astype(np.float32), py.astype(np.float32)
    weight = np.minimum(m / sigma, 20.0)
    distance = np.concatenate([np.arange(2, r_max + 1), -np.arange(2, r_max + 1)]).astype(np.float32)[:, None]
    acc = np.zeros(h * w)
    for part in range(0, len(strong), 1 << 15):  # bounded temporaries: (distances, part) votes at a time
        sl = slice(part, part + (1 << 15))
        vx = np.rint(px[sl] + distance * ux[sl]).astype(np.int64)
        vy = np.rint(py[sl] + distance * uy[sl]).astype(np.int64)
        ok = (vx >= 0) & (vx < w) & (vy >= 0) & (vy < h)
        acc += np.bincount((vy * w + vx)[ok], weights=np.broadcast_to(weight[sl], vx.shape)[ok], minlength=h * w)
    return ndimage.gaussian_filter(acc.reshape(h, w), 1.5)


def _peaks(votes: np.ndarray, energy: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vote maxima that stand out of the vote map and sit on something (contrast above the noise).

    Returns
    -------
    x, y : (n,) float64 ndarray
        Peak pixels, px.
    height : (n,) float64 ndarray
        Vote map there.
    """
    level = float(np.median(votes))
    spread = _noise(votes)
    peak = ((votes == ndimage.maximum_filter(votes, size=window)) & (votes > level + PEAK_SPREADS * spread)
            & (energy > MIN_ENERGY))
    y, x = np.nonzero(peak)
    return x.astype(np.float64), y.astype(np.float64), votes[y, x]


def _corners(x: np.ndarray, y: np.ndarray, roi: int) -> tuple[np.ndarray, np.ndarray]:
    """Top and left of the ROIs centred on ``(x, y)``: their centre within half a pixel."""
    half = (roi - 1) / 2
    return np.rint(y - half).astype(np.int64), np.rint(x - half).astype(np.int64)


def _crop(padded: np.ndarray, top: np.ndarray, left: np.ndarray, roi: int, pad: int | None = None) -> np.ndarray:
    """ROIs ``(roi, roi, n)`` of a frame padded by ``pad`` (default ``roi``) px on every side."""
    pad = roi if pad is None else pad
    out = np.empty((len(top), roi, roi))
    for i, (t, l) in enumerate(zip(top + pad, left + pad)):
        out[i] = padded[t:t + roi, l:l + roi]
    return np.moveaxis(out, 0, 2)


def _refine(padded: np.ndarray, smooth: np.ndarray, x: np.ndarray, y: np.ndarray, roi: int):
    """Sub-pixel centres: the tracker's auto-convolution rounds, or the vote peak, whichever is more symmetric.

    The auto-convolution (twice, the second ROI centred on the first
    estimate) is accurate to a small fraction of a pixel, but in a faint,
    noisy pattern it can lock onto a ring's side lobe; the vote peak is good
    to about a pixel. Each candidate keeps the one about which its pattern is
    more radially symmetric (on a window of 3/4 ROI of ``smooth``, the
    padded smoothed contrast).
    """
    if len(x) == 0:
        return x, y
    rx, ry = x, y
    window = max(16, roi // 2)  # the core and first rings: less noise than the whole ROI
    for _ in range(2):
        top, left = _corners(rx, ry, window)
        fx, fy = refine_rounds(_crop(padded, top, left, window, pad=roi), rx - left, ry - top, 3)
        found = np.isfinite(fx) & np.isfinite(fy) & (np.hypot(fx + left - x, fy + top - y) < roi / 8)
        rx, ry = np.where(found, fx + left, x), np.where(found, fy + top, y)
    half = np.full(len(x), 3 * roi / 8)
    better = _symmetry(smooth, rx, ry, half, roi) >= _symmetry(smooth, x, y, half, roi)
    return np.where(better, rx, x), np.where(better, ry, y)


def _dedupe(x, y, height, distance: float):
    """Keep the highest of candidates whose refined centres coincide (one bead found twice)."""
    keep = np.ones(len(x), dtype=bool)
    for i in np.argsort(-height):
        if keep[i]:
            close = np.hypot(x - x[i], y - y[i]) < distance
            close[i] = False
            keep &= ~close
    return keep


def _profiles(stack: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Significant ring sign changes and pattern radius of each ROI.

    Parameters
    ----------
    stack : (roi, roi, n) float64 ndarray
        Contrast ROIs.
    x, y : (n,) float64 ndarray
        Centres in ROI px.
    sigma : float
        Pixel noise of the contrast.

    Returns
    -------
    rings : (n,) int64 ndarray
        Sign changes between the significant rings of the radial profile.
    radius : (n,) float64 ndarray
        90 % of the significant rings' contrast energy lies inside, px.
    """
    profile = np.nan_to_num(radial_profile(stack, x, y))  # (roi // 2, n)
    r = np.arange(profile.shape[0], dtype=np.float64)
    # Significant: 5 noise sigmas of a ring's mean (JPEG-like noise is correlated over a few px: generous).
    threshold = 5 * sigma / np.sqrt(np.maximum(2 * np.pi * r, 1.0))[:, None]
    sign = np.where(np.abs(profile) > threshold, np.sign(profile), 0.0)
    rings = np.zeros(profile.shape[1], dtype=np.int64)
    for i, s in enumerate(sign.T):
        s = s[s != 0]
        rings[i] = np.count_nonzero(s[1:] != s[:-1])
    energy = np.cumsum(np.where(sign != 0, r[:, None] * profile**2, 0.0), axis=0)
    radius = (energy < 0.9 * energy[-1]).sum(axis=0).astype(np.float64)
    return rings, radius


def _symmetry(padded: np.ndarray, x: np.ndarray, y: np.ndarray, half: np.ndarray, roi: int) -> np.ndarray:
    """Radial symmetry of each pattern about ``(x, y)``, on a window ``2 * half`` px wide (8 to ``roi / 2``).

    A window fitted to the pattern keeps the empty, noisy rest of the ROI
    from diluting the score of a small or faint bead. ``padded`` is the frame
    padded by ``roi`` px.
    """
    out = np.zeros(len(x))
    half = np.clip(np.ceil(half), 8, roi // 2).astype(np.int64)
    for i, h in enumerate(half):
        top, left = _corners(x[i : i + 1], y[i : i + 1], 2 * h)
        out[i] = radial_symmetry(_crop(padded, top, left, 2 * h, pad=roi), x[i : i + 1] - left, y[i : i + 1] - top,
                                 step=1)[0]
    return np.nan_to_num(out)


def _conflicts(x: np.ndarray, y: np.ndarray, roi: int, min_distance: float) -> np.ndarray:
    """(n,) bool: objects whose ROI would overlap another's, or closer than ``min_distance``."""
    dx, dy = np.abs(x[:, None] - x[None, :]), np.abs(y[:, None] - y[None, :])
    clash = (np.maximum(dx, dy) < roi) | (np.hypot(dx, dy) < min_distance)
    np.fill_diagonal(clash, False)
    return clash.any(axis=1)


def _reasons(top, left, roi, shape, saturated, symmetry, rings, radius, conflict, *, min_symmetry, min_rings,
             radius_px) -> np.ndarray:
    """The first of :data:`REASONS` that applies to each candidate, ``''`` for none."""
    h, w = shape
    sat = np.zeros(len(top), dtype=bool)
    if saturated is not None:
        counts = ndimage.uniform_filter(saturated.astype(np.float64), size=roi, mode="constant")  # ROI means
        inside = (top >= 0) & (left >= 0) & (top + roi <= h) & (left + roi <= w)
        cy, cx = np.clip(top + roi // 2, 0, h - 1), np.clip(left + roi // 2, 0, w - 1)
        sat = inside & (counts[cy, cx] > 0.5 / roi**2)
    tests = [
        (top < 0) | (left < 0) | (top + roi > h) | (left + roi > w),
        sat,
        rings < min_rings,
        symmetry < min_symmetry,
        (radius < radius_px[0]) | (radius > radius_px[1]),
        conflict,
    ]
    reason = np.full(len(top), "", dtype=object)
    for name, bad in reversed(list(zip(REASONS, tests))):  # the first reason that applies wins
        reason[bad] = name
    return reason.astype(str)


def find_beads(
    frame,
    roi: int,
    *,
    min_symmetry: float = 0.4,
    min_rings: int = 2,
    radius_px: tuple[float, float] | None = None,
    min_distance: float | None = None,
    return_candidates: bool = False,
):
    """Propose an ROI table from a full camera frame: one square ROI centred on each clean bead.

    Beads are ring patterns (bright-field, defocused); each is centred to a
    fraction of a pixel (the tracker's auto-convolution) and its ROI placed
    with its centre within half a pixel of the bead's. Rejected: beads cut
    by the frame edge (ROI outside the frame), ROIs with saturated pixels,
    patterns without rings or not radially symmetric (debris, fibres,
    blobs), patterns of the wrong size, and beads whose ROI would overlap
    another object's (a bead or debris: touching beads are both rejected).
    Uneven illumination is divided out first; 8-bit and JPEG-like noise are
    allowed for by measuring the noise in the frame.

    Parameters
    ----------
    frame : (height, width) or (n_frames, height, width) array
        A camera frame, or a few to average (their saturated pixels are any
        frame's); integer or float pixels, NumPy or CuPy.
    roi : int
        ROI side, px (>= 8): the size ``track`` will crop.
    min_symmetry : float, optional
        Least radial symmetry of the pattern, in [0, 1]: the fraction of the
        variance of the (lightly smoothed) contrast that rings about the
        centre explain, in a window of the pattern's radius. Default 0.4
        (the beads of the test fields score 0.65 and more, fibres 0.15-0.25).
    min_rings : int, optional
        Least number of significant sign changes of the radial contrast
        profile (core, ring, ring...: 2 by default). 0 accepts plain blobs.
    radius_px : (float, float), optional
        Allowed pattern radius (90 % of the contrast energy inside), px;
        default ``(3, roi / 2)``.
    min_distance : float, optional
        Least distance between a bead's centre and another object's, px;
        default ``roi`` (overlapping ROIs are refused in any case).
    return_candidates : bool, optional
        Also return every candidate with its scores and reason.

    Returns
    -------
    rois : (n_beads, 4) int64 ndarray
        ``[top, bottom, left, right]`` per bead (bottom, right exclusive),
        sorted by top then left: the table ``import --rois`` and ``track``
        read (:func:`magtrack_dask.io.rois.write_rois` writes it).
    candidates : BeadCandidates
        Only with ``return_candidates``.

    Raises
    ------
    InputError
        A frame that is not 2-D or 3-D or holds NaN, an ROI of fewer than
        8 px or larger than the frame, a bad option.
    InputTypeError
        A frame that is not an array of integer or float pixels.
    """
    image, saturated = _check_frame(frame)
    roi = check_count(roi, "roi")
    if roi < 8 or roi > min(image.shape):
        raise InputError(f"roi must be 8 px to the frame's smaller side ({min(image.shape)} px); got {roi}")
    min_symmetry = check_fraction(min_symmetry, "min_symmetry")
    if isinstance(min_rings, bool) or not isinstance(min_rings, (int, np.integer)) or min_rings < 0:
        raise InputError(f"min_rings must be an integer >= 0; got {min_rings!r}")
    radius_px = _check_range(radius_px, roi)
    min_distance = float(roi) if min_distance is None else check_positive(min_distance, "min_distance")

    contrast = flatten_illumination(image, roi)
    sigma = _noise(contrast)
    smooth = ndimage.gaussian_filter(contrast, 1.0)
    energy = ndimage.gaussian_filter(smooth**2, 2.0) / _noise(smooth) ** 2
    x, y, height = _peaks(_centre_votes(contrast, roi // 2), energy, max(5, roi // 8 + 1))
    padded, padded_smooth = np.pad(contrast, roi), np.pad(smooth, roi)
    x, y = _refine(padded, padded_smooth, x, y, roi)
    keep = _dedupe(x, y, height, 3.0)
    x, y, height = x[keep], y[keep], height[keep]
    top, left = _corners(x, y, roi)
    rings, radius = _profiles(_crop(padded, top, left, roi), x - left, y - top, sigma)
    symmetry = _symmetry(padded_smooth, x, y, radius, roi)  # the window: the pattern
    reason = _reasons(top, left, roi, image.shape, saturated, symmetry, rings, radius,
                      _conflicts(x, y, roi, min_distance), min_symmetry=min_symmetry, min_rings=min_rings,
                      radius_px=radius_px)
    found = BeadCandidates(x=x, y=y, votes=height, symmetry=symmetry, rings=rings, radius=radius, reason=reason,
                           rois=np.stack([top, top + roi, left, left + roi], axis=1))
    table = found.rois[found.table_order]
    return (table, found) if return_candidates else table


def _check_range(radius_px, roi: int) -> tuple[float, float]:
    if radius_px is None:
        return 3.0, roi / 2  # a speck's JPEG ringing can look like rings, within 2 px
    try:
        lo, hi = (float(v) for v in radius_px)
    except (TypeError, ValueError):
        raise InputError(f"radius_px must be two numbers (min, max) in px; got {radius_px!r}") from None
    if not (0 <= lo <= hi and np.isfinite(hi)):
        raise InputError(f"radius_px must be (min, max) with 0 <= min <= max, finite; got {radius_px!r}")
    return lo, hi
