"""PNG plots (magtrack_dask.plots) of real tracking results."""

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from magtrack_dask.tracking import track, write_results

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from magtrack_dask.plots import plot_traces, plot_truth, plot_xy, plot_zlut, save_plots  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def results(archives, zlut, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plots") / "results.zarr")
    write_results(track(archives["tyx"], zlut), path)
    return path


def png(path, min_size=(300, 300)):
    """The PNG's pixels; checks it is a real, non-blank image."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img[..., :3].std() > 0.05  # something is drawn
    return img


def test_traces_and_xy_from_a_store(results, tmp_path):
    fig = plot_traces(results, tmp_path / "t.png")
    axes = fig.get_axes()
    assert [a.get_ylabel() for a in axes] == ["x − median (nm)", "y − median (nm)", "z (nm)"]
    assert axes[-1].get_xlabel() == "time (s)"
    assert len(axes[0].get_lines()) == 3  # one line per bead, one colour each
    assert len({tuple(l.get_color()) for l in axes[0].get_lines()}) == 3
    assert "Bead traces" in fig._suptitle.get_text()
    png(tmp_path / "t.png")
    fig = plot_xy(results, tmp_path / "xy.png", beads=[0, 2])
    ax = fig.get_axes()[0]
    assert ax.get_xlabel() == "x − median (nm)" and len(ax.collections) == 2
    png(tmp_path / "xy.png")


def test_thinning_keeps_at_most_max_points(results):
    fig = plot_traces(results, max_points=10)
    assert len(fig.get_axes()[0].get_lines()[0].get_xdata()) <= 10


def test_zlut_image_per_bead_and_shared(zlut, tmp_path):
    fig = plot_zlut(np.stack([zlut, zlut]), tmp_path / "lut.png")
    images = [a for a in fig.get_axes() if a.get_images()]
    assert len(images) == 2 and images[0].get_xlabel() == "reference z (nm)"
    assert images[0].get_ylabel() == "radius (px)"
    png(tmp_path / "lut.png")
    fig = plot_zlut(zlut)
    assert len([a for a in fig.get_axes() if a.get_images()]) == 1


def test_save_plots_with_truth_and_without_zlut(archives, results, zlut, tmp_path):
    g = zarr.open_group(archives["tyx"], mode="r")
    truth = {k: g[f"truth_{k}"][...] for k in "xyz"}
    files = save_plots(results, tmp_path / "out", zlut=zlut, truth=truth)
    assert [os.path.basename(f) for f in files] == ["traces.png", "xy.png", "zlut.png", "errors.png"]
    for f in files:
        png(f)
    fig = plot_truth(results, truth)
    assert "RMS" in fig.get_axes()[0].get_title()
    # results without a Z-LUT: z is NaN, the plot says so instead of failing
    no_z = track(archives["tbyx"]).compute()
    fig = plot_traces(no_z, tmp_path / "noz.png")
    assert "no Z-LUT" in fig.get_axes()[2].texts[0].get_text()
    assert fig.get_axes()[0].get_ylabel() == "x − median (nm)"
    png(tmp_path / "noz.png")


def test_missing_matplotlib_gives_a_clear_error(results):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from magtrack_dask.plots import plot_xy\n"
            f"plot_xy({results!r})")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 1
    assert "ImportError: plots need matplotlib: pip install 'magtrack-dask[plot]'" in res.stderr
