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
