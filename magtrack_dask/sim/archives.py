"""Simulated archives with known truth: a measurement and a focus-stepped calibration.

Both are ordinary archives (:mod:`magtrack_dask.io.format`) written chunk by
chunk, so memory holds one chunk of frames whatever their length. The beads
are rendered by :func:`magtrack_dask.sim.beads.render_beads`; in full camera
frames the rest of the frame is background (with shot noise when ``photons``
is given). With the same ``n_beads``, ``roi`` and ``frame_shape`` both lay the
ROIs out alike (:func:`magtrack_dask.io.rois.roi_grid`), so a Z-LUT built from
the calibration fits the measurement.
"""

from __future__ import annotations

import contextlib

import numpy as np

from magtrack_dask.io.archive import Archive, create_archive, frames_writer, open_archive
from magtrack_dask.io.format import CALIBRATION_Z, FRAMES, TRUTH
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.rois import roi_grid
from magtrack_dask.io.writer import ShardWriter
from magtrack_dask.sim.beads import render_beads
from magtrack_dask.validation import InputError

__all__ = ["write_simulated_archive", "write_simulated_calibration"]

_TRUTH_CHUNK_BYTES = 4 * 2**20  # a truth array's chunk: whole shards of frames, up to this size


def _trajectories(n_frames, n_beads, roi, wander_px, z_range_nm, seed):
    """Smooth per-bead paths evaluable on any frame range (bounded memory).

    Each coordinate is a sum of three sinusoids with random periods of 50 to
    2000 frames; x, y wander by up to ``wander_px`` around the ROI centre, z
    sweeps most of ``z_range_nm``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    per = rng.uniform(50, 2000, size=(2, n_beads, 3))
    amp = rng.dirichlet(np.ones(3), size=(2, n_beads)) * wander_px
    ph = rng.uniform(0, 2 * np.pi, size=(2, n_beads, 3))
    z_lo, z_hi = z_range_nm
    z_mid, z_amp = (z_lo + z_hi) / 2, 0.45 * (z_hi - z_lo)
    z_per = rng.uniform(0.5, 1.5, n_beads) * max(200, n_frames)
    z_ph = rng.uniform(0, 2 * np.pi, n_beads)
    centre = (roi - 1) / 2  # pixel centres at integers

    def at(t):  # t: (n,) frame numbers -> x, y (bead, n) ROI px; z (bead, n) nm
        arg = 2 * np.pi * t[None, None, :, None] / per[:, :, None, :] + ph[:, :, None, :]
        xy = centre + (amp[:, :, None, :] * np.sin(arg)).sum(-1)
        z = z_mid + z_amp * np.sin(2 * np.pi * t[None, :] / z_per[:, None] + z_ph[:, None])
        return xy[0], xy[1], z

    return at


def _as_pixels(values: np.ndarray, dtype) -> np.ndarray:
    """``values`` as camera pixels of ``dtype``: integer types are rounded and clipped to their range."""
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.asarray(values).astype(dtype)


def _camera_frames(imgs: np.ndarray, rois: np.ndarray, frame_shape, background: float, photons, rng,
                   dtype) -> np.ndarray:
    """Full camera frames ``(n_frames, height, width)`` of ``dtype`` holding the bead images.

    ``imgs`` is ``(roi, roi, n_beads, n_frames)``; outside the ROIs the frame is
    ``background``, with the same shot noise as ``render_beads`` draws when
    ``photons`` is given (from ``rng``).
    """
    shape = (imgs.shape[-1], *frame_shape)
    if photons is None:
        block = np.full(shape, _as_pixels(np.float64(background), dtype), dtype=dtype)
    else:
        block = _as_pixels(rng.poisson(photons, shape) * (background / photons), dtype)
    for b, (top, bottom, left, right) in enumerate(rois):
        block[:, top:bottom, left:right] = _as_pixels(imgs[:, :, b, :], dtype).transpose(2, 0, 1)
    return block


def write_simulated_archive(
    path,
    n_frames: int,
    n_beads: int = 4,
    *,
    roi: int = 64,
    frame_shape: tuple[int, int] | None = None,
    layout: Layout | str = Layout.TYX,
    chunk_frames: int | None = None,
    shard_frames: int | None = None,
    photons: float | None = None,
    background: float = 1000.0,
    seed: int = 0,
    z_range_nm: tuple[float, float] = (1000.0, 4000.0),
    wander_px: float = 1.5,
    pixel_size_nm: float | None = None,
    frame_rate_hz: float | None = None,
    optics=None,
    dtype: str = "uint16",
    compressors="default",
    overwrite: bool = False,
) -> Archive:
    """Write simulated beads to an archive, chunk by chunk, with ground truth.

    Beads move smoothly: x, y wander sub-pixel to ``wander_px`` around their ROI
    centre and z sweeps across ``z_range_nm``. Memory use is bounded by one
    chunk of frames, whatever ``n_frames``.

    Parameters
    ----------
    path : str, os.PathLike or zarr Store
    n_frames : int
    n_beads : int, optional
        Beads per frame (1 for ``'yxt'``). Default 4.
    roi : int, optional
        ROI side, px. Default 64.
    frame_shape : tuple of int, optional
        ``(height, width)`` of the camera frame for ``'tyx'``; default the
        smallest near-square grid of ROIs with ``roi // 4`` px gaps.
    layout : {'tyx', 'tbyx', 'yxt'} or Layout
    chunk_frames, shard_frames : int, optional
        Frames per Zarr chunk and per shard (0: unsharded); default as
        :func:`~magtrack_dask.io.archive.create_archive`.
    photons : float, optional
        Passed to :func:`~magtrack_dask.sim.beads.render_beads` (shot noise);
        None renders noiseless images.
    background : float, optional
        Background level, counts; also fills the frame outside the ROIs.
    seed : int, optional
        Seeds the paths and the noise. Paths and noiseless frames do not depend
        on ``chunk_frames``; noise is drawn per chunk.
    z_range_nm : tuple of float, optional
        The z sweep stays inside ``(z_min, z_max)``, nm; default 1-4 um, where
        the default optics give several rings inside a 64 px ROI.
    wander_px : float, optional
        Maximum x, y excursion from the ROI centre, px.
    pixel_size_nm, frame_rate_hz : float, optional
        Stored as group attributes.
    optics : magtrack_dask.sim.beads.Optics, optional
        Passed to ``render_beads``.
    dtype : str, optional
        Pixel type, default ``'uint16'``.
    compressors, overwrite
        As in :func:`~magtrack_dask.io.archive.create_archive`.

    Returns
    -------
    Archive
        The new archive, opened. Ground truth: arrays ``truth_x``, ``truth_y``
        (full-frame px; ROI px for ``'yxt'``) and ``truth_z`` (nm), each
        ``(bead, frame)``.
    """
    layout = Layout.parse(layout)
    if layout is Layout.YXT and n_beads != 1:
        raise InputError(f"layout {layout!r} holds one bead; got n_beads={n_beads}")
    rois, fshape = roi_grid(n_beads, roi, frame_shape)
    shape = {
        Layout.TYX: (n_frames, *fshape),
        Layout.TBYX: (n_frames, n_beads, roi, roi),
        Layout.YXT: (roi, roi, n_frames),
    }[layout]
    group = create_archive(
        path, shape=shape, dtype=dtype, layout=layout, rois=None if layout is Layout.YXT else rois,
        chunk_frames=chunk_frames, shard_frames=shard_frames, pixel_size_nm=pixel_size_nm,
        frame_rate_hz=frame_rate_hz, compressors=compressors, overwrite=overwrite,
        attrs={"simulated": {"seed": seed, "photons": photons, "background": background,
                             "z_range_nm": list(z_range_nm), "wander_px": wander_px}},
    )
    arr = group[FRAMES]
    step = (arr.shards or arr.chunks)[layout.frame_axis]  # one shard per step: written whole
    truth = _truth_arrays(group, n_beads, n_frames, step)
    path_at = _trajectories(n_frames, n_beads, roi, wander_px, z_range_nm, seed)
    off = rois if layout is not Layout.YXT else np.zeros_like(rois)
    with frames_writer(group) as frames, contextlib.ExitStack() as stack:
        writers = {k: stack.enter_context(ShardWriter(a, 1, record_size=False)) for k, a in truth.items()}
        for i, start in enumerate(range(0, n_frames, step)):
            _simulate_step(frames, writers, i, start, min(start + step, n_frames), path_at, layout, rois, fshape,
                           off, roi=roi, optics=optics, background=background, photons=photons, seed=seed,
                           dtype=dtype)
    return open_archive(group)


def _simulate_step(frames, truth, i, start, stop, path_at, layout, rois, fshape, off, *, roi, optics, background,
                   photons, seed, dtype) -> None:
    """Render frames ``start .. stop - 1`` (the ``i``-th shard) and append them with their truth."""
    t = np.arange(start, stop)
    x, y, z = path_at(t)  # (bead, nt)
    n_beads = x.shape[0]
    imgs = render_beads(
        x.ravel(), y.ravel(), z.ravel(), n_pixels=roi, optics=optics, background=background,
        photons=photons, dtype="float64", seed=np.random.SeedSequence([seed, 2, i]).generate_state(1)[0],
    ).reshape(roi, roi, n_beads, t.size)  # bead-major image order
    if layout is Layout.TYX:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, i]))
        frames.append(_camera_frames(imgs, rois, fshape, background, photons, rng, dtype))
    elif layout is Layout.TBYX:
        frames.append(_as_pixels(imgs, dtype).transpose(3, 2, 0, 1))
    else:
        frames.append(_as_pixels(imgs[:, :, 0, :], dtype))
    for name, values in zip(TRUTH, (x + off[:, 2:3], y + off[:, 0:1], z)):
        truth[name].append(values)


def _truth_arrays(group, n_beads: int, n_frames: int, step: int) -> dict:
    """Create the ``truth_x``, ``truth_y`` (px) and ``truth_z`` (nm) arrays ``(bead, frame)``.

    A chunk holds whole steps (shards) of frames, up to :data:`_TRUTH_CHUNK_BYTES`: a few files, not
    one per shard.
    """
    per_chunk = max(1, _TRUTH_CHUNK_BYTES // (8 * n_beads * step)) * step
    truth = {}
    for name, units in zip(TRUTH, ("px", "px", "nm")):
        truth[name] = group.create_array(
            name, shape=(n_beads, n_frames), dtype="float64", chunks=(n_beads, min(per_chunk, n_frames)),
            dimension_names=("bead", "frame"),
        )
        truth[name].attrs["units"] = units
    return truth


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
    shard_frames: int | None = None,
    pixel_size_nm: float | None = 100.0,
    optics=None,
    overwrite: bool = False,
) -> Archive:
    """Simulate a calibration archive: stuck beads, focus stepped through z.

    The ROIs are laid out like :func:`write_simulated_archive` with the same
    ``n_beads``, ``roi`` and ``frame_shape``, so the Z-LUT built from it fits a
    simulated measurement. Each bead sits near its ROI centre (a fixed random
    offset of up to 1 px) and jitters by up to ``jitter_px`` from frame to
    frame (vibration, drift), which also averages the pixelation of the
    profiles over sub-pixel positions.

    Parameters
    ----------
    path : str or os.PathLike
    z_steps_nm : array_like, shape (n_steps,)
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
    shard_frames : int, optional
        Frames per shard (0: unsharded); default as
        :func:`~magtrack_dask.io.archive.create_archive`.
    pixel_size_nm : float, optional
        Stored as an attribute.
    optics : magtrack_dask.sim.beads.Optics, optional
    overwrite : bool, optional

    Returns
    -------
    Archive
        A ``tyx`` uint16 archive with ``calibration_z`` ``(frame,)`` in nm.
    """
    z_steps = np.asarray(z_steps_nm, dtype=np.float64)
    if z_steps.ndim != 1 or len(z_steps) < 2:
        raise InputError(f"z_steps_nm must be 1-D with at least 2 steps; got shape {z_steps.shape}")
    rois, fshape = roi_grid(n_beads, roi, frame_shape)
    z = np.repeat(z_steps, frames_per_step)
    n_frames = len(z)
    chunk_frames = chunk_frames or frames_per_step * 16
    group = create_archive(
        path, shape=(n_frames, *fshape), dtype="uint16", layout=Layout.TYX, rois=rois, chunk_frames=chunk_frames,
        shard_frames=shard_frames, pixel_size_nm=pixel_size_nm, overwrite=overwrite,
        attrs={"calibration": {"frames_per_step": frames_per_step, "z_units": "nm"},
               "simulated": {"seed": seed, "photons": photons, "background": background, "jitter_px": jitter_px}},
    )
    arr = group[FRAMES]
    cz = group.create_array(CALIBRATION_Z, shape=(n_frames,), dtype="float64", chunks=(arr.shards or arr.chunks)[:1],
                            dimension_names=("frame",))
    cz[...] = z
    cz.attrs.update({"units": "nm", "long_name": "bead z relative to the focal plane"})
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    centre = (roi - 1) / 2 + rng.uniform(-1, 1, size=(2, n_beads, 1))
    with frames_writer(group) as frames:
        for i, start in enumerate(range(0, n_frames, chunk_frames)):
            stop = min(start + chunk_frames, n_frames)
            nt = stop - start
            xy = centre + rng.uniform(-jitter_px, jitter_px, size=(2, n_beads, nt))
            imgs = render_beads(
                xy[0].ravel(), xy[1].ravel(), np.tile(z[start:stop], n_beads), n_pixels=roi, optics=optics,
                background=background, photons=photons,
                seed=np.random.SeedSequence([seed, 12, i]).generate_state(1)[0],
            ).reshape(roi, roi, n_beads, nt)
            frames.append(_camera_frames(imgs, rois, fshape, background, photons, rng, np.uint16))
    return open_archive(group)
