"""Peak worker memory of a job on an archive several times larger than a worker's memory limit.

Simulates a ``tyx`` archive of large camera frames (noise-free, so it compresses well and is quick
to write; decoding still yields every byte), runs :func:`magtrack_dask.jobs.run_job` on the
``LocalCluster`` of :func:`magtrack_dask.start_cluster` with ``--memory-limit`` per worker, and
prints the archive's size against the limit and each worker's peak resident set size (the
kernel's high-water mark, ``VmHWM``: no sampling gaps). A worker the nanny had to restart, or a
peak above the limit, fails the run.

    python benchmarks/memory_bound.py                      # 4 GiB archive, 2 workers x 400 MiB
    python benchmarks/memory_bound.py --frames 640         # 1.25 GiB, quick
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from dask.utils import format_bytes, parse_bytes  # noqa: E402


def _peak_rss() -> int:
    """This process's peak resident set size, bytes.

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``ru_maxrss`` also counts the RSS of the
    process that forked this one (on Linux it survives ``exec``), and a LocalCluster's workers are
    forked from the client's process.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kiB on Linux, bytes on macOS


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)


def measure(archive: str, out: str, *, workers: int, memory_limit: str) -> dict:
    """Run the job on a fresh cluster; return the peak RSS of each worker and what it did."""
    from magtrack_dask.cluster import start_cluster
    from magtrack_dask.jobs import run_job

    # the cluster users get (its memory checks every 0.5 s, not Dask's 0.1 s)
    client = start_cluster(workers, memory_limit=memory_limit, dashboard_address=":0")
    with client.cluster, client:
        pids = client.run(os.getpid)
        idle = client.run(_peak_rss)
        t0 = time.perf_counter()
        report = run_job(archive, out, client=client)
        elapsed = time.perf_counter() - t0
        peak = client.run(_peak_rss)
        restarted = client.run(os.getpid) != pids
    return {"report": report, "elapsed_s": elapsed, "idle": idle, "peak": peak, "restarted": restarted}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=2048, help="frames (default 2048: 4 GiB of 1024 px uint16)")
    p.add_argument("--frame-size", type=int, default=1024, help="camera frame side, px (default 1024)")
    p.add_argument("--beads", type=int, default=16, help="64 px ROIs per frame (default 16)")
    p.add_argument("--chunk-frames", type=int, default=32, help="frames per chunk (default 32: 64 MiB)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="400MiB", help="per worker (default 400MiB)")
    p.add_argument("--dir", help="where to write the archive (default: a temporary folder, removed)")
    args = p.parse_args(argv)

    from magtrack_dask.sim.archives import write_simulated_archive

    root = args.dir or tempfile.mkdtemp(prefix="memory_bound-")
    archive, out = os.path.join(root, "archive.zarr"), os.path.join(root, "results.zarr")
    try:
        t0 = time.perf_counter()
        arch = write_simulated_archive(archive, args.frames, args.beads, roi=64, chunk_frames=args.chunk_frames,
                                       frame_shape=(args.frame_size, args.frame_size), photons=None, seed=0,
                                       overwrite=True)
        t_write = time.perf_counter() - t0
        shutil.rmtree(out, ignore_errors=True)
        res = measure(archive, out, workers=args.workers, memory_limit=args.memory_limit)
        size, limit = arch.data.nbytes, parse_bytes(args.memory_limit)
        chunk = arch.data.nbytes // arch.data.numblocks[0]
        print(f"archive: {args.frames} frames of {args.frame_size}x{args.frame_size} uint16, {args.beads} beads of "
              f"64 px: {format_bytes(size)} decoded ({format_bytes(_du(archive))} on disk), chunks of "
              f"{format_bytes(chunk)}; written in {t_write:.1f} s")
        print(f"workers: {args.workers} x memory_limit {format_bytes(limit)}; archive = {size / limit:.1f} x one "
              f"worker's limit, {size / (limit * args.workers):.1f} x all workers'")
        print(f"job: {res['report'].n_computed} chunks in {res['elapsed_s']:.1f} s "
              f"({size / res['elapsed_s'] / 2**20:.0f} MiB/s decoded)")
        print(f"{'worker':<28}{'RSS before job':>16}{'peak RSS':>12}{'peak / limit':>14}")
        for w in sorted(res["peak"]):
            print(f"{w:<28}{format_bytes(res['idle'][w]):>16}{format_bytes(res['peak'][w]):>12}"
                  f"{res['peak'][w] / limit:>13.0%}")
        ok = not res["restarted"] and max(res["peak"].values()) < limit and res["report"].complete
        print("bounded: yes" if ok else f"bounded: NO (restarted: {res['restarted']})")
        return 0 if ok else 1
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
