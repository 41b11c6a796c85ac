"""Cache-sized blocks along an axis, and the threads that work through them.

The CPU kernels walk a stack in blocks of images small enough to stay in
cache. Blocks are independent, and NumPy releases the GIL inside most of the
work on them (ufuncs, reductions, partitions, FFTs), so on NumPy they are
spread over a few threads: :func:`core_threads` sets how many.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from magtrack_dask.validation import InputError

_CPU_BLOCK_BYTES = 2**21  # keeps a few (n, n, block) temporaries in L2/L3
# OpenBLAS runs a matrix product of up to about this many multiply-adds in the
# calling thread. Larger ones wake its own threads, which keep spinning for a
# while after the call and take the CPUs from the core's threads
# (benchmarks/README.md has the figures).
_SERIAL_GEMM_MACS = 2**19
_MIN_RUN_BYTES = 256  # of frames per pixel in a block of a frames-last stack (frame_run)
_TILE = 256  # pixels per tile of the frame-block transpose (a few hundred pages of source)

_ENV = "MAGTRACK_DASK_THREADS"
_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("magtrack_dask_core_threads", default=None)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def frame_run(stack) -> int:
    """Fewest images per block when a block is read from a frames-last stack.

    A block of such a stack is read as one short run of frames per pixel,
    each run on another memory page; runs under ~256 bytes defeat the
    hardware prefetcher. 1 for any other memory order.
    """
    itemsize = stack.dtype.itemsize
    return max(1, _MIN_RUN_BYTES // itemsize) if stack.strides[2] == itemsize else 1


def frame_block(flat, part: slice, out) -> None:
    """Copy images ``part`` of ``flat`` ``(n_pixels, n_images)`` into ``out``
    ``(n_part, n_pixels)``, frame-major (NumPy).

    Transposed in tiles of pixels: one whole-block transpose reads every pixel
    from a different page of a frames-last stack and is markedly slower.
    """
    tile = _TILE if abs(flat.strides[0]) > abs(flat.strides[1]) else flat.shape[0]  # frame-major: one copy
    for start in range(0, flat.shape[0], tile):
        out[:, start : start + tile] = flat[start : start + tile, part].T


def blocks(xp, length: int, item_bytes: int, min_items: int = 1) -> list[slice]:
    """Slices covering ``range(length)``, each at most about ``_CPU_BLOCK_BYTES`` of items
    (but about ``min_items`` or more, e.g. :func:`frame_run`).

    When there is more than one block, their number is a multiple of
    :func:`get_core_threads` and their sizes as equal as can be: every thread
    gets the same share of the work (3 blocks on 2 threads would leave one
    thread idle for a third of the time). On CuPy one block holds everything:
    the GPU wants large launches.
    """
    if length == 0:
        return []
    if xp is not np:
        return [slice(0, length)]
    size = max(1, min_items, _CPU_BLOCK_BYTES // max(item_bytes, 1))
    n_blocks = -(-length // size)
    if n_blocks > 1:
        threads = get_core_threads()
        n_blocks = min(length, -(-n_blocks // threads) * threads)
    return _even_slices(length, n_blocks)


def block_size(parts: list[slice]) -> int:
    """Items in the largest block of ``parts`` (the first: :func:`_even_slices`),
    0 for none: what each thread's scratch buffers must hold."""
    return parts[0].stop - parts[0].start if parts else 0


def _even_slices(length: int, n_blocks: int) -> list[slice]:
    """``n_blocks`` slices covering ``range(length)``, sizes equal to one item,
    the larger first: callers size their scratch buffers by the first."""
    size, extra = divmod(length, n_blocks)
    bounds = [i * size + min(i, extra) for i in range(n_blocks + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def gemm_blocks(xp, n_rows: int, n_inner: int, n_cols: int) -> list[slice]:
    """Row blocks of an ``(n_rows, n_inner) @ (n_inner, n_cols)`` product, each
    small enough for the BLAS to compute in the calling thread. One block
    on CuPy."""
    if n_rows == 0:
        return []
    size = n_rows if xp is not np else max(1, _SERIAL_GEMM_MACS // max(n_inner * n_cols, 1))
    return _even_slices(n_rows, -(-n_rows // size))


def _default_threads() -> int:
    value = os.environ.get(_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise InputError(f"{_ENV} must be a whole number of threads >= 1, got {value!r}") from None
    # The usual knob of threaded numerics; Dask's nanny sets it to 1 in its
    # workers, so the core does not compete with the worker's own threads.
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    try:
        return max(1, len(os.sched_getaffinity(0)))  # the CPUs this process may use (cgroups, taskset)
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def get_core_threads() -> int:
    """Threads the CPU kernels use for one call: :func:`core_threads`, else
    ``$MAGTRACK_DASK_THREADS``, else ``$OMP_NUM_THREADS``, else the CPUs this
    process may run on."""
    n = _threads.get()
    return _default_threads() if n is None else n


@contextlib.contextmanager
def core_threads(n: int) -> Iterator[None]:
    """Run the CPU kernels called inside this block on ``n`` threads.

    The setting belongs to the calling thread (a context variable), so a Dask
    task can ask for one thread without touching others. Results do not
    depend on it: every block is computed the same way whichever thread
    takes it.

    Parameters
    ----------
    n : int
        Threads, >= 1. ``1`` runs everything in the calling thread.

    Examples
    --------
    >>> import magtrack_dask
    >>> with magtrack_dask.core_threads(1):  # e.g. inside a worker process
    ...     pass
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n must be a whole number of threads >= 1, got {n!r}")
    token = _threads.set(int(n))
    try:
        yield
    finally:
        _threads.reset(token)


def _forget_pool() -> None:
    # A forked child inherits the pool object but not its threads: work
    # submitted there would wait forever. The child starts its own pool.
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _executor(n: int) -> ThreadPoolExecutor:
    """A pool of at least ``n`` threads. A smaller one is replaced, not shut
    down: a call still holding it finishes with it, and its idle threads end
    when it is collected."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="magtrack-core"), n
        return _pool


def for_each_block(xp, parts: list[slice], work: Callable[[slice, object], None],
                   scratch: Callable[[], object] | None = None) -> None:
    """Call ``work(part, buffers)`` for every block of ``parts``.

    On NumPy with more than one block and :func:`get_core_threads` above 1,
    that many threads (the caller's among them) take the blocks in order,
    each the next one free as it finishes its last: a thread slowed down by
    another process on its core takes fewer blocks instead of holding up the
    call. ``scratch()`` makes each thread's own ``buffers``, reused for all
    its blocks. ``work`` must write only to its own block of the outputs.
    Returns when every started block is done; after an error no block
    starts, and the first error is raised.
    """
    n = min(get_core_threads(), len(parts)) if xp is np else 1
    queue = iter(parts)
    lock = threading.Lock()
    failed = threading.Event()

    def take() -> slice | None:
        with lock:
            return None if failed.is_set() else next(queue, None)

    def run():
        buffers = scratch() if scratch is not None else None
        # Kernels that ``work`` calls run serially: a block waiting on a
        # nested block that no free pool thread can take would never finish.
        with core_threads(1):
            while (part := take()) is not None:
                try:
                    work(part, buffers)
                except BaseException:
                    failed.set()
                    raise

    if n <= 1:
        run()
        return
    pool = _executor(n - 1)
    # Each thread runs in a copy of the caller's context: NumPy's errstate
    # (e.g. quiet()) applies to the blocks the pool threads take too.
    futures = [pool.submit(contextvars.copy_context().run, run) for _ in range(n - 1)]
    try:
        run()
    finally:  # never return while another thread still writes to the outputs
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
