"""The quality flags of every tracked image: one bit each, described once.

The results' ``flags`` variable (uint8) holds these bits; its attributes, the
job summary's counts and every test of a bit derive from :class:`Flag`.
"""

from __future__ import annotations

import enum

__all__ = ["Flag", "FLAG_BITS", "flag_attrs"]


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
