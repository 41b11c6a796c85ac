"""The demo job: simulate, calibrate, track on a local cluster, plot, report.

Everything the main job does, on data made up on the spot: a measurement
archive of several beads per camera frame moving in x, y and z with photon
noise, and a calibration archive of the same beads with the focus stepped
through known z. The Z-LUT is built from the calibration, the measurement is
tracked by a resumable job on a ``LocalCluster``, and the results are
compared with the simulation's ground truth.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import sys
import tempfile
import time
from typing import TextIO

import numpy as np
from magtrack_dask.validation import InputError

__all__ = ["DemoSummary", "run_demo", "z_range_for_roi"]

PIXEL_SIZE_NM = 100.0
FRAME_RATE_HZ = 100.0
PHOTONS = 1000.0  # background photons per pixel: shot noise ~3 % of the background
Z_STEP_NM = 50.0


def z_range_for_roi(roi: int) -> tuple[float, float]:
    """z sweep (nm) whose ring patterns fit the ROI with the default optics.

    The outer ring's radius grows by about 0.75 nm per nm of defocus
    (NA 0.8 in water): keep it inside the ROI with some margin.
    """
    return 800.0, float(min(4000.0, 70.0 * roi))


@dataclasses.dataclass
class DemoSummary:
    """What the demo made and how well it tracked.

    Attributes
    ----------
    out : str
        Folder holding ``archive.zarr``, ``calibration.zarr``, ``zlut.zarr``,
        ``results.zarr`` and ``plots/``.
    rms_nm : dict
        RMS error against the ground truth, ``{'x', 'y', 'z'}`` in nm.
    z_missing : int
        Bead-frames without a z (outside the Z-LUT).
    frames_per_s : float
        Frames tracked per second by the job (all beads of a frame).
    plots : list of str
        PNG files.
    dashboard : str
        Dask dashboard address.
    forces : xarray.Dataset or None
        The force step's analysis (``analysis.zarr``), see :func:`run_force_step`.
    """

    out: str
    rms_nm: dict
    z_missing: int
    frames_per_s: float
    plots: list
    dashboard: str
    forces: object = None


def _rms(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


def run_demo(
    out=None,
    *,
    frames: int = 2000,
    beads: int = 4,
    roi: int = 64,
    workers: int = 2,
    gpu: bool = False,
    seed: int = 0,
    plots: bool = True,
    stream: TextIO | None = None,
) -> DemoSummary:
    """Run the demo job end to end.

    Parameters
    ----------
    out : str or os.PathLike, optional
        Output folder; default a new temporary folder (kept). The demo's own
        stores inside it are replaced on every run.
    frames : int, optional
        Frames of the measurement.
    beads : int, optional
        Beads per camera frame.
    roi : int, optional
        ROI side, px (>= 16).
    workers : int, optional
        Worker processes of the local cluster (GPUs with ``gpu``).
    gpu : bool, optional
        Track on GPUs (``dask_cuda.LocalCUDACluster`` and CuPy).
    seed : int, optional
        Seeds the simulation.
    plots : bool, optional
        Save PNG plots (needs matplotlib).
    stream : file, optional
        Where to print; default ``sys.stdout``.

    Returns
    -------
    DemoSummary
    """
    from magtrack_dask import jobs
    from magtrack_dask.cluster import close_client, start_cluster

    say = functools.partial(_say, stream or sys.stdout)
    if frames < 1 or beads < 1 or workers < 1:
        raise InputError("frames, beads and workers must be >= 1")
    if roi < 16:
        raise InputError(f"roi must be at least 16 px; got {roi}")
    out = os.path.abspath(os.fspath(out)) if out is not None else tempfile.mkdtemp(prefix="magtrack-dask-demo-")
    os.makedirs(out, exist_ok=True)
    paths = {k: os.path.join(out, f"{k}.zarr") for k in ("archive", "calibration", "zlut", "results")}
    say(f"magtrack-dask demo: {beads} beads, {roi} px ROIs, {frames} frames -> {out}")

    client = start_cluster(workers, gpu=gpu)
    try:
        dashboard = client.dashboard_link
        note = "" if importlib.util.find_spec("bokeh") else " (install bokeh to serve it)"
        say(f"[1/5] local cluster: {len(client.nthreads())} worker processes; dashboard: {dashboard}{note}")
        _simulate_inputs(paths, frames=frames, beads=beads, roi=roi, seed=seed, say=say)
        say(f"[4/5] tracking -> {paths['results']}")
        report = jobs.run_job(paths["archive"], paths["results"], paths["zlut"], client=client, overwrite=True,
                              device="gpu" if gpu else "cpu", progress=True)
    finally:
        close_client(client)

    ds, truth, rms, z_missing = _accuracy(paths)
    written: list[str] = []
    if plots:
        try:
            from magtrack_dask.plots import save_plots

            written = save_plots(ds, os.path.join(out, "plots"), zlut=paths["zlut"], truth=truth)
            say(f"[5/5] plots: {', '.join(os.path.relpath(p, out) for p in written)}")
        except ImportError as err:
            say(f"[5/5] plots skipped: {err}")
    forces, force_plots = run_force_step(out, seed=seed, plots=plots and bool(written), say=say)
    written += force_plots
    fps = report.n_frames / report.elapsed_s if report.elapsed_s else float("nan")
    say()
    say("summary")
    say(f"  tracked {beads} beads x {frames} frames in {report.elapsed_s:.1f} s ({fps:,.0f} frames/s, "
        f"{report.n_chunks} chunks on {workers} workers)")
    say(f"  RMS error vs ground truth (method {ds.attrs.get('method', 'magtrack')}): x {rms['x']:.2f} nm, y {rms['y']:.2f} nm, z {rms['z']:.1f} nm"
        + (f" ({z_missing} bead-frames without z)" if z_missing else ""))
    say(_bound_line(paths, rms, roi))
    say(f"  results: {paths['results']}  (xarray.open_zarr; `magtrack-dask info` describes it)")
    say(f"  again:   magtrack-dask track {paths['archive']} --zlut {paths['zlut']} --out {paths['results']} "
        "--overwrite")
    return DemoSummary(out, rms, z_missing, fps, written, dashboard, forces)


def run_force_step(out, *, seed: int = 0, plots: bool = True, say=print):
    """The demo's force step: simulated traces at two forces under drift, analysed, printed against the truth.

    Three tethered beads (Brownian motion in the magnetic trap, averaged over
    the exposure) and three stuck ones under a common stage drift, on three
    magnet plateaus: magnets far (beads on the surface), then 1 and 4 pN;
    :func:`~magtrack_dask.analysis.analyze.analyze` removes the drift and
    calibrates the forces. Writes ``magnet_log.csv``, ``analysis.zarr`` and,
    with ``plots``, three PNGs in ``plots/``.

    Returns
    -------
    forces : xarray.Dataset
    plots : list of str
    """
    from magtrack_dask.analysis.analyze import analyze
    from magtrack_dask.sim.forces import simulate_force_results

    t = time.perf_counter()
    log = os.path.join(out, "magnet_log.csv")
    ds, truth = simulate_force_results(log, seed=seed)
    forces = analyze(ds, radius_nm=1400.0, magnet_log=log, out=os.path.join(out, "analysis.zarr"), overwrite=True)
    say(f"[+] force step: beads {truth['tethered']} tethered, {truth['stuck']} stuck, 100 Hz, stage drift "
        f"{np.ptp(truth['drift'][0]):.0f} nm in x; reference beads found: {forces.attrs['reference_beads']} "
        f"({time.perf_counter() - t:.1f} s)")
    for p in range(1, forces.sizes["plateau"]):
        measured = ", ".join(f"{f:.2f} ± {e:.2f}" for f, e in zip(forces["force_pn"].values[truth["tethered"], p],
                                                                   forces["force_pn_err"].values[truth["tethered"], p]))
        say(f"    plateau {p}, magnet {forces['magnet_position'].values[p]:.2f} mm: true {truth['force'][p]:.2f} pN, "
            f"measured (PSD fit) {measured} pN")
    written: list[str] = []
    if plots:
        from magtrack_dask.analysis.drift import correct_drift
        from magtrack_dask.analysis.plots import save_analysis_plots

        written = save_analysis_plots(correct_drift(ds), forces, os.path.join(out, "plots"), max_beads=1)
    return forces, written


def _say(stream: TextIO, msg: str = "") -> None:
    stream.write(msg + "\n")
    stream.flush()


def _simulate_inputs(paths: dict, *, frames: int, beads: int, roi: int, seed: int, say) -> None:
    """The measurement archive (steps 2) and the calibration archive with its Z-LUT (step 3)."""
    from magtrack_dask.sim.archives import write_simulated_archive, write_simulated_calibration
    from magtrack_dask.zlut import build_zlut, save_zlut

    z_lo, z_hi = z_range_for_roi(roi)
    t = time.perf_counter()
    shard = max(16, -(-frames // 20))  # ~20 tasks (one a shard): a visible progress bar and parallel work
    arch = write_simulated_archive(
        paths["archive"], frames, beads, roi=roi, shard_frames=shard, photons=PHOTONS, seed=seed,
        z_range_nm=(z_lo, z_hi), pixel_size_nm=PIXEL_SIZE_NM, frame_rate_hz=FRAME_RATE_HZ, overwrite=True,
    )
    h, w = arch.data.shape[1:]
    say(f"[2/5] simulated the measurement: {frames} frames of {h} x {w} px, beads moving in x, y and "
        f"z = {z_lo:.0f}-{z_hi:.0f} nm, photon noise ({time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    z_steps = np.arange(z_lo - 300, z_hi + 300 + 1, Z_STEP_NM)
    frames_per_step = 10
    write_simulated_calibration(
        paths["calibration"], z_steps, beads, roi=roi, frames_per_step=frames_per_step, photons=PHOTONS,
        seed=seed + 1, pixel_size_nm=PIXEL_SIZE_NM, overwrite=True,
    )
    zlut = build_zlut(paths["calibration"])
    save_zlut(paths["zlut"], zlut, source=paths["calibration"], roi_size_px=roi, overwrite=True,
              attrs={"frames_per_step": frames_per_step})
    say(f"[3/5] calibration: focus stepped {z_steps[0]:.0f}-{z_steps[-1]:.0f} nm in {Z_STEP_NM:.0f} nm "
        f"steps, {frames_per_step} frames each -> per-bead Z-LUT {zlut.shape} ({time.perf_counter() - t:.1f} s)")


def _bound_line(paths: dict, rms: dict, roi: int, samples: int = 200) -> str:
    """The RMS errors over the Cramer-Rao bound of the demo's images (photon noise, ``PHOTONS``),
    the bound taken at up to ``samples`` of the simulated bead positions."""
    import zarr

    from magtrack_dask.core.crlb import crlb, simulator_model

    g = zarr.open_group(paths["archive"], mode="r")
    rois = np.asarray(g["rois"][...])  # [top, bottom, left, right] per bead
    x = g["truth_x"][...] - rois[:, 2:3]
    y = g["truth_y"][...] - rois[:, 0:1]
    z = g["truth_z"][...]
    pick = np.random.default_rng(0).permutation(x.size)[:samples]
    bound = crlb(simulator_model(n_pixels=roi, photons=PHOTONS), x.ravel()[pick], y.ravel()[pick], z.ravel()[pick])
    bound = {k: _rms(b * (PIXEL_SIZE_NM if k != "z" else 1.0)) for k, b in zip("xyz", bound)}
    ratio = {k: rms[k] / bound[k] for k in "xyz"}
    return (f"  RMS / Cramer-Rao bound: x {ratio['x']:.2f}, y {ratio['y']:.2f}, z {ratio['z']:.2f} "
            f"(bound x {bound['x']:.2f} nm, y {bound['y']:.2f} nm, z {bound['z']:.1f} nm)")


def _accuracy(paths: dict):
    """The results, the simulation's truth, RMS errors (nm) and the count of bead-frames without z."""
    import xarray as xr
    import zarr

    ds = xr.open_zarr(paths["results"])
    g = zarr.open_group(paths["archive"], mode="r")
    truth = {k: g[f"truth_{k}"][...] for k in "xyz"}
    res = {k: ds[k].values for k in "xyz"}
    rms = {k: _rms((res[k] - truth[k]) * PIXEL_SIZE_NM) for k in "xy"}
    rms["z"] = _rms(res["z"] - truth["z"])
    return ds, truth, rms, int(np.isnan(res["z"]).sum())
