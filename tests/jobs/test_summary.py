"""The quality summary (magtrack_dask.jobs.summary) of a results store with known flags and positions."""

import dask
import numpy as np
import pytest
import zarr

from magtrack_dask.core.flags import Flag
from magtrack_dask.jobs import JobReport, format_bead_summary, summarize_results


@pytest.fixture
def store(tmp_path):
    """3 beads x 40 frames in 4 chunks of 10: bead 0 moves, bead 1 is stuck, bead 2 is lost in frames 0-9."""
    rng = np.random.default_rng(0)
    n_frames = 40
    x = 100.0 + rng.normal(0, 0.5, (3, n_frames))
    y = 50.0 + rng.normal(0, 0.5, (3, n_frames))
    x[1], y[1] = 200.0 + rng.normal(0, 0.001, n_frames), 60.0 + rng.normal(0, 0.001, n_frames)
    flags = np.zeros((3, n_frames), np.uint8)
    x[2, :10] = y[2, :10] = np.nan
    flags[2, :10] = Flag.XY_NOT_FOUND
    flags[0, [5, 25]] = Flag.SATURATED | Flag.NEAR_ROI_EDGE
    flags[0, 35] = Flag.INPUT_UNREADABLE
    root = zarr.open_group(str(tmp_path / "r.zarr"), mode="w", zarr_format=3)
    for name, arr in (("flags", flags), ("x", x), ("y", y)):
        root.create_array(name, data=arr, chunks=(3, 10))
    root.create_array("roi_left", data=np.array([80, 180, 80]))
    root.create_array("roi_top", data=np.array([30, 40, 30]))
    return str(tmp_path / "r.zarr"), x, y, flags


def test_counts_std_and_stuck(store):
    path, x, y, flags = store
    with dask.config.set(scheduler="synchronous"):
        s = summarize_results(path)
    assert s["n_frames"] == 40
    assert list(s["flag_counts"]) == [f.key for f in Flag]
    assert s["flag_counts"]["xy_not_found"] == [0, 0, 10]
    assert s["flag_counts"]["saturated"] == s["flag_counts"]["near_roi_edge"] == [2, 0, 0]
    assert s["flag_counts"]["input_unreadable"] == [1, 0, 0]
    assert s["n_flagged"] == [3, 0, 10]
    for b in range(3):
        ok = np.isfinite(x[b])
        np.testing.assert_allclose(s["xy_std_px"][b], [x[b, ok].std(), y[b, ok].std()], rtol=0, atol=1e-9)  # px
    assert s["stuck"] == [1] and s["stuck_std_px"] == 0.03


def test_only_the_given_chunks(store):
    path, x, _, _ = store
    with dask.config.set(scheduler="synchronous"):
        s = summarize_results(path, chunks=[False, True, True, False], bounds=[0, 10, 20, 30, 40],
                              stuck_std_px=1.0)
    assert s["n_frames"] == 20
    assert s["flag_counts"]["xy_not_found"] == [0, 0, 0] and s["n_flagged"] == [1, 0, 0]
    np.testing.assert_allclose(s["xy_std_px"][0][0], x[0, 10:30].std(), rtol=0, atol=1e-9)
    assert s["stuck"] == [0, 1, 2]  # every bead moves less than 1 px


def test_too_few_frames_say_nothing_about_motion(store, tmp_path):
    path, _, _, _ = store
    with dask.config.set(scheduler="synchronous"):
        s = summarize_results(path, chunks=[True, False, False, False], bounds=[0, 10, 20, 30, 40])
    assert s["xy_std_px"][2] is None  # lost in every counted frame
    assert s["stuck"] == [1]  # 10 frames: just enough
    with dask.config.set(scheduler="synchronous"):
        s = summarize_results(path, chunks=[False, False, False, True], bounds=[0, 10, 20, 35, 40])
    assert s["n_frames"] == 5 and s["stuck"] == []


def test_bead_table(store):
    path, _, _, _ = store
    with dask.config.set(scheduler="synchronous"):
        s = summarize_results(path)
    text = format_bead_summary(s)
    lines = text.splitlines()
    assert lines[0] == "per bead, of 40 frames: 3 of 3 beads flagged or stuck (xy std < 0.03 px)"
    assert lines[1].split() == ["bead", "flagged", "no_xy", "z_edge", "saturated", "near_edge", "unreadable",
                                "xy_std_px", "stuck"]
    assert [line.split()[0] for line in lines[2:]] == ["2", "0", "1"]  # the most flagged first
    assert lines[-1].split()[-1] == "yes" and lines[-1].split()[1] == "0"
    short = format_bead_summary(s, max_rows=1)
    assert short.splitlines()[-1] == "... 2 more (job_status(out)['summary'] has them all)"
    quiet = {**s, "n_flagged": [0, 0, 0], "stuck": []}
    assert format_bead_summary(quiet) == "per bead, of 40 frames: 0 of 3 beads flagged or stuck (xy std < 0.03 px)"


def test_report_text():
    report = JobReport("r.zarr", 4, 40, 1, 2, False, 1.25, [(30, 39)], None)
    assert report.incomplete_input and report.bead_table() == ""
    assert report.summary() == (
        "r.zarr: 2 chunks computed, 1 already done, 4 in all (40 frames), incomplete (3/4), 1.2 s\n"
        "unreadable input, frames 30-39: flagged 16 and left unfinished; repair the archive and rerun with --resume")
    done = JobReport("r.zarr", 4, 40, 0, 4, True, 2.0)
    assert not done.incomplete_input and done.summary().endswith("4 in all (40 frames), complete, 2.0 s")
