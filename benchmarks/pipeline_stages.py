"""Time each stage of ``stack_to_xyzp`` as the pipeline runs them, one call after another.

Stages timed one at a time in a loop can look faster than the pipeline: what one
stage leaves behind (BLAS threads still spinning, caches) changes the next. Here
every repetition runs the stages in pipeline order, then the whole
``stack_to_xyzp`` call, on the inputs of ``core_speed.py``.

Reproduce (from the repository root)::

    .venv/bin/python benchmarks/pipeline_stages.py                      # 64 px float64, all CPUs
    .venv/bin/python benchmarks/pipeline_stages.py --size 128 --dtype float32 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # core_speed, beside this script
import magtrack_dask as md  # noqa: E402
from core_speed import DEFAULT_FRAMES, make_case  # noqa: E402
from magtrack_dask.core import profiles, xy, z  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, choices=sorted(DEFAULT_FRAMES))
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--threads", type=int, default=None, help="core threads (default: the library's)")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)

    cases, _ = make_case(args.size, DEFAULT_FRAMES[args.size], [args.dtype])
    stack, zlut = cases[args.dtype]["stack"], cases[args.dtype]["zlut"]
    names = ["center_of_mass", "auto_conv", "5 refinement rounds", "radial_profile", "lookup_z", "sum", "stack_to_xyzp"]
    times = np.zeros((args.repeats, len(names)))
    threads = args.threads or md.get_core_threads()
    with md.core_threads(threads):
        for r in range(args.repeats + 1):  # the first one warms up
            t = [time.perf_counter()]
            x, y = xy.center_of_mass(stack, background="median")
            t.append(time.perf_counter())
            x, y = xy.auto_conv(stack, x, y)
            t.append(time.perf_counter())
            x, y = xy.refine_rounds(stack, x, y, 5)
            t.append(time.perf_counter())
            prof = profiles.radial_profile(stack, x, y)
            t.append(time.perf_counter())
            z.lookup_z(prof, zlut)
            t.append(time.perf_counter())
            md.stack_to_xyzp(stack, zlut)
            t.append(time.perf_counter())
            if r:
                stages = np.diff(t)
                times[r - 1] = [*stages[:5], stages[:5].sum(), stages[5]]
    print(f"{args.size} px {args.dtype}, {DEFAULT_FRAMES[args.size]} frames, {threads} core thread(s), "
          f"median of {args.repeats} (ms)")
    for name, ms in zip(names, np.median(times, axis=0) * 1e3):
        print(f"  {name:<22s} {ms:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
