"""A whole results store to forces: drift, plateaus, extension and a force calibration per bead and plateau.

One Dask task per bead calibrates all of its plateaus: the bead's trace is
read once, and the tasks (tens of ms to a second of fitting each) run on the
current scheduler, a distributed cluster when one is given.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import xarray as xr

from magtrack_dask.analysis.drift import XY_BAD_FLAGS, correct_drift
from magtrack_dask.analysis.extension import FOCAL_SHIFT_OIL_WATER, extension
from magtrack_dask.analysis.magnet import Plateaus, read_magnet_log, split_plateaus
from magtrack_dask.validation import InputError, InputTypeError, check_choice, check_positive

__all__ = ["ANALYSIS_FLAGS", "MAX_GAP_FRACTION", "analyze", "corrected_nm"]

#: Bits of the analysis' ``flags`` (bead, plateau).
ANALYSIS_FLAGS = {"reference_bead": 1, "too_few_frames": 2, "no_length": 4, "calibration_warning": 8,
                  "calibration_failed": 16}
#: A plateau whose x has more NaN or flagged frames than this fraction is not calibrated; fewer are
#: interpolated linearly (a gap would change the spectrum).
MAX_GAP_FRACTION = 0.01
_FIELDS = ("force_pn", "force_pn_err", "corner_hz", "corner_hz_err", "stiffness_pn_per_nm", "extension_nm",
           "length_nm", "n_frames")
_UNITS = {"force_pn": ("pN", "force"), "force_pn_err": ("pN", "force uncertainty (one standard deviation)"),
          "corner_hz": ("Hz", "corner frequency"), "corner_hz_err": ("Hz", "corner frequency uncertainty"),
          "stiffness_pn_per_nm": ("pN/nm", "trap stiffness"),
          "extension_nm": ("nm", "median extension above the surface"),
          "length_nm": ("nm", "tether length used for the force"), "n_frames": ("1", "frames calibrated")}


def _open(results) -> xr.Dataset:
    if isinstance(results, xr.Dataset):
        return results
    if isinstance(results, (str, os.PathLike)):
        from magtrack_dask.io.paths import check_zarr_path

        return xr.open_zarr(check_zarr_path(results, "results"), consolidated=None)
    raise InputTypeError(f"results must be a results store path or an xarray.Dataset; got {type(results).__name__}")


def _frame_rate(ds: xr.Dataset, fs_hz: float | None) -> float:
    if fs_hz is not None:
        return check_positive(fs_hz, "fs_hz", "Hz")
    if ds.attrs.get("frame_rate_hz"):
        return float(ds.attrs["frame_rate_hz"])
    if "time" in ds.coords and ds.sizes["frame"] > 1:
        return 1.0 / float(np.median(np.diff(ds["time"].values)))
    raise InputError("fs_hz: the results have no frame rate or frame times; pass fs_hz")


def corrected_nm(ds: xr.Dataset, axis: str, pixel_size_nm: float | None = None, *,
                 mask: bool = True) -> xr.DataArray:
    """The drift-corrected lateral position ``axis`` (nm), NaN where x, y are flagged when ``mask``."""
    if f"{axis}_nm_corrected" in ds and pixel_size_nm is None:
        trace = ds[f"{axis}_nm_corrected"]
    elif pixel_size_nm is not None:
        trace = ds[f"{axis}_corrected"] * check_positive(pixel_size_nm, "pixel_size_nm", "nm")
    else:
        raise InputError("pixel_size_nm: the results have no pixel size (x_nm); pass pixel_size_nm")
    if mask and "flags" in ds:
        trace = trace.where((ds["flags"] & XY_BAD_FLAGS) == 0)
    return trace


def _plateaus(ds: xr.Dataset, magnet_log, settle_s: float) -> Plateaus:
    if magnet_log is None:
        return Plateaus.single(ds.sizes["frame"])
    if "time" not in ds.coords:
        raise InputError("magnet_log: the results have no frame times (time coordinate) to match it against")
    log = read_magnet_log(magnet_log)
    return split_plateaus(log, ds["time"].values, settle_s=settle_s)


def _gap_fill(x: np.ndarray) -> tuple[np.ndarray | None, int]:
    """``x`` with NaN frames interpolated when at most :data:`MAX_GAP_FRACTION` are; None otherwise."""
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad > MAX_GAP_FRACTION * x.size or n_bad == x.size:
        return None, n_bad
    if n_bad:
        i = np.arange(x.size)
        x = x.copy()
        x[bad] = np.interp(i[bad], i[~bad], x[~bad])
    return x, n_bad


def _bead_task(x, ext, labels, n_plateaus, length_nm, options,
               surface_plateau: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every plateau of one bead: values ``(plateau, field)``, flags ``(plateau,)``, ``{plateau: warnings}``.

    With ``surface_plateau`` the lowest plateau is the extension's zero: it has no length of its own.
    """
    from magtrack_dask.analysis.force import MIN_FRAMES, calibrate_force

    values = np.full((n_plateaus, len(_FIELDS)), np.nan)
    flags = np.zeros(n_plateaus, np.uint8)
    notes: dict[int, str] = {}
    x, ext = np.asarray(x, dtype=float), np.asarray(ext, dtype=float)
    for p in range(n_plateaus):
        sel = labels == p
        finite = np.isfinite(ext[sel]).any()
        values[p, 5] = np.nanmedian(ext[sel]) if finite else np.nan
    lowest = int(np.nanargmin(values[:, 5])) if surface_plateau and np.isfinite(values[:, 5]).any() else -1
    for p in range(n_plateaus):
        sel = labels == p
        length = (values[p, 5] if p != lowest else np.nan) if length_nm is None else length_nm
        values[p, 6], values[p, 7] = length, sel.sum()
        trace, n_bad = _gap_fill(x[sel])
        if trace is None or trace.size < MIN_FRAMES:
            flags[p] |= ANALYSIS_FLAGS["too_few_frames"]
            notes[p] = (f"{n_bad} of {sel.sum()} frames NaN or flagged" if trace is None
                        else f"{trace.size} frames (< {MIN_FRAMES})")
            continue
        if not np.isfinite(length) or length <= 0:
            flags[p] |= ANALYSIS_FLAGS["no_length"]
            notes[p] = ("the lowest plateau: the surface, no length of its own (pass length_nm or surface_frames)"
                        if p == lowest else "no extension (no z?) to use as the tether length: pass length_nm")
            continue
        try:
            cal = calibrate_force(trace, length_nm=float(length), **options)
        except InputError as err:
            flags[p] |= ANALYSIS_FLAGS["calibration_failed"]
            notes[p] = str(err)
            continue
        values[p, :5] = (cal.force_pn, cal.force_pn_err, cal.corner_hz, cal.corner_hz_err, cal.stiffness_pn_per_nm)
        text = list(cal.warnings) + ([f"{n_bad} NaN or flagged frames interpolated"] if n_bad else [])
        if cal.warnings:
            flags[p] |= ANALYSIS_FLAGS["calibration_warning"]
        if text:
            notes[p] = "; ".join(text)
    return values, flags, notes


def analyze(
    results,
    *,
    radius_nm: float,
    reference_beads: str | Sequence[int] = "auto",
    magnet_log=None,
    length_nm: float | None = None,
    axis: str = "x",
    method: str = "psd",
    exposure_s: float | None = None,
    temperature_k: float = 296.15,
    viscosity_pa_s: float = 0.00089,
    fs_hz: float | None = None,
    pixel_size_nm: float | None = None,
    focal_shift: float = FOCAL_SHIFT_OIL_WATER,
    surface_frames=None,
    settle_s: float = 0.0,
    out=None,
    overwrite: bool = False,
    client=None,
) -> xr.Dataset:
    """Force, extension and corner frequency of every bead on every magnet plateau.

    Drift is removed with :func:`~magtrack_dask.analysis.correct_drift` (unless
    ``results`` already holds ``x_corrected``), frames are split into plateaus
    of constant magnet position and rotation by the magnet log (one plateau
    without it), the extension comes from
    :func:`~magtrack_dask.analysis.extension` (surface: ``surface_frames``,
    else the lowest plateau), and each bead's drift-corrected ``axis`` trace on
    each plateau goes to :func:`~magtrack_dask.analysis.force.calibrate_force`.
    Reference beads, plateaus with more than :data:`MAX_GAP_FRACTION` NaN or
    flagged frames (fewer are interpolated), and plateaus without a length get
    NaN with a flag saying why, never a silent number.

    Parameters
    ----------
    results : str, os.PathLike or xarray.Dataset
        A results store or Dataset (``x``, ``y`` px, ``z`` nm, dims bead, frame).
    radius_nm : float
        Bead radius (nm).
    reference_beads : 'auto' or sequence of int, optional
        See :func:`~magtrack_dask.analysis.correct_drift`.
    magnet_log : str or os.PathLike, optional
        CSV of time, magnet position, rotation (:mod:`~magtrack_dask.analysis.magnet`).
    length_nm : float, optional
        Pendulum length for every bead and plateau; default each one's measured
        median extension (``length_nm`` in the output says which was used),
        above the surface of ``surface_frames``, else of the magnet log's
        lowest plateau (which then has no length: flag ``no_length``).
    axis : {'x', 'y'}, optional
        The lateral direction calibrated: the one perpendicular to the
        magnetic field, whose pendulum length is the extension (along the field
        it is the extension plus the bead radius: pass ``length_nm`` then).
    method : {'psd', 'allan', 'equipartition'}, optional
    exposure_s, temperature_k, viscosity_pa_s : float, optional
        Passed to ``calibrate_force`` (exposure default: the frame interval).
    fs_hz, pixel_size_nm : float, optional
        Override or supply the results' frame rate and pixel size.
    focal_shift : float, optional
        Z-LUT to sample z factor (:data:`~magtrack_dask.analysis.extension.FOCAL_SHIFT_OIL_WATER`).
    surface_frames : (int, int), optional
        Frames with the beads on the surface, for the extension's zero.
    settle_s : float, optional
        Seconds after each magnet move left out of the plateau.
    out : str or os.PathLike, optional
        Also write the analysis to this Zarr store.
    overwrite : bool, optional
        Replace an existing ``out`` (only ever a Zarr store).
    client : distributed.Client, optional
        Run the per-bead tasks on it; default the current Dask scheduler.

    Returns
    -------
    xarray.Dataset
        dims ``(bead, plateau)``: ``force_pn``, ``force_pn_err``,
        ``corner_hz``, ``corner_hz_err``, ``stiffness_pn_per_nm``,
        ``extension_nm``, ``length_nm``, ``n_frames``, ``flags`` (bits
        :data:`ANALYSIS_FLAGS`); coords ``magnet_position``,
        ``magnet_rotation``, ``first_frame``, ``stop_frame`` (plateau),
        ``is_reference`` (bead); attrs: the method and parameters, the
        reference beads and the drift report, ``warnings`` (JSON
        ``{"bead/plateau": text}``).

    Raises
    ------
    InputError
        Bad parameters, absent reference beads, a magnet log that does not
        cover the frames, no frame rate or pixel size.
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    """
    import dask

    check_positive(radius_nm, "radius_nm", "nm")
    check_choice(axis, "axis", ("x", "y"))
    if length_nm is not None:
        check_positive(length_nm, "length_nm", "nm")
    if out is not None:
        _check_out(out, overwrite)
    check_choice(method, "method", ("psd", "allan", "equipartition"))
    ds = _open(results)
    options = {"fs_hz": _frame_rate(ds, fs_hz), "radius_nm": radius_nm, "exposure_s": exposure_s,
               "temperature_k": temperature_k, "viscosity_pa_s": viscosity_pa_s, "method": method}
    plateaus = _plateaus(ds, magnet_log, settle_s)  # bad input fails before the drift work
    surface_plateau = surface_frames is None
    if length_nm is None and surface_plateau and len(plateaus.position) < 2:
        raise InputError("length_nm: without a magnet log of two or more plateaus the surface is unknown; "
                         "pass length_nm or surface_frames")
    if "x_corrected" not in ds:
        ds = correct_drift(ds, reference_beads)
    elif not (isinstance(reference_beads, str) and reference_beads == "auto") and sorted(
            reference_beads) != sorted(ds.attrs.get("reference_beads", [])):
        raise InputError(f"reference_beads: results already drift-corrected with beads "
                         f"{ds.attrs.get('reference_beads')}; pass 'auto' or the uncorrected results")
    trace = corrected_nm(ds, axis, pixel_size_nm)
    ext = extension(ds, surface_frames=surface_frames, focal_shift=focal_shift,
                    plateaus=None if surface_frames is not None else plateaus.labels)
    n_plateaus = len(plateaus.position)
    refs = set(ds.attrs.get("reference_beads", []))
    ids = [int(b) for b in ds["bead"].values]
    task = dask.delayed(_bead_task, pure=True)
    tasks = [task(trace.isel(bead=i).data, ext.isel(bead=i).data, plateaus.labels, n_plateaus, length_nm, options,
                  surface_plateau and length_nm is None) for i, b in enumerate(ids) if b not in refs]
    done = iter(dask.compute(*tasks, scheduler=client) if tasks else ())
    values = np.full((len(ids), n_plateaus, len(_FIELDS)), np.nan)
    flags = np.zeros((len(ids), n_plateaus), np.uint8)
    notes = {}
    for i, b in enumerate(ids):
        if b in refs:
            flags[i] = ANALYSIS_FLAGS["reference_bead"]
            continue
        values[i], flags[i], bead_notes = next(done)
        notes.update({f"{b}/{p}": text for p, text in bead_notes.items()})
    result = _assemble(ds, plateaus, values, flags, notes, options, length_nm=length_nm, axis=axis,
                       focal_shift=focal_shift, settle_s=float(settle_s), magnet_log=magnet_log)
    if out is not None:
        _write(result, out)
    return result


def _check_out(out, overwrite: bool) -> None:
    from magtrack_dask.io.paths import check_replaceable

    if not overwrite and os.path.lexists(os.fspath(out)):
        raise FileExistsError(f"out: {os.fspath(out)} exists; pass overwrite=True to replace it")
    check_replaceable(out, "out")


def _write(result: xr.Dataset, out) -> None:
    from magtrack_dask.io.paths import remove_store

    import warnings

    import zarr

    remove_store(out, "out")
    result.to_zarr(os.fspath(out), mode="w", zarr_format=3, consolidated=False)
    with warnings.catch_warnings():  # "not part of the v3 spec": xarray reads it, others ignore it
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(os.fspath(out))


def _assemble(ds, plateaus, values, flags, notes, options, **params) -> xr.Dataset:
    bp = ("bead", "plateau")
    data = {name: (bp, values[..., k], {"units": _UNITS[name][0], "long_name": _UNITS[name][1]})
            for k, name in enumerate(_FIELDS)}
    data["flags"] = (bp, flags, {"units": "1", "long_name": "analysis flags (bit mask)",
                                 "flag_masks": list(ANALYSIS_FLAGS.values()),
                                 "flag_meanings": " ".join(ANALYSIS_FLAGS)})
    coords = {
        "bead": ds["bead"].values,
        "plateau": np.arange(len(plateaus.position)),
        "magnet_position": ("plateau", plateaus.position, {"long_name": "magnet position (the log's units)"}),
        "magnet_rotation": ("plateau", plateaus.rotation, {"long_name": "magnet rotation (the log's units)"}),
        "first_frame": ("plateau", plateaus.first_frame, {"long_name": "first frame position of the plateau"}),
        "stop_frame": ("plateau", plateaus.stop_frame, {"long_name": "frame position after the plateau"}),
        "is_reference": ("bead", np.asarray(ds["is_reference"].values) if "is_reference" in ds.coords
                         else np.isin(ds["bead"].values, ds.attrs.get("reference_beads", []))),
    }
    length = params.pop("length_nm")
    magnet_log = params.pop("magnet_log")
    attrs = {
        "title": "magtrack-dask force analysis",
        "source": str(ds.attrs.get("source", "")),
        "method": options["method"],
        **{k: v for k, v in options.items() if k != "method" and v is not None},
        **params,
        "length": "measured extension per bead and plateau" if length is None else f"{length:g} nm for all",
        "magnet_log": os.fspath(magnet_log) if magnet_log is not None else "",
        "reference_beads": [int(b) for b in ds.attrs.get("reference_beads", [])],
        "drift": ds.attrs.get("drift", "{}"),
        "flag_bits": json.dumps(ANALYSIS_FLAGS),
        "warnings": json.dumps(notes),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)
