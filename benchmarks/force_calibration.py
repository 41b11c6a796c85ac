"""Accuracy of calibrate_force on simulated tethered beads with a known force.

Each case simulates ``--seeds`` independent 100 s traces (simulate_tethered_bead:
exact Ornstein-Uhlenbeck path averaged over an exposure equal to the frame
interval, Stokes drag, water at 23 C) and calibrates each with every method:
"psd" (drag fitted), "psd" with the drag fixed at Stokes', "allan" (drag fitted)
and "equipartition". The table reports, per case and method, the median of the
fitted force over the true force (as a deviation in %), the median stated
relative uncertainty, the fraction of seeds whose truth lies within two stated
uncertainties, whether every equipartition result carried the blur warning, and
the median time per calibration.

Reproduce (from the repository root)::

    .venv/bin/python benchmarks/force_calibration.py               # 40 seeds per case
    .venv/bin/python benchmarks/force_calibration.py --seeds 3     # smoke run
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from magtrack_dask.analysis.force import calibrate_force
from magtrack_dask.sim.brownian import simulate_tethered_bead

M280_NM, MYONE_NM = 1400.0, 500.0  # bead radii: Dynabeads M-280 and MyOne
DURATION_S = 100.0
# (force pN, tether length nm, bead radius nm, frame rate Hz)
CASES = [
    (0.1, 2000, M280_NM, 100),
    (0.3, 2000, MYONE_NM, 100),
    (1.0, 1000, M280_NM, 1000),
    (5.0, 1000, M280_NM, 1000),
    (10.0, 2000, M280_NM, 100),
    (30.0, 2000, M280_NM, 100),
    (20.0, 1000, MYONE_NM, 1000),
    (50.0, 1000, MYONE_NM, 1000),
    (50.0, 1000, M280_NM, 100),
]
METHODS = [("psd", "fit"), ("psd", "stokes"), ("allan", "fit"), ("equipartition", "fit")]


def run_case(force, length, radius, fs, seeds):
    rows = {m: [] for m in METHODS}
    truth_fc = None
    for seed in range(seeds):
        bead = simulate_tethered_bead(force, length_nm=length, radius_nm=radius, fs_hz=fs,
                                      n_frames=int(DURATION_S * fs), seed=seed)
        truth_fc = bead.corner_hz
        for method, drag in METHODS:
            start = time.perf_counter()
            cal = calibrate_force(bead.x_nm, fs_hz=fs, length_nm=length, radius_nm=radius,
                                  method=method, drag=drag)
            rows[(method, drag)].append((cal.force_pn / force - 1, cal.force_pn_err / force,
                                         abs(cal.force_pn - force) <= 2 * cal.force_pn_err,
                                         any("motion blur" in w for w in cal.warnings),
                                         time.perf_counter() - start))
    out = []
    for (method, drag), values in rows.items():
        dev, err, inside, warned, secs = (np.array(v) for v in zip(*values))
        out.append(dict(force_pn=force, length_nm=length, radius_nm=radius, fs_hz=fs,
                        corner_hz=truth_fc, method=method, drag=drag,
                        median_dev_pct=100 * float(np.median(dev)),
                        median_err_pct=100 * float(np.median(err)),
                        within_2sigma=float(np.mean(inside)), blur_warned=float(np.mean(warned)),
                        median_s=float(np.median(secs))))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    print(f"{args.seeds} seeds of {DURATION_S:g} s per case; exposure = 1 / fs; deviation = median "
          "(fitted / true - 1); err = median stated 1-sigma; cover = truth within 2 sigma\n")
    print("| F pN | L nm | r nm | fs Hz | f_c Hz | method | drag | deviation | err | cover | "
          "blur warned | s/fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for case in CASES:
        for r in run_case(*case, args.seeds):
            rows.append(r)
            print(f"| {r['force_pn']:g} | {r['length_nm']:g} | {r['radius_nm']:g} | {r['fs_hz']:g} | "
                  f"{r['corner_hz']:.3g} | {r['method']} | {r['drag']} | {r['median_dev_pct']:+.1f} % | "
                  f"{r['median_err_pct']:.1f} % | {100 * r['within_2sigma']:.0f} % | "
                  f"{100 * r['blur_warned']:.0f} % | {r['median_s']:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
