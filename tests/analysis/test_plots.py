import numpy as np
import pytest
import xarray as xr

pytest.importorskip("matplotlib")

from magtrack_dask.analysis.force import calibrate_force  # noqa: E402
from magtrack_dask.analysis.plots import plot_allan, plot_force_vs_magnet, plot_psd  # noqa: E402
from magtrack_dask.sim.brownian import simulate_tethered_bead  # noqa: E402


def test_psd_allan_and_force_figures():
    bead = simulate_tethered_bead(2.0, length_nm=1000, radius_nm=1400, fs_hz=100, n_frames=1000, seed=4)
    cal = calibrate_force(bead.x_nm, fs_hz=100, length_nm=1000, radius_nm=1400)
    psd = plot_psd(cal, title="bead 7")
    ax = psd.axes[0]
    assert ax.get_title() == "bead 7" and ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), cal.psd_model_nm2_per_hz)  # the fit is drawn
    allan = plot_allan(cal)
    np.testing.assert_allclose(allan.axes[0].lines[0].get_ydata(), cal.allan_deviation_nm)
    forces = xr.Dataset({"force_pn": (("bead", "plateau"), [[1.0, 2.0], [np.nan, np.nan]]),
                         "force_pn_err": (("bead", "plateau"), [[0.1, 0.2], [np.nan, np.nan]])},
                        coords={"bead": [0, 1], "plateau": [0, 1], "magnet_position": ("plateau", [np.nan] * 2)})
    fig = plot_force_vs_magnet(forces)
    assert fig.axes[0].get_xlabel() == "plateau" and len(fig.axes[0].get_legend().get_texts()) == 1
