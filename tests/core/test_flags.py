"""Flag, its attributes, and pack_flags."""

import numpy as np
import pytest

from magtrack_dask._backend import check_cupy
from magtrack_dask.core.flags import FLAG_BITS, Flag, flag_attrs, pack_flags


def test_bits_and_attributes():
    assert FLAG_BITS == {"xy_not_found": 1, "z_at_lut_edge_or_nan": 2, "saturated": 4, "near_roi_edge": 8,
                         "input_unreadable": 16}
    assert Flag.SATURATED.key == "saturated"
    attrs = flag_attrs(min_symmetry=0.5, edge_margin_px=8.0)
    assert attrs["flag_masks"] == [1, 2, 4, 8, 16] and attrs["flag_meanings"].split() == list(FLAG_BITS)
    assert "below 0.5: no bead" in attrs["flag_descriptions"] and "within 8 px of the ROI" in attrs["flag_descriptions"]
    assert attrs["units"] == "1"


def _reference(x, y, z, roi, margin, z_ref, saturated):
    """Bit by bit, value by value."""
    out = np.zeros(x.shape, np.uint8)
    for b, t in np.ndindex(x.shape):
        bits = 0
        if np.isnan(x[b, t]) or np.isnan(y[b, t]):
            bits |= 1
        if z_ref is not None:
            ref = np.sort(np.atleast_2d(z_ref)[b if np.ndim(z_ref) == 2 else 0])
            if np.isnan(z[b, t]) or z[b, t] <= ref[1] or z[b, t] >= ref[-2]:
                bits |= 2
        if saturated is not None and saturated[b, t]:
            bits |= 4
        c = (x[b, t], y[b, t])
        if any(v < margin or v > roi - 1 - margin for v in c):
            bits |= 8
        out[b, t] = bits
    return out


@pytest.mark.parametrize("per_bead", [False, True])
def test_pack_flags_sets_each_bit_where_it_belongs(per_bead):
    rng = np.random.default_rng(2)
    x, y = rng.uniform(-2, 34, (3, 50)), rng.uniform(-2, 34, (3, 50))
    x[0, :5], y[1, 5:9] = np.nan, np.nan
    z = rng.uniform(0, 1000, (3, 50))
    z[2, :4] = np.nan
    z_ref = np.linspace(100, 900, 9)
    if per_bead:
        z_ref = np.stack([z_ref, z_ref[::-1] + 50, z_ref - 80])  # decreasing z is a table too
    saturated = rng.random((3, 50)) < 0.1
    flags = pack_flags(x, y, z, roi_size=32, edge_margin_px=4.0, z_ref=z_ref, saturated=saturated)
    assert flags.dtype == np.uint8 and flags.shape == (3, 50)
    np.testing.assert_array_equal(flags, _reference(x, y, z, 32, 4.0, z_ref, saturated))
    assert all((flags & bit).any() for bit in (1, 2, 4, 8))
    plain = pack_flags(x, y, roi_size=32, edge_margin_px=4.0)  # no LUT, no saturation
    np.testing.assert_array_equal(plain, flags & (Flag.XY_NOT_FOUND | Flag.NEAR_ROI_EDGE))


@pytest.mark.gpu
@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
def test_pack_flags_on_cupy():
    import cupy

    rng = np.random.default_rng(3)
    x, y, z = rng.uniform(-2, 34, (2, 20)), rng.uniform(-2, 34, (2, 20)), rng.uniform(0, 1000, (2, 20))
    x[0, 0] = np.nan
    z_ref = np.linspace(100, 900, 9)
    got = pack_flags(*(cupy.asarray(a) for a in (x, y, z)), roi_size=32, edge_margin_px=4.0,
                     z_ref=cupy.asarray(z_ref))
    np.testing.assert_array_equal(got.get(), pack_flags(x, y, z, roi_size=32, edge_margin_px=4.0, z_ref=z_ref))
