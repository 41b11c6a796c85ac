"""Speed of every core function: magtrack_dask against the reference magtrack 1.0.0.

Both packages run in one process on identical inputs (simulated bead images,
beads a few px off-centre, a 201-entry Z-LUT from 0 to 6000 nm). Each function
gets one warm-up call, then ``--repeats`` timed samples per package (a sample
loops over calls until it lasts 20 ms, for microsecond functions), alternating
which package goes first; the table reports the median time per call as
frames/s and the ratio ours/reference (> 1: ours is faster). Arguments a
function mutates (binmean's ``x``, fft_profile_with_center's ``stack``) are
copied before the clock starts. Functions magtrack_dask lacks show "missing".
OpenBLAS's idle threads sleep at once (``OPENBLAS_THREAD_TIMEOUT=4``, see
below), so neither package's leftover threads slow the other down.
With ``--device gpu`` ours runs on CuPy arrays (synchronised before the clock
stops) while the reference stays on the CPU with the same NumPy inputs.

Reproduce (from the repository root)::

    .venv/bin/python benchmarks/core_speed.py                  # full run, CPU
    .venv/bin/python benchmarks/core_speed.py --quick          # smoke run
    .venv/bin/python benchmarks/core_speed.py --device gpu --json bench-output/gpu.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# The reference's matrix products and fits run on OpenBLAS's threads, which
# spin for ~0.1 s after each call (2**28 cycles) before they sleep. Timed back
# to back, they take the CPU from whatever runs next: ours, in every other
# sample (measured: auto_conv_multiline_sub_pixel 64 px, 2 threads, 7.1 ms
# after ours, 10.4 ms after the reference). Sleeping at once leaves each
# package's own speed alone (the reference's times do not change); it must be
# set before NumPy loads OpenBLAS. OPENBLAS_THREAD_TIMEOUT=28 restores the spin.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
import magtrack_dask  # noqa: E402

_err_state = np.geterr()
with warnings.catch_warnings():  # "CuPy is not available" on CPU-only machines
    warnings.simplefilter("ignore")
    import magtrack.core as ref  # noqa: E402  (the _qi_* helpers are not re-exported)
np.seterr(**_err_state)  # undo the reference's global np.seterr(divide/invalid='ignore')
REF_VERSION = importlib.metadata.version("magtrack")


class _Flat:
    """Attribute lookup across modules: ours exports flat, private helpers may sit in core."""

    def __init__(self, *names: str) -> None:
        self._names = names

    def __getattr__(self, name: str) -> Any:
        for mod in self._names:
            try:
                value = getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
            setattr(self, name, value)  # found once, then a plain attribute
            return value
        raise AttributeError(name)


ours = _Flat("magtrack_dask", "magtrack_dask.core")

Z_MAX_NM = 6000.0
N_ZLUT = 201
DEFAULT_FRAMES = {64: 2000, 128: 500}
MIN_SAMPLE_S = 0.02  # fast functions: one sample loops over calls until this long


# ---------------------------------------------------------------- inputs


def _rings(x: np.ndarray, y: np.ndarray, z: np.ndarray, n: int,
           rng: np.random.Generator | None) -> np.ndarray:
    """Fallback bead images: damped rings whose period and extent grow with z."""
    grid = np.arange(n, dtype=np.float64)
    r = np.hypot(grid[None, :, None] - x, grid[:, None, None] - y)  # (y, x, frame)
    period = 3.0 + z / 1500.0
    r0 = 0.12 * n * (1.0 + z / Z_MAX_NM)
    img = 1000.0 * (1.0 + 0.4 * np.cos(2 * np.pi * r / period) * np.exp(-r / r0))
    if rng is not None:  # shot noise, Gaussian approximation
        img += rng.standard_normal(img.shape) * np.sqrt(img)
    return img


def _render(x, y, z, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(stack float64, zlut float64, source): magtrack_dask.sim.beads if it works."""
    z_ref = np.linspace(0.0, Z_MAX_NM, N_ZLUT)
    try:
        from magtrack_dask.sim import beads

        stack = np.asarray(beads.render_beads(x, y, z, n_pixels=n, seed=seed), np.float64)
        zlut = np.asarray(beads.make_zlut(z_ref, n_pixels=n), np.float64)
        # A bead centred between pixels leaves bin 0 empty (NaN); both packages skip
        # that row when matching, so give it the next bin's values.
        zlut[1] = np.where(np.isfinite(zlut[1]), zlut[1], zlut[2])
        assert stack.shape == (n, n, len(x)) and zlut.shape == (1 + n // 2, N_ZLUT)
        cx, cy = ref.center_of_mass(stack[:, :, :50], background="median")
        assert np.nanmedian(np.hypot(cx - x[:50], cy - y[:50])) < 3.0, "bead not at (x, y)"
        return stack, zlut, "magtrack_dask.sim.beads"
    except Exception as exc:  # not written yet, or a different convention
        reason = f"magtrack_dask.sim.beads: {type(exc).__name__}"
    stack = _rings(x, y, z, n, np.random.default_rng(seed))
    c = np.full(N_ZLUT, n / 2.0)
    profiles = ref.radial_profile(_rings(c, c, z_ref, n, None), c, c)
    return stack, np.vstack([z_ref, profiles]), f"built-in rings ({reason})"


def make_case(n: int, n_frames: int, dtypes: list[str], seed: int = 0
              ) -> tuple[dict[str, dict[str, Any]], str]:
    """Inputs for every benchmark, per dtype, in the shapes the pipeline produces."""
    rng = np.random.default_rng(seed)
    x = n / 2 + rng.uniform(-3, 3, n_frames)
    y = n / 2 + rng.uniform(-3, 3, n_frames)
    z = rng.uniform(300, Z_MAX_NM - 300, n_frames)
    stack64, zlut64, source = _render(x, y, z, n, seed)
    # Starting estimates as a coarse step would hand them over (float64).
    x0 = x + rng.uniform(-0.5, 0.5, n_frames)
    y0 = y + rng.uniform(-0.5, 0.5, n_frames)
    grid = np.arange(n, dtype=np.float64)
    radii = np.round(np.hypot(grid[None, :, None] - x0, grid[:, None, None] - y0))
    half = n // 2
    rois = np.array([[0, n, 0, n], [0, n, n, 2 * n], [n, 2 * n, 0, n], [n, 2 * n, n, 2 * n]])
    _, row_max, _, row_con = ref.auto_conv(stack64, x0, y0, return_conv=True)
    profiles64 = ref.radial_profile(stack64, x, y)

    cases = {}
    for dt in dtypes:
        stack = stack64.astype(dt)
        zlut = zlut64.astype(dt)
        profiles = profiles64.astype(dt)
        cases[dt] = dict(
            stack=stack, x=x0, y=y0, zlut=zlut, profiles=profiles, rois=rois,
            radii=radii.astype(np.uint16).reshape(n * n, n_frames),
            flat=stack.reshape(n * n, n_frames), n_bins=half,
            ref_profiles=zlut[2:], cur_profiles=profiles[1:],
            px=grid.astype(dt)[:, None], mu=y0[None, :], grid=grid.astype(dt),
            big=np.tile(stack, (2, 2, 1)),
            conv=row_con.astype(dt), conv_max=row_max.astype(np.float64),
            samples=ref._qi_sample_axis_profiles(stack, x0, y0, 1),
        )
    return cases, source


# ---------------------------------------------------------------- benchmarks

Call = Callable[[Any, dict[str, Any], bool], Any]  # (module, inputs, is_reference)


@dataclass(frozen=True)
class Bench:
    name: str  # the function, in both packages
    call: Call
    mutates: tuple[str, ...] = ()
    label: str = ""  # the row's name, where one function has several rows

    @property
    def row(self) -> str:
        return self.label or self.name


def _fft_with_center(m, d: dict[str, Any], is_ref: bool):
    # The reference centres its window at row=x, column=y: hand it (y, x).
    cx, cy = (d["y"], d["x"]) if is_ref else (d["x"], d["y"])
    return m.fft_profile_with_center(d["stack"], cx, cy)


BENCHES = [
    Bench("binmean", lambda m, d, r: m.binmean(d["radii"], d["flat"], d["n_bins"]), ("radii",)),
    Bench("pearson", lambda m, d, r: m.pearson(d["ref_profiles"], d["cur_profiles"])),
    Bench("gaussian", lambda m, d, r: m.gaussian(d["px"], d["mu"], d["stack"].shape[0] / 6)),
    Bench("gaussian_2d", lambda m, d, r: m.gaussian_2d(
        d["grid"], d["grid"], d["x"], d["y"], d["stack"].shape[0] / 6)),
    Bench("crop_stack_to_rois", lambda m, d, r: m.crop_stack_to_rois(d["big"], d["rois"])),
    Bench("parabolic_vertex", lambda m, d, r: m.parabolic_vertex(d["conv"], d["conv_max"], 5)),
    Bench("_qi_sample_axis_profiles",
          lambda m, d, r: m._qi_sample_axis_profiles(d["stack"], d["x"], d["y"], 1)),
    Bench("_qi_quadratic_offsets", lambda m, d, r: m._qi_quadratic_offsets(d["samples"])),
    Bench("qi", lambda m, d, r: m.qi(d["stack"], d["x"], d["y"])),
    Bench("center_of_mass", lambda m, d, r: m.center_of_mass(d["stack"], background="median")),
    # The spec's default call: ours defaults to 'none', the reference to 'median'.
    Bench("center_of_mass", lambda m, d, r: m.center_of_mass(d["stack"], background="none") if r
          else m.center_of_mass(d["stack"]), label="center_of_mass(none)"),
    Bench("auto_conv", lambda m, d, r: m.auto_conv(d["stack"], d["x"], d["y"])),
    Bench("auto_conv_sub_pixel", lambda m, d, r: m.auto_conv_sub_pixel(d["stack"], d["x"], d["y"])),
    Bench("auto_conv_multiline", lambda m, d, r: m.auto_conv_multiline(d["stack"], d["x"], d["y"])),
    Bench("auto_conv_multiline_sub_pixel",
          lambda m, d, r: m.auto_conv_multiline_sub_pixel(d["stack"], d["x"], d["y"])),
    Bench("radial_profile", lambda m, d, r: m.radial_profile(d["stack"], d["x"], d["y"])),
    Bench("fft_profile", lambda m, d, r: m.fft_profile(d["stack"])),
    Bench("fft_profile_with_center", _fft_with_center, ("stack",)),
    Bench("lookup_z", lambda m, d, r: m.lookup_z(d["profiles"], d["zlut"])),
    Bench("stack_to_xyzp", lambda m, d, r: m.stack_to_xyzp(d["stack"], d["zlut"])),
    Bench("stack_to_xyzp_advanced",
          lambda m, d, r: m.stack_to_xyzp_advanced(d["stack"], d["zlut"])),
]
HOST_ONLY = {"rois", "n_bins"}  # stay NumPy/Python for ours on the GPU as well


# ---------------------------------------------------------------- timing


def _no_sync() -> None:
    pass


def _timed(bench: Bench, module, inputs: dict[str, Any], is_ref: bool,
           sync: Callable[[], None], loops: int) -> float:
    """Seconds per call, averaged over ``loops`` back-to-back calls."""
    fresh = [{k: (v.copy() if k in bench.mutates else v) for k, v in inputs.items()}
             for _ in range(loops)]  # copies of mutated arguments, made off the clock
    sync()
    t0 = time.perf_counter()
    for d in fresh:
        bench.call(module, d, is_ref)
    sync()
    return (time.perf_counter() - t0) / loops


def run_bench(bench: Bench, ours_in: dict, ref_in: dict, repeats: int,
              ours_sync: Callable[[], None]) -> tuple[float | None, float, str]:
    """Median seconds per call (ours, reference) and a status: ok, missing or the error.

    The warm-up call also sets how many calls one sample loops over, so that
    a sample lasts at least MIN_SAMPLE_S (microsecond functions are otherwise noise).
    """
    runs: list[tuple[bool, Any, dict, Callable[[], None]]] = [(True, ref, ref_in, _no_sync)]
    status = "missing"
    if hasattr(ours, bench.name):
        runs.insert(0, (False, ours, ours_in, ours_sync))
        status = "ok"
    times: dict[bool, list[float]] = {False: [], True: []}
    loops = {False: 1, True: 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN edges in either package
        for i in range(repeats + 1):  # i == 0 is the warm-up
            for is_ref, module, inputs, sync in (runs if i % 2 else runs[::-1]):
                if not is_ref and status != "ok":
                    continue
                try:
                    t = _timed(bench, module, inputs, is_ref, sync, loops[is_ref])
                except Exception as exc:
                    if is_ref:
                        raise
                    status = f"error: {type(exc).__name__}: {exc}"[:70]
                    continue
                if i:
                    times[is_ref].append(t)
                else:
                    loops[is_ref] = min(10_000, max(1, math.ceil(MIN_SAMPLE_S / max(t, 1e-9))))
    t_ours = statistics.median(times[False]) if times[False] else None
    return t_ours, statistics.median(times[True]), status


# ---------------------------------------------------------------- main


def _gpu() -> tuple[Callable[[Any], Any], Callable[[], None], str]:
    if not magtrack_dask.check_cupy():
        sys.exit("--device gpu needs CuPy and a working CUDA device "
                 "(pip install 'magtrack-dask[gpu]'); none found.")
    import cupy

    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    return cupy.asarray, dev.synchronize, f"ours on GPU ({name}, CuPy {cupy.__version__})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--functions", help="comma-separated subset, e.g. qi,stack_to_xyzp")
    p.add_argument("--sizes", default="64,128", help="frame widths in px (default 64,128)")
    p.add_argument("--frames", type=int,
                   help="frames per case (default 2000 at 64 px, 500 at 128 px)")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed samples per package; the median is reported (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 100 frames, 1 sample")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="where ours runs; the reference always runs on the CPU")
    p.add_argument("--json", type=Path, help="write the results to this file")
    p.add_argument("--threads", type=int,
                   help="threads of our CPU kernels (magtrack_dask.core_threads); default: "
                        "every CPU this process may use. The reference is single-threaded "
                        "except inside BLAS")
    a = p.parse_args(argv)

    names = list(dict.fromkeys([b.name for b in BENCHES] + [b.row for b in BENCHES]))
    wanted = a.functions.split(",") if a.functions else names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        p.error(f"unknown function(s) {unknown}; choose from {names}")
    benches = [b for b in BENCHES if b.name in wanted or b.row in wanted]
    sizes = [int(s) for s in a.sizes.split(",")]
    dtypes = a.dtypes.split(",")
    repeats = 1 if a.quick else a.repeats
    to_ours, ours_sync, where = (lambda v: v), _no_sync, "ours on CPU"
    if a.device == "gpu":
        to_ours, ours_sync, where = _gpu()
    threads = a.threads or magtrack_dask.get_core_threads()
    if a.device == "cpu":
        where += f" ({threads} thread{'s' if threads > 1 else ''})"

    print(f"magtrack_dask {magtrack_dask.__version__} vs magtrack {REF_VERSION} | "
          f"NumPy {np.__version__} | Python {platform.python_version()} | "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} | "
          f"{where}, reference on CPU")
    print(f"time: median of {repeats} samples per package after 1 warm-up call, the two "
          f"packages alternating; a sample loops until >= {MIN_SAMPLE_S} s\n"
          "frames/s = frames / median time; ratio = ours/reference (>1: ours faster)")
    print("reference: its import warnings (no CuPy) are silenced and its global np.seterr "
          "is undone; RuntimeWarnings are ignored while timing")
    print("calls: center_of_mass(background='median') for both, and center_of_mass(none): ours "
          "center_of_mass(stack), the reference background='none'; fft_profile_with_center gets "
          "(y, x) in the reference (its centre convention is swapped)")
    print(f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']} (idle BLAS threads "
          "sleep after 2**N cycles; 4: at once)")

    results: list[dict[str, Any]] = []
    header = f"{'function':<30} {'case':<15} {'ours f/s':>11} {'ref f/s':>11} {'ratio':>7}"
    t_start = time.perf_counter()
    with magtrack_dask.core_threads(threads):
        for n in sizes:
            n_frames = 100 if a.quick else a.frames or DEFAULT_FRAMES.get(n, 500)
            cases, source = make_case(n, n_frames, dtypes)
            print(f"\n{n} px x {n_frames} frames, inputs from {source}, Z-LUT {N_ZLUT} planes")
            print(header + "\n" + "-" * len(header))
            for dt, ref_in in cases.items():
                ours_in = {k: v if k in HOST_ONLY else to_ours(v) for k, v in ref_in.items()}
                case = f"{n}px {dt}"
                for b in benches:
                    t_ours, t_ref, status = run_bench(b, ours_in, ref_in, repeats, ours_sync)
                    fps_ref = n_frames / t_ref
                    fps_ours = n_frames / t_ours if t_ours else None
                    ratio = fps_ours / fps_ref if fps_ours else None
                    shown = f"{fps_ours:11.0f} {fps_ref:11.0f} {ratio:6.2f}x" if ratio else \
                        f"{status[:11]:>11} {fps_ref:11.0f} {'':>7}"
                    print(f"{b.row:<30} {case:<15} {shown}"
                          + (f"  {status}" if status.startswith("error") else ""), flush=True)
                    results.append(dict(function=b.row, n_pixels=n, dtype=dt, frames=n_frames,
                                        ours_s=t_ours, reference_s=t_ref, ours_fps=fps_ours,
                                        reference_fps=fps_ref, ratio=ratio, status=status))
                del ours_in

    ok = [r for r in results if r["ratio"]]
    xyzp = [f"{r['ratio']:.2f}x ({r['n_pixels']}px {r['dtype']})"
            for r in ok if r["function"] == "stack_to_xyzp"]
    print(f"\nstack_to_xyzp, Z-LUT {N_ZLUT}: ours/reference = {', '.join(xyzp) or 'not measured'}")
    if ok:
        worst = min(ok, key=lambda r: r["ratio"])
        print(f"minimum ratio: {worst['ratio']:.2f}x ({worst['function']}, "
              f"{worst['n_pixels']}px {worst['dtype']}) over {len(ok)} measured rows; "
              f"{len(results) - len(ok)} missing or failing")
    print(f"total {time.perf_counter() - t_start:.0f} s")

    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(magtrack_dask=magtrack_dask.__version__, magtrack=REF_VERSION,
                    numpy=np.__version__, device=a.device, where=where, repeats=repeats,
                    statistic="median", min_sample_s=MIN_SAMPLE_S, cpus=os.cpu_count(), threads=threads,
                    python=platform.python_version(), zlut_planes=N_ZLUT,
                    openblas_thread_timeout=os.environ["OPENBLAS_THREAD_TIMEOUT"])
        a.json.write_text(json.dumps(dict(meta=meta, results=results), indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
