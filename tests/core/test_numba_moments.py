"""The compiled kernel of ``center_of_mass(stack)`` (numba): the NumPy
formulation's numbers to float64 rounding, the same bytes on any number of
threads, NaN and inf pixels as before, and NumPy when numba is missing."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.core import xy
from magtrack_dask.sim.beads import render_beads

pytest.importorskip("numba")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _no_warnings(no_warnings):
    yield


def _stack(n_px, n_frames, dtype, seed=7):
    rng = np.random.default_rng(seed)
    c = (n_px - 1) / 2
    x, y = c + rng.uniform(-2, 2, n_frames), c + rng.uniform(-2, 2, n_frames)
    stack = render_beads(x, y, rng.uniform(800, 3000, n_frames), n_pixels=n_px, photons=3000, seed=seed)
    return stack.astype(dtype)


def _numpy_centres(stack):
    """The NumPy formulation (no numba) of the default background."""
    with np.errstate(divide="ignore", invalid="ignore"):  # matmul warns of inf - inf
        moments = xy._raw_moments_by_rows(stack)
        return moments[1] / moments[0], moments[2] / moments[0]


@pytest.fixture
def small_calls(monkeypatch):
    """Many kernel calls: 3 groups of rows, ranges of 100 frames."""
    monkeypatch.setattr(xy, "_KERNEL_ROW_GROUPS", 3)
    monkeypatch.setattr(xy, "_KERNEL_FRAMES", 100)


def test_the_kernel_is_used():
    assert xy._moments_kernel() is not None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_px", [15, 16, 17, 64])  # columns not a multiple of the kernel's 4
@pytest.mark.parametrize("calls", ["one", "many"])
def test_equals_the_numpy_formulation(request, dtype, n_px, calls):
    if calls == "many":
        request.getfixturevalue("small_calls")
    stack = _stack(n_px, 1037, dtype)  # not a multiple of any part
    x, y = md.center_of_mass(stack)
    ex, ey = _numpy_centres(stack)
    assert x.dtype == y.dtype == np.float64
    np.testing.assert_allclose(x, ex, rtol=0, atol=1e-9)
    np.testing.assert_allclose(y, ey, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_bytes_on_any_number_of_threads(small_calls, dtype):
    stack = _stack(17, 1037, dtype)
    with md.core_threads(1):
        one = md.center_of_mass(stack)
    for n in (2, 3, 5):
        with md.core_threads(n):
            many = md.center_of_mass(stack)
        for a, b in zip(one, many):
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_pixels_as_numpy(small_calls, dtype, value):
    stack = _stack(16, 300, dtype)
    clean = md.center_of_mass(stack)
    stack[0, 0, 4] = value  # column and row 0: times zero in the moments
    stack[9, 13, 150] = value
    stack[3, 5, 151] = np.inf
    stack[3, 6, 151] = -np.inf
    x, y = md.center_of_mass(stack)
    ex, ey = _numpy_centres(stack)
    bad = np.zeros(300, bool)
    bad[[4, 150, 151]] = True
    assert np.isnan(x[bad]).all() and np.isnan(y[bad]).all()
    assert np.isnan(ex[bad]).all() and np.isnan(ey[bad]).all()
    np.testing.assert_array_equal(x[~bad], clean[0][~bad])
    np.testing.assert_array_equal(y[~bad], clean[1][~bad])


def test_zero_mass_is_nan():
    stack = np.zeros((9, 9, 3), np.float32)
    stack[:, :, 1] = 1.0
    x, y = md.center_of_mass(stack)
    assert np.isnan(x[[0, 2]]).all() and np.isnan(y[[0, 2]]).all()
    assert (x[1], y[1]) == (4.0, 4.0)


def test_numpy_when_numba_is_missing(monkeypatch):
    stack = _stack(16, 200, np.float32)
    monkeypatch.setattr(xy, "_moments_kernel", lambda: None)
    for a, b in zip(md.center_of_mass(stack), _numpy_centres(stack)):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_read_only_and_other_memory_orders(dtype):
    stack = _stack(16, 200, dtype)
    expected = md.center_of_mass(stack)
    read_only = stack.copy()
    read_only.flags.writeable = False
    for a, b in zip(md.center_of_mass(read_only), expected):
        assert a.tobytes() == b.tobytes()
    frame_major = np.ascontiguousarray(stack.transpose(2, 0, 1)).transpose(1, 2, 0)  # NumPy's sums
    for a, b in zip(md.center_of_mass(frame_major), expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_import_does_not_import_numba():
    code = """
        import sys
        import magtrack_dask
        assert 'numba' not in sys.modules
        magtrack_dask.center_of_mass(__import__('numpy').ones((4, 4, 2)), background='mean')
        assert 'numba' not in sys.modules
        magtrack_dask.center_of_mass(__import__('numpy').ones((4, 4, 2)))
        assert 'numba' in sys.modules
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
