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
        assert md.cp is np
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
        assert md.is_cupy_available() is False
        assert md.check_cupy() is False
        assert md.cp is np and cp is np
        """
    )


def test_cupy_without_gpu(tmp_path):
    out = run_python(
        """
        import magtrack_dask as md
        assert md.is_cupy_available() is True
        assert md.check_cupy() is False  # importable, but no device
        assert md.cp.__name__ == "cupy"
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
        assert md.is_cupy_available() is False
        assert md.check_cupy() is False
        assert md.cp is np
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
