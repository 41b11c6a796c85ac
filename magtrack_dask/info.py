"""What a path holds: an archive, a results store or a Z-LUT (``magtrack-dask info``).

Metadata is read, plus a job's ``done`` record (one byte a frame chunk) and,
for an archive, the sizes of a fixed sample of its chunks (past 32 stored
objects the stored size is labelled as estimated); it works while a job is
still writing the store (before the metadata is consolidated). The image models of a
'fit' Z-LUT are read whole (they are small).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import zarr

from magtrack_dask.validation import InputError

__all__ = ["describe_path", "format_info"]


def _array_summary(arr: zarr.Array) -> dict[str, Any]:
    return {
        "shape": list(arr.shape),
        "chunks": list(arr.chunks),
        "dtype": str(arr.dtype),
        "dims": list(arr.metadata.dimension_names or ()) or None,
        "units": arr.attrs.get("units"),
    }


def _describe_results(path: str, root: zarr.Group) -> dict[str, Any]:
    from magtrack_dask.jobs.record import job_status

    attrs = dict(root.attrs)
    arrays = {name: _array_summary(arr) for name, arr in sorted(root.arrays())}
    n_beads = arrays.get("bead", {}).get("shape", [None])[0]
    n_frames = arrays.get("frame", {}).get("shape", [None])[0]
    params = attrs.get("parameters")
    info = {
        "kind": "results",
        "path": path,
        "n_beads": n_beads,
        "n_frames": n_frames,
        "source": attrs.get("source"),
        "zlut_source": attrs.get("zlut_source"),
        "magtrack_dask_version": attrs.get("magtrack_dask_version"),
        "parameters": json.loads(params) if isinstance(params, str) else params,
        "variables": arrays,
    }
    status = job_status(path)
    if status is not None:
        info["job"] = {"chunks_done": status["n_done"], "n_chunks": status["n_chunks"],
                       "complete": status["complete"],
                       "missing_chunks": np.flatnonzero(~status["done"])[:20].tolist(),
                       "unreadable_frames": status["unreadable_frames"]}
        summary = status.get("summary")
        if summary:  # per-bead flag counts and stuck beads of the finished chunks
            info["job"]["frames_flagged_per_bead"] = summary.get("n_flagged")
            info["job"]["flag_counts"] = {k: v for k, v in summary.get("flag_counts", {}).items() if any(v)}
            info["job"]["stuck_beads"] = summary.get("stuck")
    return info


def _describe_fit_zlut(path: str, group: zarr.Group) -> dict[str, Any]:
    """The image models of a 'fit' Z-LUT (:func:`magtrack_dask.zlut.save_zlut`)."""
    from magtrack_dask.zlut import load_zlut

    models, attrs = load_zlut(path)
    shared = attrs.get("n_beads") is None
    rows = [models] if shared else models
    return {"kind": "zlut", "path": path, "method": "fit", "models": "shared" if shared else "per-bead",
            "n_models": len(rows), "planes": sorted({m.z.size for m in rows}),
            "z_range": [float(min(m.z[0] for m in rows)), float(max(m.z[-1] for m in rows))], "attrs": attrs}


def describe_path(path) -> dict[str, Any]:
    """Describe an archive, a results store or a Z-LUT.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    info : dict
        ``kind`` is ``'archive'``, ``'calibration archive'``, ``'results'`` or
        ``'zlut'``; the other keys depend on it (see ``magtrack-dask info``).
        The 'fit' method's image models are a ``'zlut'`` with ``method``
        'fit', ``models`` ('shared' or 'per-bead'), ``n_models`` and
        ``planes`` (their numbers of focus planes) instead of a ``shape``.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    InputError
        ``path`` holds none of these.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"not found: {path}")
    if path.endswith(".npy"):
        from magtrack_dask.zlut import load_zlut

        lut, _ = load_zlut(path)
        return {"kind": "zlut", "path": path, "shape": list(lut.shape)}
    try:
        node = zarr.open(path, mode="r")
    except Exception as err:  # zarr raises several types for "nothing here"
        raise InputError(f"{path} is not an archive, results store or Z-LUT: not a Zarr store") from err
    if isinstance(node, zarr.Array):
        attrs = dict(node.attrs)
        lut = node[...]
        return {"kind": "zlut", "path": path, "shape": list(node.shape), "dtype": str(node.dtype),
                "dims": list(node.metadata.dimension_names or ()), "z_range": [float(lut[..., 0, 0].min()),
                float(lut[..., 0, -1].max())], "attrs": attrs}
    attrs = dict(node.attrs)
    if attrs.get("magtrack_dask_zlut") is not None and attrs.get("method") == "fit":
        return _describe_fit_zlut(path, node)
    if "layout" in attrs and "frames" in node:
        from magtrack_dask.io.archive import describe_archive

        info = {"kind": "archive", **describe_archive(node)}
        info["path"] = path
        info["chunks"] = list(node["frames"].chunks)
        if info["calibration_z_range_nm"] is not None:
            info["kind"] = "calibration archive"
        else:
            del info["calibration_z_range_nm"]
        info["attrs"] = {k: v for k, v in attrs.items() if k not in ("layout",)}
        return info
    if "parameters" in attrs or "_job" in node:
        return _describe_results(path, node)
    raise InputError(f"{path} is a Zarr group but not a magtrack-dask archive, results store or Z-LUT")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`describe_path`'s dict."""
    lines = [f"{info['path']}: {info['kind']}"]
    if info["kind"] == "results":
        lines.append(f"  beads x frames: {info['n_beads']} x {info['n_frames']}")
        if "job" in info:
            j = info["job"]
            state = "complete" if j["complete"] else f"incomplete, missing chunks {j['missing_chunks']}" + (
                "..." if j["n_chunks"] - j["chunks_done"] > 20 else "")
            lines.append(f"  finished chunks: {j['chunks_done']}/{j['n_chunks']} ({state})")
            for first, last in j["unreadable_frames"]:
                lines.append(f"  unreadable input: frames {first}-{last} (repair, then track --resume)")
            for name, per_bead in j.get("flag_counts", {}).items():
                lines.append(f"  frames flagged {name}, per bead: {per_bead}")
            if j.get("stuck_beads"):
                lines.append(f"  stuck beads: {j['stuck_beads']}")
        for key in ("source", "zlut_source", "magtrack_dask_version"):
            lines.append(f"  {key}: {info[key]}")
        lines.append("  variables:")
        for name, v in info["variables"].items():
            dims = "(" + ", ".join(v["dims"] or []) + ")"
            lines.append(f"    {name:10s} {dims:24s} {v['dtype']:8s} shape {tuple(v['shape'])} "
                         f"chunks {tuple(v['chunks'])}" + (f" [{v['units']}]" if v["units"] else ""))
        lines.append("  parameters:")
        for k, v in (info["parameters"] or {}).items():
            lines.append(f"    {k}: {_fmt(v)}")
        return "\n".join(lines)
    if info["kind"] == "zlut":
        if info.get("method") == "fit":
            lines.append(f"  image models of method fit: {info['n_models']} {info['models']}, "
                         f"{'/'.join(map(str, info['planes']))} focus planes")
        else:
            lines.append(f"  shape: {tuple(info['shape'])}" + (f" {tuple(info['dims'])}" if info.get("dims") else ""))
        if "z_range" in info:
            lines.append(f"  z: {info['z_range'][0]:g} to {info['z_range'][1]:g} "
                         f"{info['attrs'].get('z_units', 'nm')}")
        for k, v in info.get("attrs", {}).items():
            if v is not None and k not in ("long_name",):
                lines.append(f"  {k}: {_fmt(v)}")
        return "\n".join(lines)
    skip = {"path", "kind", "rois", "attrs", "compressors"}
    for k, v in info.items():
        if k not in skip and v is not None:
            lines.append(f"  {k}: {_fmt(v) if not isinstance(v, (list, tuple)) else tuple(v)}")
    rois = info.get("rois")
    if rois:
        shown = ", ".join(str(r) for r in rois[:4]) + (f", ... ({len(rois)} in all)" if len(rois) > 4 else "")
        lines.append(f"  rois [top, bottom, left, right]: {shown}")
    extra = {k: v for k, v in info.get("attrs", {}).items() if k not in ("magtrack_dask_archive",)}
    for k, v in extra.items():
        lines.append(f"  attr {k}: {_fmt(v)}")
    return "\n".join(lines)
