"""resolve_zlut: a Z-LUT checked against the beads and bins of the input."""

import numpy as np
import pytest

from magtrack_dask.tracking.lut import resolve_zlut

from tests.conftest import ROI

N_BINS = ROI // 2


def test_kinds_and_sources(zlut, tmp_path):
    assert resolve_zlut(None, n_beads=3, n_bins=N_BINS, roi_size=ROI) == (None, "none")
    shared = resolve_zlut(zlut, n_beads=3, n_bins=N_BINS, roi_size=ROI)
    assert shared.kind == "shared" and shared.source == "array" and shared.table.dtype == np.float64
    np.testing.assert_array_equal(shared.table, zlut)
    per_bead = resolve_zlut(np.stack([zlut] * 3), n_beads=3, n_bins=N_BINS, roi_size=ROI)
    assert per_bead.kind == "per-bead"
    path = tmp_path / "lut.npy"
    np.save(path, zlut)
    assert resolve_zlut(path, n_beads=1, n_bins=N_BINS, roi_size=ROI).source == str(path)


def test_refused(zlut):
    def check(table, n_beads=3):
        return resolve_zlut(table, n_beads=n_beads, n_bins=N_BINS, roi_size=ROI)

    with pytest.raises(ValueError, match="zlut holds 2 per-bead tables but the source has 3 beads"):
        check(np.stack([zlut, zlut]))
    with pytest.raises(ValueError, match=f"zlut has 10 profile bins but the profiles of {ROI} px ROIs have 16"):
        check(zlut[:11])
    with pytest.raises(ValueError, match=r"zlut must be 2-D \(1 \+ n_bins, n_ref\) or 3-D per bead"):
        check(zlut[None, None])
    bad = np.stack([zlut] * 3)
    bad[2, 4, 1] = np.inf
    with pytest.raises(ValueError, match=r"zlut\[2\] contains NaN or inf \(at row 4, column 1\)"):
        check(bad)
    with pytest.raises(TypeError, match="zlut must be real numbers"):
        check(zlut.astype(complex))


def test_fit_models(fit_models, zlut, fit_zlut_path):
    def check(models, n_beads=3, roi_size=ROI, method="fit"):
        return resolve_zlut(models, n_beads=n_beads, n_bins=N_BINS, roi_size=roi_size, method=method)

    per_bead = check(fit_models)
    assert per_bead.kind == "per-bead" and per_bead.source == "array"
    assert isinstance(per_bead.table, tuple) and all(a is b for a, b in zip(per_bead.table, fit_models))
    shared = check(fit_models[0], n_beads=1)
    assert shared.kind == "shared" and shared.table is fit_models[0]
    from_file = check(fit_zlut_path)
    assert from_file.kind == "per-bead" and from_file.source == fit_zlut_path
    np.testing.assert_array_equal(from_file.table[2].coef, fit_models[2].coef)

    with pytest.raises(ValueError, match="method 'fit' needs a Z-LUT: the image model it fits to each ROI"):
        check(None)
    with pytest.raises(ValueError, match="zlut holds 2 per-bead models but the source has 3 beads"):
        check(fit_models[:2])
    with pytest.raises(ValueError, match=r"zlut\[0\] is a model of 32 px images but the ROIs are 40 px"):
        check(fit_models, roi_size=40)
    with pytest.raises(ValueError, match=r"method 'fit' needs image models .*; got a table of shape \(17, 53\)"):
        check(zlut)
    with pytest.raises(ValueError, match=r"zlut \(image models, RadialModel\) was built with method 'fit'; "
                                         r"tracking with method 'accurate'"):
        check(fit_models, method="accurate")
