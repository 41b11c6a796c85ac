"""The pipeline's stage options as one object.

:func:`~magtrack_dask.core.pipeline.stack_to_xyzp_advanced` keeps the reference's
signature: keyword dictionaries under keys with spaces in them. Everything above
the core (``track``, jobs, the CLI, Z-LUT building) passes one
:class:`PipelineOptions` instead, validated once where it is made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from magtrack_dask.validation import InputError

__all__ = ["PipelineOptions"]

#: Reference key -> (field name, expected type).
_KEYS: dict[str, tuple[str, type]] = {
    "center_of_mass": ("center_of_mass", dict),
    "auto_conv": ("auto_conv", dict),
    "n auto_conv_multiline_sub_pixel": ("refine_rounds", int),
    "auto_conv_multiline_sub_pixel": ("auto_conv_multiline_sub_pixel", dict),
    "use fft_profile": ("use_fft_profile", bool),
    "fft_profile": ("fft_profile", dict),
    "radial_profile": ("radial_profile", dict),
    "lookup_z": ("lookup_z", dict),
}


@dataclass(frozen=True)
class PipelineOptions:
    """Options of every stage of the tracking pipeline.

    Each dictionary holds keyword arguments of the core function of the same
    name; an empty one keeps that function's defaults (the seed
    ``center_of_mass`` uses ``background='median'`` unless told otherwise).

    Attributes
    ----------
    center_of_mass, auto_conv, auto_conv_multiline_sub_pixel : dict
        Options of the x, y stages.
    refine_rounds : int
        Rounds of ``auto_conv_multiline_sub_pixel`` (the reference's
        ``"n auto_conv_multiline_sub_pixel"``), >= 0; default 5.
    use_fft_profile : bool
        Profiles from ``fft_profile_with_center`` instead of ``radial_profile``.
    fft_profile, radial_profile, lookup_z : dict
        Options of the profile and z stages.
    """

    center_of_mass: dict = field(default_factory=dict)
    auto_conv: dict = field(default_factory=dict)
    refine_rounds: int = 5
    auto_conv_multiline_sub_pixel: dict = field(default_factory=dict)
    use_fft_profile: bool = False
    fft_profile: dict = field(default_factory=dict)
    radial_profile: dict = field(default_factory=dict)
    lookup_z: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, (name, expected) in _KEYS.items():
            value = getattr(self, name)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise InputError(f"stage option {key!r} must be a {expected.__name__}, got {value!r}")
        if self.refine_rounds < 0:
            raise InputError(f"stage option 'n auto_conv_multiline_sub_pixel' must be >= 0, got {self.refine_rounds}")

    @classmethod
    def from_stage_options(cls, options: Mapping[str, Any] | None = None) -> PipelineOptions:
        """Options from the reference's keyword dictionary (keys as
        :func:`~magtrack_dask.stack_to_xyzp_advanced` takes them)."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(_KEYS))
        if unknown:
            raise InputError(f"unknown stage option {unknown[0]!r}; expected one of {sorted(_KEYS)}")
        return cls(**{_KEYS[key][0]: value for key, value in options.items()})

    @classmethod
    def coerce(cls, pipeline: PipelineOptions | Mapping[str, Any] | None) -> PipelineOptions:
        """``pipeline`` as given, a reference keyword dictionary, or None (the defaults)."""
        if isinstance(pipeline, cls):
            return pipeline
        if pipeline is None or isinstance(pipeline, Mapping):
            return cls.from_stage_options(pipeline)
        raise InputError(f"pipeline must be a PipelineOptions or a dict of stage options, "
                         f"got {type(pipeline).__name__}")

    def stage_options(self) -> dict[str, Any]:
        """The options that differ from the defaults, under the reference's keys
        (``{}`` for the defaults: plain :func:`~magtrack_dask.stack_to_xyzp`)."""
        default = PipelineOptions()
        return {key: getattr(self, name) for key, (name, _) in _KEYS.items()
                if getattr(self, name) != getattr(default, name)}

    @property
    def is_default(self) -> bool:
        return not self.stage_options()

    def replace(self, **changes: Any) -> PipelineOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
