"""PNG plots of tracking results and Z-LUTs (matplotlib, optional).

matplotlib is imported inside each function (``pip install
'magtrack-dask[plot]'``); the figures are built with ``matplotlib.figure.Figure``
rather than pyplot, so plotting touches no global backend state and works in
worker threads, scripts and notebooks alike. Long recordings are thinned to at
most ``max_points`` frames per bead before anything is loaded.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_traces", "plot_xy", "plot_zlut", "plot_truth", "save_plots", "plot_found_beads"]

_DPI = 120


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'magtrack-dask[plot]'") from err
    return Figure(layout="constrained", **kwargs)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "turbo"]
    return [cmap(i if n <= 10 else i / max(1, n - 1)) for i in range(n)]


def _open(results):
    import xarray as xr

    if isinstance(results, xr.Dataset):
        return results
    return xr.open_zarr(os.fspath(results), consolidated=None)


def _thin(ds, max_points: int, beads=None):
    if beads is not None:
        ds = ds.isel(bead=list(beads))
    stride = max(1, -(-ds.sizes["frame"] // max_points))
    return ds.isel(frame=slice(None, None, stride)), stride


def _time_axis(ds):
    if "time" in ds.coords:
        return np.asarray(ds["time"].values, dtype=float), "time (s)"
    return np.asarray(ds["frame"].values, dtype=float), "frame"


def _xy_nm(ds):
    """x, y of each bead minus its median, in nm when the pixel size is known."""
    if "x_nm" in ds:
        x, y, unit = ds["x_nm"].values, ds["y_nm"].values, "nm"
    else:
        x, y, unit = ds["x"].values, ds["y"].values, "px"
    with np.errstate(invalid="ignore"):
        return x - np.nanmedian(x, axis=1, keepdims=True), y - np.nanmedian(y, axis=1, keepdims=True), unit


def _title(ds, what: str) -> str:
    src = ds.attrs.get("source")
    return f"{what} — {os.path.basename(str(src).rstrip('/'))}" if src else what


def _save(fig, path):
    if path is not None:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=_DPI)
    return fig


def plot_traces(results, path=None, *, beads=None, max_points: int = 20000):
    """x, y and z of each bead against time.

    Parameters
    ----------
    results : xarray.Dataset or str
        Tracking results or a results store.
    path : str or os.PathLike, optional
        Save a PNG here.
    beads : sequence of int, optional
        Bead positions to show; default all.
    max_points : int, optional
        At most this many frames per bead (evenly thinned).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(figsize=(9, 7))
    ds, stride = _thin(_open(results), max_points, beads)
    t, t_label = _time_axis(ds)
    x, y, unit = _xy_nm(ds)
    z = ds["z"].values
    axes = fig.subplots(3, 1, sharex=True)
    colours = _colours(ds.sizes["bead"])
    rows = ((x, f"x − median ({unit})"), (y, f"y − median ({unit})"), (z, f"z ({ds['z'].attrs.get('units', 'nm')})"))
    for ax, (values, label) in zip(axes, rows):
        for b, c in enumerate(colours):
            ax.plot(t, values[b], color=c, lw=0.7, label=f"bead {int(ds['bead'][b])}")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(t_label)
    if np.all(np.isnan(z)):
        axes[2].text(0.5, 0.5, "no Z-LUT: z not measured", transform=axes[2].transAxes, ha="center", va="center")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(8, len(colours)), fontsize="small",
               frameon=False)
    fig.suptitle(_title(ds, "Bead traces") + (f" (every {stride}th frame)" if stride > 1 else ""))
    return _save(fig, path)


def plot_xy(results, path=None, *, beads=None, max_points: int = 20000):
    """x-y scatter of each bead about its median position.

    Parameters
    ----------
    results : xarray.Dataset or str
    path : str or os.PathLike, optional
        Save a PNG here.
    beads : sequence of int, optional
    max_points : int, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(figsize=(6.6, 5.4))
    ds, _ = _thin(_open(results), max_points, beads)
    x, y, unit = _xy_nm(ds)
    ax = fig.subplots()
    for b, c in enumerate(_colours(ds.sizes["bead"])):
        ax.scatter(x[b], y[b], s=4, color=c, alpha=0.5, lw=0, label=f"bead {int(ds['bead'][b])}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"x − median ({unit})")
    ax.set_ylabel(f"y − median ({unit})")
    ax.invert_yaxis()  # image convention: rows grow downwards
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small", markerscale=3, frameon=False)
    ax.set_title(_title(ds, "Bead x-y positions"))
    return _save(fig, path)


def plot_zlut(zlut, path=None, *, beads=None, max_beads: int = 6):
    """A Z-LUT as an image: radial profile against reference z, per bead.

    Parameters
    ----------
    zlut : array_like, str, RadialModel or list of RadialModel
        ``(1 + n_bins, n_ref)`` or ``(n_beads, 1 + n_bins, n_ref)``, or a Z-LUT
        file (:func:`magtrack_dask.zlut.load_zlut`); the 'fit' method's image
        models are shown as their radial profiles at 1 px radii, per plane.
    path : str or os.PathLike, optional
        Save a PNG here.
    beads : sequence of int, optional
        Beads to show; default the first ``max_beads``.
    max_beads : int, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    attrs: dict[str, Any] = {}
    if isinstance(zlut, (str, os.PathLike)):
        from magtrack_dask.zlut import load_zlut

        zlut, attrs = load_zlut(zlut)
    tables, models = _zlut_tables(zlut)
    beads = list(beads) if beads is not None else list(range(min(max_beads, len(tables))))
    cols = min(3, len(beads))
    rows = -(-len(beads) // cols)
    fig = _figure(figsize=(3.6 * cols + 0.8, 3.0 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    profiles = np.concatenate([tables[b][1:].ravel() for b in beads])
    vmin, vmax = np.nanpercentile(profiles, [1, 99])
    z_units = attrs.get("z_units", "nm")
    for ax, b in zip(axes, beads):
        z = tables[b][0]
        n_bins = tables[b].shape[0] - 1
        im = ax.imshow(tables[b][1:], aspect="auto", origin="lower", cmap="magma", vmin=vmin, vmax=vmax,
                       extent=(z[0], z[-1], -0.5, n_bins - 0.5), interpolation="nearest")
        ax.set_title(f"bead {b}", fontsize="medium")
    for ax in axes[len(beads):]:
        ax.set_visible(False)
    for ax in axes[(rows - 1) * cols:]:
        ax.set_xlabel(f"reference z ({z_units})")
    for ax in axes[::cols]:
        ax.set_ylabel("radius (px)")
    fig.colorbar(im, ax=axes[: len(beads)].tolist(), label="model intensity" if models else
                 "mean intensity (counts)", shrink=0.9)
    src = attrs.get("source")
    fig.suptitle(("Z-LUT (fit models)" if models else "Z-LUT")
                 + (f" — {os.path.basename(str(src).rstrip('/'))}" if src else ""))
    return _save(fig, path)


def _zlut_tables(zlut) -> tuple[list[np.ndarray], bool]:
    """A Z-LUT as one ``(1 + n_bins, n_ref)`` table per bead, and whether it was image models
    (their profiles at radii 0, 1, ... px, to half the model's image side, on their planes)."""
    from magtrack_dask.core.radial_model import RadialModel
    from magtrack_dask.zlut import fit_models

    models = fit_models(zlut)
    if models is None:
        lut = np.asarray(zlut, dtype=float)
        return list(lut[None] if lut.ndim == 2 else lut), False
    tables = []
    for model in [models] if isinstance(models, RadialModel) else models:
        n_bins = model.n_pixels // 2 if model.n_pixels else int(np.ceil(model.r_max))
        tables.append(np.vstack([model.z, model.profile(np.arange(n_bins, dtype=np.float64))]))
    return tables, True


def plot_truth(results, truth: dict, path=None, *, max_points: int = 20000):
    """Tracking errors against a known truth (simulated archives).

    Parameters
    ----------
    results : xarray.Dataset or str
    truth : dict
        ``{'x': (bead, frame) px, 'y': ..., 'z': ... nm}`` in the results'
        full-frame coordinates, e.g. the ``truth_*`` arrays of a simulated archive.
    path : str or os.PathLike, optional
    max_points : int, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    ds, stride = _thin(_open(results), max_points)
    px = float(ds.attrs.get("pixel_size_nm", 0) or 0)
    scale, unit = (px, "nm") if px else (1.0, "px")
    fig = _figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
    colours = _colours(ds.sizes["bead"])
    for ax, k in zip(axes[:2], "xy"):
        err = (ds[k].values - np.asarray(truth[k])[:, ::stride]) * scale
        finite = err[np.isfinite(err)]
        lim = np.percentile(np.abs(finite), 99.5) if finite.size else 1.0
        bins = np.linspace(-lim, lim, 41)
        for b, c in enumerate(colours):
            ax.hist(err[b][np.isfinite(err[b])], bins=bins, color=c, histtype="step", lw=1.2, label=f"bead {b}")
        rms = np.sqrt(np.mean(finite**2)) if finite.size else np.nan
        ax.set_xlabel(f"{k} − true {k} ({unit})")
        ax.set_ylabel("frames")
        ax.set_title(f"{k} error, RMS {rms:.2f} {unit}", fontsize="medium")
    ax = axes[2]
    zt = np.asarray(truth["z"])[:, ::stride]
    for b, c in enumerate(colours):
        ax.scatter(zt[b], ds["z"].values[b], s=3, color=c, alpha=0.5, lw=0, label=f"bead {b}")
    lo, hi = np.nanmin(zt), np.nanmax(zt)
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--", label="ideal")
    err = ds["z"].values - zt
    rms = np.sqrt(np.nanmean(err**2)) if np.isfinite(err).any() else np.nan
    ax.set_xlabel("true z (nm)")
    ax.set_ylabel("tracked z (nm)")
    ax.set_title(f"z, RMS error {rms:.1f} nm", fontsize="medium")
    ax.legend(fontsize="small", markerscale=3)
    for a in axes:
        a.grid(alpha=0.3)
    fig.suptitle(_title(ds, "Tracking errors vs ground truth"))
    return _save(fig, path)


def save_plots(results, folder, *, zlut=None, truth: dict | None = None) -> list[str]:
    """Write the standard PNGs of a results store to a folder.

    Parameters
    ----------
    results : xarray.Dataset or str
    folder : str or os.PathLike
    zlut : array_like or str, optional
        Adds ``zlut.png``.
    truth : dict, optional
        Adds ``errors.png`` (see :func:`plot_truth`).

    Returns
    -------
    list of str
        The files written.
    """
    folder = os.fspath(folder)
    ds = _open(results)
    written = []
    for name, fn in (("traces.png", plot_traces), ("xy.png", plot_xy)):
        fn(ds, os.path.join(folder, name))
        written.append(os.path.join(folder, name))
    if zlut is not None:
        plot_zlut(zlut, os.path.join(folder, "zlut.png"))
        written.append(os.path.join(folder, "zlut.png"))
    if truth is not None:
        plot_truth(ds, truth, os.path.join(folder, "errors.png"))
        written.append(os.path.join(folder, "errors.png"))
    return written


def plot_found_beads(frame, candidates, path=None, *, title: str = "Bead finding"):
    """The frame with the proposed ROIs (green, numbered as in the table) and the rejected candidates.

    Parameters
    ----------
    frame : (height, width) or (n, height, width) array
        The frame bead finding looked at (a stack is averaged).
    candidates : magtrack_dask.core.find_beads.BeadCandidates
        From ``find_beads(..., return_candidates=True)``.
    path : str or os.PathLike, optional
        PNG to write.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Rectangle

    image = np.asarray(frame, dtype=np.float64)
    image = image.mean(axis=0) if image.ndim == 3 else image
    h, w = image.shape
    fig = _figure(figsize=(min(14.0, 2.0 + 8.0 * w / max(h, w)), min(14.0, 1.0 + 8.0 * h / max(h, w))))
    ax = fig.subplots()
    lo, hi = np.percentile(image, [0.5, 99.5])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ok = candidates.accepted
    for number, i in enumerate(candidates.table_order):  # numbered as the rows of the ROI table
        top, bottom, left, right = candidates.rois[i]
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, ec="lime", lw=0.8))
        ax.text(left, top - 1, str(number), color="lime", fontsize=5, va="bottom")
    reasons = sorted(set(candidates.reason[~ok].tolist()))
    colours = dict(zip(reasons, _colours(max(1, len(reasons)))))
    for reason in reasons:
        sel = candidates.reason == reason
        ax.scatter(candidates.x[sel], candidates.y[sel], marker="x", s=18, lw=0.9, color=colours[reason],
                   label=f"{reason} ({int(sel.sum())})")
    ax.plot([], [], color="lime", lw=0.8, label=f"proposed ROI ({int(ok.sum())})")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.legend(fontsize="x-small", loc="upper right", framealpha=0.7)
    ax.set_title(title, fontsize="medium")
    return _save(fig, path)
