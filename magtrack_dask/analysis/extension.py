"""Tether extension: each bead's z above the surface, corrected for the focal shift.

The Z-LUT's z is the objective's (or stage's) displacement. Focusing from
immersion oil (n ≈ 1.515) into water (n ≈ 1.33) moves the focal plane in the
sample by less than the objective moves: paraxially by the ratio
n_water / n_oil ≈ 0.88 (Hell, Reiner, Cremer & Stelzer 1993, J. Microsc.
169:391, "Aberrations in confocal fluorescence microscopy induced by
mismatches in refractive index"). Away from the paraxial limit (high NA, deep
focus) the factor differs by several per cent: measure it for the setup when
that matters. Pass ``focal_shift=1`` when the Z-LUT is already in sample units (an air or
water objective, or a LUT made by moving the bead).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from magtrack_dask.validation import InputError, InputTypeError, check_count, check_positive

__all__ = ["FOCAL_SHIFT_OIL_WATER", "extension"]

#: n_water / n_oil = 1.33 / 1.515: sample z per unit of objective z, oil objective into water (paraxial).
FOCAL_SHIFT_OIL_WATER = 0.88


def _as_z(z) -> xr.DataArray:
    """The z DataArray ``(bead, frame)`` (nm) of a Dataset (drift-corrected when it can), a DataArray or an array."""
    if isinstance(z, xr.Dataset):
        name = "z_corrected" if "z_corrected" in z else "z"
        if name not in z:
            raise InputError("z: the Dataset has neither z_corrected nor z")
        return z[name]
    if isinstance(z, xr.DataArray):
        arr = z
    else:
        try:
            values = np.asarray(z, dtype=float)
        except (TypeError, ValueError) as err:
            raise InputTypeError(f"z must be a results Dataset, a DataArray or an array of nm; got {type(z).__name__}") from err
        if values.ndim not in (1, 2):
            raise InputError(f"z must be (frame,) or (bead, frame); got shape {values.shape}")
        arr = xr.DataArray(values, dims=("frame",) if values.ndim == 1 else ("bead", "frame"))
    if "frame" not in arr.dims:
        raise InputError(f"z must have a 'frame' dimension; got dims {arr.dims}")
    return arr


def _whole_frames(z: xr.DataArray) -> xr.DataArray:
    return z.chunk({"frame": -1}) if z.chunks is not None else z  # a median needs the frames in one chunk


def _surface_from_frames(z: xr.DataArray, surface_frames) -> xr.DataArray:
    try:
        start, stop = (int(v) for v in surface_frames)
    except (TypeError, ValueError) as err:
        raise InputError(f"surface_frames must be (first, stop) frame numbers; got {surface_frames!r}") from err
    frames = z["frame"].values if "frame" in z.coords else np.arange(z.sizes["frame"])
    sel = (frames >= start) & (frames < stop)
    if start >= stop or not sel.any():
        raise InputError(f"surface_frames ({start}, {stop}) holds none of the frames "
                         f"{int(frames[0])}..{int(frames[-1])}")
    return _whole_frames(z.isel(frame=np.flatnonzero(sel))).median("frame", skipna=True)


def _surface_from_plateaus(z: xr.DataArray, plateaus) -> xr.DataArray:
    labels = np.asarray(plateaus)
    if labels.shape != (z.sizes["frame"],):
        raise InputError(f"plateaus must hold one label per frame ({z.sizes['frame']}); got shape {labels.shape}")
    medians = [_whole_frames(z.isel(frame=np.flatnonzero(labels == p))).median("frame", skipna=True)
               for p in np.unique(labels) if p >= 0]
    if not medians:
        raise InputError("plateaus: no frame belongs to a plateau (labels >= 0)")
    return xr.concat(medians, dim="plateau").min("plateau", skipna=True)


def extension(z, *, surface_frames=None, plateaus=None, window_frames: int = 100,
              focal_shift: float = FOCAL_SHIFT_OIL_WATER) -> xr.DataArray:
    """Each bead's height above the surface, in sample nm.

    ``(z - z_surface) * focal_shift``, with ``z_surface`` per bead the median z
    over the caller's surface frames, else over its lowest plateau (magnet
    plateaus given as ``plateaus``, else the lowest of the medians of
    consecutive ``window_frames``-frame blocks: the lowest level the bead holds
    for a while, which a single noisy frame cannot set).

    Parameters
    ----------
    z : xarray.Dataset, xarray.DataArray or array_like
        A results Dataset (``z_corrected`` from
        :func:`~magtrack_dask.analysis.correct_drift` when there, else ``z``),
        or z in nm, ``(bead, frame)`` or ``(frame,)``.
    surface_frames : (int, int), optional
        Frame numbers ``first <= frame < stop`` in which the beads sit on the
        surface (e.g. a recording with the magnets far away).
    plateaus : array_like of int, optional
        A plateau label per frame (``-1``: none), e.g. from the magnet log.
    window_frames : int, optional
        Block length of the lowest-level search without either.
    focal_shift : float, optional
        Sample z per unit of Z-LUT z (default :data:`FOCAL_SHIFT_OIL_WATER`,
        0.88: an oil-immersion objective focusing into water; 1 for none).

    Returns
    -------
    xarray.DataArray
        ``extension`` (nm), the dims of ``z``, with the coordinate ``z_surface``
        (per bead, in the units of ``z``) and attrs ``focal_shift`` and
        ``surface`` (how the surface was found). Lazy when ``z`` is.
    """
    z = _as_z(z)
    check_positive(focal_shift, "focal_shift")
    if surface_frames is not None and plateaus is not None:
        raise InputError("give surface_frames or plateaus, not both")
    if surface_frames is not None:
        surface, how = _surface_from_frames(z, surface_frames), f"median of frames {tuple(surface_frames)}"
    elif plateaus is not None:
        surface, how = _surface_from_plateaus(z, plateaus), "median z of the lowest plateau"
    else:
        window = min(check_count(window_frames, "window_frames"), z.sizes["frame"])
        blocks = _whole_frames(z).coarsen(frame=window, boundary="trim").median()
        surface, how = blocks.min("frame", skipna=True), f"lowest median of {window}-frame blocks"
    surface = surface.drop_vars([c for c in surface.coords if c not in surface.dims])
    ext = ((z - surface) * focal_shift).rename("extension")
    ext = ext.assign_coords(z_surface=surface.assign_attrs(units=z.attrs.get("units", "nm"),
                                                           long_name="z of the surface"))
    return ext.assign_attrs(units="nm", long_name="tether extension above the surface",
                            focal_shift=float(focal_shift), surface=how)
