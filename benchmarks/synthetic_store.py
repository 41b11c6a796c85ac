"""A read-only archive of any number of frame chunks that needs no disk for them.

:func:`make_synthetic_archive` writes a real archive of one chunk to a folder,
then rewrites the ``frames`` metadata to declare ``n_chunks`` chunks;
:class:`OneChunkStore` serves that one encoded chunk for every chunk key of
``frames`` (and lists them all), so the archive reads as ``n_chunks`` valid
chunks of the same frames. Only the benchmarks use it: it makes 1e5-1e6 chunk
archives without writing 1e6 files.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import zarr
from zarr.storage import LocalStore

_CHUNK_KEY = re.compile(r"^frames/c/\d+(/0)*$")


class OneChunkStore(LocalStore):
    """A read-only LocalStore whose ``frames`` chunks are all the stored chunk ``frames/c/0/...``."""

    def __init__(self, root, *, read_only: bool = True):
        super().__init__(root, read_only=True)
        with open(os.path.join(root, "synthetic.json")) as f:
            meta = json.load(f)
        self._one = meta["chunk_key"]
        self._n = int(meta["n_chunks"])
        self._tail = meta["tail"]

    def __reduce__(self):  # workers reopen it from its folder
        return type(self), (str(self.root),)

    def with_read_only(self, read_only: bool = True):
        return type(self)(str(self.root))

    def _real(self, key: str) -> str:
        return self._one if _CHUNK_KEY.match(key) else key

    async def get(self, key, prototype=None, byte_range=None):
        if prototype is None:
            from zarr.core.buffer import default_buffer_prototype

            prototype = default_buffer_prototype()
        return await super().get(self._real(key), prototype, byte_range)

    async def exists(self, key: str) -> bool:
        return await super().exists(self._real(key))

    async def getsize(self, key: str) -> int:
        return await super().getsize(self._real(key))

    async def list_prefix(self, prefix: str):
        async for key in super().list_prefix(prefix):
            if not _CHUNK_KEY.match(key):
                yield key
        if "frames/c/".startswith(prefix) or prefix.startswith("frames"):
            for i in range(self._n):
                key = f"frames/c/{i}{self._tail}"
                if key.startswith(prefix):
                    yield key


def make_synthetic_archive(folder: str, n_chunks: int, *, chunk_frames: int = 4, n_beads: int = 1, roi: int = 16,
                           seed: int = 0) -> zarr.Group:
    """An archive of ``n_chunks`` identical ``tyx`` chunks of simulated beads, opened on :class:`OneChunkStore`."""
    from magtrack_dask.sim.archives import write_simulated_archive

    write_simulated_archive(folder, chunk_frames, n_beads, roi=roi, chunk_frames=chunk_frames, seed=seed,
                            photons=1e4, frame_rate_hz=1000.0, pixel_size_nm=100.0)
    meta_path = os.path.join(folder, "frames", "zarr.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["shape"][0] = n_chunks * chunk_frames
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    tail = "/0" * (len(meta["shape"]) - 1)
    with open(os.path.join(folder, "synthetic.json"), "w") as f:
        json.dump({"chunk_key": f"frames/c/0{tail}", "n_chunks": n_chunks, "tail": tail}, f)
    for name in os.listdir(folder):  # per-frame arrays (truth, timestamps) would disagree with the new length
        if name not in ("frames", "rois", "zarr.json", "synthetic.json"):
            shutil.rmtree(os.path.join(folder, name))
    root_path = os.path.join(folder, "zarr.json")
    with open(root_path) as f:
        root = json.load(f)
    root.pop("consolidated_metadata", None)
    with open(root_path, "w") as f:
        json.dump(root, f)
    return zarr.open_group(OneChunkStore(folder), mode="r", zarr_format=3)


def synthetic_frames(group: zarr.Group) -> np.ndarray:
    """The one chunk's frames (every chunk holds these)."""
    return group["frames"][: group["frames"].chunks[0]]
