"""Blocks of images on several threads: same bytes as one thread, errors surface."""

import os
import threading
import time
import warnings

import numpy as np
import pytest

import magtrack_dask as md
from magtrack_dask.core import _blocks
from magtrack_dask.core._blocks import blocks, core_threads, for_each_block, frame_run, get_core_threads
from magtrack_dask.core.xy import refine_rounds
from magtrack_dask.sim.beads import make_zlut


@pytest.fixture(scope="module")
def many_blocks(simulated_beads):
    """300 images of 64 px with a NaN pixel and a blank image."""
    stack, x, y = simulated_beads(300, 5, photons=2000, seed=5)
    stack = stack.astype(np.float64)
    stack[40, 20, 7] = np.nan
    stack[:, :, 150] = 1000.0
    return stack, x, y


def _all_kernels(stack, x, y, zlut):
    return [
        *md.center_of_mass(stack),  # C-ordered stacks: parts of image rows
        *md.center_of_mass(stack, background="median"),
        *md.center_of_mass(stack, background="mean"),
        md.radial_profile(stack, x, y),
        md.radial_profile(stack, x, y, oversample=3),
        *md.auto_conv(stack, x, y, return_conv=True),
        *md.auto_conv_multiline_sub_pixel(stack, x, y),
        *refine_rounds(stack, x, y, 5),
        *md.stack_to_xyzp(stack, zlut),
        # 900 images: two blocks of scores, each filled by two GEMMs
        md.lookup_z(np.tile(md.radial_profile(stack, x, y), 3), zlut),
        md.fft_profile(stack),  # scipy.fft's workers follow the core threads
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("frame_major", [False, True])
def test_threads_give_the_same_bytes(many_blocks, dtype, frame_major, monkeypatch):
    # Small blocks: every threaded kernel splits these 300 images into several.
    monkeypatch.setattr(_blocks, "_CPU_BLOCK_BYTES", 2**18)
    stack, x, y = many_blocks
    stack = stack.astype(dtype)
    if frame_major:
        stack = np.ascontiguousarray(stack.transpose(2, 0, 1)).transpose(1, 2, 0)
    zlut = make_zlut(np.linspace(500, 4500, 41), n_pixels=64).astype(dtype)
    with core_threads(1):
        one = _all_kernels(stack, x, y, zlut)
    for n in (2, 3):
        with core_threads(n):
            many = _all_kernels(stack, x, y, zlut)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


def test_blocks_run_on_several_threads():
    seen = set()
    out = np.zeros(10)

    def work(part, buffers):
        time.sleep(0.01)  # long enough for the shares to overlap
        seen.add(threading.get_ident())
        assert buffers["owner"] == threading.get_ident()  # each thread has its own scratch
        out[part] = part.start

    parts = [slice(i, i + 1) for i in range(10)]
    with core_threads(3):
        for_each_block(np, parts, work, lambda: {"owner": threading.get_ident()})
    assert len(seen) == 3 and threading.get_ident() in seen
    np.testing.assert_array_equal(out, np.arange(10))


def test_an_error_in_a_block_is_raised_once_every_thread_has_stopped():
    done = []

    def work(part, _):
        time.sleep(0.005)
        if part.start == 3:
            raise ArithmeticError("block 3")
        done.append(part.start)

    parts = [slice(i, i + 1) for i in range(8)]
    with core_threads(2), pytest.raises(ArithmeticError, match="block 3"):
        for_each_block(np, parts, work)
    finished = sorted(done)
    time.sleep(0.05)
    assert sorted(done) == finished  # nothing still running after the raise
    assert 3 not in finished and {0, 1, 2} <= set(finished)  # the blocks before it ran
    assert max(finished) <= 4  # no block started after the error


def test_a_slow_thread_takes_fewer_blocks():
    """Blocks go to whichever thread is free: a thread slowed down (here: by
    sleeping, as by another process on its core) does not hold up the call."""
    caller = threading.get_ident()
    taken = {}

    def work(part, _):
        me = threading.get_ident()
        time.sleep(0.002 if me == caller else 0.03)
        taken[part.start] = me

    parts = [slice(i, i + 1) for i in range(20)]
    with core_threads(2):
        for_each_block(np, parts, work)
    assert sorted(taken) == list(range(20))
    by_caller = sum(me == caller for me in taken.values())
    assert 14 <= by_caller < 20  # an even deal would give each thread 10


def test_pool_threads_run_in_the_callers_numpy_errstate():
    """A block on a pool thread warns, or keeps quiet, exactly as the caller asked."""
    seen = {}

    def work(part, _):
        seen[part.start] = (np.geterr()["invalid"], threading.current_thread().name)
        time.sleep(0.005)  # long enough for both threads to take blocks
        np.log(np.array([-1.0]))  # invalid: warns unless the caller silenced it

    parts = [slice(i, i + 1) for i in range(4)]
    with core_threads(2), np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        for_each_block(np, parts, work)
    assert {mode for mode, _ in seen.values()} == {"ignore"}
    assert len({name for _, name in seen.values()}) == 2  # the pool thread took some blocks
    with core_threads(2), np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        for_each_block(np, parts, work)


@pytest.mark.timeout(30)
def test_kernels_called_inside_a_block_run_serially():
    """A share that calls a threaded kernel runs it on its own thread: with
    one pool thread busy in the outer call, a nested share could never start."""
    inner_threads = []

    def inner(part, _):
        pass

    def outer(part, _):
        inner_threads.append(get_core_threads())
        for_each_block(np, [slice(i, i + 1) for i in range(4)], inner)

    with core_threads(2):
        for_each_block(np, [slice(i, i + 1) for i in range(4)], outer)
        assert get_core_threads() == 2
    assert inner_threads == [1, 1, 1, 1]


def test_gemm_blocks_keep_each_product_small():
    parts = _blocks.gemm_blocks(np, 2000, 32, 201)
    assert parts[0].start == 0 and parts[-1].stop == 2000
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    assert max((p.stop - p.start) * 32 * 201 for p in parts) <= _blocks._SERIAL_GEMM_MACS
    assert _blocks.gemm_blocks(np, 5, 10**6, 10**6) == [slice(i, i + 1) for i in range(5)]  # never empty


def test_the_setting_belongs_to_the_calling_thread():
    seen = {}

    def other():
        seen["other"] = get_core_threads()

    with core_threads(1):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert get_core_threads() == 1
    assert seen["other"] == get_core_threads() == _blocks._default_threads()


def test_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert get_core_threads() == 2
    monkeypatch.setenv("MAGTRACK_DASK_THREADS", "3")
    assert get_core_threads() == 3
    monkeypatch.setenv("MAGTRACK_DASK_THREADS", "many")
    with pytest.raises(ValueError, match="MAGTRACK_DASK_THREADS"):
        get_core_threads()
    monkeypatch.delenv("MAGTRACK_DASK_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert get_core_threads() >= 1


def test_blocks_of_a_frames_last_stack_hold_runs_of_frames():
    """Large images: the cache size alone would give blocks of a few frames,
    too short a run per pixel to stream a frames-last stack."""
    frames_last = np.zeros((128, 128, 512))
    assert frame_run(frames_last) == 32  # 256 bytes of float64
    assert frame_run(frames_last.astype(np.float32)) == 64
    assert frame_run(np.moveaxis(np.zeros((512, 128, 128)), 0, 2)) == 1  # frame-major: whole frames
    with core_threads(2):
        assert [p.stop - p.start for p in blocks(np, 512, 128 * 128 * 8)] == [16] * 32
        assert [p.stop - p.start for p in blocks(np, 512, 128 * 128 * 8, frame_run(frames_last))] == [32] * 16


def test_dask_workers_default_to_one_thread(client):
    # The nanny sets OMP_NUM_THREADS=1 in its workers: user code calling the core there stays on one thread.
    assert set(client.run(get_core_threads).values()) == {1}


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", None])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="threads >= 1"):
        with core_threads(bad):
            pass


def test_flat_exports():
    assert md.core_threads is core_threads and md.get_core_threads is get_core_threads


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("length", [1, 7, 64, 1000, 2001])
def test_blocks_cover_the_axis_once_in_even_shares(threads, length):
    item = 64 * 64 * 8  # 64 items fill a block
    with core_threads(threads):
        parts = blocks(np, length, item)
    assert parts[0].start == 0 and parts[-1].stop == length
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) <= _blocks._CPU_BLOCK_BYTES // item and max(sizes) - min(sizes) <= 1
    assert sizes[0] == max(sizes)  # callers size their scratch by the first block
    if length > 64:  # more than one block: every thread gets as many
        assert len(parts) % threads == 0
    else:
        assert len(parts) == 1
    assert blocks(np, 0, item) == []


def _threaded_profile_in_child(queue):
    stack = np.random.default_rng(1).normal(100, 5, (32, 32, 400))
    with core_threads(2):
        queue.put(md.radial_profile(stack, np.full(400, 15.5), np.full(400, 16.0)).shape)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_threaded_kernels():
    import multiprocessing

    stack = np.random.default_rng(1).normal(100, 5, (32, 32, 400))
    with core_threads(2):  # the parent's pool exists before the fork
        md.radial_profile(stack, np.full(400, 15.5), np.full(400, 16.0))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_threaded_profile_in_child, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
    assert queue.get(timeout=5) == (16, 400)


def test_callers_on_different_thread_counts_at_once(many_blocks):
    # Each caller may grow the shared pool while others use it.
    stack, x, y = many_blocks
    with core_threads(1):
        expected = md.radial_profile(stack, x, y)
    results, errors = {}, []

    def call(n):
        try:
            with core_threads(n):
                results[n] = md.radial_profile(stack, x, y)
        except Exception as exc:  # reported below
            errors.append(exc)

    callers = [threading.Thread(target=call, args=(n,)) for n in (2, 3, 4, 5)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(60)
    assert not errors and sorted(results) == [2, 3, 4, 5]
    for got in results.values():
        np.testing.assert_array_equal(got, expected)
