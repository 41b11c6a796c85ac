"""Z-LUTs from calibration archives: build, save, load, simulate.

Calibration archive
-------------------
An ordinary archive (any layout, see :mod:`magtrack_dask.storage`) recorded
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

Z-LUT files
-----------
A Zarr v3 *array* ``(n_beads, 1 + n_bins, n_ref)`` (or ``(1 + n_bins, n_ref)``)
float64, in the spec's format: row 0 the reference z (nm, increasing), rows
below the profiles. Attributes say the units, the source and the ROI size.
``track(..., zlut="zlut.zarr")`` opens it directly.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from magtrack_dask._backend import to_numpy
from magtrack_dask.core.flags import Flag
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.symmetry import MIN_SYMMETRY
from magtrack_dask.io.paths import check_zarr_path
from magtrack_dask.storage import CALIBRATION_Z
from magtrack_dask.validation import InputError, InputTypeError

__all__ = [
    "CALIBRATION_Z",
    "build_zlut",
    "save_zlut",
    "load_zlut",
    "calibration_steps",
    "write_simulated_calibration",
]

ZLUT_FORMAT = 1


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
        raise ValueError(f"calibration z must be 1-D (one value per frame); got shape {z.shape}")
    if not z_resolution_nm > 0:
        raise ValueError(f"z_resolution_nm must be > 0; got {z_resolution_nm!r}")
    valid = np.isfinite(z)
    step = np.full(z.shape, -1, dtype=np.int64)
    keys, inverse = np.unique(np.round(z[valid] / z_resolution_nm), return_inverse=True)
    step[valid] = inverse
    z_ref = np.bincount(inverse, weights=z[valid], minlength=len(keys)) / np.bincount(inverse, minlength=len(keys))
    return z_ref, step


def _step_sums(profiles: np.ndarray, flags: np.ndarray, step: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-bead, per-step sums and counts of one frame chunk: (2, bead, step, bin)."""
    nb, nt, nr = profiles.shape
    use = (step >= 0)[None, :] & ((flags & int(Flag.XY_NOT_FOUND)) == 0)
    good = np.isfinite(profiles) & use[:, :, None]
    onehot = np.zeros((nt, n_steps))
    onehot[np.flatnonzero(step >= 0), step[step >= 0]] = 1.0
    sums = np.einsum("btr,ts->bsr", np.where(good, profiles, 0.0), onehot)
    counts = np.einsum("btr,ts->bsr", good.astype(np.float64), onehot)
    return np.stack([sums, counts])


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
) -> np.ndarray:
    """Per-bead Z-LUTs from a calibration archive.

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
        with the same ones.

    Returns
    -------
    zlut : ndarray, shape (n_beads, 1 + n_bins, n_ref)
        Row 0 the step z (nm, increasing), rows below the averaged profiles.

    Raises
    ------
    ValueError
        No ``calibration_z``, a length that does not match the frames, fewer
        than two steps, or a bead not found in any frame of a step.
    """
    import dask

    from magtrack_dask.storage import open_archive
    from magtrack_dask.tracking import track

    arch = open_archive(calibration, frames_per_task=frames_per_task)
    if z is None:
        if CALIBRATION_Z not in arch.group:
            raise ValueError(f"{arch.path or calibration!r} has no {CALIBRATION_Z!r} array: not a calibration "
                             "archive (it needs the z of every frame, nm)")
        z = arch.group[CALIBRATION_Z][...]
    z = np.asarray(z, dtype=np.float64)
    if z.shape != (arch.n_frames,):
        raise ValueError(f"calibration z has shape {z.shape}; the archive has {arch.n_frames} frames")
    z_ref, step = calibration_steps(z, z_resolution_nm)
    if len(z_ref) < 2:
        raise ValueError(f"a Z-LUT needs at least 2 focus steps; the calibration has {len(z_ref)}")

    ds = track(arch.group, frames_per_task=frames_per_task, rois=rois, device=device, min_symmetry=min_symmetry,
               pipeline=pipeline)
    bounds = np.cumsum((0,) + ds.chunks["frame"])
    prof = ds.profiles.data.to_delayed().ravel()
    flags = ds.flags.data.to_delayed().ravel()
    parts = [dask.delayed(_step_sums)(p, f, step[a:b], len(z_ref))
             for p, f, a, b in zip(prof, flags, bounds[:-1], bounds[1:])]
    while len(parts) > 1:  # pairwise tree: no task holds more than two partial sums
        parts = [dask.delayed(np.add)(*parts[i:i + 2]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    sums, counts = dask.compute(parts[0])[0]
    n_frames = counts.max(axis=2)  # (bead, step): frames that contributed
    if np.any(n_frames == 0):
        b, s = np.argwhere(n_frames == 0)[0]
        raise ValueError(f"bead {b} was not found in any frame of the step at z = {z_ref[s]:.1f} nm")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts  # (bead, step, bin); NaN only for a bin no frame reached (the centre)
    zlut = np.empty((mean.shape[0], 1 + mean.shape[2], len(z_ref)))
    zlut[:, 0, :] = z_ref
    zlut[:, 1:, :] = mean.transpose(0, 2, 1)
    return zlut


def save_zlut(
    path,
    zlut,
    *,
    source: str | None = None,
    roi_size_px: int | None = None,
    attrs: dict | None = None,
    overwrite: bool = False,
) -> zarr.Array:
    """Write a Z-LUT as a Zarr v3 array with its metadata.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write (a folder, e.g. ``zlut.zarr``).
    zlut : array_like, shape (1 + n_bins, n_ref) or (n_beads, 1 + n_bins, n_ref)
    source : str, optional
        Where the LUT came from (the calibration archive).
    roi_size_px : int, optional
        ROI side the profiles were taken in.
    attrs : dict, optional
        More attributes (JSON-serialisable).
    overwrite : bool, optional
        Replace an existing LUT; default False raises FileExistsError.

    Returns
    -------
    zarr.Array
    """
    arr = np.asarray(zlut, dtype=np.float64)
    if arr.ndim not in (2, 3) or arr.shape[-2] < 3 or arr.shape[-1] < 2:
        raise ValueError(f"zlut must have shape (1 + n_bins, n_ref) or (n_beads, 1 + n_bins, n_ref); got {arr.shape}")
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
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
    }
    dims = ("bead", "row", "ref")[-arr.ndim:]
    out = zarr.create_array(store=path, shape=arr.shape, dtype="float64", chunks=arr.shape, dimension_names=dims,
                            attributes=meta, overwrite=overwrite, zarr_format=3)
    out[...] = arr
    return out


def load_zlut(zlut) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a Z-LUT: the one loader of tracking, jobs, plots and ``info``.

    Parameters
    ----------
    zlut : str, os.PathLike or array_like
        A Zarr v3 array written by :func:`save_zlut`, a Zarr group holding an
        array ``zlut``, a ``.npy`` file saved with :func:`numpy.save`, or the
        table itself (NumPy or CuPy), shape ``(1 + n_bins, n_ref)`` or
        ``(n_beads, 1 + n_bins, n_ref)``.

    Returns
    -------
    zlut : float64 ndarray
    attrs : dict
        The array's attributes (empty for ``.npy`` files and arrays).

    Raises
    ------
    FileNotFoundError
        A path where nothing is.
    InputError
        A path that holds no readable table (a file that is not ``.npy``, a
        folder that is not a Zarr store, a group without ``zlut``).
    InputTypeError
        Values that are not real numbers (bool, complex).
    """
    attrs: dict[str, Any] = {}
    if isinstance(zlut, (str, os.PathLike)):
        path = os.fspath(zlut)
        if path.endswith(".npy"):
            arr = _read_npy(path)
        else:
            node = zarr.open(check_zarr_path(path, "zlut", ("array", "group")), mode="r")
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


def write_simulated_calibration(
    path,
    z_steps_nm,
    n_beads: int = 4,
    *,
    frames_per_step: int = 10,
    roi: int = 64,
    frame_shape: tuple[int, int] | None = None,
    photons: float | None = 1000.0,
    background: float = 1000.0,
    jitter_px: float = 0.5,
    seed: int = 0,
    chunk_frames: int | None = None,
    pixel_size_nm: float | None = 100.0,
    optics=None,
    overwrite: bool = False,
):
    """Simulate a calibration archive: stuck beads, focus stepped through z.

    The ROIs are laid out like :func:`magtrack_dask.storage.write_simulated_archive`
    with the same ``n_beads``, ``roi`` and ``frame_shape``, so the Z-LUT built
    from it fits a simulated measurement. Each bead sits near its ROI centre
    (a fixed random offset of up to 1 px) and jitters by up to ``jitter_px``
    from frame to frame (vibration, drift), which also averages the
    pixelation of the profiles over sub-pixel positions.

    Parameters
    ----------
    path : str or os.PathLike
    z_steps_nm : array_like
        The focus steps: the beads' z relative to focus, nm.
    n_beads : int, optional
    frames_per_step : int, optional
        Frames recorded (and averaged) at each step.
    roi : int, optional
        ROI side, px.
    frame_shape : tuple of int, optional
        Camera frame ``(height, width)``; default the smallest grid of ROIs.
    photons : float or None, optional
        Photon count of a background pixel (shot noise); None: noiseless.
    background : float, optional
        Background level, counts.
    jitter_px : float, optional
        Frame-to-frame position jitter, px.
    seed : int, optional
    chunk_frames : int, optional
        Frames per Zarr chunk; default ``frames_per_step * 16``.
    pixel_size_nm : float, optional
        Stored as an attribute.
    optics : magtrack_dask.simulate.Optics, optional
    overwrite : bool, optional

    Returns
    -------
    magtrack_dask.storage.Archive
        With ``calibration_z`` (frame,) in nm.
    """
    from magtrack_dask.simulate import render_beads
    from magtrack_dask.storage import create_archive, frames_writer, open_archive, roi_grid

    z_steps = np.asarray(z_steps_nm, dtype=np.float64)
    if z_steps.ndim != 1 or len(z_steps) < 2:
        raise ValueError(f"z_steps_nm must be 1-D with at least 2 steps; got shape {z_steps.shape}")
    rois, fshape = roi_grid(n_beads, roi, frame_shape)
    z = np.repeat(z_steps, frames_per_step)
    n_frames = len(z)
    chunk_frames = chunk_frames or frames_per_step * 16
    group = create_archive(
        path, shape=(n_frames, *fshape), dtype="uint16", layout="tyx", rois=rois, chunk_frames=chunk_frames,
        pixel_size_nm=pixel_size_nm, overwrite=overwrite,
        attrs={"calibration": {"frames_per_step": frames_per_step, "z_units": "nm"},
               "simulated": {"seed": seed, "photons": photons, "background": background, "jitter_px": jitter_px}},
    )
    cz = group.create_array(CALIBRATION_Z, shape=(n_frames,), dtype="float64", chunks=(chunk_frames,),
                            dimension_names=("frame",))
    cz[...] = z
    cz.attrs.update({"units": "nm", "long_name": "bead z relative to the focal plane"})
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    centre = (roi - 1) / 2 + rng.uniform(-1, 1, size=(2, n_beads, 1))
    frames = frames_writer(group["frames"])
    for i, start in enumerate(range(0, n_frames, chunk_frames)):
        stop = min(start + chunk_frames, n_frames)
        nt = stop - start
        xy = centre + rng.uniform(-jitter_px, jitter_px, size=(2, n_beads, nt))
        imgs = render_beads(
            xy[0].ravel(), xy[1].ravel(), np.tile(z[start:stop], n_beads), n_pixels=roi, optics=optics,
            background=background, photons=photons, seed=np.random.SeedSequence([seed, 12, i]).generate_state(1)[0],
        ).reshape(roi, roi, n_beads, nt)
        block = np.full((nt, *fshape), background)
        if photons is not None:
            block = rng.poisson(photons, block.shape) * (background / photons)
        for b, (top, bottom, left, right) in enumerate(rois):
            block[:, top:bottom, left:right] = imgs[:, :, b, :].transpose(2, 0, 1)
        frames[start:stop] = np.clip(np.rint(block), 0, 65535).astype(np.uint16)
    return open_archive(group)
