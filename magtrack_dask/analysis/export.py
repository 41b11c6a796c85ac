"""Drift-corrected traces and forces as CSV and HDF5, for the labs' calibration tools.

Traces: one row per frame with ``time_s``, ``x_nm``, ``y_nm``, ``z_nm`` (drift
corrected; z in the Z-LUT's nm, before the focal shift) and the frame's
``flags``, one CSV file per bead or one HDF5 group per bead. Tools that take a
position array and a sampling rate read a column directly: for tweezepy,
``PSD(np.loadtxt("bead_003.csv", delimiter=",", skiprows=1, usecols=2), fs)``
(x_nm; see tweezepy's quickstart, which calibrates a 1-D trace of nm). Forces:
one CSV row or one HDF5 column entry per bead and plateau.

HDF5 needs h5py (``pip install 'magtrack-dask[hdf5]'``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import xarray as xr

from magtrack_dask.analysis.analyze import corrected_nm
from magtrack_dask.validation import InputError

__all__ = ["TRACE_COLUMNS", "FORCE_COLUMNS", "export_csv", "export_hdf5"]

TRACE_COLUMNS = ("time_s", "frame", "x_nm", "y_nm", "z_nm", "flags")
FORCE_COLUMNS = ("bead", "plateau", "magnet_position", "magnet_rotation", "force_pn", "force_pn_err", "corner_hz",
                 "corner_hz_err", "stiffness_pn_per_nm", "extension_nm", "length_nm", "n_frames", "flags")


def _trace_table(ds: xr.Dataset, i: int) -> np.ndarray:
    """``(frame, len(TRACE_COLUMNS))`` of the bead at position ``i``."""
    n = ds.sizes["frame"]
    b = ds.isel(bead=i)
    time = b["time"].values if "time" in b.coords else np.full(n, np.nan)
    z = b["z_corrected"].values if "z_corrected" in b else np.full(n, np.nan)
    flags = b["flags"].values if "flags" in b else np.zeros(n)
    return np.column_stack([time, b["frame"].values, corrected_nm(b, "x", mask=False).values,
                            corrected_nm(b, "y", mask=False).values, z, flags]).astype(float)


def _check_corrected(ds) -> None:
    if not isinstance(ds, xr.Dataset) or "x_corrected" not in ds:
        raise InputError("exports need drift-corrected results: the Dataset from correct_drift()")


def _force_rows(forces: xr.Dataset) -> np.ndarray:
    """``(bead * plateau, len(FORCE_COLUMNS))``."""
    bead, plateau = np.meshgrid(forces["bead"].values, forces["plateau"].values, indexing="ij")
    cols = {"bead": bead, "plateau": plateau,
            "magnet_position": np.broadcast_to(forces["magnet_position"].values, bead.shape),
            "magnet_rotation": np.broadcast_to(forces["magnet_rotation"].values, bead.shape)}
    cols.update({c: forces[c].values for c in FORCE_COLUMNS if c not in cols})
    return np.column_stack([np.asarray(cols[c], dtype=float).ravel() for c in FORCE_COLUMNS])


def export_csv(corrected: xr.Dataset, folder, *, forces: xr.Dataset | None = None) -> list[str]:
    """Write ``bead_<id>.csv`` per bead (:data:`TRACE_COLUMNS`) and ``forces.csv`` (:data:`FORCE_COLUMNS`).

    Parameters
    ----------
    corrected : xarray.Dataset
        From :func:`~magtrack_dask.analysis.correct_drift` (traces read one bead at a time).
    folder : str or os.PathLike
        Created if missing; existing files of these names are replaced.
    forces : xarray.Dataset, optional
        From :func:`~magtrack_dask.analysis.analyze`.

    Returns
    -------
    list of str
        The files written.
    """
    _check_corrected(corrected)
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    written = []
    for i, b in enumerate(corrected["bead"].values):
        path = os.path.join(folder, f"bead_{int(b):03d}.csv")
        np.savetxt(path, _trace_table(corrected, i), delimiter=",", header=",".join(TRACE_COLUMNS), comments="",
                   fmt=["%.6f", "%d", "%.3f", "%.3f", "%.3f", "%d"])
        written.append(path)
    if forces is not None:
        path = os.path.join(folder, "forces.csv")
        np.savetxt(path, _force_rows(forces), delimiter=",", header=",".join(FORCE_COLUMNS), comments="",
                   fmt=["%d", "%d"] + ["%.8g"] * (len(FORCE_COLUMNS) - 3) + ["%d"])
        written.append(path)
    return written


def export_hdf5(corrected: xr.Dataset, path, *, forces: xr.Dataset | None = None) -> str:
    """Write one HDF5 file: ``/beads/<id>/{time_s, x_nm, y_nm, z_nm, flags}`` and ``/forces/<column>``.

    Each trace dataset has a ``units`` attribute; each bead group ``is_reference``;
    the file the results' pixel size, frame rate, reference beads and drift
    report. ``/forces`` holds every :data:`FORCE_COLUMNS` column as a 1-D
    dataset, one entry per bead and plateau, with the analysis' attributes.

    Parameters
    ----------
    corrected : xarray.Dataset
        From :func:`~magtrack_dask.analysis.correct_drift`.
    path : str or os.PathLike
        The file; replaced if it exists.
    forces : xarray.Dataset, optional
        From :func:`~magtrack_dask.analysis.analyze`.

    Returns
    -------
    path : str
    """
    try:
        import h5py
    except ImportError as err:
        raise ImportError("HDF5 export needs h5py: pip install 'magtrack-dask[hdf5]'") from err
    _check_corrected(corrected)
    path = os.fspath(path)
    units = {"time_s": "s", "frame": "1", "x_nm": "nm", "y_nm": "nm", "z_nm": "nm", "flags": "1"}
    refs = set(corrected.attrs.get("reference_beads", []))
    with h5py.File(path, "w") as f:
        for key in ("pixel_size_nm", "frame_rate_hz", "source", "drift"):
            if corrected.attrs.get(key) is not None:
                f.attrs[key] = corrected.attrs[key]
        f.attrs["reference_beads"] = np.asarray(sorted(refs), dtype=np.int64)
        for i, b in enumerate(corrected["bead"].values):
            g = f.create_group(f"beads/{int(b):03d}")
            g.attrs["is_reference"] = int(b) in refs
            for col, values in zip(TRACE_COLUMNS, _trace_table(corrected, i).T):
                d = g.create_dataset(col, data=values.astype(np.int64) if col in ("frame", "flags") else values)
                d.attrs["units"] = units[col]
        if forces is not None:
            g = f.create_group("forces")
            for col, values in zip(FORCE_COLUMNS, _force_rows(forces).T):
                g.create_dataset(col, data=values)
            for key, value in forces.attrs.items():
                g.attrs[key] = value if not isinstance(value, (list, dict)) else json.dumps(value)
    return path
