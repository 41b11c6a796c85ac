"""Synthetic tracking results with known truth: tethered and stuck beads under a common stage drift."""

import numpy as np
import xarray as xr
from scipy.signal import lfilter

PX_NM = 100.0
FS_HZ = 100.0


def ar1(rng, n_frames: int, std: float, corr_frames: float, size=()) -> np.ndarray:
    """A stationary AR(1) (Ornstein-Uhlenbeck sampled) trace of standard deviation ``std``."""
    a = np.exp(-1.0 / corr_frames)
    e = rng.normal(0.0, std * np.sqrt(1 - a * a), (*size, n_frames))
    e[..., 0] = rng.normal(0.0, std, size)
    return lfilter([1.0], [1.0, -a], e, axis=-1)


def results_dataset(*, n_beads=20, n_frames=4000, stuck=(2, 7, 13), seed=0, drift_nm=300.0,
                    noise_xy_nm=1.0, noise_z_nm=2.0, detach=None):
    """(ds, truth): a results Dataset as tracking writes it, the drift-free positions (nm) and the drift.

    Tethered beads fluctuate by ~30 nm in x, y about their anchor and sit at ~1 um; stuck beads sit at
    z = 50 nm and show only the tracking noise. Every bead moves with the same drift (several hundred nm
    in x, y and z). ``detach=(bead, frame)``: that stuck bead leaves the surface at that frame.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / FS_HZ
    span = t[-1] or 1.0
    drift = np.stack([drift_nm * np.sin(2 * np.pi * t / span) + 0.5 * drift_nm * t / span,
                      drift_nm * (t / span) ** 2 - 0.3 * drift_nm * np.cos(3 * np.pi * t / span),
                      0.7 * drift_nm * t / span + 20 * np.sin(2 * np.pi * t / 7.0)])
    truth = {k: np.zeros((n_beads, n_frames)) for k in "xyz"}
    for b in range(n_beads):
        if b in stuck:
            truth["z"][b] = 50.0
            continue
        truth["x"][b], truth["y"][b] = ar1(rng, n_frames, 30.0, 5.0, (2,))
        truth["z"][b] = 1000.0 + ar1(rng, n_frames, 10.0, 2.0)
    if detach is not None:
        b, f0 = detach
        truth["x"][b, f0:], truth["y"][b, f0:] = ar1(rng, n_frames - f0, 40.0, 5.0, (2,))
        truth["z"][b, f0:] = 800.0 + ar1(rng, n_frames - f0, 10.0, 2.0)
    anchors = rng.uniform(50, 950, (2, n_beads))  # px
    x = anchors[0][:, None] + (truth["x"] + drift[0] + rng.normal(0, noise_xy_nm, truth["x"].shape)) / PX_NM
    y = anchors[1][:, None] + (truth["y"] + drift[1] + rng.normal(0, noise_xy_nm, truth["y"].shape)) / PX_NM
    z = truth["z"] + drift[2] + rng.normal(0, noise_z_nm, truth["z"].shape)
    bf = ("bead", "frame")
    ds = xr.Dataset(
        {"x": (bf, x, {"units": "px"}), "y": (bf, y, {"units": "px"}), "z": (bf, z, {"units": "nm"}),
         "x_nm": (bf, x * PX_NM, {"units": "nm"}), "y_nm": (bf, y * PX_NM, {"units": "nm"}),
         "flags": (bf, np.zeros(x.shape, np.uint8), {"units": "1"})},
        coords={"bead": np.arange(n_beads), "frame": np.arange(n_frames), "time": ("frame", t, {"units": "s"})},
        attrs={"pixel_size_nm": PX_NM, "frame_rate_hz": FS_HZ},
    )
    truth["drift"] = drift  # (3, frame) nm
    return ds, truth


RADIUS_NM = 1400.0
SURFACE_NM = 250.0  # z of the surface in Z-LUT units


def force_results(path_log, *, forces=(None, 1.0, 4.0), lengths=(0.0, 900.0, 1000.0), frames_per_plateau=2000,
                  tethered=(0, 1, 2), stuck=(3, 4, 5), seed=0):
    """(ds, truth): beads under a stage drift with one force per magnet plateau, and the magnet log CSV.

    Plateau 0 (``None``) has the beads on the surface (magnets far away); the tethered beads' lateral traces
    come from :func:`magtrack_dask.sim.brownian.simulate_tethered_bead` at each plateau's force, their z is
    the surface plus the length over the focal shift 0.88. ``truth['force']``: (plateau,) pN.
    """
    from magtrack_dask.sim.brownian import simulate_drift, simulate_tethered_bead

    rng = np.random.default_rng(seed)
    n_beads, n_frames = len(tethered) + len(stuck), frames_per_plateau * len(forces)
    x_nm, y_nm = rng.normal(0, 1.0, (2, n_beads, n_frames))  # tracking noise
    z = SURFACE_NM + rng.normal(0, 2.0, (n_beads, n_frames))
    for b in tethered:
        for p, (force, length) in enumerate(zip(forces, lengths)):
            sl = slice(p * frames_per_plateau, (p + 1) * frames_per_plateau)
            if force is None:
                continue
            bead = simulate_tethered_bead(force, length_nm=length, radius_nm=RADIUS_NM, fs_hz=FS_HZ,
                                          n_frames=frames_per_plateau, seed=rng)
            x_nm[b, sl] += bead.x_nm
            y_nm[b, sl] += bead.y_nm
            z[b, sl] += length / 0.88
    drift = simulate_drift(n_frames, fs_hz=FS_HZ, velocity_nm_per_s=(8.0, -5.0, 3.0), seed=rng)
    anchors = rng.uniform(50, 950, (2, n_beads, 1)) * PX_NM
    x = (anchors[0] + x_nm + drift[0]) / PX_NM
    y = (anchors[1] + y_nm + drift[1]) / PX_NM
    z = z + drift[2]
    t = 10.0 + np.arange(n_frames) / FS_HZ
    bf = ("bead", "frame")
    ds = xr.Dataset(
        {"x": (bf, x, {"units": "px"}), "y": (bf, y, {"units": "px"}), "z": (bf, z, {"units": "nm"}),
         "x_nm": (bf, x * PX_NM, {"units": "nm"}), "y_nm": (bf, y * PX_NM, {"units": "nm"}),
         "flags": (bf, np.zeros(x.shape, np.uint8), {"units": "1"})},
        coords={"bead": np.arange(n_beads), "frame": np.arange(n_frames), "time": ("frame", t, {"units": "s"})},
        attrs={"pixel_size_nm": PX_NM, "frame_rate_hz": FS_HZ},
    )
    positions = [10.0, 2.0, 1.0][: len(forces)]  # mm: magnets far, then closer
    with open(path_log, "w") as f:
        f.write("time_s,magnet_position_mm,rotation_turns\n")
        for p, pos in enumerate(positions):
            f.write(f"{t[0] - 1 + (p and p * frames_per_plateau / FS_HZ + 1)},{pos},0\n")
        f.write(f"{t[-1] + 0.5},{positions[-1]},0\n")
    return ds, {"force": np.array([np.nan if f is None else f for f in forces]), "length": np.array(lengths)}
