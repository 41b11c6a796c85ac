"""The Dataset of track(): exactly the schema's variables, dims, dtypes and attributes."""

import json

import numpy as np

from magtrack_dask.core.flags import FLAG_BITS, flag_attrs
from magtrack_dask.tracking import track
from magtrack_dask.tracking.schema import COORDINATES, FIELDS, N_FIELDS, VARIABLES

from tests.conftest import ROI


def test_variables_follow_the_schema(archives, zlut):
    ds = track(archives["tyx"], zlut, min_symmetry=0.4, edge_margin_px=3)
    assert list(ds.data_vars) == list(VARIABLES)  # pixel size known: x_nm and y_nm too
    assert set(ds.coords) == set(COORDINATES)
    for name, var in {**ds.data_vars, **ds.coords}.items():
        spec = {**VARIABLES, **COORDINATES}[name]
        assert var.dims == spec.dims and var.dtype == np.dtype(spec.dtype), name
        assert var.attrs["units"] == spec.units and var.attrs["long_name"] == spec.long_name, name
        assert spec.description, name
    assert ds.flags.attrs == flag_attrs(min_symmetry=0.4, edge_margin_px=3.0)
    assert json.loads(ds.attrs["flag_bits"]) == FLAG_BITS
    assert FIELDS == ("x", "y", "z", "flags") and N_FIELDS == 4


def test_units_and_variables_that_depend_on_the_run(archives):
    floats = track(np.zeros((4, 2, ROI, ROI), np.float32) + 1.0)
    assert floats.profiles.attrs["units"] == "1"  # float input: no camera counts
    assert "x_nm" not in floats and "time" not in floats.coords  # no pixel size, no frame rate
    assert track(archives["tbyx"]).profiles.attrs["units"] == "counts"
    fft = track(archives["tbyx"], pipeline={"use fft_profile": True})
    assert fft.radius.attrs["units"] == "1" and fft.sizes["radius"] == ROI  # oversample 4 up to rmax 0.5
    rated = track(archives["tbyx"], frame_rate_hz=10.0)
    np.testing.assert_allclose(rated.time.values, np.arange(rated.sizes["frame"]) / 10.0)
    params = json.loads(rated.attrs["parameters"])
    assert params["frame_rate_hz"] == 10.0 and params["pixel_size_nm"] == 100.0  # the archive's
    assert rated.attrs["layout"] == "tbyx" and type(rated.attrs["layout"]) is str
