import json

import numpy as np
import pytest

from magtrack_dask.analysis.drift import correct_drift
from magtrack_dask.validation import InputError
from tests.analysis.conftest import PX_NM, results_dataset

STUCK = (2, 7, 13)


def _errors_nm(out, truth, beads):
    """Corrected minus true position (nm) of ``beads``, each bead's constant offset removed."""
    err = {"x": out["x_nm_corrected"].values, "y": out["y_nm_corrected"].values, "z": out["z_corrected"].values}
    res = {}
    for k, v in err.items():
        e = v[beads] - truth[k][beads]
        res[k] = e - np.nanmean(e, axis=1, keepdims=True)
    return res


def _slow(e, window=100):
    """The error averaged over 1 s windows: what is left of the drift, without the per-frame noise."""
    n = e.shape[1] // window * window
    return e[:, :n].reshape(e.shape[0], -1, window).mean(axis=2)


@pytest.fixture(scope="module")
def drifting():
    return results_dataset(seed=1)


def test_auto_picks_the_stuck_beads_and_removes_the_drift(drifting):
    ds, truth = drifting
    out = correct_drift(ds)
    assert sorted(out.attrs["reference_beads"]) == list(STUCK)
    assert list(np.flatnonzero(out["is_reference"].values)) == list(STUCK)
    tethered = [b for b in range(ds.sizes["bead"]) if b not in STUCK]
    raw = ds["x_nm"].values[tethered] - truth["x"][tethered]
    assert np.std(raw - raw.mean(axis=1, keepdims=True)) > 150  # several hundred nm of drift before
    err = _errors_nm(out, truth, tethered)
    for k in "xyz":
        slow = np.sqrt(np.mean(_slow(err[k]) ** 2))
        assert slow < 1.0, (k, slow)  # residual drift < 1 nm RMS
    # per frame, the correction adds the median of 3 beads' tracking noise (1 nm in x, y; 2 nm in z)
    for i, (k, scale, limit) in enumerate((("x", PX_NM, 1.0), ("y", PX_NM, 1.0), ("z", 1.0, 2.0))):
        miss = out[f"drift_{k}"].values * scale - truth["drift"][i]
        assert np.std(miss) < limit, (k, np.std(miss))
    info = json.loads(out.attrs["drift"])
    assert info["residual_units"] == {"x": "nm", "y": "nm", "z": "nm"}
    assert 1.0 < info["residual_rms"]["x"] < 2.0  # two beads' noise: sqrt(1 + 1) nm
    assert 2.0 < info["residual_rms"]["z"] < 4.0
    assert info["rejected"] == {} and info["warnings"] == []
    assert out["x_corrected"].attrs["units"] == "px" and out["z_corrected"].attrs["units"] == "nm"
    assert out["x_nm_corrected"].attrs["units"] == "nm"


def test_a_detaching_reference_bead_is_rejected():
    ds, truth = results_dataset(seed=2, stuck=(2, 7, 13, 16), detach=(16, 2500))
    out = correct_drift(ds, [2, 7, 13, 16])  # the user names it: rejected on disagreement
    info = json.loads(out.attrs["drift"])
    assert out.attrs["reference_beads"] == [2, 7, 13]
    assert list(info["rejected"]) == ["16"] and "disagrees" in info["rejected"]["16"]
    err = _errors_nm(out, truth, [0, 1, 3])
    assert max(np.sqrt(np.mean(_slow(e) ** 2)) for e in err.values()) < 1.0
    auto = correct_drift(ds)  # 'auto' never takes it
    assert 16 not in auto.attrs["reference_beads"]


def test_nan_and_flagged_frames(drifting):
    ds, truth = drifting
    ds = ds.copy(deep=True)
    x, flags = ds["x"].values, ds["flags"].values
    x[list(STUCK), 100:120] = np.nan  # no reference at all: the drift is interpolated
    flags[2, 500:600] = 8  # near the ROI edge: its position is not trusted...
    x[2, 500:600] += 5.0  # ...and would be 500 nm off
    ds["x_nm"] = ds["x"] * PX_NM
    out = correct_drift(ds, [2, 7, 13])
    info = json.loads(out.attrs["drift"])
    assert info["frames_interpolated"] == 20 and info["rejected"] == {}
    err = _errors_nm(out, truth, [0, 1, 3])["x"]
    assert np.sqrt(np.mean(err[:, 480:620] ** 2)) < 1.5
    assert np.all(np.isfinite(out["drift_x"].values))


def test_bad_reference_lists(drifting):
    ds, _ = drifting
    with pytest.raises(InputError, match=r"reference_beads: bead\(s\) 20, 31 are not in the results"):
        correct_drift(ds, [2, 20, 31])
    for bad in ([], [2, 2], "stuck", [1.5], 3):
        with pytest.raises(InputError, match="reference_beads"):
            correct_drift(ds, bad)
    nan = ds.copy(deep=True)
    nan["x"].values[[2, 7]] = np.nan
    with pytest.raises(InputError, match="no usable reference bead.*bead 2: x, y tracked in 0%"):
        correct_drift(nan, [2, 7])


def test_auto_without_stuck_beads_says_what_to_do():
    ds, _ = results_dataset(n_beads=6, n_frames=500, stuck=())
    with pytest.raises(InputError, match=r"no stuck bead.*lowest: bead \d+: .* px.*reference_beads=\[ids\]"):
        correct_drift(ds)


def test_two_references_warn_and_lazy_variables_stay_lazy(drifting):
    ds, _ = drifting
    out = correct_drift(ds.isel(frame=slice(0, 1000)).chunk({"frame": 500}), [2, 7])
    assert "cannot be told" in json.loads(out.attrs["drift"])["warnings"][0]
    assert out["x_corrected"].chunks is not None
