"""Every variable of the tracking results, described once.

The results Dataset (:func:`~magtrack_dask.tracking.track`, the jobs' results
stores) holds exactly these variables and coordinates, with these dims, dtypes
and CF attributes; :mod:`magtrack_dask.tracking.dataset` builds it from here.
Each task returns one float64 array ``(bead, frame, field)``: :data:`FIELDS`
first, then the profile bins.
"""

from __future__ import annotations

from dataclasses import dataclass

from magtrack_dask.core.flags import flag_attrs

__all__ = ["Variable", "VARIABLES", "COORDINATES", "FIELDS", "N_FIELDS", "ROI_EDGES"]


@dataclass(frozen=True)
class Variable:
    """One variable or coordinate of the results.

    Attributes
    ----------
    name : str
    dims : tuple of str
    dtype : str
    units : str
        CF units; ``'1'`` for numbers without a unit. Some depend on the run
        (see ``description``) and are set by the Dataset's assembly.
    long_name : str
    description : str
        What it holds, when it is present.
    """

    name: str
    dims: tuple[str, ...]
    dtype: str
    units: str
    long_name: str
    description: str

    def attrs(self, **changes) -> dict:
        """The CF attributes ``units`` and ``long_name`` (``changes`` override or add)."""
        return {"units": self.units, "long_name": self.long_name, **changes}


BF = ("bead", "frame")
_FLAGS = flag_attrs(min_symmetry=0.0, edge_margin_px=0.0)  # units and long_name; the rest per run

#: Data variables, in the order of the Dataset.
VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable("x", BF, "float64", "px", "bead x position (column), full-frame pixels",
             "Centre column in the camera frame (ROI offset added); NaN where no bead was found."),
    Variable("y", BF, "float64", "px", "bead y position (row), full-frame pixels",
             "Centre row in the camera frame (ROI offset added); NaN where no bead was found."),
    Variable("z", BF, "float64", "nm", "bead z position from the Z-LUT",
             "In the Z-LUT's units (nm for the package's Z-LUTs); NaN without a Z-LUT or a match."),
    Variable("profiles", (*BF, "radius"), "float64", "counts", "radial intensity profile about the bead centre",
             "Mean intensity per ring; units 'counts' for integer camera data, '1' for float input."),
    Variable("flags", BF, "uint8", _FLAGS["units"], _FLAGS["long_name"],
             "Bit mask of magtrack_dask.core.flags.Flag; its attributes describe every bit."),
    Variable("x_nm", BF, "float64", "nm", "bead x position, full frame", "x times the pixel size, when known."),
    Variable("y_nm", BF, "float64", "nm", "bead y position, full frame", "y times the pixel size, when known."),
)}

#: The four edges of each bead's ROI, in the ROI table's column order.
ROI_EDGES = ("top", "bottom", "left", "right")

#: Coordinates.
COORDINATES: dict[str, Variable] = {v.name: v for v in (
    Variable("bead", ("bead",), "int64", "1", "bead index (row of the ROI table)", "0 .. n_beads - 1."),
    Variable("frame", ("frame",), "int64", "1", "frame number", "0 .. n_frames - 1."),
    Variable("radius", ("radius",), "float64", "px", "radial profile bin",
             "Ring radius in px (radial profiles); the bin number, units '1', for Fourier profiles."),
    *(Variable(f"roi_{edge}", ("bead",), "int64", "px",
               f"ROI {edge} edge (exclusive end)" if edge in ("bottom", "right") else f"ROI {edge} edge",
               "From the ROI table (offsets in the camera frame for pre-cropped ROIs).") for edge in ROI_EDGES),
    Variable("time", ("frame",), "float64", "s", "frame time",
             "From the archive's timestamps, or frame / frame rate; absent when neither is known."),
)}

#: The leading fields of a task's output ``(bead, frame, field)``; the profile bins follow.
FIELDS = ("x", "y", "z", "flags")
N_FIELDS = len(FIELDS)
