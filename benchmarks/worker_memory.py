"""Worker memory over a long run: does it creep per chunk, and where does the creep come from?

Writes a ``tyx`` archive of many tiny chunks (1 bead, 16 px ROIs, 2 frames a chunk by default), then runs
one of these workloads, sampling every ``--every`` chunks inside each worker (``client.run``): resident set
size, glibc's heap in use and free (``mallinfo2``: a live leak grows the first, fragmentation or retention
the second), Python's allocated blocks, ``gc`` object counts by type, the lengths of every container the
worker and its state machine hold, and optionally ``tracemalloc``'s top growth.

``job``      :func:`magtrack_dask.jobs.run_job` on a real LocalCluster (the job driver as it is)
``task``     ``client.submit`` per chunk of read + track + write of the results region (the streaming driver's
             task), a bounded window in flight
``loop``     the same per-chunk function in a plain loop in this process: no distributed
``trivial``  distributed, a task that returns a small array
``read``     distributed, the archive read only (:func:`magtrack_dask.io.chunk_read.read_frames`)
``write``    distributed, zarr writes of a results region only
``kernel``   distributed, the tracking kernels only, on a block read once per worker

    PYTHONPATH=. python benchmarks/worker_memory.py --mode task --chunks 20000 --every 1000
    PYTHONPATH=. python benchmarks/worker_memory.py --mode loop --chunks 5000
    MALLOC_ARENA_MAX=2 PYTHONPATH=. python benchmarks/worker_memory.py --mode task   # inherited by workers

The figures are in benchmarks/README.md ("Worker memory over a long run").
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import ctypes  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

_STATE: dict = {}  # this process's tracemalloc baseline (module state: workers import this file by name)
MODES = ("job", "task", "loop", "trivial", "read", "write", "kernel")


# -- what is sampled, in a worker or in this process -------------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo() -> dict:
    """glibc's heap, bytes: ``in_use`` (allocated), ``free`` (held by malloc, not in use), ``mmapped``."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"in_use": m.uordblks + m.hblkhd, "free": m.fordblks, "mmapped": m.hblkhd}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _lru_sizes() -> dict:
    """``{'lru module.function': entries}`` of every ``functools.lru_cache`` in this process (any library's)."""
    out = {}
    for obj in gc.get_objects():
        if isinstance(obj, functools._lru_cache_wrapper):
            name = f"lru {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
            out[name] = out.get(name, 0) + obj.cache_info().currsize
    return out


def _container_lengths(worker) -> dict:
    """``{'worker.attr': len}`` of every sized attribute of the distributed worker, its state machine and its
    extensions (distributed's per-task bookkeeping), and the entries of every lru_cache."""
    if worker is None:
        return _lru_sizes()
    owners = {"worker": worker, "state": worker.state}
    owners.update({f"ext.{k}": v for k, v in getattr(worker, "extensions", {}).items()})
    out = {}
    for prefix, obj in owners.items():
        names = set(getattr(obj, "__dict__", ()))
        for cls in type(obj).__mro__:  # the state machine keeps its fields in slots
            names.update(getattr(cls, "__slots__", ()))
        for name in names:
            value = getattr(obj, name, None)
            if isinstance(value, (dict, list, set, collections.deque)):
                out[f"{prefix}.{name}"] = len(value)
    return {**out, **_lru_sizes()}


def sample(tracemalloc_frames: int = 0, clear_key_split: bool = False, dask_worker=None) -> dict:
    """One sample of this process's memory (runs in each worker through ``client.run``, which passes
    ``dask_worker``). ``clear_key_split`` empties ``dask.utils.key_split``'s cache first (the experiment that
    shows it holds the creep)."""
    if clear_key_split:
        from dask.utils import key_split

        key_split.cache_clear()
    gc.collect()
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    out = {"rss": _rss(), "blocks": sys.getallocatedblocks(), "gc_types": dict(types), **_mallinfo(),
           "containers": _container_lengths(dask_worker)}
    if tracemalloc_frames:  # traced from the first sample on; compared with the second (after warm-up)
        import tracemalloc

        if not tracemalloc.is_tracing():
            tracemalloc.start(tracemalloc_frames)
        else:
            snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            if "base" not in _STATE:
                _STATE["base"] = snap
            top = snap.compare_to(_STATE["base"], "traceback")[:8]
            out["tracemalloc"] = [(s.size_diff, s.count_diff, s.traceback.format()) for s in top]
    return out


# -- the workloads, one chunk per call ---------------------------------------------------------------------


def _context(archive: str, out: str | None) -> dict:
    """The archive's frames and the ChunkSpec ``track()`` would make; the results array; opened once per process."""
    key = (archive, out)
    if _STATE.get("key") != key:
        import zarr

        from magtrack_dask.core.pipeline import check_stage_keywords, profile_bins
        from magtrack_dask.core.symmetry import MIN_SYMMETRY
        from magtrack_dask.tracking.source import resolve_source
        from magtrack_dask.tracking.task import ChunkSpec

        src = resolve_source(archive)
        pipeline = check_stage_keywords(None)
        spec = ChunkSpec(layout=src.layout, rois=src.crop_rois, offsets=src.rois,
                         n_bins=profile_bins(src.roi_size, pipeline).n_bins, pipeline=pipeline, device="cpu",
                         edge_margin_px=src.roi_size / 8, min_symmetry=MIN_SYMMETRY)
        results = zarr.open_array(out, mode="r+") if out else None
        _STATE.update(key=key, frames=src.frames, spec=spec, chunk=src.frames.chunks[src.layout.frame_axis], results=results, blocks={})
    return _STATE


def run_chunk(mode: str, i: int, archive: str, out: str | None) -> np.ndarray:
    """Chunk ``i`` of the workload ``mode``; returns a small array as every task does."""
    from magtrack_dask.io.chunk_read import read_frames
    from magtrack_dask.tracking.task import track_chunk, track_zarr_chunk

    if mode == "trivial":
        return np.array([i, 0], dtype=np.int64)
    ctx = _context(archive, out)
    n, axis = ctx["chunk"], ctx["spec"].layout.frame_axis
    start = i * n
    if mode == "read":
        return np.array([i, int(read_frames(ctx["frames"], start, start + n, axis).sum())])
    if mode == "write":
        res = np.full((1, n, ctx["results"].shape[-1]), float(i))
        ctx["results"][:, start:start + n] = res
        return np.array([i, 0])
    if mode == "kernel":  # 16 distinct blocks, read once: the kernels alone
        block = ctx["blocks"].get(i % 16)
        if block is None:
            block = ctx["blocks"][i % 16] = read_frames(ctx["frames"], start, start + n, axis)
        res = track_chunk(block, None, spec=ctx["spec"])
    else:  # task, loop: read + track + write the results region
        res = track_zarr_chunk(np.arange(start, start + n), None, frames=ctx["frames"], frame_axis=axis,
                               spec=ctx["spec"])
        ctx["results"][:, start:start + n] = res
    return np.array([i, int(np.isnan(res[..., 0]).sum())])


# -- drivers -----------------------------------------------------------------------------------------------


class Recorder:
    """Samples at multiples of ``every`` chunks: ``rows`` of ``(chunks, seconds, {process: sample})``."""

    def __init__(self, take, every: int, tracemalloc_frames: int, clear_key_split: bool):
        self.take, self.every, self.tm, self.clear = take, every, tracemalloc_frames, clear_key_split
        self.rows: list = []
        self.t0 = time.perf_counter()
        self.next = 0

    def __call__(self, n_done: int, force: bool = False) -> None:
        if n_done >= self.next or force:
            self.rows.append((n_done, time.perf_counter() - self.t0, self.take(self.tm, self.clear)))
            print(f"  {n_done:>7} chunks {self.rows[-1][1]:7.0f} s  RSS MiB: "
                  + " ".join(f"{s['rss'] / 2**20:.1f}" for s in self.rows[-1][2].values()), flush=True)
            self.next = (n_done // self.every + 1) * self.every


def run_distributed(mode, client, n_chunks, archive, out, rec: Recorder, window: int):
    from distributed import as_completed

    todo = iter(range(n_chunks))
    ac = as_completed()

    def submit(k):
        for _ in range(k):
            i = next(todo, None)
            if i is None:
                return
            ac.add(client.submit(run_chunk, mode, i, archive, out, key=f"{mode}-chunk-{i}", pure=False))

    rec(0)
    submit(window)
    n = 0
    for fut in ac:
        fut.result()
        n += 1
        fut.release()
        rec(n)
        submit(1)
    rec(n, force=rec.rows[-1][0] != n)


def run_job_mode(client, archive, out, rec: Recorder, n_chunks: int, batch_chunks: int | None):
    from magtrack_dask.jobs import run_job

    rec(0)
    report = run_job(archive, out, client=client, max_chunks=n_chunks, overwrite=True, batch_chunks=batch_chunks,
                     progress=lambda done, total, frames: rec(done))
    rec(report.n_computed, force=rec.rows[-1][0] != report.n_computed)


def run_loop(n_chunks, archive, out, rec: Recorder):
    rec(0)
    for i in range(n_chunks):
        run_chunk("loop", i, archive, out)
        rec(i + 1)


# -- report ------------------------------------------------------------------------------------------------


def _growth(first: dict, last: dict, top: int) -> list:
    diff = [(last.get(k, 0) - first.get(k, 0), k) for k in set(first) | set(last)]
    return sorted((d for d in diff if d[0]), reverse=True)[:top]


def report(rows: list, label: str) -> None:
    procs = sorted(rows[-1][2])
    print(f"\n{label}")
    print(f"{'chunks':>8}{'s':>7}" + "".join(f"  {'RSS':>7}{'heap':>7}{'free':>7}{'blocks':>9}{'gc objs':>9}"
                                               for _ in procs) + "   (MiB; per process)")
    for n, t, s in rows:
        print(f"{n:>8}{t:>7.0f}" + "".join(
            f"  {s[p]['rss'] / 2**20:>7.1f}{s[p].get('in_use', 0) / 2**20:>7.1f}{s[p].get('free', 0) / 2**20:>7.1f}"
            f"{s[p]['blocks']:>9}{sum(s[p]['gc_types'].values()):>9}" for p in procs))
    # growth per chunk over each half of the run (after the first sample's warm-up)
    for p in procs:
        pts = [(n, s[p]) for n, _, s in rows if p in s]
        if len(pts) < 3:
            continue
        mid = len(pts) // 2
        per = []
        for (n0, a), (n1, b) in ((pts[1], pts[mid]), (pts[mid], pts[-1])):
            dn = max(n1 - n0, 1)
            per.append(((b["rss"] - a["rss"]) / dn, (b.get("in_use", 0) - a.get("in_use", 0)) / dn,
                        (b["blocks"] - a["blocks"]) / dn))
        print(f"{p}: per chunk, chunks {pts[1][0]}-{pts[mid][0]} vs {pts[mid][0]}-{pts[-1][0]}: "
              f"RSS {per[0][0]:+.0f} vs {per[1][0]:+.0f} B, heap {per[0][1]:+.0f} vs {per[1][1]:+.0f} B, "
              f"Python blocks {per[0][2]:+.2f} vs {per[1][2]:+.2f}")
        a, b = pts[1][1], pts[-1][1]
        print(f"  gc types grown {pts[1][0]} -> {pts[-1][0]}:", _growth(a["gc_types"], b["gc_types"], 8))
        if b["containers"]:
            print("  containers grown:", _growth(a["containers"], b["containers"], 8))
        for size, count, tb in b.get("tracemalloc", [])[:5]:
            print(f"  tracemalloc {size / 1024:+.1f} KiB {count:+d} blocks at\n      "
                  + "\n      ".join(t.strip() for t in tb if t.strip()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=MODES, default="task")
    p.add_argument("--chunks", type=int, default=5000, help="chunks to run (default 5000)")
    p.add_argument("--every", type=int, default=500, help="sample every this many chunks (default 500)")
    p.add_argument("--chunk-frames", type=int, default=2, help="frames per chunk (default 2)")
    p.add_argument("--roi", type=int, default=16, help="ROI side, px (default 16)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                   help="trace allocations with this many frames from the first sample on (slow)")
    p.add_argument("--batch-chunks", type=int, help="job mode: chunks per submitted batch (default the job's)")
    p.add_argument("--clear-key-split", action="store_true",
                   help="empty dask.utils.key_split's cache in each worker before each sample")
    p.add_argument("--dir", help="where to write the archive (default: a temporary folder, removed); an archive "
                                 "already there with enough chunks is reused")
    args = p.parse_args(argv)

    import zarr

    from magtrack_dask.io.archive import open_archive
    from magtrack_dask.sim.archives import write_simulated_archive

    root = args.dir or tempfile.mkdtemp(prefix="worker_memory-")
    archive, out = os.path.join(root, "archive.zarr"), os.path.join(root, "results.zarr")
    n_frames = args.chunks * args.chunk_frames
    try:
        try:
            arch = open_archive(archive)
            reuse = arch.data.shape[0] >= n_frames and arch.data.chunks[0][0] == args.chunk_frames
        except Exception:  # noqa: BLE001 (no archive there yet)
            reuse = False
        t0 = time.perf_counter()
        if not reuse:
            write_simulated_archive(archive, n_frames, 1, roi=args.roi, chunk_frames=args.chunk_frames,
                                    photons=1000.0, overwrite=True)
        held = open_archive(archive).data.numblocks[0]  # a reused archive may hold more chunks than are run
        print(f"archive: {held} chunks of {args.chunk_frames} frames, 1 bead, {args.roi} px ROIs "
              f"({'reused' if reuse else f'written in {time.perf_counter() - t0:.0f} s'}), {args.chunks} run; "
              f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}")
        shutil.rmtree(out, ignore_errors=True)
        if args.mode not in ("job", "trivial", "read"):
            from magtrack_dask.tracking.schema import N_FIELDS

            ctx = _context(archive, None)
            zarr.create_array(out, shape=(1, n_frames, N_FIELDS + ctx["spec"].n_bins), dtype="float64",
                              chunks=(1, args.chunk_frames, N_FIELDS + ctx["spec"].n_bins), fill_value=np.nan)
            _STATE.clear()
        if args.mode == "loop":
            rec = Recorder(lambda tm, clear: {"this process": sample(tm, clear)}, args.every, args.tracemalloc,
                           args.clear_key_split)
            run_loop(args.chunks, archive, out, rec)
        else:
            from magtrack_dask.cluster import start_cluster

            # workers import this file by name, so that its functions and _STATE live in one module there
            here = os.path.dirname(os.path.abspath(__file__))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
            sys.path.insert(0, here)
            import worker_memory as wm

            client = start_cluster(args.workers, dashboard_address=":0")
            with client.cluster, client:
                rec = Recorder(lambda tm, clear: client.run(wm.sample, tm, clear), args.every, args.tracemalloc,
                               args.clear_key_split)
                if args.mode == "job":
                    run_job_mode(client, archive, out, rec, args.chunks, args.batch_chunks)
                else:
                    run_distributed(args.mode, client, args.chunks, archive, out if args.mode != "read" else None,
                                    rec, 2 * args.workers)
        report(rec.rows, f"mode {args.mode}: {args.chunks} chunks")
        return 0
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import worker_memory

    sys.exit(worker_memory.main())
