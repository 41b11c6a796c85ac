"""write_results: one pass, frame chunks as the input, never over something that is not a Zarr store."""

import json

import numpy as np
import pytest
import xarray as xr

import magtrack_dask
from magtrack_dask.io.archive import open_archive
from magtrack_dask.tracking import track, write_results

from tests.conftest import N_FRAMES, ROI, assert_matches, track_in_memory


def test_written_store(client, archives, zlut, tmp_path):
    ds = track(archives["tyx"], zlut)
    out = tmp_path / "results.zarr"
    assert write_results(ds, out) == str(out)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_results(ds, out)
    res = xr.open_zarr(out)
    assert res.x.chunks == ((3,), (16, 16, 13))  # frame chunks as in the input
    assert set(res.dims) == {"bead", "frame", "radius"}
    assert res.profiles.dims == ("bead", "frame", "radius")
    assert {"x", "y", "z", "x_nm", "y_nm", "profiles", "flags"} <= set(res.data_vars)
    for name, var in {**res.data_vars, **res.coords}.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    assert res.x.attrs["units"] == "px" and res.x_nm.attrs["units"] == "nm" and res.z.attrs["units"] == "nm"
    assert res.flags.dtype == np.uint8 and res.flags.attrs["flag_masks"] == [1, 2, 4, 8, 16]
    np.testing.assert_allclose(res.time.values, np.arange(N_FRAMES) / 50.0)
    np.testing.assert_array_equal(res.roi_left.values, open_archive(archives["tyx"]).rois[:, 2])
    assert res.attrs["magtrack_dask_version"] == magtrack_dask.__version__
    assert res.attrs["zlut_source"] == "array" and res.attrs["source"].endswith("tyx.zarr")
    params = json.loads(res.attrs["parameters"])
    assert params["layout"] == "tyx" and params["edge_margin_px"] == ROI / 8
    np.testing.assert_allclose(res.x_nm.values, res.x.values * 100.0)
    assert_matches(res, track_in_memory(archives["tyx"], zlut))
    write_results(ds.isel(frame=slice(0, 16)), out, overwrite=True)  # a Zarr store may be replaced
    assert xr.open_zarr(out).sizes["frame"] == 16


def test_refuses_to_replace_what_is_not_a_store(archives, tmp_path):
    ds = track(archives["yxt"])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite .*notes: it is a folder, not a Zarr store"):
        write_results(ds, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "keep me"
    with pytest.raises(TypeError, match=r"ds must be an xarray\.Dataset from track\(\), got dict"):
        write_results({"x": 1}, tmp_path / "r.zarr")
