"""What the job driver costs as the archive grows, for the same tracked work; before and after, side by side.

Per archive size (1e3, 1e4, 1e5 chunks of 4 frames of one 16 px bead, by
default) a job tracks the same first 1,500 chunks (``max_chunks``) on a
2-worker LocalCluster and this prints: job start (``prepare_job``: checks,
results store, record), the run's wall time and tracking rate, the driver's
CPU time per tracked chunk (the client process, which also runs the
scheduler) and the driver's peak RSS. The archives are
:mod:`synthetic_store` archives: one stored chunk served for every key, so
that 1e5-1e6 chunks need no disk.

Each measurement runs in a fresh subprocess, with the code of this checkout
("after") or of another one given by ``--before`` (e.g. ``/work/main``),
so both sides run in one session on the same machine. A side that does not
finish within ``--timeout`` seconds is reported as such.

    python benchmarks/driver_cost.py                              # after only
    python benchmarks/driver_cost.py --before /work/main --sizes 1000 10000 100000
    python benchmarks/driver_cost.py --sizes 1000000 --track 1500   # the largest
    python benchmarks/driver_cost.py --resume 2000                  # --resume with 1 % left vs a full run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(n_chunks: int, n_track: int, workers: int) -> dict:
    """In this process: one job of ``n_track`` chunks on an archive of ``n_chunks``."""
    from synthetic_store import make_synthetic_archive

    from magtrack_dask.cluster import close_client, start_cluster
    from magtrack_dask.jobs import prepare_job

    folder = tempfile.mkdtemp(prefix="driver_cost-")
    group = make_synthetic_archive(os.path.join(folder, "a.zarr"), n_chunks)
    client = start_cluster(workers, dashboard_address=":0")
    try:
        client.run(lambda: 0)  # the workers are up before the clock starts
        rss0 = _peak_rss_mb()
        t0, c0 = time.perf_counter(), _cpu_s()
        job = prepare_job(group, os.path.join(folder, "r.zarr"))
        start_s = time.perf_counter() - t0
        t1, c1 = time.perf_counter(), _cpu_s()
        report = job.run(client, max_chunks=n_track)
        run_s, cpu = time.perf_counter() - t1, _cpu_s() - c1
        frames = 4 * report.n_computed
        return {"n_chunks": n_chunks, "tracked": report.n_computed, "start_s": start_s, "run_s": run_s,
                "frames_per_s": frames / run_s, "driver_cpu_ms_per_chunk": 1e3 * cpu / max(report.n_computed, 1),
                "start_cpu_s": c1 - c0, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss0}
    finally:
        close_client(client)


def measure_resume(n_chunks: int, workers: int) -> dict:
    """In this process: a full run of ``n_chunks``, then a run stopped at 99 % and its resume."""
    from synthetic_store import make_synthetic_archive

    from magtrack_dask.cluster import close_client, start_cluster
    from magtrack_dask.jobs import run_job

    folder = tempfile.mkdtemp(prefix="driver_cost-")
    group = make_synthetic_archive(os.path.join(folder, "a.zarr"), n_chunks)
    client = start_cluster(workers, dashboard_address=":0")
    try:
        client.run(lambda: 0)
        t0 = time.perf_counter()
        run_job(group, os.path.join(folder, "full.zarr"), client=client)
        full_s = time.perf_counter() - t0
        left = max(1, n_chunks // 100)
        run_job(group, os.path.join(folder, "part.zarr"), client=client, max_chunks=n_chunks - left)
        t0 = time.perf_counter()
        report = run_job(group, os.path.join(folder, "part.zarr"), client=client, resume=True)
        resume_s = time.perf_counter() - t0
        return {"n_chunks": n_chunks, "left": report.n_computed, "full_s": full_s, "resume_s": resume_s,
                "ratio": resume_s / full_s}
    finally:
        close_client(client)


def _in_subprocess(code_root: str, args: list[str], timeout: float) -> dict | None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([code_root, HERE]))
    try:
        res = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, capture_output=True,
                             text=True, timeout=timeout, cwd=code_root)
    except subprocess.TimeoutExpired:
        return None
    for line in res.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"measurement failed:\n{res.stdout}\n{res.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--track", type=int, default=1500, help="chunks tracked per job (default 1500)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--before", help="checkout of the code to compare with (e.g. /work/main)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    p.add_argument("--resume", type=int, metavar="N", help="time --resume with 1 %% of N chunks left instead")
    p.add_argument("--child", choices=["job", "resume"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "job":
        print(json.dumps(measure(args.sizes[0], args.track, args.workers)))
        return
    if args.child == "resume":
        print(json.dumps(measure_resume(args.resume, args.workers)))
        return
    if args.resume:
        r = _in_subprocess(ROOT, ["--child", "resume", "--resume", str(args.resume),
                                  "--workers", str(args.workers)], args.timeout)
        print(json.dumps(r))
        if r:
            print(f"{r['n_chunks']} chunks: full run {r['full_s']:.1f} s, resume of {r['left']} chunks "
                  f"{r['resume_s']:.2f} s = {100 * r['ratio']:.1f} % of the full run")
        return
    sides = [("after", ROOT)] + ([("before", os.path.abspath(args.before))] if args.before else [])
    rows = []
    for n in args.sizes:
        for side, root in sides:
            r = _in_subprocess(root, ["--child", "job", "--sizes", str(n), "--track", str(args.track),
                                      "--workers", str(args.workers)], args.timeout)
            rows.append((side, n, r))
            print(json.dumps({"side": side, "n_chunks": n, **(r or {"timeout_s": args.timeout})}), flush=True)
    print(f"\n{'side':>6} {'chunks':>8} {'start s':>8} {'run s':>7} {'frames/s':>9} {'CPU ms/chunk':>13} "
          f"{'peak RSS MB':>12}")
    for side, n, r in rows:
        if r is None:
            print(f"{side:>6} {n:>8}   not done within {args.timeout:.0f} s")
            continue
        print(f"{side:>6} {n:>8} {r['start_s']:>8.2f} {r['run_s']:>7.1f} {r['frames_per_s']:>9.0f} "
              f"{r['driver_cpu_ms_per_chunk']:>13.2f} {r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
