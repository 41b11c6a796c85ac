"""Local paths of Zarr stores (magtrack_dask.io.paths), on real stores in tmp_path.

Every error names the parameter it is about; nothing but a Zarr store is ever deleted.
"""

import numpy as np
import pytest
import zarr

from magtrack_dask.io.paths import ArchiveError, check_replaceable, check_zarr_path, is_zarr_store, remove_store
from magtrack_dask.validation import InputError


@pytest.fixture
def places(tmp_path):
    """A v3 group, a v3 array, a v2 group, a plain folder, a file and a missing path."""
    zarr.open_group(tmp_path / "group.zarr", mode="w", zarr_format=3).create_array("a", data=np.zeros(3))
    zarr.create_array(tmp_path / "array.zarr", data=np.arange(4), zarr_format=3)
    zarr.open_group(tmp_path / "v2.zarr", mode="w", zarr_format=2)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("keep")
    (tmp_path / "file.txt").write_text("keep")
    return {name: str(tmp_path / name) for name in
            ("group.zarr", "array.zarr", "v2.zarr", "folder", "file.txt", "missing.zarr")}


def test_check_zarr_path_accepts_the_expected_kind(places):
    assert check_zarr_path(places["group.zarr"]) == places["group.zarr"]
    assert check_zarr_path(places["array.zarr"], "zlut", "array") == places["array.zarr"]
    assert check_zarr_path(places["array.zarr"], "zlut", ("array", "group")) == places["array.zarr"]
    assert check_zarr_path("s3://bucket/a.zarr", "source") == "s3://bucket/a.zarr"  # URLs are left to zarr


@pytest.mark.parametrize(
    ("place", "kind", "error", "match"),
    [
        ("missing.zarr", "group", FileNotFoundError, r"out: .*missing\.zarr does not exist; expected a Zarr v3 group"),
        ("file.txt", "group", InputError, r"out: .*file\.txt is a file; expected a Zarr v3 group \(a folder holding"),
        ("folder", "group", InputError, r"out: .*folder is a folder but not a Zarr store; expected a Zarr v3 group"),
        ("v2.zarr", "group", InputError, r"out: .*v2\.zarr is a Zarr v2 store; expected a Zarr v3 group"),
        ("array.zarr", "group", InputError, r"out: .*array\.zarr is a Zarr array; expected a Zarr v3 group \(an "
                                            r"archive is the group holding 'frames', not the array\)"),
        ("group.zarr", ("array",), InputError, r"out: .*group\.zarr is a Zarr group; expected a Zarr v3 array$"),
    ],
)
def test_check_zarr_path_names_the_parameter(places, place, kind, error, match):
    with pytest.raises(error, match=match):
        check_zarr_path(places[place], "out", kind)


def test_unreadable_metadata_is_an_archive_error(places):
    with open(places["group.zarr"] + "/zarr.json", "w") as f:
        f.write("{not json")
    with pytest.raises(ArchiveError, match=r"source: .*zarr\.json is not valid Zarr v3 metadata"):
        check_zarr_path(places["group.zarr"])
    assert issubclass(ArchiveError, InputError) and issubclass(ArchiveError, ValueError)


def test_is_zarr_store(places):
    assert [is_zarr_store(places[p]) for p in ("group.zarr", "array.zarr", "v2.zarr")] == [True] * 3
    assert not any(is_zarr_store(places[p]) for p in ("folder", "file.txt", "missing.zarr"))


@pytest.mark.parametrize("place", ["group.zarr", "array.zarr", "v2.zarr", "missing.zarr"])
def test_zarr_stores_and_nothing_may_be_replaced(places, place):
    check_replaceable(places[place], "out")
    remove_store(places[place], "out")
    assert not is_zarr_store(places[place])
    remove_store(places[place], "out")  # gone already: nothing to do


@pytest.mark.parametrize(("place", "what"), [("folder", "a folder"), ("file.txt", "a file")])
def test_what_is_not_a_zarr_store_is_never_replaced(places, place, what):
    for call in (check_replaceable, remove_store):
        with pytest.raises(InputError, match=f"out: refusing to overwrite .*{place}: it is {what}, not a Zarr store"):
            call(places[place], "out")
    with open(places["folder"] + "/notes.txt" if place == "folder" else places[place]) as f:
        assert f.read() == "keep"
