"""The three orders in which an archive stores its frames, as one vocabulary.

A :class:`Layout` is a string enum (``Layout.TYX == "tyx"``), so it is written to
attributes and JSON as its name and compares equal to it, and it answers the
questions the rest of the package asks about an array in that order: its
dimension names, where frames and beads are, how many beads and how large the
ROIs are.
"""

from __future__ import annotations

import enum
from typing import Any

from magtrack_dask.validation import InputError

__all__ = ["Layout"]


class Layout(str, enum.Enum):
    """Axis order of an archive's ``frames`` array.

    ``tyx``
        Full camera frames ``(frame, y, x)``; an ROI table says where the beads are.
    ``tbyx``
        Pre-cropped ROIs ``(frame, bead, y, x)``.
    ``yxt``
        One bead in the core's own layout ``(y, x, frame)``.
    """

    TYX = "tyx"
    TBYX = "tbyx"
    YXT = "yxt"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        # As its name: messages written as f"layout {layout!r}" read 'tyx' whether
        # they are given a Layout or the string it came from.
        return repr(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, value: Any, name: str = "layout") -> Layout:
        """``value`` as a Layout; an :class:`InputError` naming ``name`` otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown {name} {value!r}: {name} must be one of "
                             f"{', '.join(repr(m.value) for m in cls)}") from None

    @classmethod
    def infer(cls, ndim: int, has_rois: bool) -> Layout:
        """The layout of an array given without one: 4-D is ``tbyx``; 3-D ``tyx`` with ROIs, else ``yxt``."""
        if ndim == 4:
            return cls.TBYX
        if ndim == 3:
            return cls.TYX if has_rois else cls.YXT
        raise InputError(f"source must be 3-D or 4-D to infer its layout; got {ndim}-D. Pass layout=")

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names, axis by axis."""
        return _DIMS[self]

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def frame_axis(self) -> int:
        return self.dims.index("frame")

    @property
    def bead_axis(self) -> int | None:
        """The bead axis (``tbyx``), else None."""
        return self.dims.index("bead") if "bead" in self.dims else None

    @property
    def full_frames(self) -> bool:
        """True when the array holds whole camera frames and beads come from an ROI table."""
        return self is Layout.TYX

    def n_frames(self, shape: tuple[int, ...]) -> int:
        return int(shape[self.frame_axis])

    def image_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """``(height, width)`` of one image: the camera frame (``tyx``) or the ROI."""
        return int(shape[self.dims.index("y")]), int(shape[self.dims.index("x")])

    def n_beads(self, shape: tuple[int, ...], rois=None) -> int:
        """Beads in an array of this shape (``tyx``: rows of ``rois``)."""
        if self.full_frames:
            return 0 if rois is None else len(rois)
        return int(shape[self.bead_axis]) if self.bead_axis is not None else 1

    def roi_size(self, shape: tuple[int, ...], rois=None) -> int | None:
        """Side of one (square) ROI in px; ``tyx`` without ``rois``: None."""
        if self.full_frames:
            return None if rois is None or len(rois) == 0 else int(rois[0][1] - rois[0][0])
        return self.image_shape(shape)[1]


_DIMS = {
    Layout.TYX: ("frame", "y", "x"),
    Layout.TBYX: ("frame", "bead", "y", "x"),
    Layout.YXT: ("y", "x", "frame"),
}
