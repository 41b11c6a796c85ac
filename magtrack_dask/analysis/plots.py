"""PNG plots of the analysis: drift-corrected traces, a PSD with its fit, the Allan deviation, force vs magnet.

Same conventions as :mod:`magtrack_dask.plots` (matplotlib optional, no
pyplot state, long recordings thinned).
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from magtrack_dask.plots import _colours, _figure, _save, _thin, _time_axis, _title

__all__ = ["plot_corrected_traces", "plot_psd", "plot_allan", "plot_calibration", "plot_force_vs_magnet",
           "save_analysis_plots"]


def plot_corrected_traces(corrected: xr.Dataset, path=None, *, beads=None, max_points: int = 20000):
    """Drift-corrected x, y, z of each bead (minus its median) and the drift itself, against time.

    Parameters
    ----------
    corrected : xarray.Dataset
        From :func:`~magtrack_dask.analysis.correct_drift`.
    path : str or os.PathLike, optional
        Save a PNG here.
    beads : sequence of int, optional
        Bead positions to show; default all.
    max_points : int, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from magtrack_dask.analysis.analyze import corrected_nm

    ds, stride = _thin(corrected, max_points, beads)
    t, t_label = _time_axis(ds)
    px = float(ds.attrs.get("pixel_size_nm") or 0)
    rows = [(corrected_nm(ds, "x", mask=False).values if px else ds["x_corrected"].values, "x"),
            (corrected_nm(ds, "y", mask=False).values if px else ds["y_corrected"].values, "y"),
            (ds["z_corrected"].values if "z_corrected" in ds else np.full((ds.sizes["bead"], t.size), np.nan), "z")]
    unit = "nm" if px else "px"
    fig = _figure(figsize=(9, 8.5))
    axes = fig.subplots(4, 1, sharex=True)
    colours = _colours(ds.sizes["bead"])
    refs = set(ds.attrs.get("reference_beads", []))
    for ax, (values, k) in zip(axes, rows):
        with np.errstate(invalid="ignore"):
            values = values - np.nanmedian(values, axis=1, keepdims=True)
        for i, c in enumerate(colours):
            bead = int(ds["bead"][i])
            ax.plot(t, values[i], color="0.6" if bead in refs else c, lw=0.6,
                    label=f"bead {bead}" + (" (ref)" if bead in refs else ""))
        ax.set_ylabel(f"{k} − median ({unit if k != 'z' else 'nm'})")
        ax.grid(alpha=0.3)
    scale = {"x": px or 1.0, "y": px or 1.0, "z": 1.0}
    for k in ("x", "y", "z"):
        axes[3].plot(t, ds[f"drift_{k}"].values * scale[k], lw=0.9, label=f"drift {k}")
    axes[3].set_ylabel(f"drift ({unit} / nm)")
    axes[3].legend(fontsize="small", ncols=3)
    axes[3].grid(alpha=0.3)
    axes[-1].set_xlabel(t_label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(8, len(colours)), fontsize="small",
               frameon=False)
    fig.suptitle(_title(ds, "Drift-corrected traces") + (f" (every {stride}th frame)" if stride > 1 else ""))
    return _save(fig, path)


def _draw_psd(ax, calibration) -> None:
    ax.loglog(calibration.frequencies_hz, calibration.psd_nm2_per_hz, ".", ms=3, color="0.35", label="measured")
    ax.loglog(calibration.frequencies_hz, calibration.psd_model_nm2_per_hz, color="C3", lw=1.4,
              label=f"fit ({calibration.method}): {calibration.force_pn:.3g} ± {calibration.force_pn_err:.2g} pN, "
                    f"f_c {calibration.corner_hz:.3g} Hz")
    ax.axvline(calibration.fs_hz / 2, color="0.5", ls=":", lw=0.8, label="Nyquist")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("PSD (nm²/Hz)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")


def _draw_allan(ax, calibration) -> None:
    ax.loglog(calibration.taus_s, calibration.allan_deviation_nm, "o", ms=3, color="0.35", label="measured")
    ax.loglog(calibration.taus_s, calibration.allan_model_nm, color="C0", lw=1.4, label=f"model ({calibration.method})")
    ax.set_xlabel("τ (s)")
    ax.set_ylabel("Allan deviation (nm)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")


def _one_panel(draw, calibration, path, title: str):
    fig = _figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    draw(ax, calibration)
    ax.set_title(title)
    return _save(fig, path)


def plot_psd(calibration, path=None, *, title: str = "Power spectrum"):
    """The blocked power spectrum of a :class:`~magtrack_dask.analysis.force.ForceCalibration` and its model."""
    return _one_panel(_draw_psd, calibration, path, title)


def plot_allan(calibration, path=None, *, title: str = "Allan deviation"):
    """The Allan deviation of a :class:`~magtrack_dask.analysis.force.ForceCalibration` and its model."""
    return _one_panel(_draw_allan, calibration, path, title)


def plot_calibration(calibration, path=None, *, title: str = "Force calibration"):
    """The power spectrum with its fit and the Allan deviation with its model, side by side."""
    fig = _figure(figsize=(11, 4.4))
    left, right = fig.subplots(1, 2)
    _draw_psd(left, calibration)
    _draw_allan(right, calibration)
    fig.suptitle(title)
    return _save(fig, path)


def plot_force_vs_magnet(forces: xr.Dataset, path=None):
    """Force (± its uncertainty) of every bead against the magnet position of each plateau."""
    fig = _figure(figsize=(6.8, 4.8))
    ax = fig.subplots()
    pos = forces["magnet_position"].values
    x = pos if np.isfinite(pos).any() else forces["plateau"].values
    for i, c in enumerate(_colours(forces.sizes["bead"])):
        f, e = forces["force_pn"].values[i], forces["force_pn_err"].values[i]
        if np.isfinite(f).any():
            ax.errorbar(x, f, yerr=e, fmt="o-", ms=4, lw=0.8, capsize=2, color=c,
                        label=f"bead {int(forces['bead'][i])}")
    ax.set_yscale("log")
    ax.set_xlabel("magnet position" if np.isfinite(pos).any() else "plateau")
    ax.set_ylabel("force (pN)")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncols=2)
    ax.set_title(f"Force vs magnet position ({forces.attrs.get('method', '')})")
    return _save(fig, path)


def _recalibrate(corrected: xr.Dataset, forces: xr.Dataset, i: int, p: int):
    """The calibration of bead position ``i`` on plateau ``p`` again, with its arrays (not stored)."""
    from magtrack_dask.analysis.analyze import _gap_fill, corrected_nm
    from magtrack_dask.analysis.force import calibrate_force

    a = forces.attrs
    settle = int(np.ceil(float(a.get("settle_s", 0.0)) * float(a["fs_hz"]) - 1e-9))  # as analyze left them out
    sl = slice(int(forces["first_frame"][p]) + settle, int(forces["stop_frame"][p]))
    x, _ = _gap_fill(np.asarray(corrected_nm(corrected.isel(bead=i, frame=sl), a.get("axis", "x")).values))
    opts = {k: a[k] for k in ("fs_hz", "radius_nm", "exposure_s", "temperature_k", "viscosity_pa_s") if k in a}
    return calibrate_force(x, length_nm=float(forces["length_nm"][i, p]), method=a.get("method", "psd"), **opts)


def save_analysis_plots(corrected: xr.Dataset, forces: xr.Dataset, folder, *, max_beads: int = 3) -> list[str]:
    """Write ``corrected_traces.png``, ``force_vs_magnet.png`` and, for up to ``max_beads`` calibrated
    beads (each on its highest-force plateau), ``calibration_bead_<id>.png`` (PSD and Allan deviation).

    Returns
    -------
    list of str
        The files written.
    """
    folder = os.fspath(folder)
    written = [os.path.join(folder, "corrected_traces.png"), os.path.join(folder, "force_vs_magnet.png")]
    plot_corrected_traces(corrected, written[0])
    plot_force_vs_magnet(forces, written[1])
    f = forces["force_pn"].values
    for i in [i for i in range(f.shape[0]) if np.isfinite(f[i]).any()][:max_beads]:
        p = int(np.nanargmax(f[i]))
        bead = int(forces["bead"][i])
        cal = _recalibrate(corrected, forces, i, p)
        path = os.path.join(folder, f"calibration_bead_{bead:03d}.png")
        plot_calibration(cal, path, title=f"bead {bead}, plateau {p}: {cal.force_pn:.3g} pN")
        written.append(path)
    return written
