"""The ``magtrack-dask`` command: demo, track, zlut, import, info, find-beads, analyze.

Exit codes: 0 success; 1 the job failed while running, or any other error (a
bug or a failure, never bad input: its traceback is logged); 2 bad usage or
bad input, which is exactly the package's own input errors
(:class:`~magtrack_dask.validation.InputError` and its subclasses, missing
or existing paths; one message on stderr, no traceback; ``--verbose`` logs
it); 3 a ``track`` job finished every chunk it could but some input chunks
were unreadable (their frames are flagged 16; repair them and rerun with
``--resume``); 130 interrupted (a ``track`` job can then be finished with
``--resume``). ``find-beads`` exits 1 when it finds no bead (and writes no
table), so that a script does not go on to import or track.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from typing import Any, Callable, Sequence

from magtrack_dask.validation import InputError, check_count, check_positive

__all__ = ["main", "build_parser"]

PROG = "magtrack-dask"
EXIT_UNREADABLE_INPUT = 3  # track: finished all it could; some input chunks were unreadable
#: What exits 2: the package's own input errors (JobError, ArchiveError,
#: InputTypeError and UsageError are InputErrors) and the path checks' errors.
INPUT_ERRORS = (InputError, FileNotFoundError, FileExistsError)

log = logging.getLogger("magtrack_dask.cli")  # also when run as __main__


class UsageError(InputError):
    """Bad usage of the command line: exit 2 with this message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _SubParsers:
    """``add_parser`` with the shared options (``-v``) on every subcommand."""

    def __init__(self, action, common: argparse.ArgumentParser):
        self._action, self._common = action, common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._action.add_parser(name, parents=[self._common], **kwargs)


def _argument(check: Callable[[Any, str], Any], convert: type, text: str):
    """``text`` converted and checked by a :mod:`magtrack_dask.validation` check, for argparse."""
    try:
        value = convert(text)
    except ValueError:
        value = text  # the check names what was expected
    try:
        return check(value, "value")
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    return _argument(check_count, int, text)


def _shard_frames(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


def _positive_float(text: str) -> float:
    return _argument(check_positive, float, text)


def _add_cluster_options(p: argparse.ArgumentParser, default_workers: int | None) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="connect to a running Dask scheduler (tcp://host:8786, a dask-jobqueue cluster...)")
    g.add_argument("--workers", type=_positive_int, default=default_workers, metavar="N",
                   help="start a LocalCluster with N worker processes"
                        + (f" (default {default_workers})" if default_workers else " (default: one per core)"))
    _add_dask_defaults_option(p)


def _add_method_option(p: argparse.ArgumentParser, text: str, choices=None) -> None:
    from magtrack_dask.core.methods import DEFAULT_METHOD, METHODS

    p.add_argument("--method", choices=choices or METHODS, default=DEFAULT_METHOD,
                   help=f"{text} (default {DEFAULT_METHOD}; magtrack: the reference's numbers)")


def _add_dask_defaults_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dask-defaults", action="store_true",
                   help="start the local cluster with Dask's own housekeeping settings (statistical profiler "
                        "on, 20 ms event-loop checks...) instead of the batch ones (magtrack_dask.cluster.BATCH_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``magtrack-dask`` (every subcommand has ``--help``)."""
    from magtrack_dask import __version__

    parser = _Parser(prog=PROG, description="Track magnetic-tweezers beads in Zarr archives with Dask: "
                     "x, y sub-pixel, z from radial profiles against a Z-LUT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details and show tracebacks")
    # -v also after the subcommand; SUPPRESS keeps the top-level value when it is not repeated there
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log progress details and show tracebacks")
    sub = _SubParsers(parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser), common)

    p = sub.add_parser("demo", help="simulate, calibrate, track and plot: the whole job on made-up data",
                       description="Simulate an archive of beads moving in x, y, z (photon noise) and a calibration "
                       "archive, build the per-bead Z-LUT, track on a local cluster, save results.zarr and PNG plots, "
                       "print the RMS error against the ground truth.")
    p.add_argument("--out", metavar="DIR", help="output folder (default: a new temporary folder, kept)")
    p.add_argument("--frames", type=_positive_int, default=2000, help="frames to simulate (default 2000)")
    p.add_argument("--beads", type=_positive_int, default=4, help="beads per camera frame (default 4)")
    p.add_argument("--roi", type=_positive_int, default=64, help="ROI side in px, >= 16 (default 64)")
    p.add_argument("--workers", type=_positive_int, default=2, help="worker processes (default 2)")
    p.add_argument("--gpu", action="store_true", help="track on GPUs (needs the 'gpu' extra)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")

    p = sub.add_parser("track", help="track an archive into a results store (resumable)",
                       description="Track every bead of every frame of ARCHIVE and write a Zarr results store, "
                       "chunk by chunk. Finished chunks are recorded: after a crash, rerun with --resume to compute "
                       "only the rest. An existing store made with other parameters is never touched without "
                       "--overwrite.")
    p.add_argument("archive", metavar="ARCHIVE", help="archive (Zarr v3 group: tyx, tbyx or yxt layout)")
    p.add_argument("--out", required=True, metavar="RESULTS", help="results store to write (Zarr v3 folder)")
    p.add_argument("--zlut", metavar="ZLUT", help="Z-LUT (from 'zlut build', or a .npy); without it z is NaN "
                   "(--method fit needs one: 'zlut build --method fit')")
    _add_method_option(p, "tracking method; a Z-LUT from 'zlut build' must use the same")
    _add_cluster_options(p, None)
    p.add_argument("--gpu", action="store_true", help="run the core on GPUs (CuPy; LocalCUDACluster)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="finish an interrupted job (same inputs and parameters)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing results store")
    p.add_argument("--frames-per-task", type=_positive_int, metavar="N",
                   help="frames per task, rounded up to whole archive shards (default: shards of ~1 GiB of "
                   "frames, at least 64 tasks)")
    p.add_argument("--max-chunks", type=_positive_int, metavar="N",
                   help="stop after N chunks; finish later with --resume (fits batch time limits)")
    p.add_argument("--plots", metavar="DIR", help="also save PNG plots of the results to DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--rois", metavar="FILE",
                   help="track these ROIs instead of the archive's (tyx; a table from 'find-beads --out')")

    p = sub.add_parser("zlut", help="Z-LUT tools", description="Z-LUT tools.")
    zsub = _SubParsers(p.add_subparsers(dest="zlut_command", metavar="ACTION", parser_class=_Parser), common)
    b = zsub.add_parser("build", help="per-bead Z-LUTs from a calibration archive",
                        description="Build per-bead Z-LUTs (n_beads, 1 + n_bins, n_ref) from a calibration archive "
                        "(an archive with a 'calibration_z' array: each frame's z in nm). Every frame is tracked; the "
                        "radial profiles about the tracked centres are averaged per focus step. With --method fit: "
                        "each bead's image model, learned from its frames (a Zarr v3 group).")
    b.add_argument("calibration", metavar="CALIBRATION", help="calibration archive")
    b.add_argument("--out", required=True, metavar="ZLUT", help="Z-LUT to write (Zarr v3 array folder)")
    b.add_argument("--z-resolution-nm", type=_positive_float, default=1.0, metavar="NM",
                   help="frames whose z agree to NM form one step (default 1)")
    b.add_argument("--frames-per-task", type=_positive_int, metavar="N", help="frames per task")
    b.add_argument("--overwrite", action="store_true", help="replace an existing Z-LUT")
    _add_method_option(b, "method that will track with the Z-LUT, recorded in it: track with the same")
    b.add_argument("--png", metavar="FILE", help="also save an image of the Z-LUT")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on a running Dask scheduler")
    g.add_argument("--workers", type=_positive_int, metavar="N",
                   help="run on a LocalCluster of N processes (default: threads in this process)")
    _add_dask_defaults_option(b)

    p = sub.add_parser("import", help="camera TIFF stacks -> archive (streaming)",
                       description="Import TIFF stacks (concatenated in the order given) into a Zarr archive, "
                       "a shard of frames at a time. Full camera frames need --rois (layout tyx); a stack of one "
                       "pre-cropped bead needs --layout yxt; 4-D stacks (frame, bead, y, x) are tbyx.")
    p.add_argument("tiffs", nargs="+", metavar="TIFF", help="TIFF files")
    p.add_argument("--out", required=True, metavar="ARCHIVE", help="archive to create")
    p.add_argument("--rois", metavar="FILE", help="ROI table: .csv/.txt (top,bottom,left,right), .json or .npy")
    p.add_argument("--layout", choices=("tyx", "tbyx", "yxt"), help="override the inferred layout")
    p.add_argument("--chunk-frames", type=_positive_int, metavar="N",
                   help="frames per chunk (default: a 32nd of a shard)")
    p.add_argument("--shard-frames", type=_shard_frames, metavar="N",
                   help="frames per shard: one file, one tracking task (default ~4096 ROIs, at most ~64 MiB; "
                   "0: unsharded)")
    p.add_argument("--pixel-size-nm", type=_positive_float, metavar="NM", help="camera pixel size in the sample")
    p.add_argument("--frame-rate-hz", type=_positive_float, metavar="HZ", help="frame rate")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace an existing archive")
    g.add_argument("--resume", action="store_true", help="continue an interrupted import at its first missing shard")

    p = sub.add_parser("find-beads", help="propose an ROI table from the first camera frames",
                       description="Find the ring-pattern beads in the mean of the first frames of SOURCE (a tyx "
                       "archive, a TIFF or a .npy image) and propose one square ROI centred on each: beads cut by "
                       "the frame edge, touching beads (overlapping ROIs), saturated ROIs and debris (no rings, "
                       "not radially symmetric, wrong size) are left out. Writes the table that 'import --rois' "
                       "and 'track --rois' read.")
    p.add_argument("source", metavar="SOURCE", help="tyx archive, or an image file (.tif/.tiff, .npy)")
    p.add_argument("--roi", required=True, type=_positive_int, metavar="PX", help="ROI side, px (>= 8)")
    p.add_argument("--frames", type=_positive_int, default=1, metavar="N",
                   help="average the first N frames (default 1)")
    p.add_argument("--out", metavar="FILE", help="write the ROI table: .csv/.txt, .json (with scores) or .npy")
    p.add_argument("--plot", metavar="PNG", help="write an overlay of the proposed ROIs and rejected candidates")
    p.add_argument("--min-symmetry", type=float, default=0.4, metavar="S",
                   help="least radial symmetry of a bead's pattern, 0-1 (default 0.4)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p = sub.add_parser("analyze", help="results -> drift-corrected traces and forces per bead and magnet plateau",
                       description="Remove the stage drift measured on reference beads stuck to the surface, split "
                       "the frames into magnet plateaus (--magnet-log), and calibrate the force on every other bead "
                       "on every plateau from its lateral fluctuations; write the analysis as a Zarr store, "
                       "optionally CSV/HDF5 exports and PNG plots.")
    p.add_argument("results", metavar="RESULTS", help="results store (from 'track')")
    p.add_argument("--out", required=True, metavar="ANALYSIS", help="analysis store to write (Zarr v3 folder)")
    p.add_argument("--radius-nm", type=_positive_float, required=True, metavar="NM", help="bead radius")
    p.add_argument("--reference-beads", default="auto", metavar="auto|IDS",
                   help="'auto' (stuck beads, default) or bead ids such as 0,3,7")
    p.add_argument("--magnet-log", metavar="FILE", help="CSV with columns time (s), position, rotation")
    p.add_argument("--length-nm", type=_positive_float, metavar="NM",
                   help="tether length for every bead (default: each bead's measured extension; needs a magnet "
                        "log whose lowest plateau is the surface, or --surface-frames)")
    p.add_argument("--surface-frames", metavar="FIRST:STOP", help="frames with the beads on the surface")
    p.add_argument("--method", choices=("psd", "allan", "equipartition"), default="psd",
                   help="force calibration method (default psd)")
    p.add_argument("--axis", choices=("x", "y"), default="x", help="lateral direction calibrated (default x)")
    p.add_argument("--exposure-s", type=_positive_float, metavar="S", help="camera exposure (default 1/frame rate)")
    p.add_argument("--csv", metavar="DIR", help="also export traces and forces as CSV files to DIR")
    p.add_argument("--hdf5", metavar="FILE", help="also export traces and forces to one HDF5 file (needs h5py)")
    p.add_argument("--plots", metavar="DIR", help="also save PNG plots to DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing analysis store")

    p = sub.add_parser("info", help="describe an archive, a results store or a Z-LUT",
                       description="What PATH holds: layout, shape, chunks, beads, attributes; for results also "
                       "the finished chunks of the job.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


# -- subcommands --------------------------------------------------------------------


def _client(args, *, gpu: bool = False):
    """The ``--scheduler`` to connect to, else a new local cluster of ``--workers``."""
    from magtrack_dask.cluster import start_cluster

    return start_cluster(args.workers, gpu=gpu, scheduler_address=args.scheduler,
                         batch_config=not args.dask_defaults)


def _dashboard(client) -> str:
    # distributed prints a link even when it cannot serve the page
    return client.dashboard_link + ("" if importlib.util.find_spec("bokeh") else " (install bokeh to serve it)")


def _require(module: str, what: str, extra: str) -> None:
    """Fail now, not after the work, when an optional dependency is missing."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"{what} needs {module}: pip install 'magtrack-dask[{extra}]'")


def _check_gpu(gpu: bool) -> None:
    if gpu:
        from magtrack_dask._backend import check_cupy

        if not check_cupy():
            raise UsageError("--gpu needs CuPy and a working CUDA GPU (pip install 'magtrack-dask[gpu]'); none found")
        _require("dask_cuda", "--gpu", "gpu")  # its LocalCUDACluster


def _check_writable(path: str, option: str, *, folder: bool) -> None:
    """Fail now, not after the job, when ``path`` (written at the end) cannot be written."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        if folder and not os.path.isdir(path):
            raise UsageError(f"{option}: {path} is a file; expected a folder (created if missing)")
        if not folder and os.path.isdir(path):
            raise UsageError(f"{option}: {path} is a folder; expected the name of a PNG file")
        return
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{option}: cannot create {path}: {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option}: cannot create {path}: {parent} is not writable")


def _cmd_demo(args) -> int:
    from magtrack_dask.demo import run_demo

    _check_gpu(args.gpu)
    if args.roi < 16:
        raise UsageError(f"--roi must be at least 16 px; got {args.roi}")
    run_demo(args.out, frames=args.frames, beads=args.beads, roi=args.roi, workers=args.workers, gpu=args.gpu,
             seed=args.seed, plots=not args.no_plots)
    return 0


def _cmd_track(args) -> int:
    from magtrack_dask.cluster import close_client
    from magtrack_dask.core.options import PipelineOptions
    from magtrack_dask.jobs import prepare_job

    if args.plots:
        _require("matplotlib", "--plots", "plot")
        _check_writable(args.plots, "--plots", folder=True)
    # A remote cluster is connected first, so that track() checks its workers' GPUs, not this node's.
    _check_gpu(args.gpu and not args.scheduler)
    client = _client(args) if args.scheduler else None
    try:
        job = prepare_job(args.archive, args.out, args.zlut, resume=args.resume, overwrite=args.overwrite,
                          pipeline=PipelineOptions(), method=args.method, device="gpu" if args.gpu else "cpu",
                          frames_per_task=args.frames_per_task, rois=_rois_file(args.rois))
    except BaseException as err:
        if client is not None:
            close_client(client)
        if args.gpu and isinstance(err, RuntimeError):  # no GPU on the remote workers
            raise UsageError(str(err)) from err
        raise
    n_todo = int((~job.done).sum())
    print(f"{args.archive}: {job.n_beads} beads x {job.n_frames} frames in {job.n_chunks} chunks"
          + (f", {job.n_chunks - n_todo} already done" if n_todo < job.n_chunks else ""))
    if client is None and n_todo:  # no local cluster when all is done
        client = _client(args, gpu=args.gpu)
    try:
        if client is not None:
            print(f"dashboard: {_dashboard(client)}")
        report = job.run(client, progress=not args.no_progress, max_chunks=args.max_chunks)
    finally:
        if client is not None:
            close_client(client)
    print(report.summary())
    if report.beads:
        print(report.bead_table())
    if not report.complete:
        print(f"not finished: rerun with --resume to compute the remaining "
              f"{report.n_chunks - report.n_skipped - report.n_computed} chunks")
    if args.plots and report.complete:
        from magtrack_dask.plots import save_plots

        for path in save_plots(args.out, args.plots, zlut=args.zlut):
            print(f"plot: {path}")
    return EXIT_UNREADABLE_INPUT if report.unreadable_frames else 0


def _cmd_zlut(args) -> int:
    if args.zlut_command != "build":
        raise UsageError("zlut needs an action: build (see 'magtrack-dask zlut --help')")
    from magtrack_dask.cluster import close_client
    from magtrack_dask.io.archive import describe_archive
    from magtrack_dask.zlut import build_zlut, save_zlut

    if not os.path.exists(args.calibration):
        raise UsageError(f"calibration archive not found: {args.calibration}")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it")
    if args.png:
        _require("matplotlib", "--png", "plot")
        _check_writable(args.png, "--png", folder=False)
    info = describe_archive(args.calibration)
    client = _client(args) if (args.scheduler or args.workers) else None
    try:
        zlut = build_zlut(args.calibration, z_resolution_nm=args.z_resolution_nm,
                          frames_per_task=args.frames_per_task, method=args.method)
    finally:
        if client is not None:
            close_client(client)
    save_zlut(args.out, zlut, source=os.path.abspath(args.calibration), roi_size_px=info["roi_size"],
              overwrite=args.overwrite, method=args.method)
    if args.method == "fit":
        print(f"{args.out}: image models (method fit) of {len(zlut)} beads, {zlut[0].z.size} planes from z = "
              f"{zlut[0].z[0]:.1f} to {zlut[0].z[-1]:.1f} nm")
    else:
        print(f"{args.out}: Z-LUT of {zlut.shape[0]} beads, {zlut.shape[1] - 1} radial bins, {zlut.shape[2]} steps "
              f"from z = {zlut[0, 0, 0]:.1f} to {zlut[0, 0, -1]:.1f} nm")
    if args.png:
        from magtrack_dask.plots import plot_zlut

        plot_zlut(args.out, args.png)
        print(f"plot: {args.png}")
    return 0


def _cmd_import(args) -> int:
    from magtrack_dask.progress import TextProgress

    _require("tifffile", "import", "tiff")
    from magtrack_dask.io.tiff_import import import_tiff

    arch = import_tiff(args.tiffs, args.out, rois=args.rois, layout=args.layout, chunk_frames=args.chunk_frames,
                       shard_frames=args.shard_frames, pixel_size_nm=args.pixel_size_nm,
                       frame_rate_hz=args.frame_rate_hz, overwrite=args.overwrite, resume=args.resume,
                       progress=TextProgress("importing"))
    print(f"{args.out}: {arch.layout} archive, {arch.n_beads} beads x {arch.n_frames} frames, "
          f"shape {tuple(arch.data.shape)} {arch.data.dtype}")
    return 0


def _rois_file(path: str | None):
    from magtrack_dask.io.rois import read_rois

    return None if path is None else read_rois(path)


def _cmd_find_beads(args) -> int:
    from magtrack_dask.core.find_beads import find_beads
    from magtrack_dask.io.frames import is_image_file, read_first_frames
    from magtrack_dask.io.rois import roi_file_suffix, write_rois

    if args.plot:
        _require("matplotlib", "--plot", "plot")
        _check_writable(args.plot, "--plot", folder=False)
    if args.source.lower().endswith((".tif", ".tiff")):
        _require("tifffile", "a TIFF source", "tiff")
    if args.out:
        roi_file_suffix(args.out, "write")
        _check_writable(args.out, "--out", folder=False)
        if os.path.exists(args.out) and not args.overwrite:
            raise UsageError(f"--out: {args.out} exists; pass --overwrite to replace it")
    frames = read_first_frames(args.source, args.frames)
    rois, found = find_beads(frames, args.roi, min_symmetry=args.min_symmetry, return_candidates=True)
    kind = "image" if is_image_file(args.source) else "archive"
    print(f"{args.source}: {len(rois)} beads in {len(found.x)} candidates ({kind}, mean of {len(frames)} frame"
          f"{'s' if len(frames) != 1 else ''} of {frames.shape[2]} x {frames.shape[1]} px, ROI {args.roi} px)")
    rejected = {r: int((found.reason == r).sum()) for r in sorted(set(found.reason.tolist()) - {""})}
    if rejected:
        print("rejected: " + ", ".join(f"{n} {r}" for r, n in rejected.items()))
    if args.out and len(rois):
        order = found.table_order
        extra = {"x": found.x[order].round(3).tolist(), "y": found.y[order].round(3).tolist(),
                 "symmetry": found.symmetry[order].round(3).tolist(), "source": os.path.abspath(args.source),
                 "frames": len(frames)}
        write_rois(args.out, rois, overwrite=args.overwrite, extra=extra)
        print(f"ROI table: {args.out}")
    elif args.out:
        print(f"no beads found: {args.out} not written")
    if args.plot:
        from magtrack_dask.plots import plot_found_beads

        plot_found_beads(frames, found, args.plot, title=f"find-beads {os.path.basename(args.source)}")
        print(f"plot: {args.plot}")
    return 0 if len(rois) else 1  # no table: a script must not go on to import or track
def _reference_beads(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--reference-beads must be 'auto' or bead ids such as 0,3; got {text!r}") from None


def _frame_range(text: str | None):
    if text is None:
        return None
    try:
        first, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"--surface-frames must be FIRST:STOP frame numbers; got {text!r}") from None
    return first, stop


def _cmd_analyze(args) -> int:
    import xarray as xr

    from magtrack_dask.analysis.analyze import analyze
    from magtrack_dask.analysis.drift import correct_drift
    from magtrack_dask.io.paths import check_zarr_path

    if args.hdf5:
        _require("h5py", "--hdf5", "hdf5")
        _check_writable(args.hdf5, "--hdf5", folder=False)
    if args.plots:
        _require("matplotlib", "--plots", "plot")
        _check_writable(args.plots, "--plots", folder=True)
    if args.csv:
        _check_writable(args.csv, "--csv", folder=True)
    if os.path.lexists(args.out) and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it")
    refs, surface = _reference_beads(args.reference_beads), _frame_range(args.surface_frames)
    ds = xr.open_zarr(check_zarr_path(args.results, "RESULTS"), consolidated=None)
    corrected = correct_drift(ds, refs)
    drift = json.loads(corrected.attrs["drift"])
    print(f"{args.results}: {ds.sizes['bead']} beads x {ds.sizes['frame']} frames; reference beads "
          f"{', '.join(map(str, drift['reference_beads']))}; residual drift between them (RMS) "
          + ", ".join(f"{k} {v if v is not None else '-'} {drift['residual_units'][k]}"
                      for k, v in drift["residual_rms"].items())
          + "".join(f"\n  rejected bead {b}: {r}" for b, r in drift["rejected"].items())
          + "".join(f"\n  warning: {w}" for w in drift["warnings"]))
    forces = analyze(corrected, radius_nm=args.radius_nm, magnet_log=args.magnet_log, length_nm=args.length_nm,
                     surface_frames=surface, method=args.method, axis=args.axis, exposure_s=args.exposure_s,
                     out=args.out, overwrite=args.overwrite)
    print(_force_table(forces))
    print(f"analysis: {args.out}")
    if args.csv:
        from magtrack_dask.analysis.export import export_csv

        print(f"csv: {len(export_csv(corrected, args.csv, forces=forces))} files in {args.csv}")
    if args.hdf5:
        from magtrack_dask.analysis.export import export_hdf5

        print(f"hdf5: {export_hdf5(corrected, args.hdf5, forces=forces)}")
    if args.plots:
        from magtrack_dask.analysis.plots import save_analysis_plots

        for path in save_analysis_plots(corrected, forces, args.plots):
            print(f"plot: {path}")
    return 0


def _force_table(forces) -> str:
    """Per plateau: magnet position, beads calibrated, median force and the flagged count."""
    import numpy as np

    lines = [f"{'plateau':>8} {'magnet':>8} {'beads':>6} {'median F (pN)':>14} {'flagged':>8}"]
    f, flags = forces["force_pn"].values, forces["flags"].values
    calibrated = ~forces["is_reference"].values
    for p in range(forces.sizes["plateau"]):
        ok = np.isfinite(f[calibrated, p])
        median = f"{np.median(f[calibrated, p][ok]):.3g}" if ok.any() else "-"
        lines.append(f"{p:>8} {forces['magnet_position'].values[p]:>8.3g} {int(ok.sum()):>6} {median:>14} "
                     f"{int((flags[calibrated, p] != 0).sum()):>8}")
    notes = json.loads(forces.attrs["warnings"])
    if notes:
        lines.append(f"{len(notes)} bead/plateau notes (attrs['warnings'] of the analysis), e.g. "
                     + "; ".join(f"{k}: {v}" for k, v in list(notes.items())[:2]))
    return "\n".join(lines)


def _cmd_info(args) -> int:
    from magtrack_dask.info import describe_path, format_info

    info = describe_path(args.path)
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0


_COMMANDS = {"demo": _cmd_demo, "track": _cmd_track, "zlut": _cmd_zlut, "import": _cmd_import, "info": _cmd_info,
             "find-beads": _cmd_find_beads,
             "analyze": _cmd_analyze}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``magtrack-dask`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from magtrack_dask.logs import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging(logging.INFO if ("-v" in argv or "--verbose" in argv) else logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is needed: {', '.join(_COMMANDS)} (see '{PROG} --help')")
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (a track job can be finished with --resume)", file=sys.stderr)
        return 130
    except INPUT_ERRORS as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        log.info("the error above came from here:", exc_info=True)  # shown with --verbose
        return 2
    except Exception as err:  # a bug or a failure, never bad input: the traceback goes to the log
        # Only a command that ran a job can raise JobFailed; info and import never load the job modules.
        errors = sys.modules.get("magtrack_dask.jobs.errors")
        if errors is not None and isinstance(err, errors.JobFailed):  # a chunk's task raised on a worker
            print(f"{PROG}: job failed: {err}", file=sys.stderr)
            log.info("the failure above came from here:", exc_info=True)
            return 1
        log.exception("%s: failed: %s: %s", PROG, type(err).__name__, err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
