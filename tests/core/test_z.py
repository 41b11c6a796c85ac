"""lookup_z: behaviour from first principles, Z-LUT validation and (no) mutation.

Choices documented here:

* z is NaN where the best match lies within ``n_local // 2`` references of
  either end of the LUT (beads at or beyond the LUT's ends).
* The LUT's z row may decrease as well as increase, strictly; row 1 (the
  central bin, never correlated) may be NaN; everything else must be finite.
* A bin-count mismatch raises ValueError naming both sizes.
* With fewer references than ``n_local`` the best match is returned unrefined,
  with a UserWarning.
* NaN bins inside a profile count as zero after centring (as in the reference's
  pearson); an all-NaN
  profile gives NaN z.

Agreement with the reference package is in test_conformance.py.
"""

import warnings

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.sim.beads import make_zlut, render_beads


@pytest.fixture(scope="module")
def zlut():
    return make_zlut(np.arange(500.0, 5001.0, 50.0), n_pixels=32)


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_lut_columns_give_their_own_z(zlut):
    """Each reference profile matches itself: its own z to within the
    asymmetry of the correlation peak, which grows with the fitted width
    (measured at most 2.0, 5.1, 9.1 and 14.0 nm for n_local 3, 5, 7, 9, on a
    50 nm step, near the LUT's low end), NaN near the ends."""
    for n_local, bound in ((3, 3.0), (5, 6.0), (7, 10.0), (9, 15.0)):
        z = md.lookup_z(zlut[1:], zlut, n_local=n_local)
        half = n_local // 2
        inner = slice(half + 1, -half - 1)
        np.testing.assert_allclose(z[inner], zlut[0, inner], rtol=0, atol=bound)
        assert np.isnan(z[: half + 1]).all() and np.isnan(z[-half - 1 :]).all()


def test_between_two_references(zlut):
    """A bead between two reference planes lands between them."""
    z_true = np.array([1025.0, 2210.0, 3490.0])
    c = 15.5
    stack = render_beads(np.full(3, c), np.full(3, c), z_true, n_pixels=32)
    p = md.radial_profile(stack, np.full(3, c), np.full(3, c))
    z = md.lookup_z(p, zlut)
    assert np.all(np.abs(z - z_true) < 15.0), z - z_true


def test_decreasing_lut_gives_the_same_z(zlut):
    """A strictly decreasing z row is accepted and gives the same z."""
    p = zlut[1:, 20:70:7] * 0.9 + zlut[1:, 21:71:7] * 0.1
    z_up = md.lookup_z(p, zlut)
    z_down = md.lookup_z(p, zlut[:, ::-1].copy())
    np.testing.assert_allclose(z_down, z_up, rtol=1e-12)


def test_beads_beyond_the_lut_are_nan(zlut):
    c = 15.5
    z_true = np.array([300.0, 520.0, 2500.0, 4990.0, 5400.0])
    stack = render_beads(np.full(5, c), np.full(5, c), z_true, n_pixels=32)
    z = md.lookup_z(md.radial_profile(stack, np.full(5, c), np.full(5, c)), zlut)
    np.testing.assert_array_equal(np.isnan(z), [True, True, False, True, True])


def test_row_one_is_ignored(zlut):
    """Row 1 (the central bin) is not correlated: NaN there is allowed and changes nothing."""
    p = zlut[1:, 30:40].copy()
    lut = zlut.copy()
    lut[1] = np.nan
    np.testing.assert_allclose(md.lookup_z(p, lut), md.lookup_z(p, zlut), rtol=1e-12)
    p[0] = np.nan  # the profiles' first bin is ignored too
    np.testing.assert_allclose(md.lookup_z(p, zlut), md.lookup_z(zlut[1:, 30:40], zlut), rtol=1e-12)


def test_nan_in_profiles(zlut):
    """Also: no RuntimeWarning ('Mean of empty slice') for an all-NaN profile,
    which is what radial_profile gives for a lost bead (autouse filter turns
    warnings into errors)."""
    p = zlut[1:, 30:40].copy()
    p[5, 2] = np.nan  # one bin: counts as zero after centring, as in the reference's pearson
    p[:, 7] = np.nan  # all bins: no z
    z = md.lookup_z(p, zlut)
    assert np.isfinite(z[2]) and abs(z[2] - zlut[0, 32]) < 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import magtrack

        reference = magtrack.lookup_z(p[:, [2]], zlut)
    np.testing.assert_allclose(z[2], reference[0], rtol=1e-9)
    assert np.isnan(z[7])
    keep = np.array([i not in (2, 7) for i in range(10)])
    np.testing.assert_allclose(z[keep], md.lookup_z(zlut[1:, 30:40], zlut)[keep], rtol=1e-12)


def test_fewer_references_than_n_local(zlut):
    lut = zlut[:, 40:44]  # 4 references
    with pytest.warns(UserWarning, match="n_local"):
        z = md.lookup_z(zlut[1:, 40:44], lut, n_local=5)
    np.testing.assert_array_equal(z, lut[0])  # unrefined: the best match itself
    md.lookup_z(zlut[1:, 40:44], lut, n_local=3)  # enough references: no warning


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_result_is_float64_and_inputs_unchanged(zlut, dtype):
    p = zlut[1:, 10:30].astype(dtype)
    lut = zlut.astype(dtype)
    p0, lut0 = p.copy(), lut.copy()
    z = md.lookup_z(p, lut)
    assert z.dtype == np.float64 and z.shape == (20,)
    assert np.array_equal(p, p0, equal_nan=True) and np.array_equal(lut, lut0, equal_nan=True)


# ------------------------------------------------------------------ bad input


def test_bin_mismatch_names_both_sizes(zlut):
    with pytest.raises(ValueError, match=r"(?s)\b20\b.*\b16\b"):
        md.lookup_z(np.ones((20, 3)), zlut)
    with pytest.raises(ValueError, match=r"(?s)\b15\b.*\b16\b"):
        md.lookup_z(zlut[2:], zlut)


def _bad(zlut, kind):
    lut = zlut.copy()
    if kind == "decreasing-then-increasing":
        lut[0, 10] = lut[0, 8]
    elif kind == "duplicate":
        lut[0, 11] = lut[0, 10]
    elif kind == "nan-z":
        lut[0, 3] = np.nan
    elif kind == "inf-z":
        lut[0, -1] = np.inf
    elif kind == "nan-profile":
        lut[2, 5] = np.nan
    elif kind == "nan-last-row":
        lut[-1, 50] = np.nan
    elif kind == "1-D":
        lut = lut[0]
    elif kind == "3-D":
        lut = lut[None]
    elif kind == "one-reference":
        lut = lut[:, :1]
    elif kind == "complex":
        lut = lut.astype(complex)
    return lut


@pytest.mark.parametrize(
    "kind",
    [
        "decreasing-then-increasing",
        "duplicate",
        "nan-z",
        "inf-z",
        "nan-profile",
        "nan-last-row",
        "1-D",
        "3-D",
        "one-reference",
    ],
)
def test_bad_zlut(zlut, kind):
    with pytest.raises(ValueError, match="zlut"):
        md.lookup_z(zlut[1:, :4], _bad(zlut, kind))


def test_complex_zlut(zlut):
    with pytest.raises(TypeError, match="zlut"):
        md.lookup_z(zlut[1:, :4], _bad(zlut, "complex"))


@pytest.mark.parametrize("n_local", [4, 8, 1, 0, -5])
def test_bad_n_local(zlut, n_local):
    with pytest.raises(ValueError, match="n_local"):
        md.lookup_z(zlut[1:, :4], zlut, n_local=n_local)


def test_bad_profiles(zlut):
    with pytest.raises(ValueError, match="profiles"):
        md.lookup_z(zlut[1:, 0], zlut)
