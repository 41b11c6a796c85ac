import json

import numpy as np
import pytest
import xarray as xr

from magtrack_dask.analysis.analyze import ANALYSIS_FLAGS, analyze
from magtrack_dask.validation import InputError
from tests.analysis.conftest import RADIUS_NM, force_results


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "magnet.csv"
    ds, truth = force_results(log)
    return ds, truth, str(log)


@pytest.fixture(scope="module")
def analysis(recording, tmp_path_factory):
    ds, truth, log = recording
    out = tmp_path_factory.mktemp("analysis") / "analysis.zarr"
    return analyze(ds, radius_nm=RADIUS_NM, magnet_log=log, out=out), out


def test_forces_per_bead_and_plateau(recording, analysis):
    _, truth, _ = recording
    res, _ = analysis
    assert dict(res.sizes) == {"bead": 6, "plateau": 3}
    np.testing.assert_allclose(res["magnet_position"].values, truth["positions_mm"], rtol=1e-5)
    np.testing.assert_array_equal(res["first_frame"].values, [0, 2000, 4000])
    assert res.attrs["reference_beads"] == [3, 4, 5] and res["is_reference"].values.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.all(res["flags"].values[3:] == ANALYSIS_FLAGS["reference_bead"])
    assert np.all(np.isnan(res["force_pn"].values[3:]))
    # plateau 0 is the surface (magnets far): no length, no force, and said so
    assert np.all(res["flags"].values[:3, 0] & ANALYSIS_FLAGS["no_length"])
    assert "lowest plateau" in json.loads(res.attrs["warnings"])["0/0"]
    f, err = res["force_pn"].values[:3, 1:], res["force_pn_err"].values[:3, 1:]
    assert np.all(np.abs(f - truth["force"][1:]) < 4 * err), (f, err)
    assert np.all(np.abs(f / truth["force"][1:] - 1) < 0.2)
    # the extension (the length used) is the simulated one: drift removed, focal shift applied
    np.testing.assert_allclose(res["extension_nm"].values[:3, 1:], np.broadcast_to([900, 1000], (3, 2)), atol=3)
    np.testing.assert_allclose(res["length_nm"].values[:3, 1:], res["extension_nm"].values[:3, 1:])
    assert np.all(res["corner_hz"].values[:3, 2] > res["corner_hz"].values[:3, 1])


def test_written_to_zarr_with_the_overwrite_guard(recording, analysis, tmp_path):
    ds, _, log = recording
    res, out = analysis
    back = xr.open_zarr(out)
    xr.testing.assert_allclose(back.load(), res)
    assert json.loads(back.attrs["warnings"]) == json.loads(res.attrs["warnings"])
    with pytest.raises(FileExistsError, match="overwrite"):
        analyze(ds, radius_nm=RADIUS_NM, magnet_log=log, out=out)
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(InputError, match="refusing to overwrite"):
        analyze(ds, radius_nm=RADIUS_NM, length_nm=1000.0, out=tmp_path / "notes.txt", overwrite=True)


def test_nan_traces_are_flagged_and_short_gaps_filled(recording):
    ds, truth, log = recording
    ds = ds.copy(deep=True)
    ds["x_nm"].values[0, 2000:4000] = np.nan  # bead 0 lost on plateau 1
    ds["x_nm"].values[1, 4100:4110] = np.nan  # bead 1: 10 frames of 2000, filled
    ds["flags"].values[2, 2000:2300] = 1  # bead 2: flagged frames count as missing
    res = analyze(ds, radius_nm=RADIUS_NM, magnet_log=log)
    notes = json.loads(res.attrs["warnings"])
    assert res["flags"].values[0, 1] & ANALYSIS_FLAGS["too_few_frames"] and np.isnan(res["force_pn"].values[0, 1])
    assert "2000 of 2000 frames NaN or flagged" in notes["0/1"]
    assert res["flags"].values[2, 1] & ANALYSIS_FLAGS["too_few_frames"]
    assert np.isfinite(res["force_pn"].values[1, 2]) and "10 NaN or flagged frames interpolated" in notes["1/2"]


def test_bad_input(recording, tmp_path):
    ds, _, log = recording
    short = tmp_path / "short.csv"
    short.write_text("time,position,rotation\n10,2,0\n40,1,0\n")  # frames run to t = 70 s
    with pytest.raises(InputError, match=r"covers t = 10..40 s but the frames span t = 10..69.99 s"):
        analyze(ds, radius_nm=RADIUS_NM, magnet_log=short)
    (tmp_path / "nohead.csv").write_text("10,2,0\n80,1,0\n")
    with pytest.raises(InputError, match="no 'time' column"):
        analyze(ds, radius_nm=RADIUS_NM, magnet_log=tmp_path / "nohead.csv")
    with pytest.raises(FileNotFoundError):
        analyze(ds, radius_nm=RADIUS_NM, magnet_log=tmp_path / "absent.csv")
    with pytest.raises(InputError, match="length_nm: without a magnet log"):
        analyze(ds, radius_nm=RADIUS_NM)
    with pytest.raises(InputError, match=r"bead\(s\) 9 are not in the results"):
        analyze(ds, radius_nm=RADIUS_NM, length_nm=1000.0, reference_beads=[3, 9])
    from magtrack_dask.analysis.drift import correct_drift

    with pytest.raises(InputError, match=r"already drift-corrected with beads \[3, 4\]"):
        analyze(correct_drift(ds, [3, 4]), radius_nm=RADIUS_NM, length_nm=1000.0, reference_beads=[3, 5])
    with pytest.raises(InputError, match="axis"):
        analyze(ds, radius_nm=RADIUS_NM, length_nm=1000.0, axis="z")
