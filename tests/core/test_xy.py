"""Lateral localisation (center_of_mass, auto_conv*, qi and its helpers): behaviour
the spec leaves open, input validation and (no) mutation.

Choices documented here (design.md section 2):

* A centre estimate that is NaN, infinite or rounds outside the frame gives NaN
  for that image, never IndexError and never a wrap-around to the other edge;
  the other images' results are unchanged.
* Lines of ``auto_conv_multiline`` that fall outside the frame are left out of
  the average (the reference wraps them around or raises IndexError).
* A NaN pixel propagates to the results of its own image that depend on it
  (and only to that image).

Agreement with the reference package is in test_conformance.py.
"""

import warnings

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.sim.beads import render_beads

N = 12


@pytest.fixture(scope="module")
def beads(simulated_beads):
    return simulated_beads(N, 21)


@pytest.fixture(autouse=True)
def _no_warnings(no_warnings):
    yield


# name -> f(stack, x, y) returning a tuple of per-image results (last axis or axis 0 = image)
REFINERS = {
    "auto_conv": lambda s, x, y: md.auto_conv(s, x, y),
    "auto_conv_sub_pixel": lambda s, x, y: md.auto_conv_sub_pixel(s, x, y),
    "auto_conv_multiline": lambda s, x, y: md.auto_conv_multiline(s, x, y),
    "auto_conv_multiline_wide": lambda s, x, y: md.auto_conv_multiline(s, x, y, line_ratio=0.3),
    "auto_conv_multiline_sub_pixel": lambda s, x, y: md.auto_conv_multiline_sub_pixel(s, x, y),
    "qi": lambda s, x, y: md.qi(s, x, y),
    "qi_samples_axis0": lambda s, x, y: (md._qi_sample_axis_profiles(s, x, y, 0),),
    "qi_samples_axis1": lambda s, x, y: (md._qi_sample_axis_profiles(s, x, y, 1),),
}


def _per_image(a, n):
    """Put the image axis first (conv arrays come as (n_pixels, n_images) or (n_images, n_pixels))."""
    a = np.asarray(a)
    return a if a.shape[0] == n else a.T


# ------------------------------------------------------------------ invalid centres

BAD_CENTRES = [np.nan, -0.6, 63.6, 1e9, -1e9, np.inf, -np.inf]


@pytest.mark.parametrize("name", list(REFINERS))
@pytest.mark.parametrize("axis", ["x", "y"])
def test_invalid_centre_gives_nan_for_that_image_only(beads, name, axis):
    stack, x, y = beads
    k = len(BAD_CENTRES)
    xb, yb = x.copy(), y.copy()
    (xb if axis == "x" else yb)[:k] = BAD_CENTRES
    out = REFINERS[name](stack, xb, yb)
    good = REFINERS[name](stack[:, :, k:].copy(), x[k:], y[k:])
    for a, g in zip(out, good):
        a = _per_image(a, N)
        assert np.isnan(a[:k]).all(), a[:k]
        np.testing.assert_allclose(a[k:], _per_image(g, N - k), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [md.auto_conv, md.auto_conv_multiline])
def test_invalid_centre_return_conv(beads, fn):
    stack, x, y = beads
    xb = x.copy()
    xb[0] = np.nan
    col_max, row_max, col_con, row_con = fn(stack, xb, y, return_conv=True)
    assert np.isnan(col_con[:, 0]).all() and np.isnan(row_con[0]).all()
    assert np.isfinite(col_con[:, 1:]).all() and np.isfinite(row_con[1:]).all()


EDGE_CENTRES = [-0.4, 0.0, 63.0, 63.4]  # round to the first or the last pixel: inside the frame


def _edge_centres(x, y, centre):
    """Image 0 with x at ``centre``, image 1 with y at ``centre``."""
    xb, yb = x.copy(), y.copy()
    xb[0] = centre
    yb[1] = centre
    return xb, yb


def _assert_other_images_unchanged(out, stack, x, y, name):
    """Images 2.. give exactly what they give without the edge centres."""
    for a, g in zip(out, REFINERS[name](stack, x, y)):
        np.testing.assert_array_equal(_per_image(a, N)[2:], _per_image(g, N)[2:])


@pytest.fixture(scope="module")
def ref_core():
    saved = np.geterr()  # the reference calls np.seterr at import: keep ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = pytest.importorskip("magtrack.core")
    np.seterr(**saved)
    return module


# The single-line refiners at edge centres: the reference's value (it computes
# these without error), NaN where it gives NaN (e.g. a sub-pixel peak at the end
# of the convolution).
REFERENCE_AT_THE_EDGE = {
    "auto_conv": lambda m, s, x, y: m.auto_conv(s, x, y),
    "auto_conv_sub_pixel": lambda m, s, x, y: m.auto_conv_sub_pixel(s, x, y),
    "qi": lambda m, s, x, y: m.qi(s, x, y),
    "qi_samples_axis0": lambda m, s, x, y: (m._qi_sample_axis_profiles(s, x, y, 0),),
    "qi_samples_axis1": lambda m, s, x, y: (m._qi_sample_axis_profiles(s, x, y, 1),),
}


@pytest.mark.parametrize("centre", EDGE_CENTRES)
@pytest.mark.parametrize("name", list(REFERENCE_AT_THE_EDGE))
def test_centres_at_the_frame_edge_give_the_reference_value(beads, ref_core, name, centre):
    stack, x, y = beads
    xb, yb = _edge_centres(x, y, centre)
    out = REFINERS[name](stack, xb, yb)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = REFERENCE_AT_THE_EDGE[name](ref_core, stack, xb, yb)
    for a, e in zip(out, expected):
        a, e = _per_image(a, N)[:2], _per_image(e, N)[:2]
        # qi divides by the curvature of three samples, which is nearly 0 at
        # the frame's edge: relative agreement (about 5e-8 there) as well
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6, equal_nan=True)
    _assert_other_images_unchanged(out, stack, x, y, name)


@pytest.mark.parametrize("centre", EDGE_CENTRES)
@pytest.mark.parametrize("axis", [0, 1])
def test_qi_samples_at_the_frame_edge_are_the_spline_samples(beads, centre, axis):
    """The documented equivalent: scipy.ndimage.map_coordinates(order=2,
    mode='nearest') at offsets -1, 0, +1 through the centre; qi is the centre
    plus the vertex offset of those samples."""
    ndimage = pytest.importorskip("scipy.ndimage")
    stack, x, y = beads
    xb, yb = _edge_centres(x, y, centre)
    samples = md._qi_sample_axis_profiles(stack, xb, yb, axis)
    offsets = np.array([-1.0, 0.0, 1.0])
    for i in (0, 1):
        rows = yb[i] + (offsets if axis == 0 else 0.0 * offsets)
        cols = xb[i] + (offsets if axis == 1 else 0.0 * offsets)
        expected = ndimage.map_coordinates(stack[:, :, i], [rows, cols], order=2, mode="nearest")
        np.testing.assert_allclose(samples[i], expected, rtol=1e-9)
    qx, qy = md.qi(stack, xb, yb)
    along, start = (qy, yb) if axis == 0 else (qx, xb)
    np.testing.assert_array_equal(along[:2], start[:2] + md._qi_quadratic_offsets(samples[:2]))


MULTILINE_AT_THE_EDGE = {  # name -> (the single-line refiner, line_ratio it is called with)
    "auto_conv_multiline": (md.auto_conv, 0.05),
    "auto_conv_multiline_wide": (md.auto_conv, 0.3),
    "auto_conv_multiline_sub_pixel": (md.auto_conv_sub_pixel, 0.1),
}


def _mean_of_inside_lines(stack, image, centre, half_lines, axis):
    """``stack`` with the line of ``image`` through ``centre`` (a column for
    axis 1, a row for axis 0) replaced by the mean of the lines within
    ``half_lines`` of it that lie inside the frame."""
    width = stack.shape[0]
    c = int(np.rint(centre))
    lines = [k for k in range(c - half_lines, c + half_lines + 1) if 0 <= k < width]
    out = stack.copy()
    if axis == 1:
        out[:, c, image] = stack[:, lines, image].mean(axis=1)
    else:
        out[c, :, image] = stack[lines, :, image].mean(axis=0)
    return out


@pytest.mark.parametrize("centre", EDGE_CENTRES)
@pytest.mark.parametrize("name", list(MULTILINE_AT_THE_EDGE))
def test_multiline_at_the_frame_edge_averages_the_lines_inside(beads, name, centre):
    """The documented result where the reference raises IndexError (63.0, 63.4)
    or wraps around (-0.4, 0.0): the single-line refiner run on the mean of
    the lines that lie inside the frame (x of each image from its rows, y
    from its columns), NaN where that gives NaN."""
    stack, x, y = beads
    single, line_ratio = MULTILINE_AT_THE_EDGE[name]
    half = int(stack.shape[0] * line_ratio // 2)
    xb, yb = _edge_centres(x, y, centre)
    ox, oy = REFINERS[name](stack, xb, yb)
    for i in (0, 1):
        ex = single(_mean_of_inside_lines(stack, i, yb[i], half, axis=0), xb, yb)[0][i]
        ey = single(_mean_of_inside_lines(stack, i, xb[i], half, axis=1), xb, yb)[1][i]
        np.testing.assert_allclose([ox[i], oy[i]], [ex, ey], rtol=0, atol=1e-9, equal_nan=True)
    assert np.isfinite(ox[0]) and np.isfinite(oy[1])  # the coordinate along the bead's own lines
    _assert_other_images_unchanged((ox, oy), stack, x, y, name)


def test_reference_behaviour_we_avoid(beads):
    """Why the NaN rule exists: the reference raises IndexError past the last pixel."""
    stack, x, y = beads
    saved = np.geterr()  # the reference calls np.seterr at import: keep ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pytest.importorskip("magtrack.core")
    np.seterr(**saved)
    xb = x.copy()
    xb[0] = 64.2
    with pytest.raises(IndexError):
        ref.auto_conv(stack, xb, y)
    assert np.isnan(md.auto_conv(stack, xb, y)[0][0])


# ------------------------------------------------------------------ lines outside the frame


@pytest.mark.parametrize("transpose", [False, True], ids=["near-left", "near-top"])
@pytest.mark.parametrize("edge", [1.0, 1.4, 62.3])
def test_multiline_lines_outside_the_frame_are_left_out(edge, transpose):
    """A bead 1 px from the edge: the lines past the edge are dropped from the
    average. The coordinate along the edge comes out finite and within 0.01 px
    of the truth (at 62.3 the reference raises IndexError; near 0 it wraps
    around to the opposite edge), and it does not depend on the pixels at the
    opposite edge at all."""
    along = 33.3
    z = np.array([1500.0, 3000.0])
    bx, by = (np.full(2, along), np.full(2, edge)) if transpose else (np.full(2, edge), np.full(2, along))
    stack = render_beads(bx, by, z, n_pixels=64)
    pick = 0 if transpose else 1  # the result that should be accurate: x near the top, y near the left
    for fn in (md.auto_conv_multiline_sub_pixel, lambda s, x, y: md.auto_conv_multiline_sub_pixel(s, x, y, line_ratio=0.2)):
        result = fn(stack, bx, by)[pick]
        assert np.isfinite(result).all()
        np.testing.assert_allclose(result, along, atol=0.01)
        # scribble over the opposite edge (the lines a wrap-around would use)
        scribbled = stack.copy()
        far = slice(60, 64) if edge < 32 else slice(0, 4)
        if transpose:
            scribbled[far, :, :] = np.linspace(0, 5e4, 64)[None, :, None]
        else:
            scribbled[:, far, :] = np.linspace(0, 5e4, 64)[:, None, None]
        np.testing.assert_array_equal(fn(scribbled, bx, by)[pick], result)


def test_multiline_line_count(beads):
    """2 * int(n * line_ratio // 2) + 1 lines: line_ratio below 2/n is one line (= auto_conv)."""
    stack, x, y = beads
    one = md.auto_conv_multiline(stack, x, y, line_ratio=0.03, return_conv=True)
    single = md.auto_conv(stack, x, y, return_conv=True)
    for a, b in zip(one, single):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)
    three = md.auto_conv_multiline(stack, x, y, line_ratio=0.05, return_conv=True)
    assert not np.allclose(three[2], single[2])


# ------------------------------------------------------------------ NaN pixels


def _with_nan_pixel(stack, x, y, image, on_line):
    s = stack.copy()
    row = int(np.rint(y[image]))
    s[row if on_line else 3, 5, image] = np.nan  # on the row through the centre, or far off it
    return s


@pytest.mark.parametrize("background", ["none", "mean", "median"])
def test_center_of_mass_nan_pixel(beads, background):
    """A NaN pixel makes that image's centre NaN; the other images are unchanged."""
    stack, x, y = beads
    s = _with_nan_pixel(stack, x, y, 4, on_line=False)
    cx, cy = md.center_of_mass(s, background=background)
    gx, gy = md.center_of_mass(stack, background=background)
    assert np.isnan(cx[4]) and np.isnan(cy[4])
    keep = np.arange(N) != 4
    np.testing.assert_allclose(cx[keep], gx[keep], rtol=1e-12)
    np.testing.assert_allclose(cy[keep], gy[keep], rtol=1e-12)


@pytest.mark.parametrize(
    "name", ["auto_conv", "auto_conv_sub_pixel", "auto_conv_multiline", "auto_conv_multiline_sub_pixel"]
)
def test_auto_conv_nan_pixel_on_the_sampled_row(beads, name):
    """A NaN on the row through the centre estimate: that image's x (which
    comes from the row) is NaN, its y (from the clean column) is unaffected, and
    the other images are unchanged. A NaN pixel must not turn into a finite
    position (argmax of an all-NaN convolution is index 0, which maps to a
    plausible-looking centre at (n - 1) // 2 / 2 = 15.5 px)."""
    stack, x, y = beads
    s = _with_nan_pixel(stack, x, y, 2, on_line=True)
    ox, oy = REFINERS[name](s, x, y)
    gx, gy = REFINERS[name](stack, x, y)
    keep = np.arange(N) != 2
    np.testing.assert_array_equal(ox[keep], gx[keep])
    np.testing.assert_array_equal(oy, gy)
    assert np.isnan(ox[2]), f"x of the image with a NaN pixel is {ox[2]}, not NaN"


@pytest.mark.parametrize("name", list(REFINERS))
def test_nan_pixel_far_from_the_lines_changes_nothing(beads, name):
    stack, x, y = beads
    s = _with_nan_pixel(stack, x, y, 2, on_line=False)
    for a, g in zip(REFINERS[name](s, x, y), REFINERS[name](stack, x, y)):
        np.testing.assert_array_equal(a, g)


def test_qi_nan_pixel_next_to_the_centre(beads):
    stack, x, y = beads
    s = stack.copy()
    s[int(np.rint(y[3])), int(np.rint(x[3])) + 1, 3] = np.nan
    qx, qy = md.qi(s, x, y)
    gx, gy = md.qi(stack, x, y)
    assert np.isnan(qx[3])
    keep = np.arange(N) != 3
    np.testing.assert_allclose(qx[keep], gx[keep], rtol=1e-12)


# ------------------------------------------------------------------ centre of mass


def test_center_of_mass_of_known_images():
    stack = np.zeros((9, 9, 3))
    stack[2, 6, 0] = 5.0  # a single pixel at row 2, column 6
    stack[1, 1, 1] = stack[3, 5, 1] = 1.0  # two pixels: mean (3, 2)
    stack[:, :, 2] = 1.0  # flat: the frame centre
    x, y = md.center_of_mass(stack)
    np.testing.assert_allclose(x, [6.0, 3.0, 4.0], atol=1e-15)
    np.testing.assert_allclose(y, [2.0, 2.0, 4.0], atol=1e-15)


@pytest.mark.parametrize("background", ["none", "mean", "median"])
def test_center_of_mass_zero_mass_is_nan(background):
    stack = np.zeros((8, 8, 2))
    stack[:, :, 1] = 3.0  # flat: zero mass once the background is removed
    x, y = md.center_of_mass(stack, background=background)
    assert np.isnan(x[0]) and np.isnan(y[0])
    if background != "none":
        assert np.isnan(x[1])


def test_center_of_mass_background_removes_pull_to_the_centre(beads):
    """With a bright background, 'none' is pulled towards the frame centre; 'median' is not."""
    stack, x, _ = beads
    err_none = np.abs(md.center_of_mass(stack)[0] - x).mean()
    err_median = np.abs(md.center_of_mass(stack, "median")[0] - x).mean()
    assert err_median < 0.5 * err_none


@pytest.mark.parametrize("background", ["none", "mean", "median"])
def test_center_of_mass_float32_matches_its_float64_conversion(beads, background):
    """Positions are computed in float64 whatever the stack type."""
    stack = beads[0].astype(np.float32)
    for a, b in zip(md.center_of_mass(stack, background), md.center_of_mass(stack.astype(np.float64), background)):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ accuracy


@pytest.mark.parametrize("n_px", [64, 65])
def test_refiners_recover_the_truth(n_px):
    """Noise-free beads up to 3 px off-centre: auto_conv within 0.5 px (whole or
    half pixels), the sub-pixel variants within 0.1 px, several rounds of the
    multi-line fit within 0.05 px."""
    rng = np.random.default_rng(n_px)
    c = (n_px - 1) / 2
    x = c + rng.uniform(-3, 3, 20)
    y = c + rng.uniform(-3, 3, 20)
    stack = render_beads(x, y, rng.uniform(800, 4500, 20), n_pixels=n_px)
    x0, y0 = x + rng.uniform(-1, 1, 20), y + rng.uniform(-1, 1, 20)
    ax, ay = md.auto_conv(stack, x0, y0)
    assert np.abs(ax - x).max() <= 0.51 and np.abs(ay - y).max() <= 0.51
    for fn in (md.auto_conv_sub_pixel, md.auto_conv_multiline_sub_pixel):
        sx, sy = fn(stack, ax, ay)
        assert np.abs(sx - x).max() < 0.1 and np.abs(sy - y).max() < 0.1
    for _ in range(4):
        ax, ay = md.auto_conv_multiline_sub_pixel(stack, ax, ay)
    assert np.abs(ax - x).max() < 0.05 and np.abs(ay - y).max() < 0.05


def test_qi_helpers():
    samples = np.array([[1.0, 3.0, 2.0], [2.0, 2.0, 2.0], [0.0, -1.0, 0.0]])
    off = md._qi_quadratic_offsets(samples)
    # parabola through (-1, 1), (0, 3), (1, 2): vertex at 0.5 * (1 - 2) / (1 - 6 + 2) = 1/6
    np.testing.assert_allclose(off[0], 1 / 6, rtol=1e-15)
    assert np.isnan(off[1]) and off[2] == 0.0
    with pytest.raises(ValueError, match="samples"):
        md._qi_quadratic_offsets(np.ones((4, 2)))
    # samples at integer centres are the pixels themselves (an interpolating spline)
    rng = np.random.default_rng(4)
    stack = rng.normal(size=(32, 32, 4))
    x = np.array([10.0, 15.0, 20.0, 16.0])
    y = np.array([12.0, 9.0, 22.0, 16.0])
    xi, yi = x.astype(int), y.astype(int)
    s0 = md._qi_sample_axis_profiles(stack, x, y, 0)
    s1 = md._qi_sample_axis_profiles(stack, x, y, 1)
    for k in range(4):
        np.testing.assert_allclose(s0[k], stack[yi[k] - 1 : yi[k] + 2, xi[k], k], atol=1e-9)
        np.testing.assert_allclose(s1[k], stack[yi[k], xi[k] - 1 : xi[k] + 2, k], atol=1e-9)


# ------------------------------------------------------------------ no mutation

CALLS = {
    "center_of_mass": lambda s, x, y: md.center_of_mass(s),
    "center_of_mass_mean": lambda s, x, y: md.center_of_mass(s, background="mean"),
    "center_of_mass_median": lambda s, x, y: md.center_of_mass(s, background="median"),
    "auto_conv": lambda s, x, y: md.auto_conv(s, x, y),
    "auto_conv_return_conv": lambda s, x, y: md.auto_conv(s, x, y, return_conv=True),
    "auto_conv_sub_pixel": lambda s, x, y: md.auto_conv_sub_pixel(s, x, y, n_local=7),
    "auto_conv_multiline": lambda s, x, y: md.auto_conv_multiline(s, x, y, line_ratio=0.2),
    "auto_conv_multiline_return_conv": lambda s, x, y: md.auto_conv_multiline(s, x, y, return_conv=True),
    "auto_conv_multiline_sub_pixel": lambda s, x, y: md.auto_conv_multiline_sub_pixel(s, x, y),
    "qi": lambda s, x, y: md.qi(s, x, y),
    "qi_samples": lambda s, x, y: md._qi_sample_axis_profiles(s, x, y, 0),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CALLS))
def test_no_mutation(beads, name, dtype):
    stack, x, y = beads
    stack = stack.astype(dtype)
    x = x.copy()
    y = y.copy()
    x[0] = np.nan  # invalid centres too
    y[1] = 99.0
    s0, x0, y0 = stack.copy(), x.copy(), y.copy()
    CALLS[name](stack, x, y)
    assert np.array_equal(stack, s0)
    assert np.array_equal(x, x0, equal_nan=True) and np.array_equal(y, y0)


def test_qi_quadratic_offsets_no_mutation():
    samples = np.array([[1.0, 3.0, 2.0], [2.0, 2.0, 2.0]])
    s0 = samples.copy()
    md._qi_quadratic_offsets(samples)
    assert np.array_equal(samples, s0)


# ------------------------------------------------------------------ bad input

STACK_FNS = {
    "center_of_mass": lambda s, x, y: md.center_of_mass(s),
    "auto_conv": md.auto_conv,
    "auto_conv_sub_pixel": md.auto_conv_sub_pixel,
    "auto_conv_multiline": md.auto_conv_multiline,
    "auto_conv_multiline_sub_pixel": md.auto_conv_multiline_sub_pixel,
    "qi": md.qi,
    "qi_samples": lambda s, x, y: md._qi_sample_axis_profiles(s, x, y, 1),
}


@pytest.mark.parametrize("name", list(STACK_FNS))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.float16, np.complex128, bool])
def test_non_float_stack_is_a_type_error(name, dtype):
    stack = np.ones((16, 16, 2), dtype=dtype)
    with pytest.raises(TypeError, match="stack"):
        STACK_FNS[name](stack, np.full(2, 7.5), np.full(2, 7.5))


@pytest.mark.parametrize("name", list(STACK_FNS))
@pytest.mark.parametrize(
    ("shape", "match"),
    [((16, 16), "stack"), ((16, 16, 2, 1), "stack"), ((16, 12, 2), "square"), ((2, 16, 16), "square")],
    ids=["2-D", "4-D", "non-square", "frames-first"],
)
def test_bad_stack_shape(name, shape, match):
    stack = np.ones(shape)
    with pytest.raises(ValueError, match=match):
        STACK_FNS[name](stack, np.full(2, 7.5), np.full(2, 7.5))


@pytest.mark.parametrize("name", [n for n in STACK_FNS if n != "center_of_mass"])
def test_centre_lengths_must_match_the_frames(name):
    stack = np.ones((16, 16, 3))
    good = np.full(3, 7.5)
    x_name, y_name = ("x", "y") if name == "qi_samples" else ("x_old", "y_old")
    with pytest.raises(ValueError, match=x_name):
        STACK_FNS[name](stack, good[:2], good)
    with pytest.raises(ValueError, match=y_name):
        STACK_FNS[name](stack, good, np.full(4, 7.5))
    with pytest.raises(ValueError, match=x_name):
        STACK_FNS[name](stack, good[:, None], good)  # 2-D


@pytest.mark.parametrize("fn", [md.auto_conv_sub_pixel, md.auto_conv_multiline_sub_pixel])
@pytest.mark.parametrize("n_local", [4, 6, 1, 2, -1, 0])
def test_bad_n_local(beads, fn, n_local):
    stack, x, y = beads
    with pytest.raises(ValueError, match="n_local"):
        fn(stack, x, y, n_local=n_local)


@pytest.mark.parametrize("fn", [md.auto_conv_multiline, md.auto_conv_multiline_sub_pixel])
@pytest.mark.parametrize("line_ratio", [-0.1, 1.5])
def test_bad_line_ratio(beads, fn, line_ratio):
    stack, x, y = beads
    with pytest.raises(ValueError, match="line_ratio"):
        fn(stack, x, y, line_ratio=line_ratio)


def test_other_bad_arguments(beads):
    stack, x, y = beads
    with pytest.raises(ValueError, match="background"):
        md.center_of_mass(stack, background="median ")
    with pytest.raises(ValueError, match="axis"):
        md._qi_sample_axis_profiles(stack, x, y, 2)


@pytest.mark.parametrize("name", list(STACK_FNS))
def test_empty_stack(name):
    """0 images: empty per-image results (NumPy's convention for reductions over no items)."""
    out = STACK_FNS[name](np.zeros((16, 16, 0)), np.zeros(0), np.zeros(0))
    for a in out if isinstance(out, tuple) else (out,):
        assert np.asarray(a).shape[0] == 0


def test_median_of_frame_major_stack_leaves_caller_data_alone():
    """A (t, y, x) array viewed as (y, x, t) is one C-contiguous block: the
    median's partition must work on a copy, never on the caller's memory."""
    frames = np.random.default_rng(5).random((40, 32, 32))
    before = frames.copy()
    x, y = md.center_of_mass(frames.transpose(1, 2, 0), background="median")
    np.testing.assert_array_equal(frames, before)
    assert np.isfinite(x).all() and np.isfinite(y).all()
