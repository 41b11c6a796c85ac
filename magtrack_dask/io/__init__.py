"""Storage: Zarr v3 archives of frames and results stores, their layouts and integrity.

In the order the data meets them:

``layout``
    :class:`~.layout.Layout`, the three axis orders of an archive's frames.
``format``
    The archive format's names, version, default codecs and chunk sizes.
``paths``
    What a local path holds; the one guard against overwriting what is not a Zarr store.
``rois``
    ROI tables: check, lay out on a grid, read from a file.
``writer``
    :class:`~.writer.ShardWriter`: frames appended in order, written one whole shard at a time.
``archive``
    Create, open (as Dask) and describe an archive (sharded by default).
``integrity``
    Metadata checked against itself and against the stored chunks; unfinished writes.
``chunk_read``, ``shard_read``
    A task's read of one chunk, or one shard, of frames.
``tiff_import``
    Camera TIFF stacks into a new archive.
"""
