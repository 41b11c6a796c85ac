import numpy as np
import pytest
import xarray as xr

from magtrack_dask.analysis.extension import FOCAL_SHIFT_OIL_WATER, extension
from magtrack_dask.validation import InputError


@pytest.fixture(scope="module")
def steps():
    """2 beads, 600 frames: surface at 100 / 300 nm (frames 0-199), then 1000 and 500 nm higher; 3 nm noise."""
    rng = np.random.default_rng(3)
    level = np.repeat([0.0, 1.0, 0.5], 200)
    z = np.array([100 + 1000 * level, 300 + 500 * level]) + rng.normal(0, 3, (2, 600))
    z[0, 450] = -5000.0  # one wild frame must not become the surface
    return xr.DataArray(z, dims=("bead", "frame"), coords={"bead": [4, 9], "frame": np.arange(600)},
                        attrs={"units": "nm"}), level


def test_lowest_plateau_and_focal_shift(steps):
    z, level = steps
    ext = extension(z)
    assert ext.attrs["units"] == "nm" and ext.attrs["focal_shift"] == FOCAL_SHIFT_OIL_WATER == 0.88
    np.testing.assert_allclose(ext["z_surface"].values, [100, 300], atol=1.5)
    hi = ext.isel(frame=slice(200, 400)).median("frame").values
    np.testing.assert_allclose(hi, [880, 440], atol=2)  # 0.88 x (1000, 500) nm
    np.testing.assert_allclose(extension(z, focal_shift=1.0).isel(frame=slice(200, 400)).median("frame"),
                               [1000, 500], atol=2)


def test_surface_frames_plateaus_and_datasets(steps):
    z, level = steps
    by_frames = extension(z, surface_frames=(0, 200))
    by_plateaus = extension(z, plateaus=np.searchsorted([200, 400], np.arange(600), side="right"))
    lazy = extension(xr.Dataset({"z": z, "z_corrected": z + 7}).chunk({"frame": 100}), surface_frames=(0, 200))
    for e in (by_frames, by_plateaus, lazy):
        np.testing.assert_allclose(e.isel(frame=slice(200, 400)).median("frame").values, [880, 440], atol=2)
    assert lazy.chunks is not None  # stays lazy
    np.testing.assert_allclose(lazy["z_surface"].values, by_frames["z_surface"].values + 7)
    np.testing.assert_allclose(extension(z.values[0], surface_frames=(0, 200))[300], 880, atol=15)


def test_bad_input(steps):
    z, _ = steps
    with pytest.raises(InputError, match="surface_frames .700, 800. holds none of the frames 0..599"):
        extension(z, surface_frames=(700, 800))
    with pytest.raises(InputError, match="surface_frames must be"):
        extension(z, surface_frames=5)
    with pytest.raises(InputError, match="plateaus must hold one label per frame"):
        extension(z, plateaus=[0, 1])
    with pytest.raises(InputError, match="focal_shift"):
        extension(z, focal_shift=0)
    with pytest.raises(InputError, match="not both"):
        extension(z, surface_frames=(0, 10), plateaus=np.zeros(600))
