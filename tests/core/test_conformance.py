"""Conformance: every spec function of magtrack_dask against the reference ``magtrack`` 1.0.0.

Both packages run on the same simulated stacks (64 and 65 px frames, float32 and
float64, beads up to 3 px off-centre at sub-pixel positions, z from 0.5 to 5 um,
Poisson noise). Agreement is required to 1e-6 px (positions, absolute) or 1e-6
relative (profiles, z and other values), with identical NaN patterns, except for
the deliberate differences of design.md section 2, which are encoded here exactly:

* ``center_of_mass`` defaults to ``background='none'`` (the reference: 'median');
* ``fft_profile_with_center(stack, x, y)`` equals the reference called with
  ``(stack, y, x)`` (the reference centres its window at row=x, column=y);
* centres that are NaN or outside the frame give NaN (tested in test_xy.py and
  test_profiles.py; the reference raises IndexError or wraps around);
* ``lookup_z`` / ``stack_to_xyzp`` raise ValueError on a bin-count mismatch
  (the reference's ``stack_to_xyzp`` warns and returns NaN).

float32 stacks: our positions are compared with the reference run on
``stack.astype(float64)`` (the same pixel values, no float32 rounding on its
side) at the same 1e-6 px tolerance, except the sub-pixel auto-convolutions:
they convolve float32 lines in float32, as the reference does, and so carry
float32 rounding of up to ~1.2e-6 px with 3-point fits (~5e-7 with the default
5), as much as the reference's own float32 results differ from its float64 ones
(measured on these stacks: 1.15e-6 vs 1.18e-6): ``F32_POS_ATOL``.
float32 profiles are documented per test below.
"""

import functools
import warnings

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.sim.beads import make_zlut, render_beads

N_IMAGES = 60
POS_ATOL = 1e-6  # px
F32_POS_ATOL = 2e-6  # px, sub-pixel auto-convolution of float32 stacks (see above)
RTOL = 1e-6

# (n_pixels, dtype): 64 and 65 px frames, float64 and float32 stacks
CASES = [(64, np.float64), (64, np.float32), (65, np.float64), (65, np.float32)]
CASE_IDS = [f"{n}px-{np.dtype(dt).name}" for n, dt in CASES]


@pytest.fixture(scope="module")
def ref():
    """The reference package, imported without its warnings and without keeping
    its global ``np.seterr(divide='ignore', invalid='ignore')``."""
    saved = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("magtrack")
        from magtrack import core as module  # holds the private QI helpers too
    np.seterr(**saved)
    return module


def ref_call(fn, *args, **kwargs):
    """Call the reference quietly (it divides by zero on purpose in places)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def _simulated(n_px):
    rng = np.random.default_rng(1000 + n_px)
    c = (n_px - 1) / 2
    x = c + rng.uniform(-3, 3, N_IMAGES)
    y = c + rng.uniform(-3, 3, N_IMAGES)
    z = rng.uniform(500, 5000, N_IMAGES)
    stack = render_beads(x, y, z, n_pixels=n_px, photons=3000, seed=n_px)
    # starting estimates within 0.6 px of the truth (always inside the frame)
    x0 = x + rng.uniform(-0.6, 0.6, N_IMAGES)
    y0 = y + rng.uniform(-0.6, 0.6, N_IMAGES)
    return x, y, z, stack, x0, y0


@functools.lru_cache(maxsize=None)
def _zlut(n_px):
    # narrower than the simulated z range (500..5000): beads beyond either end give NaN
    return make_zlut(np.arange(1000.0, 4001.0, 100.0), n_pixels=n_px)


class Case:
    def __init__(self, n_px, dtype):
        x, y, z, stack, x0, y0 = _simulated(n_px)
        self.n_px, self.dtype = n_px, np.dtype(dtype)
        self.x, self.y, self.z = x, y, z
        self.x0, self.y0 = x0, y0
        self.stack = stack.astype(dtype)  # our input
        self.stack64 = self.stack.astype(np.float64)  # the same values, for the reference
        self.zlut = _zlut(n_px)

    def ours(self):
        """A fresh copy of our input stack."""
        return self.stack.copy()

    def theirs(self):
        """A fresh float64 copy with the same pixel values, for the reference."""
        return self.stack64.copy()


@pytest.fixture(scope="module", params=CASES, ids=CASE_IDS)
def case(request):
    return Case(*request.param)


@pytest.fixture(scope="module", params=[np.float64, np.float32], ids=["float64", "float32"])
def case64(request):
    """64 px frames only: the FFT profiles need an even width."""
    return Case(64, request.param)


def _sub_pixel_atol(case):
    return POS_ATOL if case.dtype == np.float64 else F32_POS_ATOL


def assert_positions(ours, theirs, atol=POS_ATOL):
    ours = np.asarray(ours)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol, equal_nan=True)


def assert_rel(ours, theirs, rtol=RTOL):
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0, equal_nan=True)


def assert_conv(ours, theirs):
    # Convolutions cross zero: relative to the largest value of each curve.
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = np.nanmax(np.abs(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=RTOL * scale, equal_nan=True)


# ------------------------------------------------------------------ centre of mass


@pytest.mark.parametrize("background", ["none", "mean", "median"])
def test_center_of_mass(ref, case, background):
    x, y = md.center_of_mass(case.ours(), background=background)
    xr, yr = ref_call(ref.center_of_mass, case.theirs(), background=background)
    assert_positions(x, xr)
    assert_positions(y, yr)


def test_center_of_mass_default_is_none(ref, case):
    """Deliberate difference: our default background is 'none' (the spec's), the reference's 'median'."""
    x, y = md.center_of_mass(case.ours())
    xr, yr = ref_call(ref.center_of_mass, case.theirs(), background="none")
    assert_positions(x, xr)
    assert_positions(y, yr)
    xm, _ = ref_call(ref.center_of_mass, case.theirs())  # the reference's default
    assert np.abs(x - xm).max() > 1e-3  # the defaults really differ on these stacks


# ------------------------------------------------------------------ auto-convolution


def test_auto_conv(ref, case):
    x, y = md.auto_conv(case.ours(), case.x0, case.y0)
    xr, yr = ref_call(ref.auto_conv, case.theirs(), case.x0, case.y0)
    assert_positions(x, xr)
    assert_positions(y, yr)


def test_auto_conv_return_conv(ref, case):
    col_max, row_max, col_con, row_con = md.auto_conv(case.ours(), case.x0, case.y0, return_conv=True)
    rc = ref_call(ref.auto_conv, case.theirs(), case.x0, case.y0, return_conv=True)
    n, k = case.n_px, N_IMAGES
    assert col_con.shape == (n, k) and row_con.shape == (k, n)
    np.testing.assert_array_equal(col_max, rc[0])
    np.testing.assert_array_equal(row_max, rc[1])
    assert_conv(col_con, rc[2])
    assert_conv(row_con, rc[3])


@pytest.mark.parametrize("n_local", [3, 5, 7])
def test_auto_conv_sub_pixel(ref, case, n_local):
    x, y = md.auto_conv_sub_pixel(case.ours(), case.x0, case.y0, n_local=n_local)
    xr, yr = ref_call(ref.auto_conv_sub_pixel, case.theirs(), case.x0, case.y0, n_local=n_local)
    assert_positions(x, xr, _sub_pixel_atol(case))
    assert_positions(y, yr, _sub_pixel_atol(case))


@pytest.mark.parametrize("line_ratio", [0.05, 0.1, 0.2])
def test_auto_conv_multiline(ref, case, line_ratio):
    x, y = md.auto_conv_multiline(case.ours(), case.x0, case.y0, line_ratio=line_ratio)
    xr, yr = ref_call(ref.auto_conv_multiline, case.theirs(), case.x0, case.y0, line_ratio=line_ratio)
    assert_positions(x, xr)
    assert_positions(y, yr)


def test_auto_conv_multiline_default(ref, case):
    x, y = md.auto_conv_multiline(case.ours(), case.x0, case.y0)
    xr, yr = ref_call(ref.auto_conv_multiline, case.theirs(), case.x0, case.y0)
    assert_positions(x, xr)
    assert_positions(y, yr)


@pytest.mark.parametrize("line_ratio", [0.1, 0.2])
def test_auto_conv_multiline_return_conv(ref, case, line_ratio):
    ours = md.auto_conv_multiline(case.ours(), case.x0, case.y0, line_ratio=line_ratio, return_conv=True)
    theirs = ref_call(
        ref.auto_conv_multiline, case.theirs(), case.x0, case.y0, line_ratio=line_ratio, return_conv=True
    )
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert ours[2].shape == (case.n_px, N_IMAGES) and ours[3].shape == (N_IMAGES, case.n_px)
    assert_conv(ours[2], theirs[2])
    assert_conv(ours[3], theirs[3])


@pytest.mark.parametrize(("line_ratio", "n_local"), [(0.1, 5), (0.05, 3), (0.2, 7), (0.0, 5)])
def test_auto_conv_multiline_sub_pixel(ref, case, line_ratio, n_local):
    x, y = md.auto_conv_multiline_sub_pixel(case.ours(), case.x0, case.y0, line_ratio=line_ratio, n_local=n_local)
    xr, yr = ref_call(
        ref.auto_conv_multiline_sub_pixel, case.theirs(), case.x0, case.y0, line_ratio=line_ratio, n_local=n_local
    )
    assert_positions(x, xr, _sub_pixel_atol(case))
    assert_positions(y, yr, _sub_pixel_atol(case))


def test_auto_conv_multiline_sub_pixel_default(ref, case):
    x, y = md.auto_conv_multiline_sub_pixel(case.ours(), case.x0, case.y0)
    xr, yr = ref_call(ref.auto_conv_multiline_sub_pixel, case.theirs(), case.x0, case.y0)
    assert_positions(x, xr, _sub_pixel_atol(case))
    assert_positions(y, yr, _sub_pixel_atol(case))


# ------------------------------------------------------------------ QI


@pytest.mark.parametrize("axis", [0, 1])
def test_qi_sample_axis_profiles(ref, case, axis):
    ours = md._qi_sample_axis_profiles(case.ours(), case.x0, case.y0, axis)
    theirs = ref_call(ref._qi_sample_axis_profiles, case.theirs(), case.x0, case.y0, axis)
    assert ours.shape == (N_IMAGES, 3)
    assert_rel(ours, theirs)


def test_qi_sample_axis_profiles_near_edges(ref):
    """Centres within a pixel of the frame edge (the spline's 'nearest' extension)."""
    c = Case(64, np.float64)
    x0 = np.resize([0.2, 63.3, 1.6, 62.0, 31.5], N_IMAGES)
    y0 = np.resize([62.9, 0.0, 31.2, 1.4, 0.4], N_IMAGES)
    for axis in (0, 1):
        ours = md._qi_sample_axis_profiles(c.ours(), x0, y0, axis)
        theirs = ref_call(ref._qi_sample_axis_profiles, c.theirs(), x0, y0, axis)
        assert_rel(ours, theirs)


def test_qi_quadratic_offsets(ref):
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(200, 3))
    samples[:5] = [[1.0, 2.0, 3.0]] * 5  # zero curvature: NaN
    samples[5:8] = [[1.0, 1.0, 1.0]] * 3
    samples[8] = [1.0, 1.0 + 1e-17, 1.0]  # curvature below eps
    for s in (samples, samples.astype(np.float32)):
        ours = md._qi_quadratic_offsets(s)
        theirs = ref_call(ref._qi_quadratic_offsets, s)
        assert np.isnan(ours[:9]).all()
        assert_rel(ours, theirs)


def test_qi(ref, case):
    """1e-6 px wherever the QI step is below 2 px (its working range). Where
    the three samples are nearly collinear the step is large (up to ~50 px
    here) and amplifies the spline samples' rounding by 1/curvature**2; there
    the bound is 1e-6 relative to the step."""
    x, y = md.qi(case.ours(), case.x0, case.y0)
    xr, yr = ref_call(ref.qi, case.theirs(), case.x0, case.y0)
    for ours, theirs, start in ((x, xr, case.x0), (y, yr, case.y0)):
        step = np.abs(theirs - start)
        assert ours.dtype == np.float64
        assert (step < 2).sum() > N_IMAGES // 2
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        err = np.abs(ours - theirs)[~np.isnan(theirs)]
        assert (err <= POS_ATOL * np.maximum(step, 1)[~np.isnan(theirs)]).all(), err.max()


# ------------------------------------------------------------------ profiles


@pytest.mark.parametrize("oversample", [1, 2, 3])
def test_radial_profile(ref, case, oversample):
    """float64: 1e-6 relative. float32: our profiles are float32, binned in
    float64 and rounded once, so they are within float32 rounding (rtol 1e-7) of
    the exact means (the reference on the same values in float64), and within
    rtol 2e-6 of the reference on the float32 stack itself, whose ``add.at``
    accumulates in float32 (measured: up to ~5e-7)."""
    ours = md.radial_profile(case.ours(), case.x, case.y, oversample=oversample)
    assert ours.shape == ((case.n_px // 2) * oversample, N_IMAGES)
    assert ours.dtype == case.dtype
    exact = ref_call(ref.radial_profile, case.theirs(), case.x, case.y, oversample=oversample)
    if case.dtype == np.float64:
        assert_rel(ours, exact)
    else:
        assert_rel(ours, exact, rtol=1e-7)
        same_input = ref_call(ref.radial_profile, case.ours(), case.x, case.y, oversample=oversample)
        assert_rel(ours, same_input, rtol=2e-6)


def test_radial_profile_default_oversample(ref, case):
    ours = md.radial_profile(case.ours(), case.x0, case.y0)
    exact = ref_call(ref.radial_profile, case.theirs(), case.x0, case.y0)
    assert_rel(ours, exact, rtol=RTOL if case.dtype == np.float64 else 1e-7)


FFT_PARAMS = [
    dict(),
    dict(oversample=1),
    dict(oversample=2, rmin=0.1, rmax=0.4),
    dict(oversample=4, rmin=0.25, rmax=0.5),
    dict(oversample=3, rmax=0.3),
]


@pytest.mark.parametrize("kwargs", FFT_PARAMS, ids=str)
def test_fft_profile(ref, case64, kwargs):
    """float32 stacks are compared with the reference on the same float32
    input (the same NumPy FFT in single precision). The reference averages the
    magnitudes in float32, ours in float64 (rounded once): measured up to
    3.5e-7 apart, bound 1e-6. (Against the float64 FFT, float32 FFT rounding
    alone reaches 1e-5 in the weak high-frequency bins.)"""
    ours = md.fft_profile(case64.ours(), **kwargs)
    theirs = ref_call(ref.fft_profile, case64.ours(), **kwargs)
    assert ours.shape == theirs.shape
    assert ours.dtype == case64.dtype
    assert_rel(ours, theirs)


@pytest.mark.parametrize("kwargs", FFT_PARAMS + [dict(gaus_factor=4.0), dict(oversample=2, gaus_factor=8.0)], ids=str)
def test_fft_profile_with_center_swapped_convention(ref, case64, kwargs):
    """Deliberate difference: ours(stack, x, y) == reference(stack, y, x); both
    weight the stack in place, with the same weights."""
    ours_stack, their_stack = case64.ours(), case64.ours()
    ours = md.fft_profile_with_center(ours_stack, case64.x0, case64.y0, **kwargs)
    theirs = ref_call(ref.fft_profile_with_center, their_stack, case64.y0, case64.x0, **kwargs)
    rtol = RTOL  # float32 too: same float32 FFT in both, measured 3.5e-7
    assert ours.dtype == case64.dtype
    assert_rel(ours, theirs, rtol=rtol)
    # both mutate their input, identically (up to rounding of the window)
    assert not np.array_equal(ours_stack, case64.stack)
    np.testing.assert_allclose(ours_stack, their_stack, rtol=1e-12 if case64.dtype == np.float64 else 1e-6)
    # the unswapped reference call gives different profiles (beads are off the diagonal)
    unswapped = ref_call(ref.fft_profile_with_center, case64.ours(), case64.x0, case64.y0, **kwargs)
    assert not np.allclose(ours, unswapped, rtol=1e-3, equal_nan=True)


def test_gaussian_window_centre_is_row_y_column_x():
    """Our window peaks at row=y, column=x (axis 0 is y)."""
    stack = np.ones((64, 64, 1))
    md.fft_profile_with_center(stack, np.array([40.0]), np.array([20.0]))
    assert np.unravel_index(np.argmax(stack[:, :, 0]), (64, 64)) == (20, 40)


# ------------------------------------------------------------------ z


@pytest.fixture(scope="module", params=[64, 65], ids=["64px", "65px"])
def profiles_lut(request):
    c = Case(request.param, np.float64)
    profiles = md.radial_profile(c.stack, c.x, c.y)
    return profiles, c.zlut, c.z


@pytest.mark.parametrize("n_local", [5, 7, 9])
def test_lookup_z(ref, profiles_lut, n_local):
    profiles, zlut, z_true = profiles_lut
    ours = md.lookup_z(profiles, zlut, n_local=n_local)
    theirs = ref_call(ref.lookup_z, profiles.copy(), zlut.copy(), n_local=n_local)
    assert ours.dtype == np.float64
    assert_rel(ours, theirs)
    # beads beyond the LUT's range (1000..4000 nm) give NaN, in both
    assert np.isnan(ours[(z_true < 900) | (z_true > 4100)]).all()
    assert np.isfinite(ours[(z_true > 2000) & (z_true < 3200)]).all()


def test_lookup_z_default_n_local(ref, profiles_lut):
    profiles, zlut, _ = profiles_lut
    assert_rel(md.lookup_z(profiles, zlut), ref_call(ref.lookup_z, profiles, zlut))


def test_lookup_z_float32_profiles(ref, profiles_lut):
    """float32 profiles are correlated in float64: equal to the reference on
    the same values in float64."""
    profiles, zlut, _ = profiles_lut
    p32 = profiles.astype(np.float32)
    assert_rel(md.lookup_z(p32, zlut), ref_call(ref.lookup_z, p32.astype(np.float64), zlut))


def test_lookup_z_fewer_refs_than_n_local_warns(ref, profiles_lut):
    profiles, zlut, _ = profiles_lut
    small = zlut[:, 10:15]  # 5 references < n_local=7
    with pytest.warns(UserWarning):
        ours = md.lookup_z(profiles, small)
    with pytest.warns(UserWarning):
        theirs = ref.lookup_z(profiles, small)
    assert_rel(ours, theirs)
    assert np.isin(ours, small[0]).all()  # unrefined: exactly the reference z values


def test_lookup_z_bin_mismatch_raises(ref, profiles_lut):
    """Both raise ValueError; ours names both sizes."""
    profiles, zlut, _ = profiles_lut
    bad = np.vstack([zlut, zlut[-3:]])  # 3 bins too many
    n_bins, n_lut = profiles.shape[0], bad.shape[0] - 1
    with pytest.raises(ValueError, match=rf"(?s){n_bins}.*{n_lut}"):
        md.lookup_z(profiles, bad)
    with pytest.raises(ValueError):
        ref.lookup_z(profiles, bad)


# ------------------------------------------------------------------ helpers


@pytest.mark.parametrize("wdtype", [np.float64, np.float32])
@pytest.mark.parametrize("xdtype", [np.int64, np.uint16, np.int32])
@pytest.mark.parametrize("n_bins", [1, 7, 40])
def test_binmean(ref, wdtype, xdtype, n_bins):
    """float32 weights: the reference sums in float32 (add.at), ours in float64
    and rounds once; measured agreement 1.6e-7, bound 1e-6."""
    rng = np.random.default_rng(n_bins)
    x = rng.integers(0, n_bins + 4, size=(300, 6)).astype(xdtype)  # some >= n_bins: dropped
    x[:, 5] = n_bins + 1  # a column entirely out of range: all NaN
    w = rng.normal(100, 20, size=x.shape).astype(wdtype)
    x_ours, x_theirs = x.copy(), x.copy()
    ours = md.binmean(x_ours, w.copy(), n_bins)
    theirs = ref_call(ref.binmean, x_theirs, w.copy(), n_bins)
    assert ours.shape == (n_bins, 6)
    assert ours.dtype == wdtype
    assert np.isnan(ours[:, 5]).all()
    assert_rel(ours, theirs)
    # both clip x in place, as the spec says
    np.testing.assert_array_equal(x_ours, np.minimum(x, n_bins))
    np.testing.assert_array_equal(x_ours, x_theirs)


def test_pearson(ref):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 12))
    y = x[:, :4] * 2.0 + rng.normal(scale=0.3, size=(30, 4))
    y[3, 1] = np.nan  # NaN entries are ignored by both
    x[7, 2] = np.nan
    ours = md.pearson(x, y)
    assert ours.shape == (4, 12)
    np.testing.assert_allclose(ours, ref_call(ref.pearson, x.copy(), y.copy()), rtol=RTOL, atol=1e-12)
    # float32: both within float32 rounding of the exact r (at most 1 in size),
    # ours from unit columns, theirs from dividing the GEMM: compared with the
    # reference on the same values in float64 (measured 7.9e-8 here, the
    # reference's own float32 r 2.9e-7 from it).
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    exact = ref_call(ref.pearson, x32.astype(np.float64), y32.astype(np.float64))
    np.testing.assert_allclose(md.pearson(x32, y32), exact, rtol=0, atol=1e-6)
    assert np.all(np.abs(md.pearson(x, y)) <= 1 + 1e-12)


def test_gaussian(ref):
    x = np.linspace(-10, 10, 101)
    for mu, sigma in ((0.0, 1.0), (2.5, 3.0), (np.array([1.0]), 0.5)):
        assert_rel(md.gaussian(x, mu, sigma), ref.gaussian(x, mu, sigma))
    assert md.gaussian(np.array([2.0]), 2.0, 1.0)[0] == 1.0


def test_gaussian_2d(ref):
    x = np.arange(20.0)
    y = np.arange(24.0)
    mu_x = np.array([3.2, 10.0, 17.5])
    mu_y = np.array([12.0, 0.5, 20.1])
    ours = md.gaussian_2d(x, y, mu_x, mu_y, 3.0)
    theirs = ref.gaussian_2d(x, y, mu_x, mu_y, 3.0)
    assert ours.shape == (20, 24, 3)
    # products of exponentials vs exponential of sums: far below 1e-6 where it matters
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16, np.uint8])
def test_crop_stack_to_rois(ref, dtype):
    rng = np.random.default_rng(9)
    stack = rng.integers(0, 200, size=(90, 130, 7)).astype(dtype)  # rectangular full frames
    rois = np.array([[0, 32, 0, 32], [10, 42, 50, 82], [58, 90, 98, 130], [30, 62, 40, 72]])
    ours = md.crop_stack_to_rois(stack, rois)
    theirs = ref.crop_stack_to_rois(stack, rois)
    assert ours.shape == (32, 32, 7, 4)
    assert ours.dtype == stack.dtype
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours[:, :, :, 1], stack[10:42, 50:82, :])


@pytest.mark.parametrize("n_local", [3, 5, 7])
@pytest.mark.parametrize("weighted", [True, False])
def test_parabolic_vertex(ref, n_local, weighted):
    rng = np.random.default_rng(n_local)
    n_sets, n_points = 80, 25
    vertex = rng.uniform(1, n_points - 2, n_sets)
    t = np.arange(n_points)
    data = -((t[None, :] - vertex[:, None]) ** 2) * rng.uniform(0.5, 2, (n_sets, 1))
    data += rng.normal(scale=0.5, size=data.shape)
    est = np.round(vertex) + rng.uniform(-0.4, 0.4, n_sets)
    est[:6] = [0.0, 0.4, 1.0, n_points - 1.0, n_points - 2.0, n_points - 1.4]  # near the ends
    ours = md.parabolic_vertex(data, est, n_local, weighted=weighted)
    theirs = ref_call(ref.parabolic_vertex, data.copy(), est.copy(), n_local, weighted=weighted)
    assert_positions(ours, theirs)
    half = n_local // 2
    ends = (np.round(est) <= half) | (np.round(est) >= n_points - 1 - half)
    assert np.isnan(ours[ends]).all() and np.isfinite(ours[~ends]).all()


def test_parabolic_vertex_default_weighted(ref):
    rng = np.random.default_rng(11)
    data = rng.normal(size=(20, 15))
    est = rng.integers(3, 12, 20).astype(float)
    assert_positions(md.parabolic_vertex(data, est, 5), ref_call(ref.parabolic_vertex, data, est, 5))


# ------------------------------------------------------------------ pipelines


def test_stack_to_xyzp(ref, case):
    """float32: positions and z vs the reference on the same values in float64
    (x, y to 1e-6 px; z to 1e-6 relative, measured ~5e-8); profiles float32,
    within float32 rounding of the reference's float64 profiles (rtol 1e-7)."""
    x, y, z, p = md.stack_to_xyzp(case.ours(), case.zlut)
    xr, yr, zr, pr = ref_call(ref.stack_to_xyzp, case.theirs(), case.zlut.copy())
    assert_positions(x, xr)
    assert_positions(y, yr)
    assert z.dtype == np.float64
    assert_rel(z, zr)
    assert p.dtype == case.dtype and p.shape == (case.n_px // 2, N_IMAGES)
    assert_rel(p, pr, rtol=RTOL if case.dtype == np.float64 else 1e-7)
    assert np.isnan(z).any() and np.isfinite(z).sum() > N_IMAGES // 2  # the LUT's ends are exercised


def test_stack_to_xyzp_without_zlut(ref, case):
    x, y, z, p = md.stack_to_xyzp(case.ours())
    xr, yr, zr, pr = ref_call(ref.stack_to_xyzp, case.theirs())
    assert_positions(x, xr)
    assert_positions(y, yr)
    assert z.shape == (N_IMAGES,) and np.isnan(z).all() and np.isnan(zr).all()


def test_stack_to_xyzp_bin_mismatch(ref, case):
    """Deliberate difference: ours raises ValueError naming both sizes; the
    reference warns and returns NaN z."""
    bad = case.zlut[:-2]
    with pytest.raises(ValueError, match=rf"(?s){case.n_px // 2}.*{bad.shape[0] - 1}"):
        md.stack_to_xyzp(case.ours(), bad)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.warns(UserWarning):
            _, _, zr, _ = ref.stack_to_xyzp(case.theirs(), bad)
    assert np.isnan(zr).all()


@functools.lru_cache(maxsize=None)
def _oversampled_zlut(n_px, oversample):
    """An oversampled LUT averaged over 9 sub-pixel positions per z, so that
    no radial bin beyond the first is empty (a LUT of one centred bead has
    empty bins, which lookup_z rejects)."""
    z_ref = np.arange(1000.0, 4001.0, 100.0)
    offsets = np.linspace(-0.4, 0.4, 3)
    dx, dy = (a.ravel() for a in np.meshgrid(offsets, offsets))
    c = (n_px - 1) / 2
    x = np.tile(c + dx, z_ref.size)
    y = np.tile(c + dy, z_ref.size)
    stack = render_beads(x, y, np.repeat(z_ref, dx.size), n_pixels=n_px)
    profiles = md.radial_profile(stack, x, y, oversample=oversample)
    profiles = np.nanmean(profiles.reshape(profiles.shape[0], z_ref.size, dx.size), axis=2)
    assert np.isfinite(profiles[1:]).all()
    return np.vstack([z_ref, profiles])


ADVANCED = {
    "defaults": ({}, 1),
    "stage-options": (
        {
            "n auto_conv_multiline_sub_pixel": 3,
            "auto_conv_multiline_sub_pixel": {"line_ratio": 0.2, "n_local": 7},
            "radial_profile": {"oversample": 2},
        },
        2,
    ),
    "com-mean": ({"center_of_mass": {"background": "mean"}}, 1),
    "com-none-lookup5": ({"center_of_mass": {"background": "none"}, "lookup_z": {"n_local": 5}}, 1),
    "no-refinement": ({"n auto_conv_multiline_sub_pixel": 0, "auto_conv": {}}, 1),
}


@pytest.mark.parametrize("name", list(ADVANCED))
def test_stack_to_xyzp_advanced(ref, case, name):
    """The reference converts to float64 and returns NumPy; ours keeps float32
    profiles for float32 input (rtol 1e-7 against the reference's float64)."""
    options, oversample = ADVANCED[name]
    zlut = case.zlut if oversample == 1 else _oversampled_zlut(case.n_px, oversample)
    x, y, z, p = md.stack_to_xyzp_advanced(case.ours(), zlut, **options)
    xr, yr, zr, pr = ref_call(ref.stack_to_xyzp_advanced, case.theirs(), zlut.copy(), **options)
    for a in (x, y, z, p):
        assert isinstance(a, np.ndarray)
    assert_positions(x, xr)
    assert_positions(y, yr)
    assert_rel(z, zr)
    assert p.dtype == case.dtype and p.shape == ((case.n_px // 2) * oversample, N_IMAGES)
    assert_rel(p, pr, rtol=RTOL if case.dtype == np.float64 else 1e-7)
    assert np.isfinite(z).sum() > N_IMAGES // 3


@pytest.mark.parametrize("fft_options", [None, {"oversample": 2, "rmax": 0.4}], ids=["default", "options"])
def test_stack_to_xyzp_advanced_fft_profile(ref, case64, fft_options):
    """"use fft_profile": x, y as the reference; the profiles are the
    reference's fft_profile_with_center about our centres, swapped
    (deliberate difference), on the caller's values, which stay unchanged."""
    options = {"use fft_profile": True}
    if fft_options:
        options["fft_profile"] = fft_options
    stack = case64.ours()
    x, y, z, p = md.stack_to_xyzp_advanced(stack, None, **options)
    np.testing.assert_array_equal(stack, case64.stack)
    xr, yr, _, _ = ref_call(ref.stack_to_xyzp_advanced, case64.theirs(), None, **options)
    assert_positions(x, xr)
    assert_positions(y, yr)
    assert np.isnan(z).all()
    expected = ref_call(ref.fft_profile_with_center, case64.ours(), y, x, **(fft_options or {}))
    assert p.dtype == case64.dtype
    assert_rel(p, expected)
