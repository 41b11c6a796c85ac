"""Crops of frame chunks by an ROI table and of pre-cropped chunks; saturation per bead and frame."""

import numpy as np
import pytest

from magtrack_dask._backend import check_cupy
from magtrack_dask.core.rois import crop_beads, crop_rois, saturated_beads, saturated_rois, saturated_stack

ROIS = np.array([[4, 20, 2, 18], [4, 20, 22, 38], [24, 40, 10, 26]])


@pytest.fixture(scope="module")
def frames():
    """(40, 48, 44) uint16 frames with hot pixels anywhere in frames 6..39 and in frames 3, 4, 5
    only above, between and below the ROIs."""
    rng = np.random.default_rng(0)
    block = rng.integers(0, 60000, (40, 48, 44), dtype=np.uint16)
    for f, yy, xx in zip(rng.integers(6, 40, 30), rng.integers(0, 48, 30), rng.integers(0, 44, 30)):
        block[f, yy, xx] = 65535
    block[3, 2, 5] = block[4, 10, 20] = block[5, 45, 3] = 65535
    return block


def per_roi_max(frames, rois=ROIS):
    return np.stack([frames[:, t:b, l:r].max(axis=(1, 2)) == np.iinfo(frames.dtype).max for t, b, l, r in rois])


@pytest.mark.parametrize("step", [1, 3, 4])
def test_crops_are_the_rois_bead_by_bead(frames, step):
    n = frames.shape[0]
    images = crop_rois(frames, ROIS, step=step)
    w = -(-16 // step)
    assert images.shape == (3 * n, w, w) and images.dtype == np.uint16 and images.flags.c_contiguous
    for b, (t, bo, l, r) in enumerate(ROIS):
        np.testing.assert_array_equal(images[b * n : (b + 1) * n], frames[:, t:bo:step, l:r:step])
    as_float = crop_rois(frames[:, ::-1], ROIS.tolist(), dtype=np.float32, step=step)  # any memory order, a list
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, crop_rois(frames[:, ::-1].copy(), ROIS, step=step).astype(np.float32))
    by_bead = np.stack([frames[:, t:b, l:r] for t, b, l, r in ROIS], axis=1)  # (frame, bead, y, x)
    np.testing.assert_array_equal(crop_beads(by_bead, step=step), images)
    np.testing.assert_array_equal(crop_beads(by_bead, dtype=np.float64, step=step), images.astype(np.float64))


def test_saturation_matches_a_per_roi_maximum(frames):
    want = per_roi_max(frames)
    assert want.sum() > 5 and not want[:, :6].any()  # frames 3-5: hot pixels outside every ROI only
    np.testing.assert_array_equal(saturated_rois(frames, ROIS), want)
    flipped = frames[:, ::-1]  # a chunk that is not C-contiguous
    np.testing.assert_array_equal(saturated_rois(flipped, ROIS), per_roi_max(flipped))
    by_bead = np.stack([frames[:, t:b, l:r] for t, b, l, r in ROIS], axis=1)
    np.testing.assert_array_equal(saturated_beads(by_bead), want)
    np.testing.assert_array_equal(saturated_stack(by_bead[:, 1].transpose(1, 2, 0)), want[1])
    small = (frames // 256).astype(np.uint8)
    small[9, 30, 15] = 255
    assert saturated_rois(small, ROIS)[2, 9]  # each integer dtype's own maximum


def test_floats_are_never_saturated(frames):
    hot = frames.astype(np.float32)
    assert not saturated_rois(hot, ROIS).any() and saturated_rois(hot, ROIS).shape == (3, 40)
    by_bead = np.stack([hot[:, t:b, l:r] for t, b, l, r in ROIS], axis=1)
    assert saturated_beads(by_bead).shape == (3, 40) and not saturated_beads(by_bead).any()
    assert saturated_stack(by_bead[:, 0].transpose(1, 2, 0)).shape == (40,)


@pytest.mark.gpu
@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
def test_cupy_chunks_give_the_numpy_results(frames):
    import cupy

    on_gpu = cupy.asarray(frames)
    by_bead = np.stack([frames[:, t:b, l:r] for t, b, l, r in ROIS], axis=1)
    for step in (1, 4):
        got = crop_rois(on_gpu, ROIS, dtype=np.float64, step=step)
        assert isinstance(got, cupy.ndarray)
        np.testing.assert_array_equal(got.get(), crop_rois(frames, ROIS, dtype=np.float64, step=step))
        np.testing.assert_array_equal(crop_beads(cupy.asarray(by_bead), step=step).get(),
                                      crop_beads(by_bead, step=step))
    np.testing.assert_array_equal(saturated_rois(on_gpu, ROIS).get(), per_roi_max(frames))
    np.testing.assert_array_equal(saturated_beads(cupy.asarray(by_bead)).get(), per_roi_max(frames))
    stack = by_bead[:, 2].transpose(1, 2, 0)
    np.testing.assert_array_equal(saturated_stack(cupy.asarray(stack)).get(), saturated_stack(stack))
