"""The first camera frames of an archive or an image file, for bead finding.

:func:`magtrack_dask.core.find_beads.find_beads` needs one full camera frame
(or a few to average) in memory: this reads them from a ``tyx`` archive, a
TIFF file (tifffile, the ``tiff`` extra) or a ``.npy`` array, reading only
the frames asked for.
"""

from __future__ import annotations

import os

import numpy as np

from magtrack_dask.validation import InputError, check_count

__all__ = ["IMAGE_SUFFIXES", "is_image_file", "read_first_frames"]

#: Image files :func:`read_first_frames` reads (anything else is taken for an archive).
IMAGE_SUFFIXES = (".tif", ".tiff", ".npy")


def is_image_file(path) -> bool:
    """Whether ``path`` names an image file (by its suffix) rather than an archive."""
    return os.path.splitext(os.fspath(path).rstrip("/\\"))[1].lower() in IMAGE_SUFFIXES


def read_first_frames(source, n_frames: int = 1) -> np.ndarray:
    """Up to ``n_frames`` full camera frames from the start of ``source``.

    Parameters
    ----------
    source : str or os.PathLike
        A ``tyx`` archive, a TIFF file (first image series: a frame or a
        stack of frames) or a ``.npy`` array ``(height, width)`` or
        ``(frame, height, width)``.
    n_frames : int, optional
        Frames to read (fewer when the source holds fewer). Default 1.

    Returns
    -------
    frames : (n, height, width) ndarray
        In the source's pixel type.

    Raises
    ------
    FileNotFoundError
        Nothing at ``source``.
    InputError
        An archive without full camera frames (``tbyx``, ``yxt``), an image
        that is not 2-D or 3-D, an unreadable file.
    """
    n_frames = check_count(n_frames, "n_frames")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"not found: {path}")
    if not is_image_file(path):
        return _archive_frames(path, n_frames)
    try:
        if path.lower().endswith(".npy"):
            image = np.load(path, mmap_mode="r")  # allow_pickle=False: pixels, never code
        else:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                n_pages = min(n_frames, len(series.pages)) if len(series.shape) == 3 else 1
                image = tif.asarray(key=range(n_pages), series=0)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the image {path}: {err}") from err
    if image.ndim not in (2, 3):
        raise InputError(f"{path}: expected an image (height, width) or frames (frame, height, width); "
                         f"got shape {image.shape}")
    image = image[None] if image.ndim == 2 else image
    return np.ascontiguousarray(image[:n_frames])


def _archive_frames(path: str, n_frames: int) -> np.ndarray:
    from magtrack_dask.io.archive import open_archive

    arch = open_archive(path)
    if not arch.layout.full_frames:
        raise InputError(f"{path} is a '{arch.layout}' archive of cropped ROIs; finding beads needs full camera "
                         "frames (a 'tyx' archive or an image file)")
    return np.asarray(arch.data[:n_frames].compute())
