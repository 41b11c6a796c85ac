"""Reference-bead drift correction: stuck beads move only with the stage, so their common motion is the drift.

:func:`correct_drift` picks the reference beads (or takes the caller's),
estimates the drift per frame as the median over them after removing each
bead's own offset, rejects reference beads that disagree with the others
(a bead that detaches or jumps), and subtracts the drift from every bead.
"""

from __future__ import annotations

import json
import warnings
from typing import Sequence

import numpy as np
import xarray as xr

from magtrack_dask.core.flags import Flag
from magtrack_dask.jobs.summary import STUCK_STD_PX, stuck_beads
from magtrack_dask.validation import InputError, InputTypeError, check_fraction, check_positive

__all__ = ["XY_BAD_FLAGS", "correct_drift", "select_reference_beads"]

_COORDS = ("x", "y", "z")
#: Flags that make a frame's x, y untrustworthy (all but the Z-LUT one).
XY_BAD_FLAGS = int(Flag.XY_NOT_FOUND | Flag.SATURATED | Flag.NEAR_ROI_EDGE | Flag.INPUT_UNREADABLE)
_SELECTION_FRAMES = 20000  # frames sampled to rank the beads' spreads: enough for a standard deviation
_N_SEEDS = 3  # the lowest-spread beads that refine the first common-motion estimate


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # all-NaN slices give NaN, which is what we want
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(a, axis=axis)


def _positions(ds: xr.Dataset, beads: Sequence[int], frames=slice(None)) -> np.ndarray:
    """``(bead, frame, 3)`` x, y (px) and z (nm) of the bead positions ``beads``; NaN where flagged."""
    sub = ds.isel(bead=list(beads), frame=frames)
    xyz = np.stack([np.asarray(sub[c].values, dtype=float) if c in sub else
                    np.full((len(beads), sub.sizes["frame"]), np.nan) for c in _COORDS], axis=-1)
    if "flags" in sub:
        flags = np.asarray(sub["flags"].values).astype(np.int64)
        xyz[..., :2][(flags & XY_BAD_FLAGS) != 0] = np.nan
        xyz[..., 2][flags != 0] = np.nan
    return xyz


def _common_motion(xyz: np.ndarray, iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Drift ``(frame, 3)`` and per-bead offsets ``(bead, 3)`` with ``xyz ≈ offset + drift``.

    Offsets and the per-frame median are refined in turn, so that a bead
    missing some frames does not shift the others' estimate by its own mean.
    """
    offset = _nanmedian(xyz, axis=1)
    for _ in range(iterations):
        drift = _nanmedian(xyz - offset[:, None, :], axis=0)
        offset = _nanmedian(xyz - drift[None], axis=1)
    return _nanmedian(xyz - offset[:, None, :], axis=0), offset


def _spread_px(xyz: np.ndarray, drift: np.ndarray) -> list:
    """Per bead ``[std x, std y]`` (px) about the common motion; None with fewer than 2 frames."""
    dev = xyz[..., :2] - drift[None, :, :2]
    n = np.isfinite(dev).all(axis=-1).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        std = np.nanstd(dev, axis=1)
    return [None if k < 2 else [float(s[0]), float(s[1])] for k, s in zip(n, std)], n


def select_reference_beads(ds: xr.Dataset, *, stuck_std_px: float = STUCK_STD_PX,
                           max_frames: int = _SELECTION_FRAMES) -> tuple[list[int], dict]:
    """Bead positions that look stuck once the common motion is removed.

    With drift, every bead's raw spread is dominated by the stage motion, so
    the job summary's stuck test (x, y standard deviations below
    ``stuck_std_px``, :func:`magtrack_dask.jobs.summary.stuck_beads`) is applied
    to the positions minus a common-motion estimate: first the per-frame median
    of all beads, then the median of the three lowest-spread beads.

    Parameters
    ----------
    ds : xarray.Dataset
        Tracking results (``x``, ``y`` in px; ``flags`` optional).
    stuck_std_px : float, optional
    max_frames : int, optional
        At most this many evenly spaced frames are read.

    Returns
    -------
    beads : list of int
        Positions along ``bead`` of the stuck beads, lowest spread first.
    spreads : dict
        ``{position: max(std x, std y) in px}`` of every bead with tracked frames.
    """
    stride = max(1, -(-ds.sizes["frame"] // max_frames))
    xyz = _positions(ds, range(ds.sizes["bead"]), slice(None, None, stride))
    drift, _ = _common_motion(xyz, iterations=0)
    for _ in range(2):  # refine with the quietest beads: tethered beads' fluctuations leak into an all-bead median
        std, n = _spread_px(xyz, drift)
        order = sorted((max(s), b) for b, s in enumerate(std) if s is not None)
        seeds = [b for _, b in order[:_N_SEEDS]]
        if not seeds:
            break
        drift, _ = _common_motion(xyz[seeds])
    std, n = _spread_px(xyz, drift)
    stuck = stuck_beads(std, n * stride, stuck_std_px)
    spreads = {b: max(s) for b, s in enumerate(std) if s is not None}
    return sorted(stuck, key=spreads.get), spreads


def _reference_positions(ds: xr.Dataset, reference_beads) -> list[int]:
    """Positions along ``bead`` of the caller's bead ids."""
    if isinstance(reference_beads, (str, bytes)) or not isinstance(reference_beads, Sequence | np.ndarray):
        raise InputTypeError(f"reference_beads must be 'auto' or a list of bead ids; got {reference_beads!r}")
    ids = list(reference_beads)
    if not ids or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in ids):
        raise InputError(f"reference_beads must be 'auto' or a non-empty list of integer bead ids; got {ids!r}")
    if len(set(ids)) != len(ids):
        raise InputError(f"reference_beads names a bead twice: {ids}")
    known = [int(b) for b in ds["bead"].values]
    absent = [int(b) for b in ids if int(b) not in known]
    if absent:
        raise InputError(f"reference_beads: bead(s) {', '.join(map(str, absent))} are not in the results "
                         f"(beads {known[0]}..{known[-1]}, {len(known)} in all)")
    return [known.index(int(b)) for b in ids]


def _noise_scale(centred: np.ndarray) -> np.ndarray:
    """Per coordinate ``(3,)``: a single bead's tracking noise, from its quietest pair of beads.

    The MAD of a pair's difference over sqrt(2); the quietest pair is made of
    two good beads whenever two are good, which the deviations from the
    all-bead median (shrunk towards zero: the median bead is one of them)
    cannot tell. Infinite where unknown (no z), so that it rejects nothing.
    """
    stride = max(1, centred.shape[1] // _SELECTION_FRAMES)
    c = centred[:, ::stride]
    pairs = [1.4826 * _nanmedian(np.abs(c[a] - c[b]), axis=0) / np.sqrt(2)
             for a in range(len(c)) for b in range(a + 1, len(c))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmin(np.stack(pairs), axis=0)
    return np.where(np.isfinite(scale), np.maximum(scale, 1e-9), np.inf)


def _reject_outliers(xyz: np.ndarray, *, outlier_sigma: float, max_outlier_fraction: float,
                     min_valid_fraction: float) -> tuple[list[int], dict[int, str]]:
    """Indices into ``xyz`` of the beads kept, and ``{index: reason}`` of those rejected.

    A bead is rejected when more than ``max_outlier_fraction`` of its frames
    deviate from the others' common motion by more than ``outlier_sigma`` times
    the typical (median over beads, MAD-based) scatter; the worst bead first,
    then again without it. The median over three or more beads is not pulled by
    one bad bead, so the good beads' deviations stay small.
    """
    n_frames = xyz.shape[1]
    rejected: dict[int, str] = {}
    valid = np.isfinite(xyz[..., :2]).all(axis=-1).mean(axis=1)
    keep = []
    for b, v in enumerate(valid):
        if v < min_valid_fraction:
            rejected[b] = f"x, y tracked in {v:.0%} of the frames (< {min_valid_fraction:.0%})"
        else:
            keep.append(b)
    while len(keep) >= 3:
        drift, offset = _common_motion(xyz[keep])
        dev = np.abs(xyz[keep] - offset[:, None, :] - drift[None])
        scale = _noise_scale(xyz[keep] - offset[:, None, :])
        with np.errstate(invalid="ignore"):
            out = (dev > outlier_sigma * scale).any(axis=-1).sum(axis=1) / n_frames
        worst = int(np.argmax(out))
        if out[worst] <= max_outlier_fraction:
            break
        rejected[keep[worst]] = (f"disagrees with the other reference beads in {out[worst]:.1%} of the frames "
                                 f"(> {outlier_sigma:g} x their scatter)")
        del keep[worst]
    return keep, rejected


def _leave_one_out_rms(xyz: np.ndarray) -> np.ndarray:
    """RMS ``(3,)`` of each reference bead against the median of the others (NaN with one bead)."""
    if xyz.shape[0] < 2:
        return np.full(3, np.nan)
    _, offset = _common_motion(xyz)
    centred = xyz - offset[:, None, :]
    dev = np.stack([centred[b] - _nanmedian(np.delete(centred, b, axis=0), axis=0) for b in range(len(xyz))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.sqrt(np.nanmean(dev**2, axis=(0, 1)))


def _fill_gaps(drift: np.ndarray) -> tuple[np.ndarray, int]:
    """Linear interpolation over frames without any reference bead (drift is slow); count of such frames."""
    filled = drift.copy()
    n_gaps = 0
    for c in range(drift.shape[1]):
        ok = np.isfinite(drift[:, c])
        if ok.any() and not ok.all():
            n_gaps = max(n_gaps, int((~ok).sum()))
            frames = np.arange(len(drift))
            filled[:, c] = np.interp(frames, frames[ok], drift[ok, c])
    return filled, n_gaps


def _pixel_size_nm(ds: xr.Dataset) -> float | None:
    px = ds.attrs.get("pixel_size_nm")
    return float(px) if px else None


def correct_drift(
    ds: xr.Dataset,
    reference_beads: str | Sequence[int] = "auto",
    *,
    stuck_std_px: float = STUCK_STD_PX,
    outlier_sigma: float = 5.0,
    max_outlier_fraction: float = 0.01,
    min_valid_fraction: float = 0.5,
) -> xr.Dataset:
    """Subtract the stage drift, measured on reference beads stuck to the surface, from every bead.

    The drift in each frame is the median over the reference beads of their
    positions minus each bead's own offset (its median position relative to
    the others). Reference frames that are NaN or flagged are left out (x, y:
    any flag but the Z-LUT one; z: any flag); frames without any reference bead
    get the drift interpolated from their neighbours. Reference beads that
    disagree with the others (one that detaches, jumps or slips) are dropped
    automatically: this needs at least three reference beads.

    Parameters
    ----------
    ds : xarray.Dataset
        Tracking results, dims ``(bead, frame)``: ``x``, ``y`` (px), ``z``
        (nm), optional ``flags`` and ``x_nm``, ``y_nm`` (see
        :mod:`magtrack_dask.tracking.schema`). Lazy (Dask) variables stay lazy,
        except the reference beads' traces, which are read.
    reference_beads : 'auto' or sequence of int, optional
        Bead ids (values of the ``bead`` coordinate). ``'auto'`` takes every
        bead whose x and y standard deviations about the common motion are
        below ``stuck_std_px`` (:func:`select_reference_beads`).
    stuck_std_px : float, optional
        The job summary's stuck threshold (:data:`~magtrack_dask.jobs.summary.STUCK_STD_PX`).
    outlier_sigma : float, optional
        A reference frame is an outlier when it deviates from the others by
        more than this many times their typical scatter.
    max_outlier_fraction : float, optional
        A reference bead with more outlier frames than this fraction is dropped.
    min_valid_fraction : float, optional
        A reference bead tracked in fewer frames than this fraction is dropped.

    Returns
    -------
    xarray.Dataset
        ``ds`` plus ``x_corrected``, ``y_corrected`` (px), ``z_corrected`` (nm),
        ``x_nm_corrected``, ``y_nm_corrected`` when ``x_nm`` is there,
        ``drift_x``, ``drift_y`` (px) and ``drift_z`` (nm) per frame (zero
        median), the bead coordinate ``is_reference``, and attrs
        ``reference_beads`` (ids used) and ``drift`` (JSON: beads used and
        rejected with the reasons, residual drift between the used beads as the
        RMS of each against the median of the others, per coordinate in nm when
        the pixel size is known, frames interpolated, warnings).

    Raises
    ------
    InputError
        ``reference_beads`` names absent beads or is malformed; ``'auto'``
        finds no stuck bead; no reference bead has usable x, y.
    """
    if not isinstance(ds, xr.Dataset) or not {"x", "y"} <= set(ds.data_vars):
        raise InputTypeError(f"ds must be a tracking results xarray.Dataset with x and y; got {type(ds).__name__}")
    check_positive(stuck_std_px, "stuck_std_px", "px")
    check_positive(outlier_sigma, "outlier_sigma")
    check_fraction(max_outlier_fraction, "max_outlier_fraction")
    check_fraction(min_valid_fraction, "min_valid_fraction")
    warn: list[str] = []
    if isinstance(reference_beads, str) and reference_beads == "auto":
        chosen, spreads = select_reference_beads(ds, stuck_std_px=stuck_std_px)
        if not chosen:
            lowest = ", ".join(f"bead {int(ds['bead'][b])}: {s:.3g} px" for b, s in sorted(
                spreads.items(), key=lambda kv: kv[1])[:3])
            raise InputError(f"reference_beads='auto': no stuck bead (x, y std about the common motion < "
                             f"{stuck_std_px:g} px); lowest: {lowest or 'none tracked'}; pass reference_beads=[ids]")
    else:
        chosen = _reference_positions(ds, reference_beads)
    xyz = _positions(ds, chosen)
    keep, rejected = _reject_outliers(xyz, outlier_sigma=outlier_sigma, max_outlier_fraction=max_outlier_fraction,
                                      min_valid_fraction=min_valid_fraction)
    ids = [int(v) for v in ds["bead"].values]
    if not keep:
        raise InputError("reference_beads: no usable reference bead; "
                         + "; ".join(f"bead {ids[chosen[b]]}: {r}" for b, r in rejected.items()))
    if len(keep) < 3:
        warn.append(f"{len(keep)} reference bead(s): a bad one cannot be told from a good one (3 or more can)")
    drift, _ = _common_motion(xyz[keep])
    drift, n_gaps = _fill_gaps(drift)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        drift = drift - _nanmedian(drift, axis=0)
    if not np.isfinite(drift[:, 2]).any() and "z" in ds and np.isfinite(ds["z"].values).any():
        warn.append("no reference bead has a z: z_corrected is NaN")
    return _assemble(ds, drift, used=sorted(ids[chosen[b]] for b in keep),
                     rejected={ids[chosen[b]]: r for b, r in rejected.items()},
                     residual=_leave_one_out_rms(xyz[keep]), n_gaps=n_gaps, warn=warn)


def _assemble(ds, drift, *, used, rejected, residual, n_gaps, warn) -> xr.Dataset:
    px = _pixel_size_nm(ds)
    scale = np.array([px or 1.0, px or 1.0, 1.0])
    units = ["nm" if px else "px"] * 2 + ["nm"]
    info = {
        "reference_beads": used,
        "rejected": {str(b): r for b, r in rejected.items()},
        "residual_rms": {c: (None if not np.isfinite(v) else round(float(v), 4))
                         for c, v in zip(_COORDS, residual * scale)},
        "residual_units": dict(zip(_COORDS, units)),
        "residual_definition": "RMS over frames and reference beads of each one's position minus the median of "
                               "the others (offsets removed)",
        "frames_interpolated": n_gaps,
        "warnings": warn,
    }
    out = ds.copy()
    unit = {"x": "px", "y": "px", "z": "nm"}
    for i, c in enumerate(_COORDS):
        d = xr.DataArray(drift[:, i], dims="frame",
                         attrs={"units": unit[c], "long_name": f"stage drift in {c} from the reference beads"})
        out[f"drift_{c}"] = d
        if c in ds:
            out[f"{c}_corrected"] = (ds[c] - d).assign_attrs(
                units=unit[c], long_name=f"bead {c} position minus the reference-bead drift")
        if c in "xy" and f"{c}_nm" in ds and px:
            out[f"{c}_nm_corrected"] = (ds[f"{c}_nm"] - d * px).assign_attrs(
                units="nm", long_name=f"bead {c} position minus the reference-bead drift")
    out = out.assign_coords(is_reference=("bead", np.isin(ds["bead"].values, used),
                                          {"long_name": "used as a drift reference bead", "units": "1"}))
    out.attrs["reference_beads"] = used
    out.attrs["drift"] = json.dumps(info)
    return out
