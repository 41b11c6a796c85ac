"""Does the job driver's cost per task stay flat from a thousand to a million tasks? (issue 14 item 7)

For each archive size (tasks = chunks of 4 frames, each in a shard of its own; 1 bead, 16 px ROIs: the
issue's setting) a fresh
process opens the archive, starts the job (:func:`magtrack_dask.jobs.prepare_job`) and tracks the same
1,500 tasks (``max_chunks``) on a ``LocalCluster`` of 2 single-threaded worker processes, and reports:

* open: :func:`magtrack_dask.open_archive` (with its chunk check);
* job start: ``prepare_job`` (results store metadata, job record);
* driver time per task: the driver process's CPU time (client and scheduler: a LocalCluster's scheduler runs
  in the driver's process) and wall time of the 1,500 tasks, divided by 1,500;
* driver peak memory: the driver's peak resident set size from just before the job starts to its end
  (``VmHWM``, reset with ``/proc/self/clear_refs``), and its growth over the RSS before;
* files written: files the run added to the results store, per task, and the metadata files;
* tracking throughput, frames per second of wall time.

Archives up to ``--disk-max`` tasks are simulated on disk by the package's writer (one file a shard). Larger
ones are :mod:`synthetic_store` archives: a read-only store answers every shard key of ``frames`` with the one
valid encoded shard of a small archive, so that a million-task archive needs no disk; the workers decode and
track that shard every time.

The measured jobs keep one shard per task (``frames_per_task=4``): the driver's cost per task is what is
measured, and a task writes one file per results variable whatever its size. The last table extrapolates a
full job on 1 TB and 100 TB of 64 px uint16 ROIs, 100 beads per frame (the default shard: 4096 ROIs = 40
frames, 32.8 MB) at the job's default task size (:func:`magtrack_dask.jobs.prepare.job_task_frames`: 32
such shards, ~1 GiB, a task) from the measured costs: driver time = job start + CPU per task x tasks; driver
memory = a linear fit of peak memory against tasks; files = metadata + files per task x tasks.

    python benchmarks/scale.py                              # 1e3 1e4 1e5 1e6 tasks
    python benchmarks/scale.py --sizes 1000 10000           # quicker
    python benchmarks/scale.py --profile 100000             # cProfile of the driver at one size
    python benchmarks/scale.py --rows rows.jsonl            # the tables again from saved rows
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

TASK_FRAMES, ROI = 4, 16
N_TRACKED = 1500
#: The extrapolation's archive: 64 px uint16 ROIs, 100 beads, default shards of 4096 ROIs.
REF_BEADS, REF_ROI = 100, 64
REF_FRAME_BYTES = REF_BEADS * REF_ROI * REF_ROI * 2
REF_SHARD_FRAMES = 4096 // REF_BEADS
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _count_files(path: str) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


def _status_bytes(field: str) -> int:
    """A memory figure of ``/proc/self/status`` (``VmHWM``: peak RSS, ``VmRSS``: RSS), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS (Linux >= 4.0)
        f.write("5")


def make_archive(root: str, n_tasks: int, disk_max: int):
    """``(source, files in the archive or None)``: a simulated archive on disk (kept in ``root`` and reused),
    or a :mod:`synthetic_store` archive that serves one stored shard for every key."""
    from magtrack_dask.io.archive import open_archive
    from magtrack_dask.sim.archives import write_simulated_archive

    if n_tasks > disk_max:
        from synthetic_store import make_synthetic_archive

        path = os.path.join(root, f"synthetic-{n_tasks}.zarr")
        shutil.rmtree(path, ignore_errors=True)
        return make_synthetic_archive(path, n_tasks, chunk_frames=TASK_FRAMES, roi=ROI), None
    path = os.path.join(root, f"archive-{n_tasks}.zarr")
    try:
        reuse = len(open_archive(path).frame_chunks) == n_tasks
    except (OSError, ValueError):
        reuse = False
    if not reuse:
        write_simulated_archive(path, n_tasks * TASK_FRAMES, 1, roi=ROI, chunk_frames=TASK_FRAMES,
                                shard_frames=TASK_FRAMES, photons=1e4, seed=0, overwrite=True)
    return path, _count_files(path)


def measure(n_tasks: int, root: str, disk_max: int, workers: int, profile: bool) -> dict:
    """One size, in this process: open, job start, 1,500 tasks."""
    from magtrack_dask.cluster import start_cluster
    from magtrack_dask.io.archive import open_archive
    from magtrack_dask.jobs import prepare_job

    source, archive_files = make_archive(root, n_tasks, disk_max)
    out = os.path.join(root, f"results-{n_tasks}.zarr")
    shutil.rmtree(out, ignore_errors=True)
    client = start_cluster(workers, dashboard_address=":0")
    with client.cluster, client:
        client.run(lambda: None)
        t = time.perf_counter()
        arch = open_archive(source)
        t_open = time.perf_counter() - t
        # from the metadata: building arch.data (a Dask array of every chunk) here would count in the driver's RSS
        assert len(arch.frame_chunks) == n_tasks, len(arch.frame_chunks)
        del arch
        rss0 = _status_bytes("VmRSS")
        _reset_peak_rss()
        t, c = time.perf_counter(), time.process_time()
        # the same results variables at every size (x_nm, y_nm, time): the synthetic archives carry both
        # one shard per task at every size: the unit whose driver cost is measured
        job = prepare_job(source, out, frames_per_task=TASK_FRAMES, pixel_size_nm=100.0, frame_rate_hz=1000.0)
        t_start, c_start = time.perf_counter() - t, time.process_time() - c
        files0 = _count_files(out)
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t, c = time.perf_counter(), time.process_time()
        report = job.run(client, max_chunks=N_TRACKED)
        t_run, c_run = time.perf_counter() - t, time.process_time() - c
        if profiler is not None:
            profiler.disable()
        peak = _status_bytes("VmHWM")
    assert report.n_computed == min(N_TRACKED, n_tasks), report
    n = report.n_computed
    res = {
        "tasks": n_tasks, "tracked": n,
        "open_s": t_open, "start_s": t_start, "start_cpu_s": c_start,
        "cpu_ms_per_task": 1e3 * c_run / n, "wall_ms_per_task": 1e3 * t_run / n,
        "frames_per_s": n * TASK_FRAMES / t_run,
        "peak_mb": peak / 1e6, "growth_mb": (peak - rss0) / 1e6,
        "metadata_files": files0, "files_per_task": (_count_files(out) - files0) / n,
        "archive_files": archive_files,
    }
    if profiler is not None:
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        res["profile"] = text.getvalue()
    return res


def extrapolate(rows: list[dict]) -> list[dict]:
    """A full job on 1 TB and 100 TB of the reference archive at the job's default task size, from the
    largest size's costs."""
    from magtrack_dask.jobs.prepare import job_task_frames

    big = max(rows, key=lambda r: r["tasks"])
    sizes = np.array([r["tasks"] for r in rows], dtype=float)
    peaks = np.array([r["peak_mb"] for r in rows])
    slope, intercept = np.polyfit(sizes, peaks, 1) if len(rows) > 1 else (0.0, peaks[0])
    starts = np.array([r["start_s"] for r in rows])
    s_slope, s_intercept = np.polyfit(sizes, starts, 1) if len(rows) > 1 else (0.0, starts[0])
    out = []
    for label, nbytes in (("1 TB", 1e12), ("100 TB", 1e14)):
        n_frames = int(nbytes // REF_FRAME_BYTES)
        task_frames = job_task_frames(REF_SHARD_FRAMES, REF_SHARD_FRAMES * REF_FRAME_BYTES, n_frames)
        n = -(-n_frames // task_frames)
        out.append({
            "job": label, "shards": -(-n_frames // REF_SHARD_FRAMES),
            "shards_per_task": task_frames // REF_SHARD_FRAMES,
            "task_gb": task_frames * REF_FRAME_BYTES / 1e9, "tasks": n,
            "start_s": max(0.0, s_intercept + s_slope * n),
            "driver_cpu_h": (big["cpu_ms_per_task"] * 1e-3 * n) / 3600,
            "driver_mb": max(intercept + slope * n, min(peaks)),
            "files": big["metadata_files"] + big["files_per_task"] * n,
        })
    return out


def table(rows: list[dict], extra: list[dict]) -> str:
    lines = [
        "| tasks (chunks of 4 frames) | open | job start | driver CPU / task | driver wall / task | tracking "
        "| driver peak RSS (growth) | files written / task (+ metadata) | archive files |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        archive = "served" if r["archive_files"] is None else f"{r['archive_files']:,}"
        lines.append(
            f"| {r['tasks']:,} | {r['open_s']:.2f} s | {r['start_s']:.2f} s | {r['cpu_ms_per_task']:.2f} ms "
            f"| {r['wall_ms_per_task']:.2f} ms | {r['frames_per_s']:.0f} frames/s "
            f"| {r['peak_mb']:.0f} MB ({r['growth_mb']:+.0f}) | {r['files_per_task']:.2f} (+{r['metadata_files']}) "
            f"| {archive} |")
    base = next((r for r in rows if r["tasks"] == 10_000), None)
    small = min(rows, key=lambda r: r["tasks"])
    for r in rows:
        if base is not None and r["tasks"] > base["tasks"]:
            lines.append(f"\n{r['tasks']:,} vs 10,000 tasks: driver CPU / task x"
                         f"{r['cpu_ms_per_task'] / base['cpu_ms_per_task']:.2f}, driver peak memory x"
                         f"{r['peak_mb'] / base['peak_mb']:.2f}")
        if r is not small:
            lines.append(f"\n{r['tasks']:,} vs {small['tasks']:,} tasks: tracking throughput x"
                         f"{r['frames_per_s'] / small['frames_per_s']:.2f}")
    lines += ["", "| extrapolated job | archive shards | shards / task (input) | tasks | job start | driver CPU "
              "| driver memory | files written |", "|---|---|---|---|---|---|---|---|"]
    for e in extra:
        lines.append(f"| {e['job']} | {e['shards']:,} | {e['shards_per_task']} ({e['task_gb']:.2f} GB) "
                     f"| {e['tasks']:,.0f} | {e['start_s']:.0f} s | {e['driver_cpu_h']:.2f} h "
                     f"| {e['driver_mb']:,.0f} MB | {e['files']:,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e3, 1e4, 1e5, 1e6], help="archive sizes, tasks")
    p.add_argument("--disk-max", type=float, default=1e4, help="largest archive simulated on disk (tasks)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", help="working folder (default: a temporary folder, removed)")
    p.add_argument("--profile", type=float, metavar="TASKS", help="one size, with cProfile of the driver")
    p.add_argument("--rows", metavar="FILE", help="print the tables of saved rows (one JSON object a line), no run")
    p.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a child process: one size, JSON out
    args = p.parse_args(argv)
    if args.rows:
        with open(args.rows) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        print(table(rows, extrapolate(rows)))
        return 0
    root = args.dir or tempfile.mkdtemp(prefix="scale-")
    try:
        if args.one or args.profile:
            res = measure(int(args.one or args.profile), root, int(args.disk_max), args.workers, bool(args.profile))
            if args.profile:
                print(res.pop("profile"))
            print(json.dumps(res))
            return 0
        rows = []
        for n in args.sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", str(int(n)), "--dir", root,
                   "--disk-max", str(int(args.disk_max)), "--workers", str(args.workers)]
            # the workers unpickle synthetic_store's store: it must be importable there too
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        print(table(rows, extrapolate(rows)))
        return 0
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
