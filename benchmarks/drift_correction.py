"""Reference-bead drift correction on simulated results: how much drift is left in the corrected traces.

17 tethered beads (2 pN, 1 um, Brownian motion averaged over the exposure) and 3 stuck beads under a common
stage drift of several hundred nm, 1 nm (x, y) and 2 nm (z) tracking noise, 100 s at 100 Hz; then the same
with a fourth reference bead that detaches half way. Prints, per seed, the reference beads used and the
error of the drift estimate (nm RMS): per frame, and averaged over 1 s (the residual drift).

    PYTHONPATH=. python benchmarks/drift_correction.py
"""

import json

import numpy as np

from magtrack_dask.analysis.drift import correct_drift
from magtrack_dask.sim.brownian import simulate_tethered_bead
from magtrack_dask.sim.forces import simulate_force_results

FS_HZ, PX_NM, N_FRAMES = 100.0, 100.0, 10000


def drift_error(out, truth):
    """(per frame, 1-s averages) RMS of the estimated minus the true drift, x, y, z (nm), offsets removed."""
    rows = []
    for i, (k, scale) in enumerate((("x", PX_NM), ("y", PX_NM), ("z", 1.0))):
        miss = out[f"drift_{k}"].values * scale - truth["drift"][i]
        miss -= miss.mean()
        slow = miss[: N_FRAMES // 100 * 100].reshape(-1, 100).mean(axis=1)
        rows.append((np.sqrt(np.mean(miss**2)), np.sqrt(np.mean(slow**2))))
    return rows


def main():
    for detach in (False, True):
        print("a fourth reference bead detaches at 50 s" if detach else "3 reference beads among 20")
        for seed in range(5):
            ds, truth = simulate_force_results(forces=(2.0,), lengths_nm=(1000.0,), frames_per_plateau=N_FRAMES,
                                               n_tethered=17 - detach, n_stuck=3 + detach, seed=seed)
            refs = truth["stuck"]
            if detach:  # the last stuck bead leaves the surface: Brownian motion and z up by 800 nm
                b, half = refs[-1], N_FRAMES // 2
                moved = simulate_tethered_bead(2.0, length_nm=1000, radius_nm=1400, fs_hz=FS_HZ,
                                               n_frames=N_FRAMES - half, seed=seed)
                ds["x"].values[b, half:] += moved.x_nm / PX_NM
                ds["y"].values[b, half:] += moved.y_nm / PX_NM
                ds["z"].values[b, half:] += 800.0
                ds["x_nm"], ds["y_nm"] = ds["x"] * PX_NM, ds["y"] * PX_NM
            out = correct_drift(ds, refs if detach else "auto")
            info = json.loads(out.attrs["drift"])
            err = drift_error(out, truth)
            print(f"  seed {seed}: drift {np.ptp(truth['drift'][0]):.0f} nm in x; used {info['reference_beads']}, "
                  f"rejected {list(info['rejected'])}; error per frame x/y/z "
                  + "/".join(f"{e[0]:.2f}" for e in err) + " nm, residual drift (1 s) "
                  + "/".join(f"{e[1]:.2f}" for e in err) + " nm")


if __name__ == "__main__":
    main()
