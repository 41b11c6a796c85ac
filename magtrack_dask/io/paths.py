"""Local paths of Zarr stores: what is there, and what may be replaced.

One guard for every writer: an ``overwrite`` never deletes something that is
not a Zarr store (a mistyped ``--out`` must not empty a home folder).
"""

from __future__ import annotations

import json
import os
import shutil

from magtrack_dask.validation import InputError

__all__ = ["ArchiveError", "check_zarr_path", "is_zarr_store", "check_replaceable", "remove_store"]


class ArchiveError(InputError):
    """An archive whose metadata disagrees with itself or with what its chunks hold."""


def check_zarr_path(path, name: str = "source", kind: str | tuple[str, ...] = "group") -> str:
    """Check that a local path holds a Zarr v3 node of the expected kind.

    Parameters
    ----------
    path : str or os.PathLike
        A local path (URLs are left to zarr).
    name : str, optional
        The parameter named in the error messages.
    kind : {'group', 'array'} or tuple of them, optional
        What may be there: an archive is a group, a Z-LUT an array.

    Returns
    -------
    path : str

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    InputError
        A file, a folder that is not a Zarr v3 store, or a node of another kind
        (:class:`ArchiveError` for unreadable metadata).
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    expected = f"a Zarr v3 {' or '.join(kinds)}"
    path = os.fspath(path)
    if "://" in path:
        return path
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: {path} does not exist; expected {expected}")
    if not os.path.isdir(path):
        raise InputError(f"{name}: {path} is a file; expected {expected} (a folder holding zarr.json)")
    meta = os.path.join(path, "zarr.json")
    if not os.path.isfile(meta):
        v2 = any(os.path.exists(os.path.join(path, f)) for f in (".zgroup", ".zarray"))
        raise InputError(f"{name}: {path} is " + ("a Zarr v2 store" if v2 else "a folder but not a Zarr store")
                         + f"; expected {expected} (a folder holding zarr.json)")
    try:
        with open(meta, encoding="utf-8") as f:
            node_type = json.load(f).get("node_type")
    except (OSError, ValueError, AttributeError) as err:
        raise ArchiveError(f"{name}: {meta} is not valid Zarr v3 metadata ({err})") from err
    if node_type not in kinds:
        hint = " (an archive is the group holding 'frames', not the array)" if kinds == ("group",) else ""
        raise InputError(f"{name}: {path} is a Zarr {node_type}; expected {expected}{hint}")
    return path


def is_zarr_store(path) -> bool:
    """True when ``path`` is a folder holding Zarr metadata (v3, or a v2 group)."""
    path = os.fspath(path)
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in ("zarr.json", ".zgroup"))


def check_replaceable(path, name: str = "path") -> None:
    """Raise unless ``path`` is absent or a Zarr store that may be replaced.

    Raises
    ------
    InputError
        ``path`` is a file, or a folder that is not a Zarr store.
    """
    path = os.fspath(path)
    if os.path.lexists(path) and not is_zarr_store(path):
        what = "a folder" if os.path.isdir(path) else "a file"
        raise InputError(f"{name}: refusing to overwrite {path}: it is {what}, not a Zarr store")


def remove_store(path, name: str = "path") -> None:
    """Delete the Zarr store at ``path`` (nothing there: nothing to do), after :func:`check_replaceable`."""
    check_replaceable(path, name)
    if os.path.lexists(path):
        shutil.rmtree(path)
