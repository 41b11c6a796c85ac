"""The archive format: names, version, default codecs and chunk sizes.

An archive is a Zarr v3 *group* holding one image array ``frames`` in one of
the three layouts of :class:`magtrack_dask.io.layout.Layout`:

``tyx``
    Full camera frames ``(frame, y, x)`` plus an ROI table ``rois``
    ``(n_beads, 4)`` int ``[top, bottom, left, right]`` (bottom and right
    exclusive; square, all the same size).
``tbyx``
    Pre-cropped ROIs ``(frame, bead, y, x)``. An optional ``rois`` table says
    where the crops came from in the camera frame; tracking then reports
    full-frame coordinates.
``yxt``
    One bead in the core's own layout ``(y, x, frame)``.

Arrays are chunked along frames only, and the image array written by this
package is sharded (Zarr v3 ``sharding_indexed``): one shard holds the frames
of one tracking task, about :data:`CHUNKS_PER_SHARD` chunks, in one file
(archives written elsewhere may be unsharded). Arrays carry
``dimension_names`` (xarray needs them). Group attributes: ``magtrack_dask_archive`` (:data:`FORMAT_VERSION`),
``layout``, optional ``pixel_size_nm`` and ``frame_rate_hz``; an optional
``timestamps`` array ``(frame,)`` in seconds takes precedence over the frame
rate; :data:`STORED_NBYTES`, the stored size of ``frames``, is recorded by the
package's writer. A calibration archive adds ``calibration_z`` ``(frame,)`` in nm; a
simulated one the ground truth ``truth_x``, ``truth_y`` (full-frame px) and
``truth_z`` (nm), each ``(bead, frame)``.

This module depends on nothing else in the package, so that the modules that
create, check and read archives can all share these names without importing
one another.
"""

from __future__ import annotations

from zarr.codecs import BloscCodec, Crc32cCodec

__all__ = [
    "CALIBRATION_Z",
    "FORMAT_VERSION",
    "FRAMES",
    "TARGET_ROIS_PER_CHUNK",
    "TIMESTAMPS",
    "TRUTH",
    "CHUNKS_PER_SHARD",
    "STORED_NBYTES",
    "auto_chunk_frames",
    "auto_shard_frames",
    "blosc_sizes",
    "default_compressors",
]

FORMAT_VERSION = 1
FRAMES = "frames"  # name of the image array in the group
TIMESTAMPS = "timestamps"  # per-frame time (s), optional
CALIBRATION_Z = "calibration_z"  # per-frame z (nm) of a calibration archive
TRUTH = ("truth_x", "truth_y", "truth_z")  # ground truth of a simulated archive, (bead, frame)
_TARGET_CHUNK_BYTES = 64 * 2**20
#: ROIs per chunk by default: a task long enough that scheduling (~1-2 ms a
#: task) is negligible, and measured faster than twice as many (see
#: benchmarks/README.md).
TARGET_ROIS_PER_CHUNK = 4096
#: Frame chunks per shard by default: one file per task, chunks small enough for
#: cheap partial reads (a few frames for bead finding or a plot).
CHUNKS_PER_SHARD = 32
#: Group attribute: bytes the ``frames`` array takes in the store, recorded by the
#: writer when it closes, so that describing an archive lists nothing.
STORED_NBYTES = "frames_nbytes_stored"


def default_compressors() -> tuple[BloscCodec, Crc32cCodec]:
    """The default codec chain: Blosc zstd level 5 with bit-shuffle, then a CRC-32C checksum.

    Of the fast lossless codecs it stores camera frames the smallest and is
    the cheapest to read, and it encodes fast enough to keep up with a camera
    (measurements in benchmarks/README.md). The checksum makes bytes damaged on
    disk a read error (flagged and reported by :func:`magtrack_dask.track`)
    instead of wrong pixels: Blosc itself checks only its header.
    """
    return (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), Crc32cCodec())


def auto_chunk_frames(frame_bytes: int, n_frames: int, n_beads: int = 1) -> int:
    """Default frames per chunk: about :data:`TARGET_ROIS_PER_CHUNK` ROIs, at most ~64 MiB of frames.

    Parameters
    ----------
    frame_bytes : int
        Bytes of one frame (all of its beads).
    n_frames : int
        Frames in the archive: a chunk never holds more.
    n_beads : int, optional
        ROIs per frame.

    Returns
    -------
    int
        Frames per chunk, >= 1.
    """
    by_rois = max(1, TARGET_ROIS_PER_CHUNK // max(1, n_beads))
    return int(max(1, min(n_frames, by_rois, _TARGET_CHUNK_BYTES // max(1, frame_bytes))))


def auto_shard_frames(chunk_frames: int | None, frame_bytes: int, n_frames: int, n_beads: int = 1) -> tuple[int, int]:
    """Default ``(chunk_frames, shard_frames)`` of a sharded image array.

    A shard is one tracking task's frames, so it is capped like an unsharded
    chunk: about :data:`TARGET_ROIS_PER_CHUNK` ROIs and ~64 MiB of frames
    (:func:`auto_chunk_frames`). It holds at most :data:`CHUNKS_PER_SHARD`
    chunks, and never much more than the archive's frames.

    Parameters
    ----------
    chunk_frames : int or None
        Frames per chunk; None picks ``shard_frames / CHUNKS_PER_SHARD``.
    frame_bytes : int
        Bytes of one frame (all of its beads).
    n_frames : int
        Frames in the archive.
    n_beads : int, optional
        ROIs per frame.

    Returns
    -------
    chunk_frames, shard_frames : int
        ``shard_frames`` is a multiple of ``chunk_frames``; both >= 1.
    """
    task = auto_chunk_frames(frame_bytes, n_frames, n_beads)  # frames one task should hold
    if chunk_frames is None:
        chunk_frames = max(1, -(-task // CHUNKS_PER_SHARD))
    if task < n_frames:  # the ROI or byte cap binds: stay under it
        n_chunks = max(1, min(CHUNKS_PER_SHARD, task // chunk_frames))
    else:  # the archive is one task: one shard covers it
        n_chunks = max(1, min(CHUNKS_PER_SHARD, -(-n_frames // chunk_frames)))
    return int(chunk_frames), int(chunk_frames * n_chunks)


def blosc_sizes(head: bytes) -> tuple[int, int] | None:
    """``(decoded, compressed)`` sizes in bytes from a Blosc header (a chunk's
    first 16 bytes); None when ``head`` is not one."""
    if len(head) < 16 or head[0] not in (1, 2, 3, 4):  # Blosc format versions
        return None
    return int.from_bytes(head[4:8], "little"), int.from_bytes(head[12:16], "little")
