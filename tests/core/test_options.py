"""PipelineOptions: one object for the stage options, to and from the reference's keys."""

import pytest

from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.validation import InputError

REFERENCE = {
    "center_of_mass": {"background": "mean"},
    "auto_conv": {},
    "n auto_conv_multiline_sub_pixel": 3,
    "auto_conv_multiline_sub_pixel": {"n_local": 7},
    "use fft_profile": True,
    "fft_profile": {"oversample": 2},
    "radial_profile": {"oversample": 2},
    "lookup_z": {"n_local": 5},
}


def test_coerce():
    default = PipelineOptions()
    assert PipelineOptions.coerce(None) == default and default.is_default and default.stage_options() == {}
    options = PipelineOptions(refine_rounds=2)
    assert PipelineOptions.coerce(options) is options
    assert PipelineOptions.coerce({"n auto_conv_multiline_sub_pixel": 2}) == options
    with pytest.raises(InputError, match="pipeline must be a PipelineOptions or a dict of stage options, got list"):
        PipelineOptions.coerce(["radial_profile"])


def test_stage_options_round_trip():
    options = PipelineOptions.from_stage_options(REFERENCE)
    assert options.refine_rounds == 3 and options.use_fft_profile and options.lookup_z == {"n_local": 5}
    # Only what differs from the defaults comes back ("auto_conv": {} is the default).
    assert options.stage_options() == {k: v for k, v in REFERENCE.items() if k != "auto_conv"}
    assert PipelineOptions.from_stage_options(options.stage_options()) == options
    assert PipelineOptions.from_stage_options({"n auto_conv_multiline_sub_pixel": 5}).is_default
    assert options.replace(refine_rounds=5).stage_options()["radial_profile"] == {"oversample": 2}


def test_unknown_keys_and_wrong_types():
    with pytest.raises(InputError, match=r"unknown stage option 'radial'; expected one of \["):
        PipelineOptions.from_stage_options({"radial": {"oversample": 2}})
    with pytest.raises(InputError, match="stage option 'use fft_profile' must be a bool, got 'yes'"):
        PipelineOptions.from_stage_options({"use fft_profile": "yes"})
    with pytest.raises(InputError, match="stage option 'n auto_conv_multiline_sub_pixel' must be a int, got True"):
        PipelineOptions(refine_rounds=True)
    with pytest.raises(InputError, match="must be >= 0, got -1"):
        PipelineOptions(refine_rounds=-1)
    with pytest.raises(InputError, match="stage option 'radial_profile' must be a dict, got 2"):
        PipelineOptions(radial_profile=2)
    with pytest.raises(InputError):
        PipelineOptions().replace(lookup_z=None)
