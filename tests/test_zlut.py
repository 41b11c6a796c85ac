"""Z-LUTs from calibration archives (magtrack_dask.zlut), local threaded scheduler."""


import numpy as np
import pytest
import zarr

from magtrack_dask.io.archive import create_archive, open_archive
from magtrack_dask.sim.beads import make_zlut
from magtrack_dask.tracking import track
from magtrack_dask.zlut import (
    CALIBRATION_Z,
    build_zlut,
    calibration_steps,
    load_zlut,
    save_zlut,
)

from tests.conftest import CALIBRATION_STEPS, ROI


def test_calibration_steps_group_round_and_skip_nan():
    z = np.array([100.2, 99.8, np.nan, 150.0, 150.4, 149.9, 100.1])
    z_ref, step = calibration_steps(z)
    np.testing.assert_allclose(z_ref, [(100.2 + 99.8 + 100.1) / 3, (150.0 + 150.4 + 149.9) / 3])
    assert step.tolist() == [0, 0, -1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="z_resolution_nm"):
        calibration_steps(z, 0)


def test_build_matches_the_ideal_lut_and_tracks_z(calibration, archives, zlut):
    lut = build_zlut(calibration, frames_per_task=40)
    assert lut.shape == (3, 1 + ROI // 2, len(CALIBRATION_STEPS))
    np.testing.assert_allclose(lut[:, 0, :], np.broadcast_to(CALIBRATION_STEPS, (3, len(CALIBRATION_STEPS))), atol=1e-9)
    ideal = make_zlut(CALIBRATION_STEPS, n_pixels=ROI, oversample_frames=16)
    for b in range(3):  # the measured profiles look like the noiseless model's (rows 2.. are matched)
        r = np.corrcoef(lut[b, 2:].ravel(), ideal[2:].ravel())[0, 1]
        assert r > 0.999, (b, r)
    # the same chunking-independent answer with other task sizes
    np.testing.assert_allclose(build_zlut(calibration, frames_per_task=200), lut, rtol=1e-12)
    # z of the measurement archive, against the truth
    ds = track(archives["tyx"], lut).compute()
    err = ds.z.values - zarr.open_group(archives["tyx"])["truth_z"][...]
    assert np.isfinite(err).all()
    assert np.sqrt(np.mean(err**2)) < 40  # nm; the ideal LUT does about as well
    ref = track(archives["tyx"], zlut).compute()
    ref_err = ref.z.values - zarr.open_group(archives["tyx"])["truth_z"][...]
    assert np.sqrt(np.mean(err**2)) < 1.5 * np.sqrt(np.mean(ref_err**2)) + 5


def test_build_takes_the_tracking_options(calibration, archives):
    rois = open_archive(calibration).rois[:2]
    pipeline = {"n auto_conv_multiline_sub_pixel": 3}
    lut = build_zlut(calibration, frames_per_task=40, rois=rois, pipeline=pipeline, min_symmetry=0.3)
    assert lut.shape == (2, 1 + ROI // 2, len(CALIBRATION_STEPS))  # the two beads of the ROI table given
    ds = track(archives["tyx"], lut, rois=rois, pipeline=pipeline).compute()
    err = ds.z.values - zarr.open_group(archives["tyx"])["truth_z"][:2]
    assert np.isfinite(err).all() and np.sqrt(np.mean(err**2)) < 60  # nm
    oversampled = build_zlut(calibration, frames_per_task=40, pipeline={"radial_profile": {"oversample": 2}})
    assert oversampled.shape == (3, 1 + ROI, len(CALIBRATION_STEPS))  # profiles oversampled x2
    with pytest.raises(ValueError, match="zlut has 32 profile bins but the profiles of 32 px ROIs have 16"):
        track(archives["tyx"], oversampled)  # tracked without the LUT's options: refused
    with pytest.raises(TypeError):
        build_zlut(calibration, radial_profile={"oversample": 2})  # stage options go in pipeline=


def test_save_load_and_track_accepts_the_file(calibration, archives, tmp_path):
    lut = build_zlut(calibration)
    path = str(tmp_path / "zlut.zarr")
    save_zlut(path, lut, source=calibration, roi_size_px=ROI, attrs={"note": "test"})
    got, attrs = load_zlut(path)
    np.testing.assert_array_equal(got, lut)
    assert attrs["z_units"] == "nm" and attrs["source"] == calibration and attrs["roi_size_px"] == ROI
    assert attrs["n_bins"] == ROI // 2 and attrs["note"] == "test"
    assert zarr.open_array(path).metadata.dimension_names == ("bead", "row", "ref")
    # track() opens the file itself (zlut.load_zlut), with the same numbers
    np.testing.assert_array_equal(track(archives["tyx"], path).z.values, track(archives["tyx"], lut).z.values)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_zlut(path, lut)
    save_zlut(path, lut[0], overwrite=True)  # one shared LUT, 2-D
    assert load_zlut(path)[0].shape == lut.shape[1:]
    np.save(tmp_path / "zlut.npy", lut)
    np.testing.assert_array_equal(load_zlut(tmp_path / "zlut.npy")[0], lut)
    g = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    g.create_array("zlut", data=lut)
    np.testing.assert_array_equal(load_zlut(tmp_path / "group.zarr")[0], lut)


def test_bad_calibrations_raise_clear_errors(archives, tmp_path):
    with pytest.raises(ValueError, match="no 'calibration_z' array: not a calibration archive"):
        build_zlut(archives["tyx"])
    with pytest.raises(ValueError, match="calibration z has shape"):
        build_zlut(archives["tyx"], z=np.zeros(3))
    with pytest.raises(ValueError, match="at least 2 focus steps"):
        build_zlut(archives["tyx"], z=np.full(45, 1000.0))
    # a bead that is never found in a step (a blank frame: nothing to track)
    path = str(tmp_path / "blank.zarr")
    g = create_archive(path, np.full((4, 1, ROI, ROI), 1000, np.uint16), layout="tbyx")
    z = g.create_array(CALIBRATION_Z, shape=(4,), dtype="float64")
    z[...] = [1000, 1000, 1500, 1500]
    with pytest.raises(ValueError, match="bead 0 was not found in any frame of the step at z = 1000.0 nm"):
        build_zlut(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_zlut(tmp_path / "missing.zarr")
    with pytest.raises(ValueError, match="shape"):
        save_zlut(tmp_path / "bad.zarr", np.zeros((2, 5)))


def test_save_refuses_to_overwrite_what_is_not_a_store(zlut, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"path: refusing to overwrite .*notes: it is a folder, not a Zarr store"):
        save_zlut(folder, zlut, overwrite=True)
    assert (folder / "keep.txt").read_text() == "keep me"
    save_zlut(tmp_path / "lut.zarr", zlut)
    save_zlut(tmp_path / "lut.zarr", zlut[:, :5], overwrite=True)  # a Z-LUT store may be replaced
    assert load_zlut(tmp_path / "lut.zarr")[0].shape == zlut[:, :5].shape


def test_the_lut_records_its_method_and_tracking_refuses_another(calibration, archives, tmp_path):
    lut = build_zlut(calibration, frames_per_task=40)  # the workflow's default method
    path = str(tmp_path / "accurate.zarr")
    save_zlut(path, lut, source=calibration)
    assert load_zlut(path)[1]["method"] == "accurate"
    assert track(archives["tyx"], path).attrs["method"] == "accurate"
    with pytest.raises(ValueError, match=r"accurate\.zarr was built with method 'accurate'; tracking with method "
                                         r"'magtrack' needs a Z-LUT built with 'magtrack'"):
        track(archives["tyx"], path, method="magtrack")
    old = str(tmp_path / "old.zarr")  # a Z-LUT file from before methods were recorded: the magtrack method's
    zarr.create_array(store=old, data=lut, zarr_format=3)
    with pytest.raises(ValueError, match="built with method 'magtrack'; tracking with method 'accurate'"):
        track(archives["tyx"], old)
    assert track(archives["tyx"], old, method="magtrack").attrs["method"] == "magtrack"
    np.save(tmp_path / "any.npy", lut)  # tables without metadata go with any method
    track(archives["tyx"], str(tmp_path / "any.npy"), method="magtrack")
    with pytest.raises(ValueError, match="method must be one of 'magtrack', 'accurate', 'fit'; got 'qi'"):
        save_zlut(path, lut, overwrite=True, method="qi")
    with pytest.raises(ValueError, match="cannot make the 'fit' method's image model"):
        build_zlut(calibration, method="fit")


def test_accurate_lut_tracks_z_better_than_the_magtrack_one(calibration, archives):
    truth = zarr.open_group(archives["tyx"])["truth_z"][...]
    rms = {}
    for method in ("magtrack", "accurate"):
        lut = build_zlut(calibration, frames_per_task=40, method=method)
        z = track(archives["tyx"], lut, method=method).z.values
        assert np.isfinite(z).all()
        rms[method] = np.sqrt(np.mean((z - truth) ** 2))
    assert rms["accurate"] < 0.2 * rms["magtrack"], rms  # 2 nm against 40 nm when written
