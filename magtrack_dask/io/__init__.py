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
``archive``
    Create, open (as Dask) and describe an archive.
``integrity``
    Metadata checked against itself and against the stored chunks; unfinished writes.
``chunk_read``
    A task's read of one chunk of frames.
``tiff_import``
    Camera TIFF stacks into a new archive.
"""
