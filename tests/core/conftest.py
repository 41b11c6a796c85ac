"""Fixtures shared by the core tests."""

import warnings

import numpy as np
import pytest

from magtrack_dask.simulate import render_beads


def _simulated_beads(n: int, rng_seed: int, **render_options):
    """(stack, x, y): ``n`` 64 px beads within 3 px of the centre, z 0.8-4 um."""
    rng = np.random.default_rng(rng_seed)
    x = 31.5 + rng.uniform(-3, 3, n)
    y = 31.5 + rng.uniform(-3, 3, n)
    z = rng.uniform(800, 4000, n)
    return render_beads(x, y, z, n_pixels=64, **render_options), x, y


@pytest.fixture(scope="session")
def simulated_beads():
    """The factory ``simulated_beads(n, seed, **render_options)``."""
    return _simulated_beads


@pytest.fixture
def no_warnings():
    """Turn every warning into an error for the test using it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
