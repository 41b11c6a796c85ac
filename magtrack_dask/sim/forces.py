"""A tracked force experiment with known truth: tethered and stuck beads, magnet plateaus, stage drift.

:func:`simulate_force_results` gives what tracking would give for such an
experiment (a results Dataset: x, y in px, z in nm, flags, time) and the magnet
log that goes with it, for the tests, the demo and the analysis benchmarks.
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from magtrack_dask.analysis.extension import FOCAL_SHIFT_OIL_WATER
from magtrack_dask.sim.brownian import simulate_drift, simulate_tethered_bead

__all__ = ["simulate_force_results"]


def simulate_force_results(magnet_log=None, *, forces=(None, 1.0, 4.0), lengths_nm=(0.0, 900.0, 1000.0),
                           positions_mm=None, frames_per_plateau: int = 2000, n_tethered: int = 3,
                           n_stuck: int = 3, radius_nm: float = 1400.0, fs_hz: float = 100.0,
                           pixel_size_nm: float = 100.0, surface_nm: float = 250.0, noise_xy_nm: float = 1.0,
                           noise_z_nm: float = 2.0, t0_s: float = 10.0, seed=0) -> tuple[xr.Dataset, dict]:
    """Results of a force experiment: one force per magnet plateau, all beads under one stage drift.

    Beads ``0 .. n_tethered - 1`` are tethered: on each plateau their x, y come
    from :func:`~magtrack_dask.sim.brownian.simulate_tethered_bead` at that
    plateau's force and length (a ``None`` force: the beads rest on the surface,
    e.g. magnets far away), their z is the surface plus the length over the
    focal shift (0.88). The last ``n_stuck`` beads are stuck to the surface.
    Every bead gets the same drift (:func:`~magtrack_dask.sim.brownian.simulate_drift`)
    and Gaussian tracking noise.

    Parameters
    ----------
    magnet_log : str or os.PathLike, optional
        Write the magnet log CSV here (time_s, magnet_position_mm, rotation_turns).
    forces, lengths_nm : sequence
        Per plateau: force (pN, or None) and tether length (nm).
    positions_mm : sequence of float, optional
        Magnet position per plateau (default 10 mm for a None force, else closer for larger forces).
    frames_per_plateau, n_tethered, n_stuck : int
    radius_nm, fs_hz, pixel_size_nm, surface_nm, noise_xy_nm, noise_z_nm, t0_s : float
        Bead radius, frame rate, pixel size, the surface's z, tracking noise, first frame time.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    ds : xarray.Dataset
        dims (bead, frame): ``x``, ``y`` (px), ``z`` (nm), ``x_nm``, ``y_nm``, ``flags``; coord ``time``;
        attrs ``pixel_size_nm``, ``frame_rate_hz``.
    truth : dict
        ``force`` and ``length`` per plateau, ``drift`` (3, frame) nm, ``tethered`` and ``stuck`` bead ids,
        ``positions_mm``.
    """
    rng = np.random.default_rng(seed)
    n_beads, n_frames = n_tethered + n_stuck, frames_per_plateau * len(forces)
    x_nm, y_nm = rng.normal(0, noise_xy_nm, (2, n_beads, n_frames))
    z = surface_nm + rng.normal(0, noise_z_nm, (n_beads, n_frames))
    for b in range(n_tethered):
        for p, (force, length) in enumerate(zip(forces, lengths_nm)):
            if force is None:
                continue
            sl = slice(p * frames_per_plateau, (p + 1) * frames_per_plateau)
            bead = simulate_tethered_bead(force, length_nm=length, radius_nm=radius_nm, fs_hz=fs_hz,
                                          n_frames=frames_per_plateau, seed=rng)
            x_nm[b, sl] += bead.x_nm
            y_nm[b, sl] += bead.y_nm
            z[b, sl] += length / FOCAL_SHIFT_OIL_WATER
    drift = simulate_drift(n_frames, fs_hz=fs_hz, velocity_nm_per_s=(8.0, -5.0, 3.0), seed=rng)
    anchors = rng.uniform(50, 950, (2, n_beads, 1)) * pixel_size_nm
    x = (anchors[0] + x_nm + drift[0]) / pixel_size_nm
    y = (anchors[1] + y_nm + drift[1]) / pixel_size_nm
    t = t0_s + np.arange(n_frames) / fs_hz
    bf = ("bead", "frame")
    ds = xr.Dataset(
        {"x": (bf, x, {"units": "px"}), "y": (bf, y, {"units": "px"}), "z": (bf, z + drift[2], {"units": "nm"}),
         "x_nm": (bf, x * pixel_size_nm, {"units": "nm"}), "y_nm": (bf, y * pixel_size_nm, {"units": "nm"}),
         "flags": (bf, np.zeros(x.shape, np.uint8), {"units": "1"})},
        coords={"bead": np.arange(n_beads), "frame": np.arange(n_frames), "time": ("frame", t, {"units": "s"})},
        attrs={"pixel_size_nm": float(pixel_size_nm), "frame_rate_hz": float(fs_hz)},
    )
    if positions_mm is None:
        positions_mm = [10.0 if f is None else 3.0 / (1.0 + np.log1p(f)) for f in forces]
    if magnet_log is not None:
        _write_log(magnet_log, t, frames_per_plateau, positions_mm, fs_hz)
    truth = {"force": np.array([np.nan if f is None else f for f in forces]), "length": np.asarray(lengths_nm),
             "drift": drift, "tethered": list(range(n_tethered)), "stuck": list(range(n_tethered, n_beads)),
             "positions_mm": list(positions_mm)}
    return ds, truth


def _write_log(path, t, frames_per_plateau: int, positions_mm, fs_hz: float) -> None:
    """One row when each plateau starts (the first a second before the first frame) and a closing row."""
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write("time_s,magnet_position_mm,rotation_turns\n")
        for p, pos in enumerate(positions_mm):
            start = t[0] - 1.0 if p == 0 else t[p * frames_per_plateau] - 0.5 / fs_hz
            f.write(f"{start:.6f},{pos:.6g},0\n")
        f.write(f"{t[-1] + 0.5:.6f},{positions_mm[-1]:.6g},0\n")
