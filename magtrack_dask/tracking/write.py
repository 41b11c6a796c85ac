"""Write a :func:`~magtrack_dask.tracking.track` Dataset to a Zarr store in one pass."""

from __future__ import annotations

import os
import warnings

import xarray as xr
import zarr

from magtrack_dask.io.paths import check_replaceable
from magtrack_dask.io.integrity import remove_unfinished_writes
from magtrack_dask.validation import InputTypeError

__all__ = ["write_results"]


def write_results(ds: xr.Dataset, path, *, overwrite: bool = False) -> str:
    """Compute a :func:`~magtrack_dask.tracking.track` Dataset and write it to a Zarr v3 store.

    Every variable is written in one pass (each task runs once), chunked
    along frames like the Dataset; metadata is consolidated at the end.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`~magtrack_dask.tracking.track`.
    path : str or os.PathLike
        Output store.
    overwrite : bool, optional
        Replace an existing store; default False raises FileExistsError.

    Returns
    -------
    path : str

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    InputError
        ``overwrite`` would replace something that is not a Zarr store.
    InputTypeError
        ``ds`` is not a Dataset.
    """
    if not isinstance(ds, xr.Dataset):
        raise InputTypeError(f"ds must be an xarray.Dataset from track(), got {type(ds).__name__}")
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"path: {path} exists; pass overwrite=True to replace it")
    check_replaceable(path, "path")  # to_zarr(mode='w') empties whatever folder it is given
    ds.to_zarr(path, mode="w", consolidated=False, zarr_format=3)
    remove_unfinished_writes(path)  # of a worker killed mid-write (its task was retried)
    with warnings.catch_warnings():  # "not part of the v3 spec": xarray reads it, others ignore it
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(path)
    return path
