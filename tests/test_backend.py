"""The array backend: importing costs nothing and changes nothing; CuPy is found lazily.

Imports are checked in fresh interpreters (subprocesses), because this test
session has long since imported NumPy, the package, and possibly the reference
``magtrack`` (which calls ``np.seterr`` and warns at import).

A fake ``cupy`` package written to a temporary directory stands in for the
cases this machine cannot show by itself: CuPy installed but not imported at
package import, CuPy installed on a machine without a GPU, and a broken CuPy.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask._backend import NUMPY_AS_CUPY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, fake_cupy=None, tmp_path=None):
    """Run ``code`` under ``python -W error`` in a fresh interpreter; return stdout."""
    env = dict(os.environ)
    paths = [ROOT]
    if fake_cupy is not None:
        pkg = tmp_path / "cupy"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent(fake_cupy))
        paths.insert(0, str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # no warnings, no noise
    return proc.stdout


# CuPy installed, no usable GPU: importing works, cuda.is_available() is False.
FAKE_CUPY_NO_GPU = """
    import sys
    sys.stdout.write("fake cupy imported\\n")

    class cuda:
        @staticmethod
        def is_available():
            return False
"""

# A CuPy whose import fails at runtime (e.g. a broken CUDA install).
FAKE_CUPY_BROKEN = """
    raise RuntimeError("CUDA driver version is insufficient")
"""


def test_import_emits_no_warnings_and_does_not_import_cupy():
    run_python("import magtrack_dask, sys; assert 'cupy' not in sys.modules")


def test_import_does_not_import_an_installed_cupy(tmp_path):
    out = run_python(
        """
        import sys
        import magtrack_dask
        import magtrack_dask.core
        assert 'cupy' not in sys.modules
        magtrack_dask.stack_to_xyzp  # touching the API does not import it either
        assert 'cupy' not in sys.modules
        """,
        fake_cupy=FAKE_CUPY_NO_GPU,
        tmp_path=tmp_path,
    )
    assert "fake cupy imported" not in out


def test_import_keeps_numpy_error_state():
    run_python(
        """
        import numpy as np
        np.seterr(all="raise", under="warn")
        before = np.geterr()
        import magtrack_dask
        assert np.geterr() == before, np.geterr()
        """
    )


def test_numpy_path_never_imports_cupy(tmp_path):
    """Running the core on NumPy arrays never needs CuPy."""
    run_python(
        """
        import sys
        import numpy as np
        import magtrack_dask as md
        stack = np.random.default_rng(0).normal(100, 1, (16, 16, 3))
        md.stack_to_xyzp(stack)
        md.fft_profile(stack)
        assert 'cupy' not in sys.modules
        """,
        fake_cupy=FAKE_CUPY_NO_GPU,
        tmp_path=tmp_path,
    )


def test_in_process_types():
    assert type(md.is_cupy_available()) is bool
    assert type(md.check_cupy()) is bool
    if not md.is_cupy_available():
        assert md.cp is NUMPY_AS_CUPY
        assert md.check_cupy() is False
    else:
        assert md.cp.__name__ == "cupy"
    if md.check_cupy():
        assert md.is_cupy_available()
    from magtrack_dask import cp

    assert cp is md.cp


def test_without_cupy(tmp_path):
    run_python(
        """
        import sys
        sys.modules["cupy"] = None  # as if not installed
        import numpy as np
        import magtrack_dask as md
        from magtrack_dask import cp
        from magtrack_dask._backend import NUMPY_AS_CUPY
        assert md.is_cupy_available() is False
        assert md.check_cupy() is False
        assert md.cp is NUMPY_AS_CUPY and cp is NUMPY_AS_CUPY
        assert cp.sum is np.sum and cp.ndarray is np.ndarray  # otherwise NumPy
        """
    )


def test_cupy_without_gpu(tmp_path):
    out = run_python(
        """
        import magtrack_dask as md
        import sys
        assert md.is_cupy_available() is True
        assert md.check_cupy() is False  # importable, but no device
        assert md.cp is sys.modules["cupy"]  # the real package, not the stand-in
        print("ok")
        """,
        fake_cupy=FAKE_CUPY_NO_GPU,
        tmp_path=tmp_path,
    )
    assert out.splitlines() == ["fake cupy imported", "ok"]


def test_broken_cupy_falls_back_to_numpy(tmp_path):
    run_python(
        """
        import numpy as np
        import magtrack_dask as md
        from magtrack_dask._backend import NUMPY_AS_CUPY
        assert md.is_cupy_available() is False
        assert md.check_cupy() is False
        assert md.cp is NUMPY_AS_CUPY
        md.center_of_mass(np.ones((8, 8, 2)))
        """,
        fake_cupy=FAKE_CUPY_BROKEN,
        tmp_path=tmp_path,
    )


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="no_such_thing"):
        md.no_such_thing  # noqa: B018


def test_numpy_in_numpy_out():
    """Results stay on the input's device: NumPy arrays for NumPy input."""
    stack = np.random.default_rng(1).normal(100, 1, (16, 16, 3))
    for out in (md.center_of_mass(stack), md.stack_to_xyzp(stack), (md.radial_profile(stack, *md.center_of_mass(stack)),)):
        for a in out:
            assert type(a) is np.ndarray


# ------------------------------------------------------------------ cp without CuPy
# Code written for the reference package calls cp.asnumpy, cp.get_array_module and
# cp.cuda.is_available() on any machine; without CuPy they behave as the
# reference's own fallback does, and every other name is NumPy's.


def test_cp_without_cupy_runs_code_written_for_the_reference():
    run_python(
        """
        import sys
        sys.modules["cupy"] = None  # as if not installed
        import numpy as np
        import magtrack_dask as md
        from magtrack_dask import cp

        stack = np.random.default_rng(0).normal(100, 1, (16, 16, 3))
        xp = cp.get_array_module(stack)
        assert xp is np
        assert cp.get_array_module(stack, stack[0]) is np  # CuPy's signature: any number of arrays
        assert cp.get_array_module([1, 2]) is np
        assert cp.cuda.is_available() is False
        x, y, z, profiles = md.stack_to_xyzp(cp.asarray(stack, dtype=cp.float64))
        for a in (x, y, z, profiles):
            assert cp.asnumpy(a) is a  # host arrays come back as they are, no copy
        assert cp.asnumpy([1.0, 2.0]) == [1.0, 2.0]  # as the reference's fallback: unchanged
        assert 'cupy' not in sys.modules or sys.modules['cupy'] is None
        """
    )


def test_cp_without_cupy_is_numpy_otherwise():
    cp = NUMPY_AS_CUPY
    for name in ("sum", "asarray", "array", "ndarray", "float32", "float64", "nan", "random", "fft", "linalg",
                 "testing", "einsum", "__version__"):
        assert getattr(cp, name) is getattr(np, name), name
    assert {"asnumpy", "get_array_module", "cuda", "sum", "ndarray"} <= set(dir(cp))
    assert cp.__name__ == "magtrack_dask.cp"
    assert repr(cp) == "<module 'magtrack_dask.cp'>"  # not NumPy's files
    with pytest.raises(AttributeError, match="no_such_function"):
        cp.no_such_function  # noqa: B018
    a = np.arange(6.0).reshape(2, 3)
    assert cp.asnumpy(a) is a
    view = a.T
    assert cp.asnumpy(view) is view  # a view stays that view (no copy, no reordering)
    assert cp.get_array_module() is np
    assert cp.cuda.is_available() is False


def test_cp_without_cupy_matches_the_reference_fallback():
    """The reference's own ``cp`` without CuPy, call for call (compared in a
    fresh interpreter where CuPy cannot be imported, so the reference takes its
    fallback whatever this machine has)."""
    pytest.importorskip("magtrack")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    code = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["cupy"] = None
        import numpy as np
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from magtrack._cupy import cp as ref
        from magtrack_dask import cp as ours

        a = np.arange(6.0).reshape(2, 3)
        for obj in (a, a.T, a[0], [1, 2], 3.5, None):
            assert ref.asnumpy(obj) is obj and ours.asnumpy(obj) is obj, obj
            assert ref.get_array_module(obj) is ours.get_array_module(obj) is np
        assert ref.cuda.is_available() is ours.cuda.is_available() is False
        for name in ("sum", "float32", "random", "fft", "linalg", "testing", "ndarray"):
            assert getattr(ref, name) is getattr(ours, name), name
        print("same")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "same"


def test_cp_is_the_real_cupy_when_importable():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    assert md.cp is cupy
    from magtrack_dask import cp

    assert cp is cupy
