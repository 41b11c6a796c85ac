"""Shared fixtures: small simulated archives in every layout and a matching Z-LUT."""

import numpy as np
import pytest

ROI = 32  # px; small ROIs keep the suite fast
N_FRAMES = 45  # not a multiple of CHUNK_FRAMES: the last chunk is short
CHUNK_FRAMES = 16
Z_RANGE_NM = (800.0, 2400.0)  # rings fit in 32 px ROIs


@pytest.fixture(scope="session")
def archives(tmp_path_factory):
    """Paths of simulated archives, one per layout (3 beads; 1 for 'yxt')."""
    from magtrack_dask.storage import write_simulated_archive

    root = tmp_path_factory.mktemp("archives")
    paths = {}
    for layout, n_beads in (("tyx", 3), ("tbyx", 3), ("yxt", 1)):
        paths[layout] = str(root / f"{layout}.zarr")
        write_simulated_archive(
            paths[layout], N_FRAMES, n_beads, roi=ROI, layout=layout, chunk_frames=CHUNK_FRAMES,
            photons=1e4, seed=7, z_range_nm=Z_RANGE_NM, pixel_size_nm=100.0, frame_rate_hz=50.0,
        )
    return paths


@pytest.fixture(scope="session")
def zlut():
    """A Z-LUT (1 + ROI // 2, n_ref) covering the archives' z range with margin."""
    from magtrack_dask.simulate import make_zlut

    # averaged over sub-pixel positions: a LUT of a perfectly centred bead biases z by ~150 nm
    return make_zlut(np.arange(Z_RANGE_NM[0] - 500, Z_RANGE_NM[1] + 501, 50.0), n_pixels=ROI, oversample_frames=16)
