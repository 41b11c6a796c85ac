"""The speed formulations give the plain formulation's numbers.

Each fast path (ring index by mantissa rounding, frame blocks in either memory
order, the masked line slab, line means kept between refinement rounds, the
ROI-major crop, where= division) is checked against a direct computation.
"""

import warnings

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.core import _blocks, helpers, xy
from magtrack_dask.sim.beads import render_beads


@pytest.fixture(scope="module")
def beads():
    rng = np.random.default_rng(11)
    n = 150
    x = 31.5 + rng.uniform(-3, 3, n)
    y = 31.5 + rng.uniform(-3, 3, n)
    stack = render_beads(x, y, rng.uniform(600, 4800, n), n_pixels=64, photons=3000, seed=11)
    return stack, x + rng.uniform(-0.6, 0.6, n), y + rng.uniform(-0.6, 0.6, n)


def direct_radial_profile(stack, x, y):
    """Per image: rint(hypot) bins and their means, one image at a time."""
    n_px, _, n_images = stack.shape
    n_bins = n_px // 2
    out = np.full((n_bins, n_images), np.nan)
    grid = np.arange(n_px, dtype=np.float64)
    for i in range(n_images):
        r = np.rint(np.hypot(grid[None, :] - x[i], grid[:, None] - y[i])).astype(int).ravel()
        v = stack[:, :, i].astype(np.float64).ravel()
        keep = r < n_bins
        sums = np.bincount(r[keep], v[keep], minlength=n_bins)
        counts = np.bincount(r[keep], minlength=n_bins)
        with np.errstate(invalid="ignore"):
            out[:, i] = sums / counts
    return out


def test_radial_profile_exact_half_ties_round_to_even():
    # Centres on the pixel grid and between pixels put pixels exactly at
    # distance k + 1/2 (e.g. 2.5 = hypot(1.5, 2)): they go to the even bin.
    rng = np.random.default_rng(3)
    stack = rng.normal(100, 10, (32, 32, 6))
    x = np.array([15.5, 16.0, 15.5, 16.25, 14.75, 16.5])
    y = np.array([16.0, 15.5, 15.5, 16.0, 15.25, 16.5])
    np.testing.assert_allclose(md.radial_profile(stack, x, y), direct_radial_profile(stack, x, y), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_radial_profile_same_in_both_memory_orders(beads, dtype):
    stack, x, y = beads
    stack = stack.astype(dtype)
    frame_major = np.ascontiguousarray(stack.transpose(2, 0, 1)).transpose(1, 2, 0)
    ours = md.radial_profile(stack, x, y)
    np.testing.assert_array_equal(md.radial_profile(frame_major, x, y), ours)
    np.testing.assert_allclose(ours, direct_radial_profile(stack, x, y).astype(dtype), rtol=1e-6)


@pytest.mark.parametrize("frame_major", [False, True])
@pytest.mark.parametrize("half_lines", [0, 3])
@pytest.mark.parametrize("axis", [0, 1])
def test_line_slab_equals_the_gathered_lines(beads, half_lines, axis, frame_major):
    """Rows come from the slab, and so do the columns of a stack that is not
    C-ordered (a C-ordered one has single columns taken, ``_columns_by_take``)."""
    stack, x, _ = beads
    if frame_major:
        stack = np.ascontiguousarray(stack.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert xy._columns_by_take(np, stack) is not frame_major
    idx = np.rint(x).astype(np.int64)
    idx[::9] = 1  # some lines run off the frame: left out of the mean
    out = np.empty((stack.shape[2], stack.shape[0]))
    xy._line_means(np, stack, idx, half_lines, axis, out)
    gathered = xy._gathered_line_means(np, stack, idx, half_lines, axis)
    np.testing.assert_allclose(out, gathered, rtol=1e-13)


@pytest.mark.parametrize("half_lines", [0, 3])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gathered_lines_equal_a_loop_over_images(beads, half_lines, axis, dtype):
    """The gather (all images, or some named by ``frames``) against a plain
    loop: the mean of the image's lines that lie inside the frame."""
    stack, x, _ = beads
    stack = stack.astype(dtype)
    width = stack.shape[0]
    idx = np.rint(x).astype(np.int64)
    idx[::7] = 1  # lines off the left edge
    idx[3::7] = width - 2  # and off the right one
    expected = np.empty((stack.shape[2], width))
    for i, c in enumerate(idx):
        lines = [k for k in range(c - half_lines, c + half_lines + 1) if 0 <= k < width]
        image = stack[:, :, i].astype(np.float64)
        expected[i] = image[:, lines].mean(axis=1) if axis == 1 else image[lines, :].mean(axis=0)
    got = xy._gathered_line_means(np, stack, idx, half_lines, axis)
    assert got.dtype == (dtype if half_lines == 0 else np.float64) and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    some = np.array([5, 0, 17])
    np.testing.assert_allclose(xy._gathered_line_means(np, stack, idx[some], half_lines, axis, some),
                               expected[some], rtol=1e-13)


def test_nan_in_the_band_but_off_an_images_lines(beads):
    """The slab multiplies unused lines by 0: a NaN there must not reach an
    image that does not use it (its lines are gathered instead)."""
    stack, x, y = beads
    x = x.copy()
    x[0], x[1] = 28.0, 36.0  # image 0 uses columns 25..31, the band reaches 39
    clean = md.auto_conv_multiline_sub_pixel(stack, x, y)
    spoilt = stack.copy()
    spoilt[20, 37, 0] = np.nan  # image 0, a column only image 1 uses
    got = md.auto_conv_multiline_sub_pixel(spoilt, x, y)
    np.testing.assert_array_equal(got[0], clean[0])
    np.testing.assert_array_equal(got[1], clean[1])


def test_refinement_rounds_equal_chained_calls(beads):
    stack, _, _ = beads
    x, y = md.center_of_mass(stack, background="median")
    x, y = md.auto_conv(stack, x, y)
    xr, yr = xy.refine_rounds(stack, x, y, 5)
    for _ in range(5):
        x, y = md.auto_conv_multiline_sub_pixel(stack, x, y)
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(yr, y)


def direct_center_of_mass(stack):
    """Moments summed in float64 over each image, one image at a time."""
    n = stack.shape[0]
    x, y = np.empty(stack.shape[2]), np.empty(stack.shape[2])
    grid = np.arange(n, dtype=np.float64)
    for i in range(stack.shape[2]):
        image = stack[:, :, i].astype(np.float64)
        mass = image.sum()
        x[i], y[i] = (image.sum(axis=0) @ grid) / mass, (image.sum(axis=1) @ grid) / mass
    return x, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("budget", [None, 2**17, 2**10], ids=["one-part", "row-parts", "row-and-frame-parts"])
def test_center_of_mass_row_parts_equal_the_direct_sums(dtype, budget, monkeypatch):
    """The default background sums rows of a C-ordered stack in parts (rows of
    all frames, or of 512-frame ranges when a row is larger than the budget),
    on 2 threads: the per-image float64 moments, and the whole-stack sums that
    other memory orders take, to rounding."""
    rng = np.random.default_rng(31)
    n_frames = 1100
    x0, y0 = 7.5 + rng.uniform(-2, 2, n_frames), 7.5 + rng.uniform(-2, 2, n_frames)
    stack = render_beads(x0, y0, rng.uniform(800, 3000, n_frames), n_pixels=16, photons=3000, seed=3)
    stack = stack.astype(dtype)
    if budget is not None:
        monkeypatch.setattr(_blocks, "_CPU_BLOCK_BYTES", budget)
    parts = xy._row_parts(16, 16, n_frames)
    covered = np.zeros((16, n_frames), int)
    for rows, frames in parts:
        covered[rows, frames] += 1
    assert (covered == 1).all()
    assert len(parts) == {None: 1, 2**17: 16, 2**10: 48}[budget]
    with md.core_threads(2):
        x, y = md.center_of_mass(stack)
    ex, ey = direct_center_of_mass(stack)
    np.testing.assert_allclose(x, ex, rtol=1e-13)
    np.testing.assert_allclose(y, ey, rtol=1e-13)
    frame_major = np.ascontiguousarray(stack.transpose(2, 0, 1)).transpose(1, 2, 0)
    for a, b in zip(md.center_of_mass(frame_major), (x, y)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16])
@pytest.mark.parametrize("rows_per_block", [None, 1, 3, 7])
def test_crop_stack_to_rois_values(dtype, rows_per_block, monkeypatch):
    """ROI rows are copied in blocks on 2 threads; blocks of 3 or 7 rows
    straddle the 16-row ROIs."""
    rng = np.random.default_rng(4)
    stack = (rng.uniform(0, 1000, (40, 50, 7))).astype(dtype)
    rois = np.array([[0, 16, 0, 16], [10, 26, 30, 46], [24, 40, 5, 21]])
    if rows_per_block is not None:
        monkeypatch.setattr(_blocks, "_CPU_BLOCK_BYTES", rows_per_block * 16 * 7 * stack.itemsize)
    with md.core_threads(2):
        cropped = md.crop_stack_to_rois(stack, rois)
    assert cropped.shape == (16, 16, 7, 3) and cropped.dtype == stack.dtype
    for i, (top, bottom, left, right) in enumerate(rois):
        np.testing.assert_array_equal(cropped[:, :, :, i], stack[top:bottom, left:right, :])
        assert cropped[:, :, :, i].flags.c_contiguous  # one block per ROI


def test_qi_quadratic_offsets_flat_samples_quietly_nan():
    samples = np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 3.0], [np.nan, 1.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        offsets = md._qi_quadratic_offsets(samples)
    np.testing.assert_array_equal(offsets, [0.0, np.nan, 0.5 * (0.0 - 3.0) / (0.0 - 2.0 + 3.0), np.nan])


def test_pearson_float64_unit_columns_match_the_quotient():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(31, 20))
    y = x[:, :5] + rng.normal(scale=0.1, size=(31, 5))
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    expected = (yc.T @ xc) / np.outer(np.sqrt((yc * yc).sum(0)), np.sqrt((xc * xc).sum(0)))
    np.testing.assert_allclose(md.pearson(x, y), expected, rtol=1e-12, atol=1e-15)


def direct_gaussian(x, mu, sigma):
    return np.exp(-((x - mu) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("xdtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("sigma", [0.4, 3.0, 64 / 6, 500.0])
def test_gaussian_outer_product_gemm_path(xdtype, sigma):
    """The GEMM path (column x, row mu, >= 8192 values) gives the direct
    formula's values to 1e-12, tails included, never above 1. It is taken
    exactly where gaussian's Notes say: (max|x~| + max|mu~|)**2 <= 860 in
    units of sigma / sqrt(log2(e) / 2) about the middle of x (here every sigma
    but 0.4, whose far tails take the direct formula)."""
    rng = np.random.default_rng(int(sigma * 10))
    x = np.arange(64).astype(xdtype)[:, None]
    mu = rng.uniform(-10, 74, (1, 700))
    x0, mu0 = x.copy(), mu.copy()
    scale = np.sqrt(0.5 / np.log(2.0)) / sigma
    span = ((31.5 + np.abs(mu - 31.5).max()) * scale) ** 2
    assert (span <= 860.0) == (sigma != 0.4)  # the parameters cover both paths
    assert (helpers._gaussian_outer(x, mu, sigma) is not None) == (span <= 860.0)
    got = md.gaussian(x, mu, sigma)
    expected = direct_gaussian(x.astype(np.float64), mu, sigma)
    assert got.shape == (64, 700) and got.dtype == np.float64 and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert got.max() <= 1.0
    assert np.array_equal(x, x0) and np.array_equal(mu, mu0)


def test_gaussian_gemm_path_peak_and_1d_mu():
    x = np.arange(128.0)[:, None]
    mu = np.linspace(0.0, 127.0, 128)  # on the grid: the peak is 1 - a few 1e-15
    got = md.gaussian(x, mu, 20.0)
    np.testing.assert_allclose(got, direct_gaussian(x, mu, 20.0), rtol=1e-13)
    assert got.max() <= 1.0 and np.diag(got).min() > 1 - 1e-13


@pytest.mark.parametrize("case", ["far_tails", "nan_mu", "inf_x", "float32", "small", "sigma0"])
def test_gaussian_falls_back_to_the_direct_formula(case):
    """Where the GEMM path would lose accuracy or meaning, the direct formula
    is evaluated: same values (and NaN, 0, inf) as the formula itself."""
    x = np.arange(100.0)[:, None]
    mu = np.random.default_rng(1).uniform(0, 100, (1, 300))
    sigma = 5.0
    if case == "far_tails":  # (max|x~| + max|mu~|)**2 > 860: exp underflows in the corners
        sigma = 1.5
    elif case == "nan_mu":
        mu[0, 7] = np.nan
    elif case == "inf_x":
        x[3, 0] = np.inf
    elif case == "float32":
        x, mu = x.astype(np.float32), mu.astype(np.float32)
    elif case == "small":
        x, mu = x[:20], mu[:, :200]
    elif case == "sigma0":
        sigma = 0.0
    assert helpers._gaussian_outer(x, mu, sigma) is None
    with np.errstate(all="ignore"):
        expected = direct_gaussian(x, mu, sigma)
        got = md.gaussian(x, mu, sigma)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6 if case == "float32" else 1e-15, atol=0)
    if case == "far_tails":
        assert (got == 0).any()  # underflow, as in the formula


def direct_qi_offsets(samples):
    """The reference's formula, term by term."""
    v = np.asarray(samples, dtype=np.float64)
    left, centre, right = v[:, 0], v[:, 1], v[:, 2]
    with np.errstate(all="ignore"):
        denom = left - 2.0 * centre + right
        return np.where(np.abs(denom) > np.finfo(np.float64).eps, 0.5 * (left - right) / denom, np.nan)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_qi_quadratic_offsets_matrix_vector_product_is_exact(dtype):
    """2 (left - 2 centre + right) by one matrix-vector product, divided into
    left - right: bitwise the reference's 0.5 (left - right) / curvature, at
    every scale, for nearly collinear samples and at the flatness threshold."""
    rng = np.random.default_rng(12)
    parts = []
    for scale in (1e-12, 1e-3, 1.0, 1e3, 1e9):
        base = rng.normal(size=(400, 1)) * scale
        parts.append(base + rng.normal(size=(400, 3)) * scale)
        parts.append(base + np.array([0.0, 1.0, 2.0]) * scale * rng.uniform(0, 1e-14, (400, 1)))  # nearly collinear
    eps = np.finfo(np.float64).eps
    parts.append(np.array([[0.0, -eps / 2, 0.0], [0.0, -eps / 4, 0.0], [0.0, -eps, 0.0], [1.0, np.inf, 2.0],
                           [np.nan, 1.0, 2.0], [1.0, -np.inf, 1.0]]))
    samples = np.concatenate(parts).astype(dtype)
    s0 = samples.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = md._qi_quadratic_offsets(samples)
    np.testing.assert_array_equal(got, direct_qi_offsets(samples))
    assert got.dtype == np.float64 and np.array_equal(samples, s0, equal_nan=True)


@pytest.fixture(scope="module")
def lut_and_profiles():
    from magtrack_dask.sim.beads import make_zlut

    rng = np.random.default_rng(21)
    zlut = make_zlut(np.arange(300.0, 5701.0, 30.0), n_pixels=64)  # 181 references
    zlut[1] = np.where(np.isfinite(zlut[1]), zlut[1], zlut[2])
    n = 700
    x = 31.5 + rng.uniform(-2, 2, n)
    y = 31.5 + rng.uniform(-2, 2, n)
    stack = render_beads(x, y, rng.uniform(100, 5900, n), n_pixels=64, photons=3000, seed=21)
    return zlut, md.radial_profile(stack, x, y)


@pytest.mark.parametrize("n_local", [3, 5, 7, 9])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block_rows", [1, 300, 10_000])
def test_lookup_z_blocks_equal_the_direct_computation(lut_and_profiles, n_local, dtype, block_rows, monkeypatch):
    """Unnormalised scores in row blocks (one row each, 3 with the last
    partial, or 1 block), the window fit and the index
    interpolation give the full-matrix computation's z (NaN at the ends)."""
    from magtrack_dask.core import _blocks
    from magtrack_dask.core import z as zmod

    zlut, profiles = lut_and_profiles
    monkeypatch.setattr(_blocks, "_SERIAL_GEMM_MACS", block_rows * (zlut.shape[0] - 2) * zlut.shape[1])
    zlut, profiles = zlut.astype(dtype), profiles.astype(dtype)
    z0, p0 = zlut.copy(), profiles.copy()
    fast = zmod._lookup_z_blocks(profiles, zlut, n_local)
    direct = zmod._lookup_z_direct(np, profiles, zlut, n_local)
    assert np.isnan(direct).any() and np.isfinite(direct).sum() > 500  # both cases present
    np.testing.assert_allclose(fast, direct, rtol=1e-10, atol=0, equal_nan=True)
    np.testing.assert_array_equal(md.lookup_z(profiles, zlut, n_local), fast)
    assert np.array_equal(zlut, z0, equal_nan=True) and np.array_equal(profiles, p0, equal_nan=True)


def test_lookup_z_of_no_images(lut_and_profiles):
    zlut, profiles = lut_and_profiles
    z = md.lookup_z(profiles[:, :0], zlut)
    assert z.shape == (0,) and z.dtype == np.float64


def test_lookup_z_blocks_redo_non_finite_profiles(lut_and_profiles):
    """Profiles with NaN bins (a lost bead, a partly masked one) or an inf bin
    are recomputed the direct way: NaN bins ignored, inf giving NaN."""
    from magtrack_dask.core import z as zmod

    zlut, profiles = lut_and_profiles
    profiles = profiles.copy()
    profiles[:, 5] = np.nan  # lost bead
    profiles[3:6, 40] = np.nan  # a few masked bins
    profiles[7, 90] = np.inf
    profiles[0, 120] = np.nan  # the central bin is not correlated: no effect
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quietly, as the direct computation
        fast = zmod._lookup_z_blocks(profiles, zlut, 7)
        direct = zmod._lookup_z_direct(np, profiles, zlut, 7)
    np.testing.assert_allclose(fast, direct, rtol=1e-10, atol=0, equal_nan=True)
    assert np.isnan(fast[[5, 90]]).all() and np.isfinite(fast[[40, 120]]).all()


def test_lookup_z_constant_reference_takes_the_direct_path(lut_and_profiles):
    from magtrack_dask.core import z as zmod

    zlut, profiles = lut_and_profiles
    zlut = zlut.copy()
    zlut[2:, 50] = 7.0  # zero variance: NaN correlations, never the best match
    assert zmod._lookup_z_blocks(profiles, zlut, 7) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(md.lookup_z(profiles, zlut), zmod._lookup_z_direct(np, profiles, zlut, 7))


def test_interp_unit_grid_is_np_interp():
    from magtrack_dask.core.z import _interp_unit_grid

    rng = np.random.default_rng(2)
    fp = np.cumsum(rng.uniform(1, 50, 201)) * rng.choice([-1, 1])
    x = np.concatenate([rng.uniform(-2, 202, 5000), np.arange(201.0), [-0.0, 200.0, 199.999999, -1e-300, np.nan, np.inf, -np.inf]])
    expected = np.interp(x, np.arange(201.0), fp, left=np.nan, right=np.nan)
    got = _interp_unit_grid(x.copy(), fp)
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float64, np.float32), (np.float64, np.float64)])
def test_pearson_against_the_quotient_of_the_gemm(dtypes):
    """Unit columns, then one GEMM: the quotient of the GEMM of the centred
    columns and their norms (the reference's formula) in float64 to 1e-12,
    float32 to 1e-6 (r is at most 1; measured 2.2e-7 here, the reference's
    float32 formula 1.8e-7); NaN entries (found through the column means)
    ignored as before."""
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(40, 150)) * 30 + 500).astype(dtypes[0])
    y = (x[:, :60].astype(np.float64) * 0.5 + rng.normal(size=(40, 60)) * 20).astype(dtypes[1])
    y[5, 3] = np.nan
    y[:, 7] = np.nan
    x0, y0 = x.copy(), y.copy()
    # Centred in the inputs' own types (as both packages do), the rest in float64.
    xc = (x - np.nanmean(x, axis=0)).astype(np.float64)
    with warnings.catch_warnings():  # the all-NaN column
        warnings.simplefilter("ignore", RuntimeWarning)
        yc = np.nan_to_num(y - np.nanmean(y, axis=0)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        expected = (yc.T @ xc) / (np.sqrt((yc * yc).sum(0))[:, None] * np.sqrt((xc * xc).sum(0))[None, :])
        got = md.pearson(x, y)
    assert got.dtype == np.result_type(x, y)
    if got.dtype == np.float32:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, equal_nan=True)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15, equal_nan=True)
    assert np.isnan(got[7]).all() and np.isfinite(got[3]).all()
    assert np.array_equal(x, x0) and np.array_equal(y, y0, equal_nan=True)


def direct_parabolic_vertex(data, est, n_local, weighted):
    """Per row: np.polyfit on the window around the rounded, clipped estimate."""
    half = n_local // 2
    out = np.full(len(est), np.nan)
    u = np.arange(-half, half + 1, dtype=np.float64)
    w = (half - np.abs(u) + 1) if weighted else None
    for i, e in enumerate(est):
        if not np.isfinite(e):
            continue
        c = int(np.rint(np.clip(e, half, data.shape[1] - half - 1)))
        if c in (half, data.shape[1] - half - 1):
            continue
        a, b, _ = np.polyfit(u, data[i, c - half : c + half + 1].astype(np.float64), 2, w=w)
        out[i] = c - b / (2 * a)
    return out


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [True, False])
def test_parabolic_vertex_flat_gather_and_one_product(layout, dtype, weighted):
    """The flat-index window gather (C-contiguous data) and take_along_axis
    (other layouts) with one (n_local, 2) kernel product give polyfit's
    vertex; NaN, inf and edge estimates give NaN."""
    rng = np.random.default_rng(17)
    n_sets, n_points = 300, 40
    t = np.arange(n_points)
    vertex = rng.uniform(2, n_points - 3, n_sets)
    data = -((t - vertex[:, None]) ** 2) * rng.uniform(0.5, 2, (n_sets, 1)) + rng.normal(scale=0.3, size=(n_sets, n_points))
    data = data.astype(dtype)
    if layout == "F":
        data = np.asfortranarray(data)
    elif layout == "strided":
        data = np.repeat(data, 2, axis=1)[:, ::2]
    est = np.round(vertex) + rng.uniform(-0.45, 0.45, n_sets)
    est[:7] = [np.nan, np.inf, -np.inf, 0.0, 2.4, n_points - 1.0, n_points - 3.0]
    d0, e0 = data.copy(), est.copy()
    for n_local in (3, 5, 7):
        got = md.parabolic_vertex(data, est, n_local, weighted=weighted)
        np.testing.assert_allclose(got, direct_parabolic_vertex(data, est, n_local, weighted), rtol=0, atol=1e-9)
        assert got.dtype == np.float64 and np.isnan(got[:3]).all()
    assert np.array_equal(data, d0) and np.array_equal(est, e0, equal_nan=True)
