"""The core on CuPy arrays: every spec function gives the NumPy result of this
package (1e-9 px / 1e-9 relative for float64) and returns CuPy arrays on the
input's device.

Skipped unless ``magtrack_dask.check_cupy()`` is True (CuPy importable *and* a
CUDA device runs a kernel); CuPy installed on a machine without a GPU skips too.
"""

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.sim.beads import make_zlut, render_beads

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not md.check_cupy(), reason="needs CuPy and a working CUDA device"),
]

N = 40
TOL = 1e-9


@pytest.fixture(scope="module")
def cupy():
    import cupy

    return cupy


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(77)
    x = 31.5 + rng.uniform(-3, 3, N)
    y = 31.5 + rng.uniform(-3, 3, N)
    z = rng.uniform(600, 4800, N)
    stack = render_beads(x, y, z, n_pixels=64, photons=3000, seed=77)
    x0 = x + rng.uniform(-0.6, 0.6, N)
    y0 = y + rng.uniform(-0.6, 0.6, N)
    x0[0], y0[1], x0[2] = np.nan, -4.0, 70.0  # invalid centres: NaN on both devices
    zlut = make_zlut(np.arange(500.0, 5001.0, 50.0), n_pixels=64, oversample_frames=4)
    bins = rng.integers(0, 40, (500, 5))
    weights = rng.normal(100, 10, (500, 5))
    curves = -((np.arange(25)[None, :] - rng.uniform(2, 22, (30, 1))) ** 2) + rng.normal(0, 0.3, (30, 25))
    estimates = np.argmax(curves, axis=1).astype(np.float64)
    return dict(stack=stack, x0=x0, y0=y0, x=x, y=y, zlut=zlut, bins=bins, weights=weights, curves=curves,
                estimates=estimates)


def on(cupy, d, dtype=np.float64):
    """The same inputs as CuPy arrays (copies; the stack in ``dtype``)."""
    out = {k: cupy.array(v) for k, v in d.items()}
    out["stack"] = cupy.array(d["stack"].astype(dtype))
    return out


def host(d, dtype=np.float64):
    out = dict(d)
    out["stack"] = d["stack"].astype(dtype)
    return out


# name -> (function of the inputs, kind of comparison per output)
CALLS = {
    "binmean": (lambda d: md.binmean(d["bins"].copy(), d["weights"], 35), "rel"),
    "pearson": (lambda d: md.pearson(d["weights"], d["weights"][:, :3] ** 2), "rel"),
    "gaussian": (lambda d: md.gaussian(d["x"], 31.0, 2.0), "rel"),
    "gaussian_2d": (lambda d: md.gaussian_2d(d["x"][:20], d["y"][:30], d["x"][:4], d["y"][:4], 3.0), "rel"),
    "crop_stack_to_rois": (
        lambda d: md.crop_stack_to_rois(d["stack"], np.array([[0, 32, 0, 32], [20, 52, 12, 44]])),
        "exact",
    ),
    "parabolic_vertex": (lambda d: md.parabolic_vertex(d["curves"], d["estimates"], 5), "pos"),
    "parabolic_vertex_unweighted": (
        lambda d: md.parabolic_vertex(d["curves"], d["estimates"], 7, weighted=False),
        "pos",
    ),
    "_qi_sample_axis_profiles_0": (lambda d: md._qi_sample_axis_profiles(d["stack"], d["x0"], d["y0"], 0), "rel"),
    "_qi_sample_axis_profiles_1": (lambda d: md._qi_sample_axis_profiles(d["stack"], d["x0"], d["y0"], 1), "rel"),
    "_qi_quadratic_offsets": (lambda d: md._qi_quadratic_offsets(d["curves"][:, 10:13]), "pos"),
    "qi": (lambda d: md.qi(d["stack"], d["x0"], d["y0"]), "qi"),
    "center_of_mass": (lambda d: md.center_of_mass(d["stack"]), "pos"),
    "center_of_mass_mean": (lambda d: md.center_of_mass(d["stack"], background="mean"), "pos"),
    "center_of_mass_median": (lambda d: md.center_of_mass(d["stack"], background="median"), "pos"),
    "auto_conv": (lambda d: md.auto_conv(d["stack"], d["x0"], d["y0"]), "pos"),
    "auto_conv_return_conv": (lambda d: md.auto_conv(d["stack"], d["x0"], d["y0"], return_conv=True), "conv"),
    "auto_conv_sub_pixel": (lambda d: md.auto_conv_sub_pixel(d["stack"], d["x0"], d["y0"], n_local=7), "pos"),
    "auto_conv_multiline": (lambda d: md.auto_conv_multiline(d["stack"], d["x0"], d["y0"], line_ratio=0.2), "pos"),
    "auto_conv_multiline_return_conv": (
        lambda d: md.auto_conv_multiline(d["stack"], d["x0"], d["y0"], return_conv=True),
        "conv",
    ),
    "auto_conv_multiline_sub_pixel": (
        lambda d: md.auto_conv_multiline_sub_pixel(d["stack"], d["x0"], d["y0"]),
        "pos",
    ),
    "radial_profile": (lambda d: md.radial_profile(d["stack"], d["x0"], d["y0"]), "rel"),
    "radial_profile_oversample": (lambda d: md.radial_profile(d["stack"], d["x0"], d["y0"], oversample=3), "rel"),
    "fft_profile": (lambda d: md.fft_profile(d["stack"]), "rel"),
    "fft_profile_options": (lambda d: md.fft_profile(d["stack"], oversample=2, rmin=0.1, rmax=0.4), "rel"),
    "fft_profile_with_center": (
        lambda d: md.fft_profile_with_center(d["stack"].copy(), d["x0"], d["y0"], gaus_factor=5.0),
        "rel",
    ),
    "lookup_z": (lambda d: md.lookup_z(md.radial_profile(d["stack"], d["x"], d["y"]), d["zlut"]), "rel"),
    "lookup_z_n_local_5": (
        lambda d: md.lookup_z(md.radial_profile(d["stack"], d["x"], d["y"]), d["zlut"], n_local=5),
        "rel",
    ),
    "stack_to_xyzp": (lambda d: md.stack_to_xyzp(d["stack"], d["zlut"]), "pipeline"),
    "stack_to_xyzp_no_zlut": (lambda d: md.stack_to_xyzp(d["stack"]), "pipeline"),
    "stack_to_xyzp_advanced": (
        lambda d: md.stack_to_xyzp_advanced(
            d["stack"],
            d["zlut"],
            **{
                "center_of_mass": {"background": "mean"},
                "n auto_conv_multiline_sub_pixel": 3,
                "auto_conv_multiline_sub_pixel": {"line_ratio": 0.2, "n_local": 7},
                "lookup_z": {"n_local": 5},
            },
        ),
        "pipeline",
    ),
    "stack_to_xyzp_advanced_fft": (
        lambda d: md.stack_to_xyzp_advanced(d["stack"], None, **{"use fft_profile": True}),
        "pipeline",
    ),
}


def _compare(cupy, got, expected, kind, device, scales=None):
    """Compare per output kind; ``scales`` multiplies TOL per kind (float32)."""
    scales = scales or {}
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        if kind == "pipeline":
            kinds = ["pos", "pos", "rel", "rel"]
        elif kind == "conv":
            kinds = ["exact", "exact", "conv", "conv"]
        else:
            kinds = [kind] * len(expected)
        for g, e, k in zip(got, expected, kinds):
            _compare(cupy, g, e, k, device, scales)
        return
    scale = scales.get(kind, 1.0)
    assert isinstance(got, cupy.ndarray), type(got)
    assert got.device.id == device.id
    got = cupy.asnumpy(got)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    if kind == "exact":
        np.testing.assert_array_equal(got, expected)
    elif kind == "pos":
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOL * scale, equal_nan=True)
    elif kind == "rel":
        np.testing.assert_allclose(got, expected, rtol=TOL * scale, atol=0, equal_nan=True)
    elif kind == "conv":
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOL * scale * np.nanmax(np.abs(expected)), equal_nan=True)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("name", list(CALLS))
def test_same_result_on_the_gpu(cupy, data, name):
    fn, kind = CALLS[name]
    expected = fn(host(data))
    device = cupy.cuda.Device()
    got = fn(on(cupy, data))
    if kind == "qi":
        # QI's step amplifies rounding by 1/curvature**2 where the samples are
        # nearly collinear: 1e-9 relative to the step there.
        for g, e, start in zip(got, expected, (data["x0"], data["y0"])):
            assert isinstance(g, cupy.ndarray) and g.device.id == device.id
            g = cupy.asnumpy(g)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(e))
            ok = ~np.isnan(e)
            assert (np.abs(g - e)[ok] <= TOL * np.maximum(np.abs(e - start), 1)[ok]).all()
        return
    _compare(cupy, got, expected, kind, device)


FLOAT32 = ["center_of_mass_median", "auto_conv_multiline_sub_pixel", "radial_profile", "fft_profile",
           "fft_profile_with_center", "stack_to_xyzp", "stack_to_xyzp_advanced_fft"]


@pytest.mark.parametrize("name", FLOAT32)
def test_float32_on_the_gpu(cupy, data, name):
    """float32 stacks: same dtypes as on the CPU (float32 profiles, float64
    positions). Positions are computed in float64 from the same pixels, but
    the profiles they feed and some float32 reductions may round differently
    on the GPU: 1e-6 px for positions, 1e-5 relative for profiles and z
    (cuFFT and pocketfft round float32 transforms differently)."""
    fn, kind = CALLS[name]
    expected = fn(host(data, np.float32))
    got = fn(on(cupy, data, np.float32))
    _compare(cupy, got, expected, kind, cupy.cuda.Device(), scales={"pos": 1e3, "rel": 1e4})


def test_binmean_clips_x_in_place_on_the_gpu(cupy, data):
    bins = cupy.array(data["bins"])
    md.binmean(bins, cupy.asarray(data["weights"]), 20)
    np.testing.assert_array_equal(cupy.asnumpy(bins), np.minimum(data["bins"], 20))


def test_fft_profile_with_center_weights_in_place_on_the_gpu(cupy, data):
    s_cpu = data["stack"].copy()
    s_gpu = cupy.array(data["stack"])
    md.fft_profile_with_center(s_cpu, data["x0"], data["y0"])
    md.fft_profile_with_center(s_gpu, cupy.asarray(data["x0"]), cupy.asarray(data["y0"]))
    np.testing.assert_allclose(cupy.asnumpy(s_gpu), s_cpu, rtol=1e-12)
    assert not np.array_equal(s_cpu, data["stack"])


def test_no_mutation_on_the_gpu(cupy, data):
    d = on(cupy, data)
    before = {k: v.copy() for k, v in d.items()}
    md.stack_to_xyzp(d["stack"], d["zlut"])
    md.stack_to_xyzp_advanced(d["stack"], None, **{"use fft_profile": True})
    md.qi(d["stack"], d["x0"], d["y0"])
    md.radial_profile(d["stack"], d["x0"], d["y0"])
    md.lookup_z(md.radial_profile(d["stack"], d["x"], d["y"]), d["zlut"])
    for k, v in d.items():
        assert bool(cupy.array_equal(v, before[k], equal_nan=True)), k


def test_camera_integers_on_the_gpu(cupy, data):
    counts = np.clip(np.rint(data["stack"] * 10), 0, 65535).astype(np.uint16)
    expected = md.stack_to_xyzp(counts, data["zlut"])
    got = md.stack_to_xyzp(cupy.array(counts), cupy.array(data["zlut"]))
    _compare(cupy, got, expected, "pipeline", cupy.cuda.Device())
    with pytest.raises(TypeError, match="stack"):
        md.center_of_mass(cupy.array(counts))


def test_errors_on_the_gpu(cupy, data):
    d = on(cupy, data)
    with pytest.raises(ValueError, match="zlut"):
        md.lookup_z(md.radial_profile(d["stack"], d["x"], d["y"]), d["zlut"][:-1])
    with pytest.raises(ValueError, match="zlut"):
        md.stack_to_xyzp(d["stack"], d["zlut"][:-1])
    with pytest.raises(ValueError, match="x_old"):
        md.auto_conv(d["stack"], d["x0"][:-1], d["y0"])


def test_backend_reports_cupy(cupy):
    assert md.is_cupy_available() is True
    assert md.check_cupy() is True
    assert md.cp is cupy


def test_results_follow_the_input_device(cupy, data):
    """On a second GPU, when there is one, results stay there."""
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("one GPU only")
    with cupy.cuda.Device(1):
        d = on(cupy, data)
        x, y, z, p = md.stack_to_xyzp(d["stack"], d["zlut"])
    for a in (x, y, z, p):
        assert a.device.id == 1
