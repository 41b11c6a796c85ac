"""Accuracy of x, y, z against the Cramer-Rao bound, per method and photon level.

For each simulator (ours, ``magtrack_dask.sim.beads.render_beads``; the
reference's, ``magtrack.simulation.simulate_beads`` scaled to photons with its
centre at pixel ``size_px // 2``) and each photon level (expected photons of a
background pixel), the bead is put at ``--offsets`` x ``--offsets`` sub-pixel
offsets about the ROI centre and ``--z-count`` z values. A calibration scan
(``--cal-frames`` frames per 50 nm focus step, the bead jittering uniformly
within +-0.5 px, photon noise at the same level) makes each method's Z-LUT or
model. Per method and level the table gives:

- bias: RMS over positions of the error on the noise-free (expected) images, with the
  method's Z-LUT or model from a noise-free calibration (the method's own error; the
  same figure with the noisy calibration is in the JSON as ``bias_noisy_cal``);
- precision: RMS over positions of the standard deviation over ``--repeats`` noisy images;
- RMS: the RMS error over all noisy images; bound: the RMS over positions of
  :func:`magtrack_dask.crlb` of the simulator at that level; RMS/bound;
- frames/s of tracking the noisy images (one timing each), and the images without a
  result (lost).

Then a speed comparison: each method tracks the same 1000 noisy images (1000
photons/px) ``--speed-repeats`` times, the methods alternating, median frames/s.

Methods: magtrack 1.0.0 (``magtrack.stack_to_xyzp`` with a Z-LUT of its own
calibration profiles), ``method="magtrack"`` (our ``stack_to_xyzp``, the same
numbers), ``method="accurate"`` (when ``magtrack_dask.core.methods`` exists) and
``method="fit"`` (:mod:`magtrack_dask.core.fit`).

Reproduce (from the repository root)::

    .venv/bin/python benchmarks/accuracy.py                     # full run (long)
    .venv/bin/python benchmarks/accuracy.py --offsets 4 --z-count 11 --repeats 5
    .venv/bin/python benchmarks/accuracy.py --photons 1000 --sims reference --methods fit
    .venv/bin/python benchmarks/accuracy.py --speed-only --speed-repeats 7

It prints a Markdown table, and writes ``--png`` (RMS/bound against photons) and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from magtrack_dask.core.crlb import crlb, simulator_model
from magtrack_dask.core.fit import model_from_stack, track_fit
from magtrack_dask.core.pipeline import stack_to_xyzp
from magtrack_dask.sim.beads import render_beads

NM_PER_PX = 100.0
Z_STEP_NM = 50.0
REF_BACKGROUND = 0.4  # simulate_beads' background level (its images are clipped to [0, 1])
# z ranges (nm) with several rings inside a 64 px ROI
Z_RANGE = {"ours": (1000.0, 3500.0), "reference": (3000.0, 6000.0)}


def _reference_images(x, y, z, n_pixels: int) -> np.ndarray:
    """simulate_beads at ROI positions (px, centre at n_pixels // 2), relative to its background."""
    from magtrack.simulation import simulate_beads

    xyz = np.stack([(np.asarray(x) - n_pixels // 2) * NM_PER_PX, (np.asarray(y) - n_pixels // 2) * NM_PER_PX,
                    np.asarray(z)], axis=1)
    out = np.empty((n_pixels, n_pixels, len(xyz)))
    for start in range(0, len(xyz), 256):  # the reference renders bead by bead
        out[:, :, start:start + 256] = simulate_beads(xyz[start:start + 256], nm_per_px=NM_PER_PX,
                                                      size_px=n_pixels)
    return out / REF_BACKGROUND


def relative_images(sim: str, x, y, z, n_pixels: int) -> np.ndarray:
    """Noise-free images in units of the background, ``(n_pixels, n_pixels, n)``."""
    if sim == "ours":
        return render_beads(x, y, z, n_pixels=n_pixels, background=1.0)
    return _reference_images(x, y, z, n_pixels)


def sim_model(sim: str, n_pixels: int, photons: float):
    """The simulator as an image model in expected photons (for the bound)."""
    if sim == "ours":
        return simulator_model(n_pixels=n_pixels, photons=photons)
    return lambda x, y, z: np.maximum(_reference_images(x, y, z, n_pixels), 0.0) * photons


def _magtrack_lut(track, cal, z_cal):
    """Z-LUT ``(1 + n_bins, n_steps)``: the mean calibration profile of each focus step."""
    profiles = np.asarray(track(cal)[3])
    steps = np.unique(z_cal)
    mean = np.stack([np.nanmean(profiles[:, z_cal == s], axis=1) for s in steps], axis=1)
    return np.vstack([steps[None], mean])


def methods(names):
    """``{name: (build(cal, z_cal) -> lut, track(stack, lut) -> (x, y, z))}`` of the methods asked for."""
    out = {}
    if "magtrack-1.0.0" in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import magtrack
        ref = magtrack.stack_to_xyzp
        out["magtrack-1.0.0"] = (lambda cal, z: _magtrack_lut(ref, cal, z), lambda s, lut: ref(s, lut)[:3])
    if "magtrack" in names:
        out["magtrack"] = (lambda cal, z: _magtrack_lut(stack_to_xyzp, cal, z),
                           lambda s, lut: stack_to_xyzp(s, lut)[:3])
    if "accurate" in names:
        try:
            from magtrack_dask.core.methods import track_stack, zlut_from_stack
        except ImportError:
            print("method 'accurate': magtrack_dask.core.methods not found, rows skipped")
        else:
            out["accurate"] = (lambda cal, z: zlut_from_stack(cal, z, method="accurate"),
                               lambda s, lut: track_stack(s, lut, method="accurate")[:3])
    if "fit" in names:
        out["fit"] = (model_from_stack, lambda s, model: track_fit(s, model)[:3])
    return out


def _rms(a) -> float:
    a = np.asarray(a)
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a * a))) if a.size else float("nan")


def run_sim(sim, args, chosen, rng):
    n = args.roi
    k = args.offsets
    off = (np.arange(k) + 0.5) / k - 0.5
    z_lo, z_hi = Z_RANGE[sim]
    zs = np.linspace(z_lo, z_hi, args.z_count)
    ox, oy, oz = np.meshgrid(off, off, zs, indexing="ij")
    centre = (n - 1) / 2 if sim == "ours" else n // 2
    tx, ty, tz = centre + ox.ravel(), centre + oy.ravel(), oz.ravel()
    n_pos = tx.size
    clean = relative_images(sim, tx, ty, tz, n)
    z_cal = np.repeat(np.arange(z_lo - 300, z_hi + 300 + 1, Z_STEP_NM), args.cal_frames)
    cx = centre + rng.uniform(-0.5, 0.5, z_cal.size)
    cy = centre + rng.uniform(-0.5, 0.5, z_cal.size)
    cal_clean = relative_images(sim, cx, cy, z_cal, n)
    rows = []
    intrinsic = {}  # noise-free error with a noise-free calibration, px / nm: scales with nothing
    for name, (build, track) in chosen.items():
        lut = build(cal_clean, z_cal)
        intrinsic[name] = [np.asarray(v, np.float64) - t for v, t in zip(track(clean, lut), (tx, ty, tz))]
    for photons in args.photons:
        bound = np.array(crlb(sim_model(sim, n, photons), tx, ty, tz))
        bound[:2] *= NM_PER_PX
        bound_rms = [_rms(b) for b in bound]
        cal = rng.poisson(np.maximum(cal_clean, 0) * photons).astype(np.float64)
        expected = np.maximum(clean, 0) * photons
        noisy = rng.poisson(np.repeat(expected, args.repeats, axis=2)).astype(np.float64)
        truth = [np.repeat(t, args.repeats) for t in (tx, ty, tz)]
        for name, (build, track) in chosen.items():
            lut = build(cal, z_cal)
            bias = [np.asarray(v, np.float64) - t for v, t in zip(track(expected, lut), (tx, ty, tz))]
            start = time.perf_counter()
            got = track(noisy, lut)
            fps = noisy.shape[2] / (time.perf_counter() - start)
            err = [np.asarray(v, np.float64) - t for v, t in zip(got, truth)]
            for e in (bias[:2] + err[:2]):
                e *= NM_PER_PX
            lost = int(np.sum(~np.isfinite(err[0]) | ~np.isfinite(err[1]) | ~np.isfinite(err[2])))
            precision = [_rms(np.nanstd(e.reshape(n_pos, args.repeats), axis=1)) for e in err]
            rms = [_rms(e) for e in err]
            own = [e * (NM_PER_PX if i < 2 else 1.0) for i, e in enumerate(intrinsic[name])]
            row = dict(sim=sim, method=name, photons=photons, bias=[_rms(b) for b in own],
                       bias_max=[float(np.nanmax(np.abs(b))) for b in own],
                       bias_noisy_cal=[_rms(b) for b in bias], precision=precision, rms=rms,
                       bound=bound_rms, ratio=[r / b for r, b in zip(rms, bound_rms)], fps=fps, lost=lost,
                       frames=noisy.shape[2])
            rows.append(row)
            print(_row_text(row), flush=True)
    return rows


def speed(sim, args, chosen, rng, photons=1000.0, n_frames=1000):
    """Median frames/s of each method over ``--speed-repeats`` rounds, the methods alternating
    within each round (timings on a shared machine drift; compare within a round)."""
    n = args.roi
    centre = (n - 1) / 2 if sim == "ours" else n // 2
    z_lo, z_hi = Z_RANGE[sim]
    z_cal = np.repeat(np.arange(z_lo - 300, z_hi + 300 + 1, Z_STEP_NM), args.cal_frames)
    cal = relative_images(sim, centre + rng.uniform(-0.5, 0.5, z_cal.size),
                          centre + rng.uniform(-0.5, 0.5, z_cal.size), z_cal, n)
    cal = rng.poisson(np.maximum(cal, 0) * photons).astype(np.float64)
    k = n_frames // 8  # 8 noisy copies of k positions
    clean = relative_images(sim, centre + rng.uniform(-0.5, 0.5, k), centre + rng.uniform(-0.5, 0.5, k),
                            rng.uniform(z_lo, z_hi, k), n)
    stack = rng.poisson(np.repeat(np.maximum(clean, 0) * photons, 8, axis=2)).astype(np.float64)
    luts = {name: build(cal, z_cal) for name, (build, _) in chosen.items()}
    for name, (_, track) in chosen.items():
        track(stack[:, :, :16], luts[name])  # warm-up (compilation, caches)
    times = {name: [] for name in chosen}
    for _ in range(args.speed_repeats):
        for name, (_, track) in chosen.items():
            start = time.perf_counter()
            track(stack, luts[name])
            times[name].append(time.perf_counter() - start)
    fps = {name: stack.shape[2] / float(np.median(t)) for name, t in times.items()}
    ref = fps.get("magtrack-1.0.0")
    for name, value in fps.items():
        ratio = f", {value / ref:.2f}x magtrack 1.0.0" if ref else ""
        print(f"speed, {sim} simulator, {photons:g} photons/px, {stack.shape[2]} frames of {n} px: "
              f"{name} {value:.0f} frames/s{ratio}")
    return fps


def _row_text(r) -> str:
    f = lambda v, d: "/".join(f"{x:.{d}f}" for x in v)  # noqa: E731
    return (f"| {r['sim']} | {r['method']} | {r['photons']:g} | {f(r['bias'], 2)} | {f(r['precision'], 2)} | "
            f"{f(r['rms'], 2)} | {f(r['bound'], 2)} | {f(r['ratio'], 2)} | {r['fps']:.0f} | {r['lost']} |")


HEADER = ("| simulator | method | photons/px | bias x/y/z nm | precision x/y/z nm | RMS x/y/z nm | bound x/y/z nm "
          "| RMS/bound x/y/z | frames/s | lost |\n|---|---|---|---|---|---|---|---|---|---|")


def save_png(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    keys = sorted({(r["sim"], r["method"]) for r in rows})
    for i, axis in enumerate("xyz"):
        ax = axes[i]
        for sim, method in keys:
            sel = [r for r in rows if (r["sim"], r["method"]) == (sim, method)]
            ax.plot([r["photons"] for r in sel], [r["ratio"][i] for r in sel], "o-" if sim == "ours" else "s--",
                    label=f"{method} ({sim} sim)")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("photons per background pixel")
        ax.set_title(f"{axis}: RMS error / Cramer-Rao bound")
    axes[0].set_ylabel("RMS / bound")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photons", type=float, nargs="+", default=[100, 300, 1000, 3000, 10000])
    p.add_argument("--offsets", type=int, default=5, help="sub-pixel offsets per axis")
    p.add_argument("--z-count", type=int, default=21, help="z values")
    p.add_argument("--repeats", type=int, default=10, help="noisy images per position")
    p.add_argument("--cal-frames", type=int, default=20, help="calibration frames per 50 nm step")
    p.add_argument("--roi", type=int, default=64)
    p.add_argument("--sims", nargs="+", default=["ours", "reference"], choices=["ours", "reference"])
    p.add_argument("--methods", nargs="+", default=["magtrack-1.0.0", "magtrack", "accurate", "fit"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-repeats", type=int, default=5,
                   help="rounds of the side-by-side speed comparison (0: none)")
    p.add_argument("--speed-only", action="store_true", help="only the speed comparison")
    p.add_argument("--png", default="bench-output/accuracy.png")
    p.add_argument("--json", default="bench-output/accuracy.json")
    args = p.parse_args(argv)
    chosen = methods(args.methods)
    rng = np.random.default_rng(args.seed)
    print(f"offsets {args.offsets}x{args.offsets}, z values {args.z_count}, repeats {args.repeats}, "
          f"{args.cal_frames} calibration frames per {Z_STEP_NM:g} nm step, {args.roi} px ROI")
    print(HEADER)
    rows = []
    for sim in [] if args.speed_only else args.sims:
        rows += run_sim(sim, args, chosen, rng)
    speeds = {sim: speed(sim, args, chosen, rng) for sim in args.sims} if args.speed_repeats > 0 else {}
    import os

    for path in (args.png, args.json):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "frames_per_s": speeds}, fh, indent=1)
    if args.png and rows:
        save_png(rows, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
