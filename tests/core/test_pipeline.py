"""stack_to_xyzp and stack_to_xyzp_advanced: accuracy against the simulated truth,
accepted input types, behaviour the spec leaves open, validation and (no) mutation.

Choices documented here (design.md section 2):

* uint8/uint16 camera stacks are accepted by the pipelines and converted to
  float64 (the result equals the float64 run exactly); the single-stage
  functions (center_of_mass, ...) raise TypeError for them.
* float32 in gives float32 profiles; positions and z are float64.
* A NaN pixel makes that image's x, y, z and profile NaN; other images are
  unaffected.
* 0 images, malformed LUTs and unknown stage options raise ValueError up front.
* Results are NumPy arrays for NumPy input (the reference's advanced pipeline
  always returns NumPy; ours keeps the input's device, see test_gpu.py).

Agreement with the reference package is in test_conformance.py.
"""

import functools
import warnings

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.sim.beads import make_zlut, render_beads

N = 16


@functools.lru_cache(maxsize=None)
def _fine_zlut(n_px):
    # 25 nm steps, each reference averaged over 16 sub-pixel positions
    return make_zlut(np.arange(300.0, 5201.0, 25.0), n_pixels=n_px, oversample_frames=16)


@functools.lru_cache(maxsize=None)
def _beads(n_px, n, photons, seed):
    rng = np.random.default_rng(seed)
    c = (n_px - 1) / 2
    x = c + rng.uniform(-3, 3, n)
    y = c + rng.uniform(-3, 3, n)
    z = rng.uniform(800, 4500, n)
    stack = render_beads(x, y, z, n_pixels=n_px, photons=photons, seed=seed)
    stack.flags.writeable = False  # shared between tests: nobody may change it
    return stack, x, y, z


@pytest.fixture(scope="module")
def small():
    stack, x, y, z = _beads(32, N, 1e4, 5)
    # averaged over sub-pixel positions, as a LUT from calibration frames is
    zlut = make_zlut(np.arange(500.0, 4801.0, 50.0), n_pixels=32, oversample_frames=16)
    zlut.flags.writeable = False
    return stack, zlut


@pytest.fixture(scope="module")
def truth():
    """The simulated x, y (px) and z (nm) of ``small``'s beads."""
    _, x, y, z = _beads(32, N, 1e4, 5)
    return x, y, z


def assert_near_truth(result, truth, xy_atol=0.05, z_rms=50.0, z_max=120.0, images=slice(None)):
    """x, y within ``xy_atol`` px of the simulated centres and z within
    ``z_rms`` / ``z_max`` nm of the simulated z. On ``small`` (32 px, 1e4
    photons, LUT in 50 nm steps) the defaults measured 0.022 px and 35 / 75 nm."""
    (x, y, z, _), (tx, ty, tz) = result, truth
    assert np.abs(x[images] - tx[images]).max() < xy_atol
    assert np.abs(y[images] - ty[images]).max() < xy_atol
    err = z[images] - tz[images]
    assert np.isfinite(err).all()
    assert np.sqrt(np.mean(err**2)) < z_rms and np.abs(err).max() < z_max


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------ accuracy against the truth


@pytest.mark.parametrize("n_px", [64, 65])
@pytest.mark.parametrize(
    ("photons", "xy_bound"), [(None, 0.01), (1e4, 0.03)], ids=["noise-free", "1e4-photons"]
)
def test_recovers_the_simulated_positions(n_px, photons, xy_bound):
    """100 beads up to 3 px off-centre, z from 0.8 to 4.5 um, LUT with 25 nm steps.

    Measured: x, y max error 0.0035 px noise-free and 0.016 px at 1e4 photons;
    z rms error 22-24 nm, max 55-68 nm. The z error is set by the pixelation
    of the 1 px radial bins (a bead's profile depends on where it sits on the
    pixel grid; profiles about the true centres give the same error), not by
    x and y.
    """
    stack, x, y, z = _beads(n_px, 100, photons, n_px)
    ox, oy, oz, p = md.stack_to_xyzp(stack, _fine_zlut(n_px))
    assert np.abs(ox - x).max() < xy_bound
    assert np.abs(oy - y).max() < xy_bound
    assert np.isfinite(oz).all()
    err = oz - z
    assert np.sqrt(np.mean(err**2)) < 30.0
    assert np.abs(err).max() < 90.0
    assert abs(np.mean(err)) < 15.0  # no gross bias


# ------------------------------------------------------------------ input types


@pytest.mark.parametrize("fn", [md.stack_to_xyzp, md.stack_to_xyzp_advanced], ids=["basic", "advanced"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_camera_integers_equal_the_float64_run(small, fn, dtype):
    stack, zlut = small
    scale = 0.2 if dtype == np.uint8 else 40.0  # the brightest pixels saturate
    counts = np.clip(np.rint(stack * scale), 0, np.iinfo(dtype).max).astype(dtype)
    ours = fn(counts, zlut)
    as_float = fn(counts.astype(np.float64), zlut)
    for a, b in zip(ours, as_float):
        np.testing.assert_array_equal(a, b)
    assert ours[3].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_camera_integers_recover_the_simulated_positions(small, truth, dtype):
    """Counts scaled into the type's range without saturating: as accurate as
    the float run (measured uint8 0.023 px, z 35 / 65 nm)."""
    stack, zlut = small
    scale = np.iinfo(dtype).max / stack.max()
    counts = np.rint(stack * scale).astype(dtype)
    assert_near_truth(md.stack_to_xyzp(counts, zlut), truth)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8])
def test_single_stages_refuse_camera_integers(dtype):
    stack = np.ones((16, 16, 2), dtype)
    with pytest.raises(TypeError, match="stack"):
        md.center_of_mass(stack)
    with pytest.raises(TypeError, match="stack"):
        md.radial_profile(stack, np.full(2, 7.5), np.full(2, 7.5))


@pytest.mark.parametrize("fn", [md.stack_to_xyzp, md.stack_to_xyzp_advanced], ids=["basic", "advanced"])
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint32, np.float16, np.complex64, bool])
def test_other_dtypes_are_refused(fn, dtype):
    with pytest.raises(TypeError, match="stack"):
        fn(np.ones((16, 16, 2), dtype))


@pytest.mark.parametrize("fn", [md.stack_to_xyzp, md.stack_to_xyzp_advanced], ids=["basic", "advanced"])
def test_result_types(small, truth, fn):
    stack, zlut = small
    for dtype in (np.float32, np.float64):
        x, y, z, p = fn(stack.astype(dtype), zlut)
        for a in (x, y, z, p):
            assert type(a) is np.ndarray
        assert x.dtype == y.dtype == z.dtype == np.float64
        assert x.shape == y.shape == z.shape == (N,)
        assert p.dtype == dtype and p.shape == (16, N)
        assert_near_truth((x, y, z, p), truth)


def test_advanced_without_options_is_the_basic_pipeline(small, truth):
    stack, zlut = small
    basic = md.stack_to_xyzp(stack, zlut)
    for a, b in zip(md.stack_to_xyzp_advanced(stack, zlut), basic):
        np.testing.assert_array_equal(a, b)
    assert_near_truth(basic, truth)


def test_without_zlut_z_is_nan(small, truth):
    """Only z needs the LUT: x, y and the profiles are those of the run with it."""
    stack, zlut = small
    with_lut = md.stack_to_xyzp(stack, zlut)
    for fn in (md.stack_to_xyzp, md.stack_to_xyzp_advanced):
        x, y, z, p = fn(stack)
        assert z.shape == (N,) and np.isnan(z).all()
        for a, b in zip((x, y, p), (with_lut[0], with_lut[1], with_lut[3])):
            np.testing.assert_array_equal(a, b)
    assert_near_truth(with_lut, truth)


def test_advanced_options_are_used(small, truth):
    """Each stage option changes the result (they are not silently ignored),
    and each result is still the beads' position, as well as the options allow:
    whole or half pixels from auto_conv without refinement rounds (measured
    0.73 px), one round 0.1 px, the others as the defaults."""
    stack, zlut = small
    base = md.stack_to_xyzp_advanced(stack, zlut)
    variants = {
        "center_of_mass": ({"center_of_mass": {"background": "none"}, "n auto_conv_multiline_sub_pixel": 0}, 0,
                           dict(xy_atol=1.0, z_rms=120.0, z_max=250.0)),
        "n rounds": ({"n auto_conv_multiline_sub_pixel": 1}, 0, dict(xy_atol=0.15)),
        "multiline options": ({"auto_conv_multiline_sub_pixel": {"n_local": 7}}, 0, {}),
        "lookup_z": ({"lookup_z": {"n_local": 3}}, 2, {}),
    }
    for name, (options, index, bounds) in variants.items():
        out = md.stack_to_xyzp_advanced(stack, zlut, **options)
        assert not np.array_equal(out[index], base[index], equal_nan=True), name
        assert_near_truth(out, truth, **bounds)
    p = md.stack_to_xyzp_advanced(stack, None, **{"radial_profile": {"oversample": 3}})[3]
    assert p.shape == (48, N)
    p = md.stack_to_xyzp_advanced(stack, None, **{"use fft_profile": True, "fft_profile": {"oversample": 2}})[3]
    assert p.shape == (16, N)


def test_advanced_fft_profile_with_matching_zlut(small, truth):
    """A LUT of FFT profiles works with "use fft_profile" (any profile type
    can be looked up): z of every bead within 60 nm of the truth (measured
    35 nm, 18 nm rms)."""
    stack, _ = small
    z_ref = np.arange(500.0, 4801.0, 50.0)
    c = np.full(z_ref.size, 15.5)
    refs = md.fft_profile_with_center(render_beads(c, c, z_ref, n_pixels=32), c, c, oversample=1)
    zlut = np.vstack([z_ref, refs])
    result = md.stack_to_xyzp_advanced(stack, zlut, **{"use fft_profile": True, "fft_profile": {"oversample": 1}})
    assert result[3].shape == (8, N)
    assert_near_truth(result, truth, z_rms=30.0, z_max=60.0)


# ------------------------------------------------------------------ NaN pixels and lost beads


@pytest.mark.parametrize("fn", [md.stack_to_xyzp, md.stack_to_xyzp_advanced], ids=["basic", "advanced"])
def test_nan_pixel_spoils_only_its_image(small, fn):
    """A NaN pixel makes that image's x, y, z and profile NaN; the other
    images are unchanged. (Warnings: see test_blank_image_gives_nan_without_warnings.)"""
    stack, zlut = small
    s = np.array(stack)
    s[3, 4, 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x, y, z, p = fn(s, zlut)
    assert np.isnan(x[5]) and np.isnan(y[5]) and np.isnan(z[5]) and np.isnan(p[:, 5]).all()
    keep = np.arange(N) != 5
    good = fn(np.ascontiguousarray(stack[:, :, keep]), zlut)
    for a, g in zip((x, y, z), good[:3]):
        np.testing.assert_allclose(a[keep], g, rtol=1e-12, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(p[:, keep], good[3], rtol=1e-12, equal_nan=True)


def test_blank_image_gives_nan_without_warnings(small, truth):
    """A flat frame (no bead) or one with a NaN pixel: NaN x, y, z, and no
    RuntimeWarning leaks out (the autouse filter makes warnings errors; a
    Dask job would otherwise print one per chunk). The other beads are found."""
    stack, zlut = small
    s = np.array(stack)
    s[:, :, 0] = 1000.0
    s[3, 4, 1] = np.nan
    x, y, z, p = md.stack_to_xyzp(s, zlut)
    assert np.isnan(x[:2]).all() and np.isnan(y[:2]).all() and np.isnan(z[:2]).all()
    assert np.isnan(p[:, 1]).all()
    assert_near_truth((x, y, z, p), truth, images=slice(2, None))


# ------------------------------------------------------------------ no mutation


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"use fft_profile": True},
        {"use fft_profile": True, "fft_profile": {"gaus_factor": 4.0}},
        {"center_of_mass": {"background": "mean"}, "radial_profile": {"oversample": 2}},
    ],
    ids=["defaults", "fft", "fft-options", "mean-oversample"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16])
def test_no_mutation(small, options, dtype):
    stack, zlut = small
    s = np.array(stack * (40 if dtype == np.uint16 else 1)).astype(dtype)  # writeable copy
    lut = np.array(zlut)
    s0, lut0 = s.copy(), lut.copy()
    use_lut = lut if "radial_profile" not in options and "use fft_profile" not in options else None
    md.stack_to_xyzp_advanced(s, use_lut, **options)
    if not options:
        md.stack_to_xyzp(s, lut)
    assert np.array_equal(s, s0)
    assert np.array_equal(lut, lut0, equal_nan=True)


def test_read_only_inputs_are_fine(small, truth):
    """The shared fixtures are read-only arrays: every pipeline runs on them
    and gives what it gives on writeable copies."""
    stack, zlut = small
    assert not stack.flags.writeable and not zlut.flags.writeable
    result = md.stack_to_xyzp(stack, zlut)
    for a, b in zip(result, md.stack_to_xyzp(np.array(stack), np.array(zlut))):
        np.testing.assert_array_equal(a, b)
    assert_near_truth(result, truth)
    fft = md.stack_to_xyzp_advanced(stack, None, **{"use fft_profile": True})
    for a, b in zip(fft, md.stack_to_xyzp_advanced(np.array(stack), None, **{"use fft_profile": True})):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ bad input

PIPELINES = [md.stack_to_xyzp, md.stack_to_xyzp_advanced]


@pytest.mark.parametrize("fn", PIPELINES, ids=["basic", "advanced"])
@pytest.mark.parametrize(
    ("shape", "match"),
    [((32, 32), "stack"), ((32, 32, 2, 1), "stack"), ((32, 30, 4), "square"), ((4, 32, 32), "square")],
    ids=["2-D", "4-D", "non-square", "frames-first"],
)
def test_bad_stack_shape(fn, shape, match):
    with pytest.raises(ValueError, match=match):
        fn(np.ones(shape))


@pytest.mark.parametrize("fn", PIPELINES, ids=["basic", "advanced"])
@pytest.mark.parametrize("dtype", [np.float64, np.uint16])
def test_empty_stack(fn, dtype):
    with pytest.raises(ValueError, match="stack"):
        fn(np.zeros((32, 32, 0), dtype))


def _bad_lut(zlut, kind):
    lut = np.array(zlut)
    if kind == "1-D":
        return lut[0]
    if kind == "3-D":
        return lut[None]
    if kind == "non-monotonic":
        lut[0, 5], lut[0, 6] = lut[0, 6], lut[0, 5]
    elif kind == "duplicate":
        lut[0, 6] = lut[0, 5]
    elif kind == "nan-z":
        lut[0, 0] = np.nan
    elif kind == "nan-profile":
        lut[4, 10] = np.nan
    elif kind == "too-few-bins":
        lut = lut[:-1]
    elif kind == "too-many-bins":
        lut = np.vstack([lut, lut[-1:]])
    return lut


@pytest.mark.parametrize("fn", PIPELINES, ids=["basic", "advanced"])
@pytest.mark.parametrize(
    "kind", ["1-D", "3-D", "non-monotonic", "duplicate", "nan-z", "nan-profile", "too-few-bins", "too-many-bins"]
)
def test_bad_zlut(small, fn, kind):
    stack, zlut = small
    with pytest.raises(ValueError, match="zlut") as info:
        fn(stack, _bad_lut(zlut, kind))
    if kind.endswith("bins"):  # both sizes named
        n_lut = _bad_lut(zlut, kind).shape[0] - 1
        assert "16" in str(info.value) and str(n_lut) in str(info.value)


def test_nan_in_row_one_is_allowed(small):
    stack, zlut = small
    lut = np.array(zlut)
    lut[1] = np.nan
    z = md.stack_to_xyzp(stack, lut)[2]
    np.testing.assert_allclose(z, md.stack_to_xyzp(stack, zlut)[2], rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"radial profile": {}}, "radial profile"),  # typo: unknown key
        ({"n_auto_conv_multiline_sub_pixel": 3}, "n_auto_conv_multiline_sub_pixel"),
        ({"lookup": {"n_local": 5}}, "lookup"),
        ({"n auto_conv_multiline_sub_pixel": 2.5}, "n auto_conv_multiline_sub_pixel"),
        ({"n auto_conv_multiline_sub_pixel": True}, "n auto_conv_multiline_sub_pixel"),
        ({"n auto_conv_multiline_sub_pixel": -1}, "n auto_conv_multiline_sub_pixel"),
        ({"use fft_profile": "yes"}, "use fft_profile"),
        ({"radial_profile": 2}, "radial_profile"),
        ({"radial_profile": {"oversample": 0}}, "oversample"),
        ({"auto_conv_multiline_sub_pixel": {"n_local": 4}}, "n_local"),
        ({"lookup_z": {"n_local": 2}}, "n_local"),
        ({"center_of_mass": {"background": "mode"}}, "background"),
    ],
)
def test_bad_stage_options(small, options, match):
    stack, zlut = small
    with pytest.raises(ValueError, match=match):
        md.stack_to_xyzp_advanced(stack, zlut, **options)


def test_unknown_nested_option_is_a_type_error(small):
    stack, zlut = small
    with pytest.raises(TypeError, match="bogus"):
        md.stack_to_xyzp_advanced(stack, zlut, **{"radial_profile": {"bogus": 1}})


# -- what the pipeline will make, without running it -------------------------------------------


@pytest.mark.parametrize("options", [
    {},
    {"radial_profile": {"oversample": 2}},
    {"radial_profile": {"oversample": 3.0}},
    {"use fft_profile": True},
    {"use fft_profile": True, "fft_profile": {"oversample": 1}},
    {"use fft_profile": True, "fft_profile": {"oversample": 3, "rmin": 0.1, "rmax": 0.45}},
    {"use fft_profile": True, "fft_profile": {"rmin": 0.25, "rmax": 1.0, "gaus_factor": 4.0}},
    {"n auto_conv_multiline_sub_pixel": 0, "radial_profile": {"oversample": 4}},
])
def test_profile_bins_say_what_the_pipeline_makes(options):
    from magtrack_dask.core.options import PipelineOptions
    from magtrack_dask.core.pipeline import profile_bins

    fft = options.get("use fft_profile", False)
    for roi in (6, 8, 10, 16, 17, 31, 32, 48, 64, 65, 100, 128):
        if fft and roi % 2:
            with pytest.raises(ValueError, match=f"need images of even width; got {roi} px"):
                profile_bins(roi, options)
            continue
        yy, xx = np.indices((roi, roi), dtype=np.float64)
        c = (roi - 1) / 2
        img = (1000.0 + 100 * np.cos(np.hypot(yy - c, xx - c)))[:, :, None]
        prof = md.stack_to_xyzp_advanced(img, None, **options)[3] if options else md.stack_to_xyzp(img)[3]
        bins = profile_bins(roi, options)
        same = profile_bins(roi, PipelineOptions.from_stage_options(options))
        assert same.n_bins == bins.n_bins and same.units == bins.units
        assert bins.n_bins == prof.shape[0], roi
        assert bins.radius.shape == (bins.n_bins,) and bins.radius.dtype == np.float64
        if fft:  # bin numbers
            assert bins.units == "1"
            np.testing.assert_array_equal(bins.radius, np.arange(bins.n_bins))
        else:  # k / oversample px: the radius of each ring
            assert bins.units == "px"
            oversample = options.get("radial_profile", {}).get("oversample", 1)
            np.testing.assert_array_equal(bins.radius, np.arange(bins.n_bins) / oversample)


def test_profile_bins_and_stage_keywords_refuse_what_the_stages_refuse():
    from magtrack_dask.core.pipeline import check_stage_keywords, profile_bins
    from magtrack_dask.validation import InputError

    with pytest.raises(ValueError, match="oversample must be an integer >= 1, got 0"):
        profile_bins(32, {"radial_profile": {"oversample": 0}})
    with pytest.raises(ValueError, match="rmin and rmax must satisfy 0 <= rmin <= rmax"):
        profile_bins(32, {"use fft_profile": True, "fft_profile": {"rmin": 0.4, "rmax": 0.2}})
    with pytest.raises(TypeError, match="stage option 'radial_profile': got an unexpected keyword argument 'bins'"):
        profile_bins(32, {"radial_profile": {"bins": 3}})
    for stage in ("center_of_mass", "auto_conv", "auto_conv_multiline_sub_pixel", "fft_profile", "radial_profile",
                  "lookup_z"):
        with pytest.raises(InputError, match=f"stage option '{stage}': got an unexpected keyword argument 'typo'"):
            check_stage_keywords({stage: {"typo": 1}})
    with pytest.raises(InputError, match="unknown stage option 'radial'"):
        check_stage_keywords({"radial": {}})
    assert check_stage_keywords({"lookup_z": {"n_local": 5}}).lookup_z == {"n_local": 5}
