"""Bead finding: recall, precision and centring on simulated frames with known truth.

Two kinds of frames:

- ``sim``: our simulator's full frames (``write_simulated_archive``, layout
  tyx: 100 beads on a grid of 64 px ROIs, shot noise of ``photons`` per
  background pixel, the mean of 2 frames);
- ``field``: real-looking 8-bit fields drawn another way
  (:func:`magtrack_dask.sim.field.camera_field`: Bessel-ring beads of 20-40 px,
  touching pairs, beads cut by the edge, debris, uneven light, JPEG-like noise
  at quality 75 and 3 grey levels of pixel noise; also at quality 50, and
  with 8 grey levels of noise).

Recall counts the beads a user wants (every bead in ``sim``; the isolated
beads in ``field``); a false ROI is one not centred (per axis, within 1 px)
on such a bead. Centring: the distance of the found sub-pixel centre from the
truth, and the per-axis offset of the ROI's centre (which also carries the
rounding to whole pixels, up to 0.5 px).

    python benchmarks/find_beads.py [--seeds N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from magtrack_dask.core.find_beads import find_beads
from magtrack_dask.sim.archives import write_simulated_archive
from magtrack_dask.sim.field import camera_field

ROI = 64


def score(rois, found, x, y, wanted):
    """Recall, false ROIs, centre errors (px) and ROI-centre offsets (px, per axis)."""
    cx, cy = rois[:, 2] + (ROI - 1) / 2, rois[:, 0] + (ROI - 1) / 2
    nearest = np.hypot(cx[:, None] - x[None], cy[:, None] - y[None]).argmin(axis=1)
    offset = np.maximum(np.abs(cx - x[nearest]), np.abs(cy - y[nearest]))
    good = (offset <= 1.0) & np.isin(nearest, wanted)
    order = found.table_order
    err = np.hypot(found.x[order] - x[nearest], found.y[order] - y[nearest])
    return len(set(nearest[good].tolist())), int((~good).sum()), err[good], offset[good]


def run(kind: str, seed: int, photons: float | None = None, **field):
    if kind == "sim":
        with tempfile.TemporaryDirectory() as tmp:
            arch = write_simulated_archive(f"{tmp}/a.zarr", 2, 100, roi=ROI, photons=photons, seed=seed)
            frame = np.asarray(arch.data.compute())
            x, y = np.asarray(arch.group["truth_x"][:, 0]), np.asarray(arch.group["truth_y"][:, 0])
        wanted = np.arange(len(x))
    else:
        frame, truth = camera_field(seed=seed, **field)
        x, y = truth["x"], truth["y"]
        wanted = np.flatnonzero(truth["kind"] == "isolated")
    t = time.process_time()  # CPU seconds: wall time says more about a shared machine than about the code
    rois, found = find_beads(frame, ROI, return_candidates=True)
    seconds = time.process_time() - t
    return (*score(rois, found, x, y, wanted), len(wanted), len(rois), seconds, frame.shape[-2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    cases = [("sim photons=1000", "sim", 1000.0, {}), ("sim photons=200", "sim", 200.0, {}),
             ("field", "field", None, {}), ("field jpeg q50", "field", None, {"jpeg_quality": 50}),
             ("field noise 8", "field", None, {"noise": 8.0})]
    for label, kind, photons, field in cases:
        found = wanted = false = n_rois = 0
        errs, offs, secs = [], [], []
        for seed in range(args.seeds):
            hit, bad, err, off, n_wanted, n, s, shape = run(kind, seed, photons, **field)
            found, wanted, false, n_rois = found + hit, wanted + n_wanted, false + bad, n_rois + n
            errs.append(err), offs.append(off), secs.append(s)
        err, off = np.concatenate(errs), np.concatenate(offs)
        print(f"{label:20s} {args.seeds} frames {shape[0]}x{shape[1]}: recall {found}/{wanted} = {found / wanted:.1%}, "
              f"false ROIs {false}/{n_rois}; centre error median {np.median(err):.3f} px, max {err.max():.3f} px; "
              f"ROI centre offset max {off.max():.2f} px/axis; {np.median(secs):.2f} s CPU per frame")


if __name__ == "__main__":
    main()
