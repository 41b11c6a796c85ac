"""TIFF stacks into archives (magtrack_dask.io.tiff_import), streamed in bounded reads.

The command line's `import` (exit codes, messages) is tested in tests/test_cli.py.
"""

import numpy as np
import pytest

from magtrack_dask.io.archive import open_archive
from magtrack_dask.io.layout import Layout
from magtrack_dask.io.tiff_import import import_tiff
from magtrack_dask.validation import InputError

from tests.conftest import N_FRAMES

tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def tyx_frames(archives):
    a = open_archive(archives["tyx"])
    return a.data.compute(), a.rois


def test_import_streams_in_small_reads(tyx_frames, tmp_path):
    frames, rois = tyx_frames
    paths = []
    for i, (lo, hi) in enumerate([(0, 7), (7, 30), (30, N_FRAMES)]):  # chunk edges fall inside files
        paths.append(tmp_path / f"part{i}.tif")
        tifffile.imwrite(paths[-1], frames[lo:hi])
    np.save(tmp_path / "rois.npy", rois)
    seen = []
    arch = import_tiff(paths, tmp_path / "a.zarr", rois=tmp_path / "rois.npy", shard_frames=10, pages_per_read=3,
                       progress=lambda done, total, n: seen.append((done, total, n)))
    np.testing.assert_array_equal(arch.data.compute(), frames)
    np.testing.assert_array_equal(arch.rois, rois)
    assert arch.layout is Layout.TYX and arch.data.chunks[0] == (10, 10, 10, 10, 5)
    assert seen == [(0, 5, 0), (1, 5, 10), (2, 5, 20), (3, 5, 30), (4, 5, 40), (5, 5, 45)]
    assert arch.attrs["imported_from"] == [str(p) for p in paths]


def test_one_bead_and_hyperstacks(tyx_frames, archives, tmp_path):
    crop = tyx_frames[0][:, 8:40, 8:40]
    tifffile.imwrite(tmp_path / "bead.tif", crop, imagej=True, metadata={"finterval": 0.02})
    arch = import_tiff([tmp_path / "bead.tif"], tmp_path / "bead.zarr", layout="yxt", chunk_frames=16,
                       pages_per_read=5)
    assert arch.layout is Layout.YXT and arch.frame_rate_hz == pytest.approx(50.0)  # from ImageJ's finterval
    np.testing.assert_array_equal(arch.data.compute(), crop.transpose(1, 2, 0))
    tbyx = open_archive(archives["tbyx"]).data.compute()
    tifffile.imwrite(tmp_path / "hyper.tif", tbyx, imagej=True, metadata={"axes": "TCYX"})
    arch = import_tiff([tmp_path / "hyper.tif"], tmp_path / "hyper.zarr", pages_per_read=4, frame_rate_hz=20.0)
    assert arch.layout is Layout.TBYX and arch.frame_rate_hz == 20.0 and arch.n_beads == 3
    np.testing.assert_array_equal(arch.data.compute(), tbyx)


def test_refusals_create_nothing(tyx_frames, tmp_path):
    frames, rois = tyx_frames
    tifffile.imwrite(tmp_path / "a.tif", frames[:5])
    tifffile.imwrite(tmp_path / "small.tif", frames[:5, :40, :40])
    tifffile.imwrite(tmp_path / "float.tif", frames[:5].astype(np.float32))
    out = tmp_path / "out.zarr"
    cases = [
        (([],), {}, InputError, "no TIFF files given"),
        (([tmp_path / "nope.tif"],), {}, FileNotFoundError, "TIFF file not found: .*nope.tif"),
        (([tmp_path / "a.tif", tmp_path / "small.tif"],), {"rois": rois}, InputError,
         r"small.tif: frames of shape \(40, 40\) uint16 differ from .*a.tif's \(88, 88\) uint16"),
        (([tmp_path / "a.tif", tmp_path / "float.tif"],), {"rois": rois}, InputError, "float32 differ from"),
        (([tmp_path / "a.tif"],), {}, InputError, r"frames of 88 x 88 px need an ROI table \(--rois FILE\)"),
        (([tmp_path / "a.tif"],), {"layout": "tbyx"}, InputError, "layout 'tbyx' does not fit a 3-D TIFF series"),
        (([tmp_path / "a.tif"],), {"layout": "xyt"}, InputError, "unknown layout 'xyt': layout must be one of"),
        (([tmp_path / "a.tif"],), {"layout": "tyx"}, InputError, "rois is required for layout 'tyx'"),
    ]
    for args, kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            import_tiff(*args, out, **kwargs)
        assert not out.exists(), match
