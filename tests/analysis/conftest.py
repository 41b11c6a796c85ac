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


def force_results(path_log, **options):
    """(ds, truth) of :func:`magtrack_dask.sim.forces.simulate_force_results`: 3 tethered beads (0-2), 3 stuck
    (3-5); plateau 0 on the surface, then 1 and 4 pN at 900 and 1000 nm."""
    from magtrack_dask.sim.forces import simulate_force_results

    return simulate_force_results(path_log, radius_nm=RADIUS_NM, fs_hz=FS_HZ, pixel_size_nm=PX_NM, **options)
