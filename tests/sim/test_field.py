"""The real-looking camera field (magtrack_dask.sim.field) that bead finding is tested on."""

import numpy as np
from scipy import fft

from magtrack_dask.sim.field import camera_field


def test_camera_field_truth_and_camera():
    kwargs = dict(spacing=96, n_pairs=2, n_edge=4, n_debris=5, seed=1)
    frame, truth = camera_field((600, 500), **kwargs)
    assert frame.shape == (600, 500) and frame.dtype == np.uint8
    kinds = dict(zip(*np.unique(truth["kind"], return_counts=True)))
    assert kinds == {"isolated": 5 * 4 - 2 - 5, "pair": 4, "edge": 4}
    assert sorted(k for _, _, k in truth["debris"]) == ["blob", "fibre", "saturated", "smooth", "speck"]
    assert (frame == 255).any()  # the saturated blob
    left, right = frame[:, :100].mean(), frame[:, -100:].mean()
    assert left > 1.15 * right  # uneven light
    np.testing.assert_array_equal(camera_field((600, 500), **kwargs)[0], frame)  # seeded
    # JPEG-like: at quality 75 the 8 x 8 blocks keep far fewer DCT coefficients than at 100.
    lossless = camera_field((600, 500), **kwargs, jpeg_quality=100)[0]
    assert kept_coefficients(frame) < 0.5 * kept_coefficients(lossless)


def kept_coefficients(frame):
    """Fraction of the 8 x 8 block DCT coefficients of a frame that are not ~0."""
    h, w = frame.shape[0] // 8 * 8, frame.shape[1] // 8 * 8  # whole blocks
    blocks = frame[:h, :w].astype(float).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coeffs = fft.dctn(blocks - 128, axes=(2, 3), norm="ortho")
    return np.mean(np.abs(coeffs) > 1.0)
