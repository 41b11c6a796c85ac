"""Shared by the bad-input tables of each package (tests/*/test_bad_input.py).

Every case must raise the stated exception (the CLI: exit 2 with one line on
stderr) whose message names the parameter and says what was expected, and
must create or change nothing on disk: the ``unchanged`` fixture (conftest)
snapshots the work folder, the inputs and the shared archives (paths, sizes,
mtimes) before and after.

Semantics chosen where the issues left them open:

* NaN and inf pixels are *data*, not bad input: the core returns NaN x, y for
  those images (no exception, no warning) and ``track`` flags them (bit 1).
* The core kernels need float32/float64 (TypeError otherwise); the pipelines
  also take uint8/uint16 camera counts; bool, complex and other integers are
  a TypeError. ``track`` takes any integer or float pixels (it converts per
  chunk) and refuses bool and complex with a TypeError.
* A Z-LUT's z row must be finite and strictly monotonic (a duplicate z makes
  the lookup ambiguous); profile rows 2.. must be finite; row 1 (the central
  bin, never correlated) may be NaN.
"""

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

RNG = np.random.default_rng(5)


def stack(shape, dtype=np.float64):
    """Random pixels of any shape and dtype: the checks come before the pixels matter."""
    data = RNG.uniform(0, 200, shape)
    if np.dtype(dtype).kind == "c":
        return (data + 1j * data).astype(dtype)
    return data.astype(dtype)


@dataclass
class Ctx:
    """What a case may use: a work folder ``ws`` and read-only inputs."""

    ws: str
    arch: dict  # layout -> simulated archive (conftest)
    zlut: np.ndarray  # (1 + ROI // 2, n_ref), fits the archives
    inputs: dict  # name -> path of a prepared bad input

    def __call__(self, name: str) -> str:
        return os.path.join(self.ws, name)


@dataclass
class Case:
    id: str
    call: Callable[[Ctx], object]
    exc: type
    match: str


def run_case(case: Case, ctx: Ctx) -> None:
    """The case raises its exception with a message matching its pattern."""
    with pytest.raises(case.exc, match=case.match):
        case.call(ctx)


def tif(c: Ctx) -> str:
    """The 4-frame 64 px TIFF of ``inputs`` (skips without tifffile)."""
    pytest.importorskip("tifffile")
    return c.inputs["tif"]


def zlut_with(c: Ctx, **rows) -> np.ndarray:
    lut = c.zlut.copy()
    for key, value in rows.items():
        row, col = map(int, key[1:].split("_"))
        lut[row, col] = value
    return lut


def _dup_z(c: Ctx) -> np.ndarray:
    lut = c.zlut.copy()
    lut[0, 5] = lut[0, 4]
    return lut


def _nonmono(c: Ctx) -> np.ndarray:
    lut = c.zlut.copy()
    lut[0, [3, 4]] = lut[0, [4, 3]]
    return lut


def _per_bead_dup(c: Ctx) -> np.ndarray:
    luts = np.stack([c.zlut] * 3)
    luts[1, 0, 5] = luts[1, 0, 4]
    return luts
