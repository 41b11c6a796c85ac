"""The first frames of an archive or an image file (magtrack_dask.io.frames), for bead finding."""

import numpy as np
import pytest

from magtrack_dask.io.archive import open_archive
from magtrack_dask.io.frames import read_first_frames
from magtrack_dask.validation import InputError


def test_archive_tiff_and_npy_sources(archives, tmp_path):
    frames = open_archive(archives["tyx"]).data[:3].compute()
    np.testing.assert_array_equal(read_first_frames(archives["tyx"], 3), frames)
    np.save(tmp_path / "one.npy", frames[0])
    np.testing.assert_array_equal(read_first_frames(tmp_path / "one.npy", 5), frames[:1])  # fewer than asked
    np.save(tmp_path / "stack.npy", frames)
    np.testing.assert_array_equal(read_first_frames(tmp_path / "stack.npy", 2), frames[:2])
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "stack.tif", frames, photometric="minisblack")
    np.testing.assert_array_equal(read_first_frames(tmp_path / "stack.tif", 2), frames[:2])
    tifffile.imwrite(tmp_path / "one.tif", frames[0])
    np.testing.assert_array_equal(read_first_frames(tmp_path / "one.tif", 2), frames[:1])


def test_bad_sources(archives, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_first_frames(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="'tbyx' archive of cropped ROIs; finding beads needs full camera frames"):
        read_first_frames(archives["tbyx"])
    np.save(tmp_path / "4d.npy", np.zeros((2, 2, 8, 8)))
    with pytest.raises(InputError, match=r"expected an image .* got shape \(2, 2, 8, 8\)"):
        read_first_frames(tmp_path / "4d.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(InputError, match="cannot read the image"):
        read_first_frames(tmp_path / "junk.npy")
    with pytest.raises(InputError, match="n_frames"):
        read_first_frames(archives["tyx"], 0)
