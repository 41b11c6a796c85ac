"""Bad input to the core API: the stated error, naming the parameter; nothing created or changed (tests/bad_input.py)."""

import numpy as np
import pytest

from magtrack_dask import core

from tests.bad_input import Case, _dup_z, _nonmono, run_case, stack, zlut_with

CASES = [
    Case("stack_to_xyzp-2d", lambda c: core.stack_to_xyzp(stack((32, 32))), ValueError,
         r"stack must be a 3-D array of shape \(n_pixels, n_pixels, n_images\), got shape \(32, 32\)"),
    Case("stack_to_xyzp-4d", lambda c: core.stack_to_xyzp(stack((32, 32, 4, 2))), ValueError,
         r"stack must be a 3-D array .* got shape \(32, 32, 4, 2\)"),
    Case("stack_to_xyzp-list", lambda c: core.stack_to_xyzp([[1.0, 2.0], [3.0, 4.0]]), TypeError,
         r"stack must be a NumPy or CuPy array \(n_pixels, n_pixels, n_images\), got list"),
    Case("stack_to_xyzp-non-square", lambda c: core.stack_to_xyzp(stack((32, 30, 4))), ValueError,
         r"stack images must be square: shape \(n_pixels, n_pixels, n_images\) expected, got \(32, 30, 4\)"),
    Case("stack_to_xyzp-empty-images", lambda c: core.stack_to_xyzp(stack((0, 0, 4))), ValueError,
         r"stack images must be at least 5 x 5 pixels, got \(0, 0, 4\)"),
    Case("stack_to_xyzp-4px", lambda c: core.stack_to_xyzp(stack((4, 4, 4))), ValueError,
         r"stack images must be at least 5 x 5 pixels, got \(4, 4, 4\)"),
    Case("advanced-narrower-than-n_local",
         lambda c: core.stack_to_xyzp_advanced(stack((8, 8, 2)), auto_conv_multiline_sub_pixel={"n_local": 9}),
         ValueError, r"stack images must be at least 9 x 9 pixels, got \(8, 8, 2\)"),
    Case("stack_to_xyzp-zero-frames", lambda c: core.stack_to_xyzp(stack((32, 32, 0))), ValueError,
         r"stack has no images: shape \(n_pixels, n_pixels, 0\)"),
    Case("stack_to_xyzp-int32", lambda c: core.stack_to_xyzp(stack((32, 32, 4), np.int32)), TypeError,
         r"stack must be float32, float64, uint8 or uint16, got int32"),
    Case("stack_to_xyzp-bool", lambda c: core.stack_to_xyzp(stack((32, 32, 4)) > 100), TypeError,
         r"stack must be float32, float64, uint8 or uint16, got bool"),
    Case("stack_to_xyzp-complex", lambda c: core.stack_to_xyzp(stack((32, 32, 4), np.complex128)), TypeError,
         r"stack must be float32, float64, uint8 or uint16, got complex128"),
    Case("stack_to_xyzp-zlut-bins", lambda c: core.stack_to_xyzp(stack((32, 32, 4)), c.zlut[:11]), ValueError,
         r"profiles have 16 radial bins but zlut has 10 .*expected \(1 \+ 16, n_ref\)"),
    Case("stack_to_xyzp-zlut-nan", lambda c: core.stack_to_xyzp(stack((32, 32, 4)), zlut_with(c, r5_7=np.nan)),
         ValueError, r"zlut contains NaN or inf \(at row 5, column 7\)"),
    Case("advanced-unknown-option",
         lambda c: core.stack_to_xyzp_advanced(stack((32, 32, 4)), radial={"oversample": 2}), ValueError,
         r"unknown stage option 'radial'; expected one of \["),
    Case("advanced-option-type",
         lambda c: core.stack_to_xyzp_advanced(stack((32, 32, 4)), **{"use fft_profile": "yes"}), ValueError,
         r"stage option 'use fft_profile' must be a bool"),
    Case("center_of_mass-uint16", lambda c: core.center_of_mass(stack((32, 32, 4), np.uint16)), TypeError,
         r"stack must be float32 or float64, got uint16"),
    Case("center_of_mass-background", lambda c: core.center_of_mass(stack((32, 32, 4)), background="mode"),
         ValueError, r"background must be 'none', 'mean' or 'median', got 'mode'"),
    Case("radial_profile-x-length", lambda c: core.radial_profile(stack((32, 32, 4)), np.ones(3), np.ones(4)),
         ValueError, r"x must be a 1-D array with one value per image \(4\), got shape \(3,\)"),
    Case("radial_profile-complex-y",
         lambda c: core.radial_profile(stack((32, 32, 4)), np.ones(4), np.ones(4) * 1j), TypeError,
         r"y must be real numbers, got dtype complex128"),
    Case("radial_profile-oversample", lambda c: core.radial_profile(stack((32, 32, 4)), np.ones(4), np.ones(4), 0),
         ValueError, r"oversample must be an integer >= 1, got 0"),
    Case("auto_conv_multiline_sub_pixel-n_local",
         lambda c: core.auto_conv_multiline_sub_pixel(stack((32, 32, 4)), np.ones(4) * 16, np.ones(4) * 16,
                                                      n_local=4),
         ValueError, r"n_local must be an odd integer >= 3, got 4"),
    Case("lookup_z-zlut-1d", lambda c: core.lookup_z(stack((16, 4)), c.zlut[0]), ValueError,
         r"zlut must be 2-D, shape \(1 \+ n_bins, n_ref\), got shape \(\d+,\)"),
    Case("lookup_z-zlut-bins", lambda c: core.lookup_z(stack((16, 4)), c.zlut[:11]), ValueError,
         r"profiles have 16 radial bins but zlut has 10"),
    Case("lookup_z-non-monotonic-z", lambda c: core.lookup_z(stack((16, 4)), _nonmono(c)), ValueError,
         r"zlut\[0\] \(the z positions\) must be strictly increasing or decreasing.*z\[4\] = \S+ reverses"),
    Case("lookup_z-duplicate-z", lambda c: core.lookup_z(stack((16, 4)), _dup_z(c)), ValueError,
         r"zlut\[0\] \(the z positions\) must be strictly .*without duplicates; z\[5\] = \S+ repeats"),
    Case("lookup_z-nan-z", lambda c: core.lookup_z(stack((16, 4)), zlut_with(c, r0_2=np.nan)), ValueError,
         r"zlut contains NaN or inf \(at row 0, column 2\)"),
    Case("lookup_z-inf-profile", lambda c: core.lookup_z(stack((16, 4)), zlut_with(c, r9_0=np.inf)), ValueError,
         r"zlut contains NaN or inf \(at row 9, column 0\)"),
    Case("lookup_z-complex-zlut", lambda c: core.lookup_z(stack((16, 4)), c.zlut.astype(complex)), TypeError,
         r"zlut must be real numbers, got dtype complex128"),
    Case("crop-roi-outside", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), [[0, 16, 0, 16], [56, 72, 0, 16]]),
         ValueError, r"rois \[1\] extend outside the frame of 64 x 64 pixels"),
    Case("crop-rois-unequal", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), [[0, 16, 0, 16], [0, 8, 0, 8]]),
         ValueError, r"rois must all be squares of the same positive size; got heights \[16, 8\]"),
    Case("crop-rois-float", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), np.array([[0.0, 16, 0, 16]])),
         TypeError, r"rois must be integers \[top, bottom, left, right\], got dtype float64"),
    Case("crop-rois-shape", lambda c: core.crop_stack_to_rois(stack((64, 64, 2)), [0, 16, 0, 16]), ValueError,
         r"rois must have shape \(n_roi, 4\) with n_roi >= 1, got \(4,\)"),
    Case("crop-stack-2d", lambda c: core.crop_stack_to_rois(stack((64, 64)), [[0, 16, 0, 16]]), ValueError,
         r"stack must be a 3-D array \(n_rows, n_cols, n_images\), got shape \(64, 64\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, ctx, unchanged):
    run_case(case, ctx)


# -- what is data, not bad input ---------------------------------------------------------------------------------------


def test_nan_and_inf_pixels_give_nan_positions(simulated_beads, no_warnings):
    images, x, _ = simulated_beads(4, 3)
    images[10, 20, 1] = np.nan
    images[30, 30, 2] = np.inf
    got_x, got_y, z, profiles = core.stack_to_xyzp(images)
    assert np.isnan(got_x[[1, 2]]).all() and np.isnan(got_y[[1, 2]]).all()
    np.testing.assert_allclose(got_x[[0, 3]], x[[0, 3]], atol=0.05)
    assert np.isnan(z).all() and profiles.shape == (32, 4)


def test_zlut_central_bin_may_be_nan(zlut):
    lut = zlut.copy()
    lut[1, 3] = np.nan  # the central pixel: never correlated
    profiles = zlut[1:, 10:12].copy()
    np.testing.assert_allclose(core.lookup_z(profiles, lut), core.lookup_z(profiles, zlut), rtol=1e-9)
