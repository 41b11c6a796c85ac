"""The quality flags of every tracked image: one bit each, described once.

The results' ``flags`` variable (uint8) holds these bits; its attributes, the
job summary's counts and every test of a bit derive from :class:`Flag`.
"""

from __future__ import annotations

import enum

import numpy as np

from magtrack_dask._backend import array_module

__all__ = ["Flag", "FLAG_BITS", "flag_attrs", "pack_flags"]


class Flag(enum.IntFlag):
    """Bits of the ``flags`` variable."""

    XY_NOT_FOUND = 1
    Z_AT_LUT_EDGE_OR_NAN = 2
    SATURATED = 4
    NEAR_ROI_EDGE = 8
    INPUT_UNREADABLE = 16

    @property
    def key(self) -> str:
        """The bit's short name in attributes and summaries (``xy_not_found``)."""
        return self.name.lower()


_DESCRIPTIONS = {
    Flag.XY_NOT_FOUND: "x or y is NaN (blank frame, or radial symmetry about the found centre below "
                       "{min_symmetry:g}: no bead in the ROI)",
    Flag.Z_AT_LUT_EDGE_OR_NAN: "z is NaN or within one reference step of either end of the Z-LUT "
                               "(only with a Z-LUT)",
    Flag.SATURATED: "a pixel of the ROI equals the integer dtype's maximum",
    Flag.NEAR_ROI_EDGE: "centre within {edge_margin_px:g} px of the ROI border",
    Flag.INPUT_UNREADABLE: "the input chunk of these frames could not be read (x, y, z, profiles NaN)",
}

#: ``{short name: bit}`` of every flag, in bit order.
FLAG_BITS: dict[str, int] = {f.key: int(f) for f in Flag}


def flag_attrs(*, min_symmetry: float, edge_margin_px: float) -> dict:
    """CF attributes of the ``flags`` variable, for the thresholds a run used."""
    described = "; ".join(f"{int(f)}: " + _DESCRIPTIONS[f].format(min_symmetry=min_symmetry,
                                                                  edge_margin_px=edge_margin_px) for f in Flag)
    return {
        "units": "1",
        "long_name": "quality flags (bit mask)",
        "flag_masks": [int(f) for f in Flag],
        "flag_meanings": " ".join(f.key for f in Flag),
        "flag_descriptions": described,
    }


def pack_flags(x, y, z=None, *, roi_size: int, edge_margin_px: float, z_ref=None, saturated=None):
    """The flags of tracked images, from their results.

    Parameters
    ----------
    x, y : (n_beads, n_frames) float arrays
        Centres in ROI pixels (before any full-frame offset); NaN: not found.
    z : (n_beads, n_frames) float array, optional
        z in the units of ``z_ref``; only looked at with ``z_ref``.
    roi_size : int
        ROI side, px.
    edge_margin_px : float
        :attr:`Flag.NEAR_ROI_EDGE` where the centre lies closer than this to
        the ROI border, px.
    z_ref : (n_ref,) or (n_beads, n_ref) float array, optional
        The reference z of the Z-LUT (row 0), shared or per bead. Without it
        :attr:`Flag.Z_AT_LUT_EDGE_OR_NAN` is never set.
    saturated : (n_beads, n_frames) bool array, optional
        Sets :attr:`Flag.SATURATED`.

    Returns
    -------
    flags : (n_beads, n_frames) uint8 array
        :attr:`Flag.XY_NOT_FOUND` where x or y is NaN;
        :attr:`Flag.Z_AT_LUT_EDGE_OR_NAN` where z is NaN or within one
        reference step of either end of its LUT.
    """
    xp = array_module(x, y)
    flags = xp.zeros(x.shape, dtype=np.uint8)
    flags[xp.isnan(x) | xp.isnan(y)] |= int(Flag.XY_NOT_FOUND)
    if z_ref is not None:
        ends = xp.sort(xp.atleast_2d(xp.asarray(z_ref)), axis=1)
        lo, hi = ends[:, 1:2], ends[:, -2:-1]  # within one LUT step of either end
        with np.errstate(invalid="ignore"):
            flags[xp.isnan(z) | (z <= lo) | (z >= hi)] |= int(Flag.Z_AT_LUT_EDGE_OR_NAN)
    if saturated is not None:
        flags[saturated] |= int(Flag.SATURATED)
    far = roi_size - 1 - edge_margin_px
    with np.errstate(invalid="ignore"):
        near = (x < edge_margin_px) | (y < edge_margin_px) | (x > far) | (y > far)
    flags[near] |= int(Flag.NEAR_ROI_EDGE)
    return flags
