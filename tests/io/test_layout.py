"""Layout (magtrack_dask.io.layout): one vocabulary for the three axis orders, checked on real arrays."""

import json
import re

import numpy as np
import pytest
import zarr

from magtrack_dask.io.archive import create_archive, open_archive
from magtrack_dask.io.layout import Layout
from magtrack_dask.validation import InputError

ROIS = np.array([[0, 8, 0, 8], [4, 12, 10, 18]])
SHAPES = {Layout.TYX: (7, 20, 24), Layout.TBYX: (7, 2, 8, 8), Layout.YXT: (8, 8, 7)}


def test_a_layout_is_its_name():
    assert [m.value for m in Layout] == ["tyx", "tbyx", "yxt"]
    for m in Layout:
        assert m == m.value and str(m) == m.value and f"{m}" == m.value and f"{m:>5}" == f"{m.value:>5}"
        assert repr(m) == repr(m.value)  # messages that say {layout!r} read 'tyx'
        assert json.dumps({"layout": m}) == json.dumps({"layout": m.value})
        assert Layout.parse(m) is m and Layout.parse(m.value) is m


def test_dims_and_axes():
    assert Layout.TYX.dims == ("frame", "y", "x") and Layout.TYX.frame_axis == 0 and Layout.TYX.bead_axis is None
    assert Layout.TBYX.dims == ("frame", "bead", "y", "x") and Layout.TBYX.bead_axis == 1
    assert Layout.YXT.dims == ("y", "x", "frame") and Layout.YXT.frame_axis == 2
    assert [m.ndim for m in Layout] == [3, 4, 3]
    assert [m.full_frames for m in Layout] == [True, False, False]


@pytest.mark.parametrize("layout", list(Layout))
def test_shape_questions_agree_with_a_stored_archive(tmp_path, layout):
    """What Layout says about a shape is what the archive on disk holds."""
    rois = ROIS if layout is Layout.TYX else None
    create_archive(tmp_path / "a.zarr", shape=SHAPES[layout], layout=layout, rois=rois, chunk_frames=3)
    a = open_archive(tmp_path / "a.zarr", check=False)
    frames = zarr.open_group(tmp_path / "a.zarr", mode="r")["frames"]
    assert a.layout is layout
    assert tuple(frames.metadata.dimension_names) == layout.dims
    assert frames.chunks[layout.frame_axis] == 3 and layout.n_frames(frames.shape) == a.n_frames == 7
    assert layout.n_beads(frames.shape, a.rois) == a.n_beads == (1 if layout is Layout.YXT else 2)
    assert layout.image_shape(frames.shape) == ((20, 24) if layout is Layout.TYX else (8, 8))
    assert layout.roi_size(frames.shape, a.rois) == 8


def test_full_frames_need_rois_to_count_beads():
    assert Layout.TYX.n_beads((5, 20, 24)) == 0 and Layout.TYX.roi_size((5, 20, 24)) is None
    assert Layout.TYX.roi_size((5, 20, 24), ROIS) == 8


@pytest.mark.parametrize(
    ("ndim", "has_rois", "expected"),
    [(4, False, Layout.TBYX), (4, True, Layout.TBYX), (3, True, Layout.TYX), (3, False, Layout.YXT)],
)
def test_infer(ndim, has_rois, expected):
    assert Layout.infer(ndim, has_rois) is expected


def test_infer_refuses_other_ranks():
    with pytest.raises(InputError, match="source must be 3-D or 4-D to infer its layout; got 2-D. Pass layout="):
        Layout.infer(2, False)


@pytest.mark.parametrize("value", ["xyz", "TYX", "", None, 3, ("t", "y", "x")])
def test_parse_names_the_parameter(value):
    with pytest.raises(InputError, match=rf"unknown layout {re.escape(repr(value))}: layout must be one "
                                         r"of 'tyx', 'tbyx', 'yxt'"):
        Layout.parse(value)
    with pytest.raises(InputError, match="unknown --layout .*: --layout must be one of"):
        Layout.parse(value, "--layout")
