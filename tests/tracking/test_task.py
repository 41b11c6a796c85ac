"""One task: the layouts dispatched to the core's kernels, the flags, unreadable chunks."""

import dask
import numpy as np
import pytest

from magtrack_dask import core
from magtrack_dask.core.flags import Flag
from magtrack_dask.core.options import PipelineOptions
from magtrack_dask.core.rois import crop_rois
from magtrack_dask.core.symmetry import SCREEN_STEP
from magtrack_dask.io.layout import Layout
from magtrack_dask.sim.beads import render_beads
from magtrack_dask.io.archive import open_archive
from magtrack_dask.tracking import track
from magtrack_dask.tracking.task import ChunkSpec, _saturated, _screen_sample, _unreadable, crop_chunk, track_chunk

from tests.conftest import ROI

ROIS = np.array([[8, 72, 8, 72], [8, 72, 88, 152]])


@pytest.fixture(scope="module")
def chunk():
    """(tyx block (n, 80, 160) uint16 of two 64 px beads, the same as tbyx (n, 2, 64, 64))."""
    rng = np.random.default_rng(5)
    n = 40
    beads = [render_beads(40 + rng.uniform(-2, 2, n), 40 + rng.uniform(-2, 2, n), rng.uniform(300, 5000, n),
                          n_pixels=80, photons=300.0, seed=s, dtype="float64") for s in (4, 5)]
    block = np.zeros((n, 80, 160), dtype=np.uint16)
    for b, frames in enumerate(beads):
        block[:, :, 80 * b : 80 * (b + 1)] = np.clip(np.rint(frames), 0, 65535).transpose(2, 0, 1)
    return block, np.stack([block[:, t:b, l:r] for t, b, l, r in ROIS], axis=1)


def test_layouts_crop_alike(chunk):
    block, tbyx = chunk
    stack = crop_chunk(block, Layout.TYX, ROIS, np.float64)
    assert stack.shape == (64, 64, 2 * block.shape[0]) and stack.dtype == np.float64
    assert np.moveaxis(stack, 2, 0).flags.c_contiguous  # frame-major: the core runs faster on it
    np.testing.assert_array_equal(stack[:, :, 3], block[3, 8:72, 8:72])
    np.testing.assert_array_equal(crop_chunk(tbyx, Layout.TBYX, None, np.float64), stack)
    yxt = np.ascontiguousarray(tbyx[:, 1].transpose(1, 2, 0))
    np.testing.assert_array_equal(crop_chunk(yxt, Layout.YXT, None, np.float32), yxt.astype(np.float32))
    assert crop_chunk(yxt, Layout.YXT, None, np.float64) is not yxt


def test_screen_sample_and_saturation_by_layout(chunk):
    block, tbyx = chunk
    sample = _screen_sample(block, Layout.TYX, ROIS)
    assert sample.dtype == np.uint16 and sample.shape == (2 * block.shape[0], 16, 16)
    np.testing.assert_array_equal(sample, crop_rois(block, ROIS, step=SCREEN_STEP))
    np.testing.assert_array_equal(_screen_sample(tbyx, Layout.TBYX, None), sample)
    assert _screen_sample(block.astype(np.float32), Layout.TYX, ROIS) is None
    assert _screen_sample(tbyx[:, 0].transpose(1, 2, 0), Layout.YXT, None) is None
    hot = block.copy()
    hot[7, 20, 100] = 65535  # bead 1, frame 7
    want = np.zeros((2, block.shape[0]), bool)
    want[1, 7] = True
    np.testing.assert_array_equal(_saturated(hot, Layout.TYX, ROIS), want)
    hot_tbyx = np.stack([hot[:, t:b, l:r] for t, b, l, r in ROIS], axis=1)
    np.testing.assert_array_equal(_saturated(hot_tbyx, Layout.TBYX, None), want)
    np.testing.assert_array_equal(_saturated(hot_tbyx[:, 1].transpose(1, 2, 0), Layout.YXT, None), want[1:])


def test_one_task_is_the_core_on_every_bead(chunk):
    block, _ = chunk
    offsets = ROIS
    spec = ChunkSpec(layout=Layout.TYX, rois=ROIS, offsets=offsets, n_bins=32, pipeline=PipelineOptions(),
                     device="cpu", edge_margin_px=8.0, min_symmetry=0.0)
    out = track_chunk(block, None, spec=spec)
    assert out.shape == (2, block.shape[0], 4 + 32) and out.dtype == np.float64
    for b, (top, bottom, left, right) in enumerate(ROIS):
        st = np.ascontiguousarray(block[:, top:bottom, left:right].transpose(1, 2, 0), dtype=np.float64)
        x, y, z, p = core.stack_to_xyzp(st)
        np.testing.assert_allclose(out[b, :, 0], x + left, rtol=0, atol=1e-9)
        np.testing.assert_allclose(out[b, :, 1], y + top, rtol=0, atol=1e-9)
        assert np.isnan(out[b, :, 2]).all()
        np.testing.assert_allclose(out[b, :, 4:], p.T, rtol=0, atol=1e-9)
    assert (out[:, :, 3] == 0).all()


def test_unreadable_frames_are_nan_and_flagged():
    out = _unreadable(2, 5, 16, has_lut=True)
    assert out.shape == (2, 5, 20) and np.isnan(out[:, :, [0, 1, 2, *range(4, 20)]]).all()
    assert (out[:, :, 3] == Flag.INPUT_UNREADABLE | Flag.XY_NOT_FOUND | Flag.Z_AT_LUT_EDGE_OR_NAN).all()
    assert (_unreadable(1, 1, 4, has_lut=False)[..., 3] == Flag.INPUT_UNREADABLE | Flag.XY_NOT_FOUND).all()


def test_flags(archives, zlut):
    arch = open_archive(archives["tbyx"])
    frames = arch.data.compute()
    frames[5, 2, 3, 4] = np.iinfo(np.uint16).max  # saturate bead 2, frame 5
    with dask.config.set(scheduler="sync"):
        zt = arch.group["truth_z"][...]
        window = np.abs(zlut[0] - np.median(zt)) <= 200  # a narrow LUT: most z lie beyond its ends
        f = track(frames, zlut[:, window], layout="tbyx").flags.values
        g = track(frames, layout="tbyx").flags.values
        h = track(frames, layout="tbyx", edge_margin_px=ROI / 2).flags.values  # every centre is "near"
    assert f.dtype == np.uint8
    sat = (f & Flag.SATURATED) > 0
    assert sat[2, 5] and sat.sum() == 1
    assert ((f & Flag.Z_AT_LUT_EDGE_OR_NAN) > 0).any()
    assert not ((g & Flag.Z_AT_LUT_EDGE_OR_NAN) > 0).any()  # no LUT, no z flag
    assert not ((g & Flag.NEAR_ROI_EDGE) > 0).any()  # beads sit within 1.5 px of the centre
    assert ((h & Flag.NEAR_ROI_EDGE) > 0).all()
    assert not (g & Flag.XY_NOT_FOUND).any()


@pytest.mark.parametrize("chunking", [{"chunk_frames": 2, "shard_frames": 6}, {"chunk_frames": 6, "shard_frames": 0}],
                         ids=["sharded", "unsharded"])
def test_a_range_of_several_shards_is_read_one_shard_at_a_time(tmp_path, monkeypatch, chunking):
    """A job's task spans many shards but holds one shard's frames at a time: each read is within one
    stored shard (chunk when unsharded), and the results are those of tracking each shard alone."""
    from magtrack_dask.sim.archives import write_simulated_archive
    from magtrack_dask.tracking import task as task_module
    from magtrack_dask.tracking.plan import plan_tracking
    from magtrack_dask.tracking.task import track_zarr_chunk

    from tests.conftest import Z_RANGE_NM

    path = str(tmp_path / "a.zarr")
    write_simulated_archive(path, 24, 1, roi=ROI, photons=1e4, seed=2, z_range_nm=Z_RANGE_NM, **chunking)
    plan = plan_tracking(path, method="magtrack")
    frames, axis = plan.source.frames, plan.source.layout.frame_axis
    reads = []
    real = task_module.read_frames

    def counting(arr, start, stop, ax):
        reads.append((start, stop))
        return real(arr, start, stop, ax)

    monkeypatch.setattr(task_module, "read_frames", counting)
    got = track_zarr_chunk(np.array([4, 20]), None, frames=frames, frame_axis=axis, spec=plan.spec)  # 4 .. 20
    assert reads == [(4, 6), (6, 12), (12, 18), (18, 21)]
    assert got.shape == (1, 17, 4 + plan.spec.n_bins)
    pieces = [track_zarr_chunk(np.array([a, b - 1]), None, frames=frames, frame_axis=axis, spec=plan.spec)
              for a, b in list(reads)]
    np.testing.assert_array_equal(got, np.concatenate(pieces, axis=1))
    assert np.isfinite(got[..., 0]).all()
