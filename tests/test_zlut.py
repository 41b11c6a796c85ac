"""Z-LUTs from calibration archives (magtrack_dask.zlut), local threaded scheduler."""


import numpy as np
import pytest
import zarr

from magtrack_dask.core.fit import model_from_stack
from magtrack_dask.core.radial_model import RadialModel
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
    with pytest.raises(ValueError, match=r"method='fit' saves image models \(a RadialModel or a list of them"):
        save_zlut(path, lut, overwrite=True, method="fit")  # a table is no fit model


def test_accurate_lut_tracks_z_better_than_the_magtrack_one(calibration, archives):
    truth = zarr.open_group(archives["tyx"])["truth_z"][...]
    rms = {}
    for method in ("magtrack", "accurate"):
        lut = build_zlut(calibration, frames_per_task=40, method=method)
        z = track(archives["tyx"], lut, method=method).z.values
        assert np.isfinite(z).all()
        rms[method] = np.sqrt(np.mean((z - truth) ** 2))
    assert rms["accurate"] < 0.2 * rms["magtrack"], rms  # 2 nm against 40 nm when written


# -- method 'fit': image models -------------------------------------------------------------


def assert_same_model(got, want):
    assert isinstance(got, RadialModel)
    np.testing.assert_array_equal(got.z, want.z)
    np.testing.assert_array_equal(got.coef, want.coef)
    assert (got.spacing, got.z_smoothing, got.n_pixels) == (want.spacing, want.z_smoothing, want.n_pixels)


def test_fit_models_are_the_cores_on_each_beads_calibration_frames(calibration, fit_models):
    arch = open_archive(calibration)
    frames, z = arch.data.compute(), arch.group[CALIBRATION_Z][...]
    assert len(fit_models) == 3
    for b, (top, bottom, left, right) in enumerate(arch.rois):
        model = fit_models[b]
        # planes at the steps' z, images of the ROI's size
        np.testing.assert_allclose(model.z, CALIBRATION_STEPS, atol=1e-9)
        assert model.n_pixels == ROI
        # every frame holds its bead: the model is model_from_stack of them all
        stack = np.ascontiguousarray(frames[:, top:bottom, left:right].transpose(1, 2, 0), dtype=np.float64)
        want = model_from_stack(stack, z)
        np.testing.assert_allclose(model.z, want.z, rtol=0, atol=1e-9)
        np.testing.assert_allclose(model.coef, want.coef, rtol=1e-9, atol=1e-9 * np.abs(want.coef).max())
        assert (model.spacing, model.z_smoothing) == (want.spacing, want.z_smoothing)


def test_fit_models_save_load_roundtrip(fit_models, calibration, tmp_path):
    path = tmp_path / "fit.zarr"
    group = save_zlut(path, fit_models, source=calibration, roi_size_px=ROI, attrs={"note": "test"})
    assert isinstance(group, zarr.Group)
    got, attrs = load_zlut(path)
    assert isinstance(got, list) and len(got) == 3
    for g, m in zip(got, fit_models):
        assert_same_model(g, m)
    assert attrs["method"] == "fit" and attrs["n_beads"] == 3 and attrs["source"] == calibration
    assert attrs["roi_size_px"] == ROI and attrs["z_units"] == "nm" and attrs["note"] == "test"
    # models of other sizes (the beads' coefficients differ in number) are padded and cut back
    other = RadialModel(fit_models[0].z[:5], fit_models[0].coef[:5, :40], 0.5, 0.0, None)
    save_zlut(path, [fit_models[1], other], overwrite=True)
    two, _ = load_zlut(path)
    assert_same_model(two[0], fit_models[1])
    assert_same_model(two[1], other)
    # one model for every bead
    save_zlut(path, fit_models[2], overwrite=True)
    shared, attrs = load_zlut(path)
    assert_same_model(shared, fit_models[2])
    assert attrs["n_beads"] is None and attrs["method"] == "fit"
    # a table may replace models and models a table: nothing of the older store remains
    table = np.vstack([CALIBRATION_STEPS, np.ones((ROI // 2, len(CALIBRATION_STEPS)))])
    save_zlut(path, table, overwrite=True)
    np.testing.assert_array_equal(load_zlut(path)[0], table)
    save_zlut(path, fit_models, overwrite=True)
    assert isinstance(load_zlut(path)[0], list) and sorted(zarr.open_group(path).array_keys()) == [
        "coef", "n_coef", "n_pixels", "n_planes", "spacing", "z", "z_smoothing"]
    with pytest.raises(ValueError, match=r"zlut holds image models \(RadialModel\) of method 'fit'; "
                                         r"got method='accurate'"):
        save_zlut(tmp_path / "other.zarr", fit_models, method="accurate")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_zlut(path, fit_models)
    # in memory, load_zlut gives the models back as they are
    assert all(a is b for a, b in zip(load_zlut(fit_models)[0], fit_models))
    assert load_zlut(fit_models[0])[0] is fit_models[0]


def test_fit_needs_four_found_steps(archives, tmp_path):
    with pytest.raises(ValueError, match="method 'fit' needs at least 4 focus steps .*; the calibration has 3"):
        build_zlut(archives["tyx"], z=np.repeat([1000.0, 1500.0, 2000.0], 15), method="fit")
    path = str(tmp_path / "blank.zarr")  # a bead never found: blank frames
    g = create_archive(path, np.full((4, 1, ROI, ROI), 1000, np.uint16), layout="tbyx")
    z = g.create_array(CALIBRATION_Z, shape=(4,), dtype="float64")
    z[...] = [1000, 1500, 2000, 2500]
    with pytest.raises(ValueError, match="bead 0 was not found in any frame of the step at z = 1000.0 nm"):
        build_zlut(path, method="fit")
    with pytest.raises(ValueError, match="pipeline stage options apply to method='magtrack' only"):
        build_zlut(path, method="fit", pipeline={"n auto_conv_multiline_sub_pixel": 3})


def test_fit_luts_and_tables_refuse_each_others_method(calibration, archives, fit_zlut_path, fit_models, tmp_path):
    with pytest.raises(ValueError, match=r"fit\.zarr was built with method 'fit'; tracking with method 'accurate' "
                                         r"needs a Z-LUT built with 'accurate'"):
        track(archives["tyx"], fit_zlut_path)
    with pytest.raises(ValueError, match=r"zlut \(image models, RadialModel\) was built with method 'fit'; "
                                         r"tracking with method 'magtrack'"):
        track(archives["tyx"], fit_models, method="magtrack")
    path = str(tmp_path / "accurate.zarr")
    lut = np.vstack([CALIBRATION_STEPS, np.ones((ROI // 2, len(CALIBRATION_STEPS)))])
    save_zlut(path, lut)
    with pytest.raises(ValueError, match=r"accurate\.zarr was built with method 'accurate'; tracking with method "
                                         r"'fit' needs a Z-LUT built with 'fit' \(zlut build --method fit\)"):
        track(archives["tyx"], path, method="fit")
    with pytest.raises(ValueError, match=r"method 'fit' needs image models .*; got a table of shape \(17, 45\)"):
        track(archives["tyx"], lut, method="fit")  # a table without metadata
    with pytest.raises(ValueError, match="method 'fit' needs a Z-LUT: the image model it fits to each ROI"):
        track(archives["tyx"], method="fit")
