"""Accuracy and speed of method="accurate" against method="magtrack" and magtrack 1.0.0, side by side.

Accuracy, on our simulator (``magtrack_dask.sim.render_beads``: 64 px ROI,
100 nm/px, background = photons/px, Poisson noise): a per-bead Z-LUT from a
calibration scan (50 nm steps over 700-4300 nm, ``--cal-frames`` frames per
step at random sub-pixel offsets, same light), then test frames on a grid of
5 x 5 sub-pixel offsets x ``--n-z`` z values in 1000-4000 nm, ``--repeats``
noise draws each. For every photon level: RMS error of x, y, z against the
truth, the noise-free systematic error (mean and RMS over the grid; the
calibration frames noise-free too), and the ratio RMS / bound.

The bound is a numerical Cramer-Rao bound computed here (until
``magtrack_dask.crlb`` lands): the Fisher information of x, y, z, intensity
scale and background offset under Poisson noise, from central differences of
the simulator's expected counts (x, y: +-0.05 px; z: +-20 nm, the simulator's
plane spacing), inverted per grid point and averaged as variances; the
Fisher information scales with the photon count. It assumes a perfect image
model, so calibration noise in the LUT shows as a ratio above 1.

``fit_z`` on sparse LUTs: the same calibration LUT keeping every 3rd and every
8th plane (150 and 400 nm apart), z RMS at each photon level.

Speed: frames/s of ``magtrack.stack_to_xyzp`` (1.0.0), ``track_stack(method=
"magtrack")`` and ``track_stack(method="accurate")`` with a Z-LUT, on the same
C-ordered ``(64, 64, n)`` float64 stack, median of ``--speed-repeats`` runs,
alternating order. ``--threads 1`` pins every BLAS/OpenMP pool to one thread
(set before NumPy loads) and runs the core on one thread.

Reproduce (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/accurate_method.py --threads 1
    PYTHONPATH=. .venv/bin/python benchmarks/accurate_method.py            # all cores
    PYTHONPATH=. .venv/bin/python benchmarks/accurate_method.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--photons", type=float, nargs="+", default=[100, 300, 1000, 3000, 10000])
    p.add_argument("--n-z", type=int, default=25, help="z values of the test grid")
    p.add_argument("--repeats", type=int, default=2, help="noise draws per grid point")
    p.add_argument("--cal-frames", type=int, default=10, help="calibration frames per 50 nm step")
    p.add_argument("--speed-frames", type=int, default=2000)
    p.add_argument("--speed-repeats", type=int, default=5)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 photon levels, small grids")
    return p.parse_args(argv)


ARGS = _args()
if ARGS.threads == 1:  # before NumPy loads its BLAS
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MAGTRACK_DASK_THREADS"):
        os.environ[var] = "1"
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # see core_speed.py

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import magtrack_dask as md  # noqa: E402
from magtrack_dask.core.methods import track_stack, zlut_from_stack  # noqa: E402
from magtrack_dask.sim.beads import render_beads  # noqa: E402

_err = np.geterr()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import magtrack  # noqa: E402
np.seterr(**_err)

ROI, PX_NM = 64, 100.0
CAL_Z = np.arange(700.0, 4301.0, 50.0)
METHODS = ("magtrack 1.0.0", "magtrack", "accurate")


def _grid(n_z: int):
    off = (np.arange(5) + 0.5) / 5 - 0.5  # sub-pixel offsets across one pixel
    ox, oy, z = np.meshgrid(off, off, np.linspace(1000.0, 4000.0, n_z), indexing="ij")
    return 31.5 + ox.ravel(), 31.5 + oy.ravel(), z.ravel()


def _calibration(photons, frames: int, seed: int):
    rng = np.random.default_rng(seed)
    z = np.repeat(CAL_Z, frames)
    x, y = 31.5 + rng.uniform(-0.5, 0.5, (2, z.size))
    return render_beads(x, y, z, n_pixels=ROI, background=photons or 1000.0, photons=photons, seed=seed), z


def _track(method: str, stack, lut):
    if method == "magtrack 1.0.0":
        x, y, z, _ = magtrack.stack_to_xyzp(stack, lut)
        return np.asarray(x), np.asarray(y), np.asarray(z)
    return track_stack(stack, lut, method=method)[:3]


def bound_std(x, y, z):
    """Per-photon Cramer-Rao standard deviations (px, px, nm) of x, y, z at each grid point:
    multiply by 1 / sqrt(photons)."""
    base = render_beads(x, y, z, n_pixels=ROI, background=1.0)
    d = {}
    d["x"] = (render_beads(x + 0.05, y, z, n_pixels=ROI, background=1.0)
              - render_beads(x - 0.05, y, z, n_pixels=ROI, background=1.0)) / 0.1
    d["y"] = (render_beads(x, y + 0.05, z, n_pixels=ROI, background=1.0)
              - render_beads(x, y - 0.05, z, n_pixels=ROI, background=1.0)) / 0.1
    d["z"] = (render_beads(x, y, z + 20.0, n_pixels=ROI, background=1.0)
              - render_beads(x, y, z - 20.0, n_pixels=ROI, background=1.0)) / 40.0
    mu = np.maximum(base, 1e-9)
    grads = [d["x"], d["y"], d["z"], mu, np.ones_like(mu)]  # scale and offset as nuisance parameters
    n = base.shape[2]
    g = np.stack([a.reshape(-1, n) for a in grads])  # (5, pixels, n)
    fisher = np.einsum("ipn,jpn->nij", g / mu.reshape(-1, n), g)
    cov = np.linalg.inv(fisher)
    return np.sqrt(cov[:, 0, 0]), np.sqrt(cov[:, 1, 1]), np.sqrt(cov[:, 2, 2])


def accuracy(args):
    x, y, z = _grid(args.n_z)
    bx, by, bz = bound_std(x, y, z)
    rows, sparse = [], []
    # noise-free: calibration and test frames without noise
    clean_cal = _calibration(None, 2, 1)
    clean = render_beads(x, y, z, n_pixels=ROI, background=1000.0)
    bias = {}
    for method in METHODS:
        lut = zlut_from_stack(*clean_cal, method="magtrack" if method == "magtrack 1.0.0" else method)
        tx, ty, tz = _track(method, clean, lut)
        err = (PX_NM * (tx - x), PX_NM * (ty - y), tz - z)
        bias[method] = [(float(np.nanmean(e)), float(np.sqrt(np.nanmean(e**2)))) for e in err]
    for photons in args.photons:
        cal = _calibration(photons, args.cal_frames, 2)
        rep = np.tile(np.arange(len(x)), args.repeats)
        stack = render_beads(x[rep], y[rep], z[rep], n_pixels=ROI, background=photons, photons=photons, seed=3)
        bound = [float(np.sqrt(np.mean(b**2 / photons))) * s for b, s in ((bx, PX_NM), (by, PX_NM), (bz, 1.0))]
        for method in METHODS:
            lut = zlut_from_stack(*cal, method="magtrack" if method == "magtrack 1.0.0" else method)
            t0 = time.perf_counter()
            tx, ty, tz = _track(method, stack, lut)
            dt = time.perf_counter() - t0
            err = (PX_NM * (tx - x[rep]), PX_NM * (ty - y[rep]), tz - z[rep])
            rms = [float(np.sqrt(np.nanmean(e**2))) for e in err]
            rows.append((photons, method, rms, bound, int(np.isnan(tz).sum()), len(rep) / dt))
            if method == "accurate":
                for step in (1, 3, 8):
                    zz = md.fit_z(track_stack(stack, None, method="accurate")[3], lut[:, ::step])
                    sparse.append((photons, step, float(np.sqrt(np.nanmean((zz - z[rep]) ** 2))),
                                   int(np.isnan(zz).sum())))
    return rows, bias, sparse


def speed(args):
    rng = np.random.default_rng(9)
    n = args.speed_frames
    stack = np.ascontiguousarray(render_beads(31.5 + rng.uniform(-2, 2, n), 31.5 + rng.uniform(-2, 2, n),
                                              rng.uniform(1000, 4000, n), n_pixels=ROI, photons=1000.0, seed=4))
    cal = _calibration(1000.0, 2, 5)
    luts = {m: zlut_from_stack(*cal, method="magtrack" if m == "magtrack 1.0.0" else m) for m in METHODS}
    sizes = {"magtrack 1.0.0": max(200, n // 4)}  # the reference is slow: fewer frames, same per-frame cost
    times = {m: [] for m in METHODS}
    for m in METHODS:  # warm-up (numba compiles, caches fill)
        _track(m, stack[:, :, :50], luts[m])
    for r in range(args.speed_repeats):
        order = METHODS if r % 2 == 0 else METHODS[::-1]
        for m in order:
            k = sizes.get(m, n)
            t0 = time.perf_counter()
            _track(m, stack[:, :, :k], luts[m])
            times[m].append(k / (time.perf_counter() - t0))
    return {m: float(np.median(v)) for m, v in times.items()}


def main(args):
    if args.quick:
        args.photons, args.n_z, args.repeats, args.cal_frames = [1000.0, 10000.0], 5, 1, 3
        args.speed_frames, args.speed_repeats = 400, 3
    threads = args.threads or md.get_core_threads()
    ctx = md.core_threads(threads)
    with ctx:
        print(f"magtrack_dask {md.__version__}, magtrack {magtrack.__version__ if hasattr(magtrack, '__version__') else '1.0.0'}, "
              f"{threads} thread(s)")
        fps = speed(args)
        print("\nframes/s (64 px, float64, C-ordered (64, 64, n), with a Z-LUT)")
        print("| method | frames/s | vs magtrack 1.0.0 | vs method='magtrack' |\n|---|---|---|---|")
        for m in METHODS:
            print(f"| {m} | {fps[m]:,.0f} | {fps[m] / fps['magtrack 1.0.0']:.2f}x | "
                  f"{100 * fps[m] / fps['magtrack']:.0f} % |")
        if args.skip_accuracy:
            return
        rows, bias, sparse = accuracy(args)
    print("\nnoise-free systematic error, mean / RMS over the grid (nm)")
    print("| method | x | y | z |\n|---|---|---|---|")
    for m in METHODS:
        print(f"| {m} | " + " | ".join(f"{a:+.3f} / {b:.3f}" for a, b in bias[m]) + " |")
    print("\nRMS error (nm) and RMS / bound; bound: numerical Cramer-Rao (x, y, z, scale, offset; Poisson)")
    print("| photons/px | method | x | y | z | z NaN |\n|---|---|---|---|---|---|")
    for photons, m, rms, bound, n_nan, _ in rows:
        cells = " | ".join(f"{r:.2f} ({r / b:.2f}x)" for r, b in zip(rms, bound))
        print(f"| {photons:,.0f} | {m} | {cells} | {n_nan} |")
    print("| bound | | " + " | ".join(f"{b:.2f}" for b in rows[-1][3]) + " | (at the last level) |")
    print("\nfit_z with sparse LUTs (accurate profiles): z RMS (nm) keeping every k-th plane of the 50 nm LUT")
    print("| photons/px | every plane (50 nm) | every 3rd (150 nm) | every 8th (400 nm) | NaN |\n|---|---|---|---|---|")
    for photons in args.photons:
        got = {s: (r, k) for p, s, r, k in sparse if p == photons}
        print(f"| {photons:,.0f} | {got[1][0]:.2f} | {got[3][0]:.2f} | {got[8][0]:.2f} | "
              f"{sum(v[1] for v in got.values())} |")


if __name__ == "__main__":
    main(ARGS)
