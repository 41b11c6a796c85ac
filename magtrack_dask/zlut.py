"""Z-LUTs from calibration archives: build, save, load.

Calibration archive
-------------------
An ordinary archive (any layout, see :mod:`magtrack_dask.io.format`) recorded
while the focus steps through known positions, plus one array
``calibration_z`` ``(frame,)`` float64: each frame's bead z relative to the
focal plane, in nm, with the sign convention of the tracking results (for an
objective scanner, minus the objective's position plus a constant). Frames
whose ``calibration_z`` is NaN (the focus still moving) are skipped. Frames
whose z agree to ``z_resolution_nm`` form one step; the step's reference z is
their mean.

Building
--------
Every frame is tracked with the same pipeline as the measurement
(:func:`magtrack_dask.tracking.track`, no Z-LUT): x, y per frame, then the
radial profile about the tracked centre. The profiles of each step are
averaged per bead (frames where the bead was not found are left out), chunk by
chunk with partial sums, so memory stays bounded whatever the archive's size
and the work runs on whatever Dask scheduler is active.

For ``method='fit'`` the frames of the calibrated steps are gathered per bead
(those where it is found) and its image model is learned from them
(:func:`magtrack_dask.core.fit.model_from_stack`, one task per bead): a
bead's ROIs of the whole calibration are in memory at once.

Z-LUT files
-----------
A Zarr v3 *array* ``(n_beads, 1 + n_bins, n_ref)`` (or ``(1 + n_bins, n_ref)``)
float64, in the spec's format: row 0 the reference z (nm, increasing), rows
below the profiles. Attributes say the units, the source and the ROI size.
``track(..., zlut="zlut.zarr")`` opens it directly.

The image models of ``method='fit'``
(:class:`~magtrack_dask.core.radial_model.RadialModel`) are a Zarr v3 *group*
with the same kind of attributes (``method`` 'fit'; ``n_beads`` None for one
model shared by all beads) and one row per model in each of its arrays:
``z`` ``(bead, plane)`` and ``coef`` ``(bead, plane, coef)`` float64,
NaN-padded past ``n_planes`` and ``n_coef`` ``(bead,)``; ``spacing``,
``z_smoothing`` and ``n_pixels`` ``(bead,)`` (``n_pixels`` 0: any image
size). ``track(..., zlut="zlut.zarr", method="fit")`` opens it directly.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from magtrack_dask._backend import to_numpy
from magtrack_dask.core.flags import Flag
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.radial_model import RadialModel
from magtrack_dask.core.symmetry import MIN_SYMMETRY
from magtrack_dask.io.paths import check_replaceable, check_zarr_path, remove_store
from magtrack_dask.io.format import CALIBRATION_Z
from magtrack_dask.validation import InputError, InputTypeError

__all__ = [
    "CALIBRATION_Z",
    "zlut_method",
    "build_zlut",
    "save_zlut",
    "load_zlut",
    "calibration_steps",
    "fit_models",
]

ZLUT_FORMAT = 1
#: What a Zarr Z-LUT written before methods were recorded was built with.
UNRECORDED_METHOD = "magtrack"


def fit_models(zlut) -> RadialModel | list[RadialModel] | None:
    """``zlut`` if it is the 'fit' method's image model (a RadialModel) or a sequence of
    them (one per bead), as a RadialModel or a list; None for anything else (tables, paths)."""
    if isinstance(zlut, RadialModel):
        return zlut
    if isinstance(zlut, (list, tuple)) and zlut and all(isinstance(m, RadialModel) for m in zlut):
        return list(zlut)
    return None


def zlut_method(zlut, attrs: dict) -> str | None:
    """The method a Z-LUT was built with: its ``method`` attribute; ``'fit'`` for image
    models (:class:`~magtrack_dask.core.radial_model.RadialModel`); ``'magtrack'`` for
    a Zarr Z-LUT without one (written before methods were recorded); None for tables
    that carry no metadata (arrays, ``.npy`` files), which any method may use."""
    if fit_models(zlut) is not None:
        return "fit"
    if "method" in attrs:
        return str(attrs["method"])
    if isinstance(zlut, (str, os.PathLike)) and not os.fspath(zlut).endswith(".npy"):
        return UNRECORDED_METHOD
    return None


def calibration_steps(z, z_resolution_nm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Group frames into focus steps.

    Parameters
    ----------
    z : array_like, shape (n_frames,)
        z of each frame, nm; NaN frames belong to no step.
    z_resolution_nm : float, optional
        Frames whose z round to the same multiple of this are one step.

    Returns
    -------
    z_ref : ndarray, shape (n_steps,)
        Mean z of each step, increasing.
    step : ndarray of int, shape (n_frames,)
        Step of each frame, -1 for skipped frames.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise InputError(f"calibration z must be 1-D (one value per frame); got shape {z.shape}")
    if not z_resolution_nm > 0:
        raise InputError(f"z_resolution_nm must be > 0; got {z_resolution_nm!r}")
    valid = np.isfinite(z)
    step = np.full(z.shape, -1, dtype=np.int64)
    keys, inverse = np.unique(np.round(z[valid] / z_resolution_nm), return_inverse=True)
    step[valid] = inverse
    z_ref = np.bincount(inverse, weights=z[valid], minlength=len(keys)) / np.bincount(inverse, minlength=len(keys))
    return z_ref, step


def _step_sums(profiles: np.ndarray, flags: np.ndarray, step: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-bead, per-step sums, counts and sums of squares of one frame chunk: (3, bead, step, bin)."""
    nb, nt, nr = profiles.shape
    use = (step >= 0)[None, :] & ((flags & int(Flag.XY_NOT_FOUND)) == 0)
    good = np.isfinite(profiles) & use[:, :, None]
    onehot = np.zeros((nt, n_steps))
    onehot[np.flatnonzero(step >= 0), step[step >= 0]] = 1.0
    values = np.where(good, profiles, 0.0)
    sums = np.einsum("btr,ts->bsr", values, onehot)
    counts = np.einsum("btr,ts->bsr", good.astype(np.float64), onehot)
    squares = np.einsum("btr,ts->bsr", values * values, onehot)
    return np.stack([sums, counts, squares])


def build_zlut(
    calibration,
    *,
    z=None,
    z_resolution_nm: float = 1.0,
    frames_per_task: int | None = None,
    rois=None,
    device: str = "cpu",
    min_symmetry: float = MIN_SYMMETRY,
    pipeline: PipelineOptions | dict | None = None,
    method: str | None = None,
) -> np.ndarray | list[RadialModel]:
    """Per-bead Z-LUTs (or the 'fit' method's image models) from a calibration archive.

    Parameters
    ----------
    calibration : str, os.PathLike or zarr.Group
        Calibration archive (see the module docstring).
    z : array_like, shape (n_frames,), optional
        z of each frame in nm; default the archive's ``calibration_z``.
    z_resolution_nm : float, optional
        Frames whose z agree to this form one step.
    frames_per_task, rois, device, min_symmetry
        As :func:`magtrack_dask.tracking.track` takes them; frames where a
        bead is not found (flag 1, see ``min_symmetry``) are left out of its
        averages.
    pipeline : PipelineOptions or dict, optional
        The pipeline's stage options, as :func:`magtrack_dask.tracking.track`
        takes them (e.g. ``{'radial_profile': {'oversample': 2}}``); track
        with the same ones. Options of the 'magtrack' method.
    method : {'accurate', 'magtrack', 'fit'}, optional
        The method that will track with the LUT (:func:`magtrack_dask.track_stack`);
        default 'accurate', or 'magtrack' when ``pipeline`` is given (as
        :func:`~magtrack_dask.tracking.track`). Save the LUT with
        ``save_zlut(..., method=)`` and track with the same method. For
        'accurate' each bin is smoothed along z to the scatter of its frames
        (:func:`magtrack_dask.core.lut_smoothing.smooth_planes`), as
        :func:`magtrack_dask.zlut_from_stack` does. For 'fit' each bead's image
        model is learned from its frames of the calibrated steps where it is
        found (:func:`magtrack_dask.core.fit.model_from_stack`; its planes are
        the steps' z), which needs at least 4 steps.

    Returns
    -------
    zlut : ndarray, shape (n_beads, 1 + n_bins, n_ref), or list of RadialModel
        Row 0 the step z (nm, increasing), rows below the averaged profiles;
        for 'fit' one :class:`~magtrack_dask.core.radial_model.RadialModel`
        per bead (z in nm).

    Raises
    ------
    ValueError
        No ``calibration_z``, a length that does not match the frames, fewer
        than two steps (four for 'fit'), a bead not found in any frame of a
        step, ROIs smaller than the method needs (for 'fit').
    """
    import dask

    from magtrack_dask.io.archive import open_archive
    from magtrack_dask.tracking import resolve_method, track

    method = resolve_method(method, pipeline)
    arch = open_archive(calibration, frames_per_task=frames_per_task)
    if z is None:
        if CALIBRATION_Z not in arch.group:
            raise InputError(f"{arch.path or calibration!r} has no {CALIBRATION_Z!r} array: not a calibration "
                             "archive (it needs the z of every frame, nm)")
        z = arch.group[CALIBRATION_Z][...]
    z = np.asarray(z, dtype=np.float64)
    if z.shape != (arch.n_frames,):
        raise InputError(f"calibration z has shape {z.shape}; the archive has {arch.n_frames} frames")
    z_ref, step = calibration_steps(z, z_resolution_nm)
    if len(z_ref) < 2:
        raise InputError(f"a Z-LUT needs at least 2 focus steps; the calibration has {len(z_ref)}")
    if method == "fit":
        return _fit_models(arch, z_ref, step, frames_per_task=frames_per_task, rois=rois, device=device,
                           min_symmetry=min_symmetry)

    ds = track(arch.group, frames_per_task=frames_per_task, rois=rois, device=device, min_symmetry=min_symmetry,
               pipeline=pipeline, method=method)
    bounds = np.cumsum((0,) + ds.chunks["frame"])
    prof = ds.profiles.data.to_delayed().ravel()
    flags = ds.flags.data.to_delayed().ravel()
    parts = [dask.delayed(_step_sums)(p, f, step[a:b], len(z_ref))
             for p, f, a, b in zip(prof, flags, bounds[:-1], bounds[1:])]
    while len(parts) > 1:  # pairwise tree: no task holds more than two partial sums
        parts = [dask.delayed(np.add)(*parts[i:i + 2]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    sums, counts, squares = dask.compute(parts[0])[0]
    n_frames = counts.max(axis=2)  # (bead, step): frames that contributed
    if np.any(n_frames == 0):
        b, s = np.argwhere(n_frames == 0)[0]
        raise InputError(f"bead {b} was not found in any frame of the step at z = {z_ref[s]:.1f} nm")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts  # (bead, step, bin); NaN only for a bin no frame reached (the centre)
        sem = np.sqrt(np.maximum(squares - counts * mean**2, 0.0) / (counts - 1) / counts)  # NaN: one frame
    zlut = np.empty((mean.shape[0], 1 + mean.shape[2], len(z_ref)))
    zlut[:, 0, :] = z_ref
    zlut[:, 1:, :] = mean.transpose(0, 2, 1)
    if method == "accurate":  # calibration noise out, as zlut_from_stack does
        from magtrack_dask.core.lut_smoothing import smooth_planes

        for b in range(zlut.shape[0]):
            zlut[b, 1:] = smooth_planes(z_ref, zlut[b, 1:], sem[b].T)
    return zlut


#: Focus steps the 'fit' method's model needs (a cubic spline along z: model_from_stack).
MIN_FIT_STEPS = 4


def _fit_models(arch, z_ref: np.ndarray, step: np.ndarray, *, frames_per_task, rois, device: str,
                min_symmetry: float) -> list[RadialModel]:
    """:func:`build_zlut` for method 'fit': one image model per bead, one Dask task per bead."""
    import dask
    import dask.array as da

    from magtrack_dask.core.methods import min_method_pixels
    from magtrack_dask.tracking.source import resolve_source
    from magtrack_dask.validation import check_choice, check_count, check_fraction

    device = check_choice(device, "device", ("cpu", "gpu"))
    if device == "gpu":
        from magtrack_dask.tracking.gpu import require_gpu

        require_gpu()
    min_symmetry = check_fraction(min_symmetry, "min_symmetry")
    frames_per_task = None if frames_per_task is None else check_count(frames_per_task, "frames_per_task")
    if len(z_ref) < MIN_FIT_STEPS:
        raise InputError(f"method 'fit' needs at least {MIN_FIT_STEPS} focus steps (its model is a cubic spline "
                         f"along z); the calibration has {len(z_ref)}")
    src = resolve_source(arch.group, rois=rois, frames_per_task=frames_per_task)
    need = min_method_pixels("fit")
    if src.roi_size < need:
        raise InputError(f"rois are {src.roi_size} x {src.roi_size} px; method 'fit' needs at least {need} x {need} px")
    data, roi = src.data, src.roi_size
    bounds = np.cumsum((0,) + data.chunks[src.layout.frame_axis])
    parts = []
    # Only the frames of a step are cropped, in the camera's dtype: they are kept until every bead's model is made.
    for block, a, b in zip(data.to_delayed().ravel(), bounds[:-1], bounds[1:]):
        keep = np.flatnonzero(step[a:b] >= 0)
        crop = dask.delayed(_crop_steps)(block, src.layout, src.crop_rois, keep)
        parts.append(da.from_delayed(crop, shape=(src.n_beads, roi, roi, len(keep)), dtype=src.dtype))
    crops = da.concatenate(parts, axis=3)
    kept = step[step >= 0]
    models = [dask.delayed(_bead_model)(crops[b], kept, z_ref, b, min_symmetry, device) for b in range(src.n_beads)]
    return list(dask.compute(*models))


def _crop_steps(block: np.ndarray, layout, rois, keep: np.ndarray) -> np.ndarray:
    """Frames ``keep`` of a chunk, every bead: ``(bead, roi, roi, frame)`` in the chunk's dtype."""
    from magtrack_dask.tracking.task import crop_chunk

    stack = crop_chunk(block, layout, rois, block.dtype)  # (roi, roi, bead * frame), bead-major
    n_frames = layout.n_frames(block.shape)
    stack = stack.reshape(stack.shape[0], stack.shape[1], -1, n_frames)[..., keep]
    return np.ascontiguousarray(np.moveaxis(stack, 2, 0))


def _bead_model(crops: np.ndarray, step: np.ndarray, z_ref: np.ndarray, bead: int, min_symmetry: float,
                device: str) -> RadialModel:
    """The image model of one bead from its frames ``(roi, roi, frame)`` of steps ``step``."""
    from magtrack_dask import core
    from magtrack_dask.core.fit import model_from_stack
    from magtrack_dask.core.pipeline import as_float_stack
    from magtrack_dask.core.symmetry import lost_beads
    from magtrack_dask.tracking.task import _to_device

    xp, stack = _to_device(as_float_stack(crops), device)
    # Frames without the bead (not found, or a blank ROI) would teach the model an empty image.
    x, y, _, _ = core.stack_to_xyzp(stack)
    found = xp.isfinite(x) & xp.isfinite(y)
    if min_symmetry > 0:
        found &= ~lost_beads(stack, x, y, min_symmetry)
    found = to_numpy(found)
    missing = np.setdiff1d(np.arange(len(z_ref)), step[found])
    if missing.size:
        raise InputError(f"bead {bead} was not found in any frame of the step at z = {z_ref[missing[0]]:.1f} nm")
    return model_from_stack(stack[:, :, xp.asarray(np.flatnonzero(found))], z_ref[step[found]])


def save_zlut(
    path,
    zlut,
    *,
    source: str | None = None,
    roi_size_px: int | None = None,
    attrs: dict | None = None,
    overwrite: bool = False,
    method: str | None = None,
) -> zarr.Array | zarr.Group:
    """Write a Z-LUT as a Zarr v3 array (the 'fit' method's models: a group) with its metadata.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write (a folder, e.g. ``zlut.zarr``).
    zlut : array_like, shape (1 + n_bins, n_ref) or (n_beads, 1 + n_bins, n_ref), RadialModel or list of them
        A table, or the 'fit' method's image model: one
        :class:`~magtrack_dask.core.radial_model.RadialModel` for every
        bead, or one per bead (:func:`build_zlut` with ``method='fit'``).
    source : str, optional
        Where the LUT came from (the calibration archive).
    roi_size_px : int, optional
        ROI side the profiles were taken in.
    attrs : dict, optional
        More attributes (JSON-serialisable).
    overwrite : bool, optional
        Replace an existing LUT; default False raises FileExistsError.
    method : {'accurate', 'magtrack', 'fit'}, optional
        The method the LUT was built with (as :func:`build_zlut` was given it),
        recorded as the ``method`` attribute: tracking with another method
        refuses the file. Default 'fit' for image models, else 'accurate'
        (:func:`build_zlut`'s default); models are 'fit' only, tables never.

    Returns
    -------
    zarr.Array, or zarr.Group for image models
    """
    from magtrack_dask.core.methods import check_method

    models = fit_models(zlut)
    method = check_method("fit" if method is None and models is not None else (method or "accurate"))
    if models is not None and method != "fit":
        raise InputError(f"zlut holds image models (RadialModel) of method 'fit'; got method={method!r}")
    if models is None and method == "fit":
        raise InputError(f"method='fit' saves image models (a RadialModel or a list of them, from "
                         f"build_zlut(..., method='fit')); got zlut of type {type(zlut).__name__}")
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    check_replaceable(path, "path")  # zarr's overwrite empties whatever folder it is given
    if models is not None:
        return _save_models(path, models, source=source, roi_size_px=roi_size_px, attrs=attrs)
    arr = np.asarray(zlut, dtype=np.float64)
    if arr.ndim not in (2, 3) or arr.shape[-2] < 3 or arr.shape[-1] < 2:
        raise InputError(f"zlut must have shape (1 + n_bins, n_ref) or (n_beads, 1 + n_bins, n_ref); got {arr.shape}")
    meta = {
        "magtrack_dask_zlut": ZLUT_FORMAT,
        "long_name": "Z look-up table: row 0 reference z, rows 1.. radial profiles",
        "z_units": "nm",
        "radius_units": "px",
        "n_bins": int(arr.shape[-2] - 1),
        "n_ref": int(arr.shape[-1]),
        "n_beads": int(arr.shape[0]) if arr.ndim == 3 else None,
        "source": None if source is None else os.fspath(source),
        "roi_size_px": None if roi_size_px is None else int(roi_size_px),
        **(attrs or {}),
        "method": method,
    }
    dims = ("bead", "row", "ref")[-arr.ndim:]
    out = zarr.create_array(store=path, shape=arr.shape, dtype="float64", chunks=arr.shape, dimension_names=dims,
                            attributes=meta, overwrite=overwrite, zarr_format=3)
    out[...] = arr
    return out


#: The arrays of a 'fit' Z-LUT group, one row per model.
_MODEL_ARRAYS = ("z", "coef", "n_planes", "n_coef", "spacing", "z_smoothing", "n_pixels")


def _save_models(path: str, models, *, source, roi_size_px, attrs) -> zarr.Group:
    """:func:`save_zlut` of image models: a group of NaN-padded arrays, one row per model."""
    shared = isinstance(models, RadialModel)
    rows = [models] if shared else models
    n_planes = max(m.z.size for m in rows)
    n_coef = max(m.coef.shape[1] for m in rows)
    z = np.full((len(rows), n_planes), np.nan)
    coef = np.full((len(rows), n_planes, n_coef), np.nan)
    for i, m in enumerate(rows):
        z[i, : m.z.size] = m.z
        coef[i, : m.coef.shape[0], : m.coef.shape[1]] = m.coef
    values = {
        "z": (z, ("bead", "plane")),
        "coef": (coef, ("bead", "plane", "coef")),
        "n_planes": (np.array([m.z.size for m in rows], np.int64), ("bead",)),
        "n_coef": (np.array([m.coef.shape[1] for m in rows], np.int64), ("bead",)),
        "spacing": (np.array([m.spacing for m in rows], np.float64), ("bead",)),
        "z_smoothing": (np.array([m.z_smoothing for m in rows], np.float64), ("bead",)),
        "n_pixels": (np.array([m.n_pixels or 0 for m in rows], np.int64), ("bead",)),
    }
    meta = {
        "magtrack_dask_zlut": ZLUT_FORMAT,
        "long_name": "image models I(r, z) of method 'fit': B-spline coefficients in r per focus plane",
        "z_units": "nm",
        "radius_units": "px",
        "n_beads": None if shared else len(rows),
        "source": None if source is None else os.fspath(source),
        "roi_size_px": None if roi_size_px is None else int(roi_size_px),
        **(attrs or {}),
        "method": "fit",
    }
    remove_store(path, "path")  # a group is written array by array: nothing of an older store may remain
    group = zarr.open_group(path, mode="w", zarr_format=3, attributes=meta)
    for name, (value, dims) in values.items():
        group.create_array(name, shape=value.shape, dtype=value.dtype, chunks=value.shape, dimension_names=dims)[...] \
            = value
    return group


def _load_models(group: zarr.Group, path: str) -> RadialModel | list[RadialModel]:
    """The models of a 'fit' Z-LUT group (:func:`_save_models`)."""
    missing = [name for name in _MODEL_ARRAYS if name not in group]
    if missing:
        raise InputError(f"zlut: {path} records method 'fit' but lacks the model arrays {missing}; expected a "
                         f"Z-LUT written by save_zlut")
    v = {name: group[name][...] for name in _MODEL_ARRAYS}
    models = []
    for i in range(len(v["z"])):
        n_planes, n_coef, n_pixels = int(v["n_planes"][i]), int(v["n_coef"][i]), int(v["n_pixels"][i])
        models.append(RadialModel(v["z"][i, :n_planes], v["coef"][i, :n_planes, :n_coef], float(v["spacing"][i]),
                                  float(v["z_smoothing"][i]), n_pixels or None))
    if group.attrs.get("n_beads") is None:
        if len(models) != 1:
            raise InputError(f"zlut: {path} holds {len(models)} models but no n_beads attribute; expected one shared "
                             f"model, or n_beads per-bead models")
        return models[0]
    return models


def load_zlut(zlut) -> tuple[np.ndarray | RadialModel | list[RadialModel], dict[str, Any]]:
    """Read a Z-LUT: the one loader of tracking, jobs, plots and ``info``.

    Parameters
    ----------
    zlut : str, os.PathLike, array_like, RadialModel or list of them
        A Zarr v3 array written by :func:`save_zlut`, a Zarr group holding an
        array ``zlut``, a ``.npy`` file saved with :func:`numpy.save`, or the
        table itself (NumPy or CuPy), shape ``(1 + n_bins, n_ref)`` or
        ``(n_beads, 1 + n_bins, n_ref)``. For ``method='fit'``: the group
        :func:`save_zlut` writes of image models, or the models themselves.

    Returns
    -------
    zlut : float64 ndarray, RadialModel or list of RadialModel
        The table; the 'fit' method's models as a RadialModel shared by all
        beads or a list, one per bead.
    attrs : dict
        The array's (the models' group's) attributes (empty for ``.npy``
        files, arrays and models).

    Raises
    ------
    FileNotFoundError
        A path where nothing is.
    InputError
        A path that holds no readable table (a file that is not ``.npy``, a
        folder that is not a Zarr store, a group without ``zlut`` or models).
    InputTypeError
        Values that are not real numbers (bool, complex).
    """
    attrs: dict[str, Any] = {}
    models = fit_models(zlut)
    if models is not None:
        return models, attrs
    if isinstance(zlut, (str, os.PathLike)):
        path = os.fspath(zlut)
        if path.endswith(".npy"):
            arr = _read_npy(path)
        else:
            node = zarr.open(check_zarr_path(path, "zlut", ("array", "group")), mode="r")
            if isinstance(node, zarr.Group) and node.attrs.get("method") == "fit" and "zlut" not in node:
                return _load_models(node, path), dict(node.attrs)
            if isinstance(node, zarr.Group):
                if "zlut" not in node:
                    raise InputError(f"zlut: {path} is a Zarr group; expected a Zarr v3 array (a Z-LUT, or a "
                                     f"group holding one named 'zlut')")
                node = node["zlut"]
            arr, attrs = node[...], dict(node.attrs)
    else:
        arr = to_numpy(zlut)
    if arr.dtype.kind not in "fiu":  # complex would lose its imaginary part, bool is no table
        raise InputTypeError(f"zlut must be real numbers, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64), attrs


def _read_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"zlut: {path} does not exist; expected a .npy file or a Zarr v3 array")
    try:
        return np.load(path)  # allow_pickle=False: a table, never code
    except (ValueError, OSError, EOFError) as err:
        first = str(err).splitlines()[0] if str(err) else "empty"
        raise InputError(f"zlut: {path} is not a readable .npy array ({err.__class__.__name__}: {first}); "
                         f"expected a (1 + n_bins, n_ref) table saved with numpy.save") from None
