"""Storage: Zarr v3 archives of frames and results stores, their layouts and integrity."""
