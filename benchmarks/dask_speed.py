"""Frames/s of archive -> results.zarr on a 2-worker LocalCluster vs the in-memory core.

One run: simulate a ``tyx`` archive (uint16, several beads per frame), time the
single-process core on the same frames in memory (crop + float conversion +
core, what a user of the core does with frames in memory; the core alone is
reported too), then time ``track`` + ``write_results`` on the
``distributed.LocalCluster`` that :func:`magtrack_dask.start_cluster` starts, and
the same as a job (:func:`magtrack_dask.jobs.run_job`: the streaming driver)
(worker processes, one thread each, batch housekeeping settings; Dask's own
with ``--dask-defaults``), which includes reading, decompressing, cropping,
converting and writing. The target
is >= 80 % of N_workers x the in-memory rate. Peak worker memory is the
workers' maximum resident set size.

    python benchmarks/dask_speed.py                # 24000 frames, 4 beads, 64 px
    python benchmarks/dask_speed.py --frames 4000 --chunk-frames 500   # quick
    python benchmarks/dask_speed.py --dask-defaults   # the cluster with Dask's housekeeping

BLAS/OpenMP threads are pinned to 1 (as Dask does in its workers), and the
in-memory core runs on one thread (``core_threads(1)``, as inside every task),
so both sides use one core per process. Both sides are measured ``--repeat`` times,
alternately, and the best of each is reported: run it on a quiet machine, other
processes on the same cores change the numbers by 2x.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # memory_bound, beside this script

from magtrack_dask import core  # noqa: E402
from magtrack_dask.cluster import start_cluster  # noqa: E402
from magtrack_dask.io.archive import describe_archive, open_archive  # noqa: E402
from magtrack_dask.sim.archives import write_simulated_archive  # noqa: E402
from magtrack_dask.jobs import run_job  # noqa: E402
from magtrack_dask.tracking import track, write_results  # noqa: E402


def _peak_rss_mib() -> float:
    from memory_bound import _peak_rss  # VmHWM: ru_maxrss also counts the forking client

    return _peak_rss() / 2**20


def in_memory_rate(archive, chunk: int, method: str):
    """Single-process rates on frames already in memory, batch by batch.

    Returns frames/s of crop + float conversion + core, of the core alone, and x
    ``(bead, frame)`` for the equality check.
    """
    rois = archive.rois
    r = int(rois[0, 1] - rois[0, 0])
    t_crop, t_core, xs = 0.0, 0.0, []
    for start in range(0, archive.n_frames, chunk):
        block = archive.group["frames"][start : start + chunk]  # untimed; zarr directly, not via the cluster
        t0 = time.perf_counter()
        stack = np.empty((r, r, len(rois), block.shape[0]))
        for b, (t, bo, le, ri) in enumerate(rois):
            stack[:, :, b, :] = block[:, t:bo, le:ri].transpose(1, 2, 0)
        stack = stack.reshape(r, r, -1)
        t1 = time.perf_counter()
        with core.core_threads(1):  # one core, as each worker
            x = core.track_stack(stack, method=method)[0]
        t2 = time.perf_counter()
        t_crop, t_core = t_crop + t1 - t0, t_core + t2 - t1
        xs.append(np.asarray(x).reshape(len(rois), -1) + rois[:, 2:3])
    n = archive.n_frames
    return n / (t_crop + t_core), n / t_core, np.concatenate(xs, axis=1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=24000)
    p.add_argument("--beads", type=int, default=4)
    p.add_argument("--roi", type=int, default=64)
    p.add_argument("--chunk-frames", type=int, default=1000, help="frames per Zarr chunk = per task")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--archive", default=None, help="reuse (or create and keep) this input archive")
    p.add_argument("--repeat", type=int, default=2, help="best of N alternating runs (shared machines are noisy)")
    p.add_argument("--method", default="magtrack", choices=("magtrack", "accurate"),
                   help="the core's method, the same on both sides (default magtrack: the reference's pipeline)")
    p.add_argument("--dask-defaults", action="store_true",
                   help="start the cluster with Dask's housekeeping settings (start_cluster(batch_config=False))")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src, out = args.archive or os.path.join(tmp, "frames.zarr"), os.path.join(tmp, "results.zarr")
        t0 = time.perf_counter()
        if not os.path.exists(src):
            write_simulated_archive(src, args.frames, args.beads, roi=args.roi, chunk_frames=args.chunk_frames,
                                    photons=1000.0, seed=0)
        t_write = time.perf_counter() - t0
        info = describe_archive(src)
        args.frames, args.beads, args.chunk_frames = info["n_frames"], info["n_beads"], info["chunk_frames"]
        arch = open_archive(src)
        client = start_cluster(args.workers, batch_config=not args.dask_defaults, dashboard_address=":0")
        with client.cluster, client:  # the client closes first
            # Warm-up: imports and first-call costs in every worker, not timed.
            client.compute(track(src, method=args.method).isel(frame=slice(0, 8 * args.workers))[["x"]]).result()
            mem_rate = core_rate = dask_rate = unchecked_rate = job_rate = 0.0
            for _ in range(args.repeat):  # alternate, so both sides see the same machine load
                m, c, x_ref = in_memory_rate(arch, args.chunk_frames, args.method)
                mem_rate, core_rate = max(mem_rate, m), max(core_rate, c)
                t0 = time.perf_counter()  # without the lost-bead check: what the check costs
                write_results(track(src, min_symmetry=0, method=args.method), out, overwrite=True)
                unchecked_rate = max(unchecked_rate, args.frames / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                ds = track(src, method=args.method)
                write_results(ds, out, overwrite=True)
                dask_rate = max(dask_rate, args.frames / (time.perf_counter() - t0))
                t0 = time.perf_counter()  # the job: streaming driver, sharded results store, job record
                run_job(src, os.path.join(tmp, "job.zarr"), client=client, overwrite=True, method=args.method)
                job_rate = max(job_rate, args.frames / (time.perf_counter() - t0))
            n_tasks = len(ds.x.chunks[1])
            peak = max(client.run(_peak_rss_mib).values())
        import xarray as xr

        x_dask = xr.open_zarr(out).x.values
        max_diff = float(np.nanmax(np.abs(x_dask - x_ref)))

    target = 0.8 * args.workers * mem_rate
    frame_mb = np.prod(info["shape"][1:]) * 2 / 1e6
    rows = [
        ("archive", f"{args.frames} frames {info['frame_shape'][0]}x{info['frame_shape'][1]} uint16, "
                    f"{args.beads} beads x {args.roi} px, {info['nbytes'] / 1e9:.2f} GB raw, "
                    f"ratio {info['compression_ratio']:.2f}, simulated in {t_write:.0f} s"),
        ("method", args.method),
        ("tasks", f"{n_tasks} x {args.chunk_frames} frames ({args.chunk_frames * args.beads} ROIs per core call)"),
        ("in-memory, 1 process: crop + core", f"{mem_rate:8.0f} frames/s  ({mem_rate * args.beads:.0f} ROIs/s)"),
        ("in-memory, 1 process: core alone", f"{core_rate:8.0f} frames/s  ({core_rate * args.beads:.0f} ROIs/s)"),
        (f"dask, {args.workers} workers, zarr->zarr{', Dask defaults' if args.dask_defaults else ''}", f"{dask_rate:8.0f} frames/s  "
         f"({dask_rate * frame_mb:.0f} MB/s of raw frames)"),
        (f"job (run_job), {args.workers} workers", f"{job_rate:8.0f} frames/s  "
         f"{job_rate / (args.workers * mem_rate):.0%} of {args.workers} x in-memory "
         f"(target >= 80 %: {'PASS' if job_rate >= target else 'FAIL'})"),
        ("  same, lost-bead check off", f"{unchecked_rate:8.0f} frames/s  (track(min_symmetry=0): "
                                        f"{unchecked_rate / (args.workers * mem_rate):.0%} of {args.workers} x in-memory)"),
        (f"dask / ({args.workers} x in-memory)", f"{dask_rate / (args.workers * mem_rate):8.0%}   "
         f"(target >= 80 %: {'PASS' if dask_rate >= target else 'FAIL'}); "
         f"vs core alone {dask_rate / (args.workers * core_rate):.0%}"),
        ("peak worker memory (VmHWM)", f"{peak:8.0f} MiB"),
        ("max |x_dask - x_memory|", f"{max_diff:.1e} px"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


if __name__ == "__main__":
    main()
