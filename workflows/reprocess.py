#!/usr/bin/env python
"""Scheduled reprocessing: track every archive a config file names, safely rerunnable.

Usage::

    python workflows/reprocess.py CONFIG [--dry-run] [--verbose]

CONFIG is TOML (Python >= 3.11, or ``tomli`` installed) or JSON with the same
structure; see ``workflows/config.example.toml`` and ``workflows/README.md``.
Each archive matched by the globs gets a results store in the output folder:
finished stores are skipped, interrupted ones resumed, stores made with other
parameters are left alone and reported. A lock file keeps two runs (an
overlapping cron job) from working at once.

Exit codes: 0 all archives done or skipped, 1 some archive failed, 2 bad
config, 3 another run holds the lock.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import socket
import sys
import time
from typing import Any

log = logging.getLogger("magtrack_dask.reprocess")

CLUSTER_KINDS = ("local", "scheduler", "slurm")
#: [tracking] keys that are keyword arguments of prepare_job; every other key
#: but max_chunks_per_run is a stage option (the reference's keys).
TRACK_KEYS = ("device", "frames_per_task", "rois", "layout", "pixel_size_nm", "frame_rate_hz", "edge_margin_px",
              "min_symmetry", "method")


class ConfigError(Exception):
    """The config file is missing, unreadable or inconsistent."""


# -- config ----------------------------------------------------------------------


def load_config(path: str) -> dict[str, Any]:
    """Read a TOML or JSON config and fill in the defaults.

    Relative paths in it are relative to the config file's folder.
    """
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".json"):
        try:
            cfg = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON: {err}") from err
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ConfigError("TOML configs need Python >= 3.11 or the tomli package; "
                                  "or write the same config as JSON") from None
        try:
            cfg = tomllib.loads(raw.decode())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: invalid TOML: {err}") from err
    base = os.path.dirname(os.path.abspath(path))
    return _normalise(cfg, base)


def _normalise(cfg: dict, base: str) -> dict:
    def absolute(p: str) -> str:
        return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

    known = {"input", "zlut", "output", "cluster", "tracking"}
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"unknown config sections {sorted(unknown)}; expected {sorted(known)}")
    inp = cfg.get("input", {})
    patterns = inp.get("archives")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ConfigError("[input] archives is required: a glob or a list of globs of archive folders")
    out = dict(cfg.get("output", {}))
    if "folder" not in out:
        raise ConfigError("[output] folder is required")
    out["folder"] = absolute(out["folder"])
    out.setdefault("name", "{stem}.results.zarr")
    out["log"] = absolute(out["log"]) if out.get("log") else os.path.join(out["folder"], "reprocess.log")
    zlut = dict(cfg.get("zlut", {}))
    cluster = dict(cfg.get("cluster", {}))
    cluster.setdefault("kind", "local")
    if cluster["kind"] not in CLUSTER_KINDS:
        raise ConfigError(f"[cluster] kind must be one of {CLUSTER_KINDS}; got {cluster['kind']!r}")
    if cluster["kind"] == "scheduler" and not cluster.get("address"):
        raise ConfigError("[cluster] kind = 'scheduler' needs address = 'tcp://host:8786'")
    if cluster["kind"] == "slurm":
        _check_slurm(cluster)
    tracking = _tracking(dict(cfg.get("tracking", {})))
    return {
        "input": {"archives": [absolute(p) for p in patterns]},
        "zlut": zlut,  # templates: made absolute after the placeholders are filled
        "output": out,
        "cluster": cluster,
        "tracking": tracking,
        "base": base,
    }


def _check_slurm(cluster: dict) -> None:
    """[cluster] kind = 'slurm': dask-jobqueue importable (imported only for this kind), ``jobs`` a
    positive integer, ``[cluster.slurm]`` a table of SLURMCluster arguments."""
    jobs = cluster.setdefault("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"[cluster] jobs must be a positive integer (worker jobs); got {jobs!r}")
    if not isinstance(cluster.setdefault("slurm", {}), dict):
        raise ConfigError("[cluster.slurm] must be a table of SLURMCluster arguments (cores, memory, queue...)")
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise ConfigError("[cluster] kind = 'slurm' needs dask-jobqueue: pip install 'magtrack-dask[slurm]'") from None


def _tracking(section: dict) -> dict:
    """[tracking] as keyword arguments of prepare_job (the stage options as one ``pipeline``),
    plus ``max_chunks_per_run``."""
    from magtrack_dask.core.options import PipelineOptions
    from magtrack_dask.validation import InputError

    section.setdefault("device", "cpu")
    if section["device"] not in ("cpu", "gpu"):
        raise ConfigError(f"[tracking] device must be 'cpu' or 'gpu'; got {section['device']!r}")
    section.setdefault("method", "accurate")  # stage options below are given always: say the method
    tracking = {k: section.pop(k) for k in (*TRACK_KEYS, "max_chunks_per_run") if k in section}
    try:
        tracking["pipeline"] = PipelineOptions.from_stage_options(section)
    except InputError as err:
        raise ConfigError(f"[tracking] {err}; or one of {', '.join(TRACK_KEYS)}, max_chunks_per_run") from None
    return tracking


def _fill(template: str, archive: str, base: str = "") -> str:
    """Paths per archive: {parent}, {parent_name}, {stem}, {name} of the archive, relative to ``base``."""
    parent = os.path.dirname(archive)
    name = os.path.basename(archive)
    try:
        filled = template.format(parent=parent, parent_name=os.path.basename(parent), name=name,
                                 stem=name[:-5] if name.endswith(".zarr") else name)
        return os.path.normpath(os.path.join(base, os.path.expanduser(filled)))
    except (KeyError, IndexError) as err:
        raise ConfigError(f"unknown placeholder {err} in {template!r}; "
                          "use {parent}, {parent_name}, {stem} or {name}") from None


def find_archives(cfg: dict) -> list[str]:
    """Archives matched by the globs, sorted, each once."""
    found = set()
    for pattern in cfg["input"]["archives"]:
        found.update(os.path.normpath(p) for p in glob.glob(pattern) if os.path.isdir(p))
    return sorted(found)


# -- cluster ----------------------------------------------------------------------


def start_client(cluster_cfg: dict, device: str):
    """A distributed Client for the configured cluster kind (close it with ``cluster.close_client``)."""
    from magtrack_dask.cluster import connect, start_cluster

    kind = cluster_cfg["kind"]
    if kind == "scheduler":
        return connect(cluster_cfg["address"])
    if kind == "slurm":
        return _slurm_client(cluster_cfg)
    return start_cluster(cluster_cfg.get("workers"), gpu=device == "gpu",
                         dashboard_address=cluster_cfg.get("dashboard_address", ":0"))


def _slurm_client(cluster_cfg: dict):
    """A Client of a dask-jobqueue SLURMCluster of ``jobs`` worker jobs (``adapt``: 0 to ``jobs``).

    The cluster is adaptive in both cases: Adaptive resubmits a worker job that ended early
    (``scancel``, a failed node, its walltime) once the scheduler has given up its workers
    (``distributed.deploy.lost-worker-timeout``), which a plain ``scale()`` does not do.
    """
    from dask_jobqueue import SLURMCluster  # checked when the config was read
    from distributed import Client

    from magtrack_dask.cluster import close_client

    jobs = cluster_cfg["jobs"]
    cluster = SLURMCluster(**cluster_cfg["slurm"])
    cluster.adapt(minimum_jobs=0 if cluster_cfg.get("adapt") else jobs, maximum_jobs=jobs)
    client = Client(cluster)
    log.info("SLURM cluster: jobs=%d, adapt=%s; job script:\n%s", jobs, bool(cluster_cfg.get("adapt")),
             cluster.job_script())
    if not cluster_cfg.get("adapt"):  # adaptive jobs start with the first tasks, not before
        try:
            client.wait_for_workers(1, timeout=cluster_cfg.get("wait_for_workers_s", 600))
        except BaseException:
            close_client(client)  # its worker jobs are cancelled, not left queued
            raise
    return client


# -- lock ---------------------------------------------------------------------------


class Lock:
    """An exclusive lock file: a second run on the same output exits instead of racing."""

    def __init__(self, path: str):
        self.path = path
        self.held = False

    def acquire(self) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._stale():
                    return False
                os.unlink(self.path)  # left by a run that died: take it over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
            self.held = True
            return True
        return False

    def _stale(self) -> bool:
        try:
            with open(self.path) as f:
                owner = json.load(f)
        except (OSError, ValueError):
            return True
        if owner.get("host") != socket.gethostname():
            return False  # cannot tell from here: assume it is alive
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False

    def release(self) -> None:
        if self.held:
            os.unlink(self.path)
            self.held = False


# -- the run -------------------------------------------------------------------------


def _zlut_for(archive: str, cfg: dict, client_getter) -> str | None:
    zcfg = cfg["zlut"]
    if not zcfg.get("path"):
        return None
    path = _fill(zcfg["path"], archive, cfg["base"])
    if os.path.exists(path):
        return path
    if not zcfg.get("calibration"):
        raise FileNotFoundError(f"Z-LUT not found: {path}")
    calibration = _fill(zcfg["calibration"], archive, cfg["base"])
    if not os.path.exists(calibration):
        raise FileNotFoundError(f"Z-LUT {path} missing and calibration archive not found: {calibration}")
    from magtrack_dask.io.archive import describe_archive
    from magtrack_dask.zlut import build_zlut, save_zlut

    client_getter()  # build on the cluster
    method = cfg["tracking"]["method"]
    lut = build_zlut(calibration, method=method)
    save_zlut(path, lut, source=calibration, roi_size_px=describe_archive(calibration)["roi_size"], method=method)
    log.info("built Z-LUT %s from %s: shape %s", path, calibration, lut.shape)
    return path


def _log_progress(name: str):
    """A job progress callback that logs every tenth of the chunks (cron logs, no bars)."""
    last = [-1]

    def progress(n_done: int, n_total: int, n_frames: int) -> None:
        tenth = n_done * 10 // max(1, n_total)
        if tenth != last[0]:
            last[0] = tenth
            log.info("%s: %d/%d chunks done", os.path.basename(name), n_done, n_total)

    return progress


class _LazyClient:
    """The configured cluster, started on first use: a run with nothing to compute starts none."""

    def __init__(self, cluster_cfg: dict, device: str):
        self._cfg, self._device = cluster_cfg, device
        self.client = None

    def __call__(self):
        if self.client is None:
            self.client = start_client(self._cfg, self._device)
            log.info("cluster: %s, dashboard %s", self.client.scheduler.address, self.client.dashboard_link)
        return self.client

    def close(self) -> None:
        from magtrack_dask.cluster import close_client

        if self.client is not None:
            close_client(self.client)
            self.client = None


def _track_one(archive: str, out: str, cfg: dict, get_client: _LazyClient) -> str:
    """Track, resume or skip one archive; return its outcome (``done``, ``partial`` or ``skipped``)."""
    from magtrack_dask.jobs import job_status, prepare_job

    tracking = dict(cfg["tracking"])
    max_chunks = tracking.pop("max_chunks_per_run", None)
    status = job_status(out)
    zlut = _zlut_for(archive, cfg, get_client)
    # Complete stores go through prepare_job too: changed parameters must not pass as done.
    job = prepare_job(archive, out, zlut, resume=True, **tracking)
    if job.done.all():
        if not status or not status["complete"]:
            job.run()  # all chunks written, only the final consolidation was missing
        log.info("skip %s: %s is complete", archive, out)
        return "skipped"
    resumed = int(job.done.sum())
    log.info("%s %s -> %s (%d/%d chunks to do)", "resume" if resumed else "track", archive, out,
             job.n_chunks - resumed, job.n_chunks)
    report = job.run(get_client(), max_chunks=max_chunks, progress=_log_progress(out))  # logs a summary
    return "done" if report.complete else "partial"


def _dry_run(archive: str, out: str) -> None:
    from magtrack_dask.jobs import job_status

    status = job_status(out)
    state = ("missing" if status is None else
             "complete" if status["complete"] else f"{status['n_done']}/{status['n_chunks']} chunks")
    log.info("[dry run] %s -> %s (%s)", archive, out, state)


def _outputs(cfg: dict, archives: list[str]) -> dict[str, str]:
    """{results store: archive}; ConfigError when two archives would write one store."""
    outs: dict[str, str] = {}
    for a in archives:
        out = _fill(cfg["output"]["name"], a, cfg["output"]["folder"])
        if out in outs:
            raise ConfigError(f"{a} and {outs[out]} would both write {out}: use {{parent_name}} in [output] name")
        outs[out] = a
    return outs


def reprocess(cfg: dict, *, dry_run: bool = False) -> dict[str, list[str]]:
    """Track every archive of the config; return archives by outcome.

    Outcomes: ``done`` (computed now, complete), ``partial`` (stopped by
    ``max_chunks_per_run``), ``skipped`` (already complete), ``failed``.
    """
    from magtrack_dask.validation import InputError

    archives = find_archives(cfg)
    log.info("%d archives match %s", len(archives), cfg["input"]["archives"])
    outcome: dict[str, list[str]] = {"done": [], "partial": [], "skipped": [], "failed": []}
    outs = _outputs(cfg, archives)
    get_client = _LazyClient(cfg["cluster"], cfg["tracking"].get("device", "cpu"))
    try:
        for out, archive in outs.items():
            if dry_run:
                _dry_run(archive, out)
                continue
            try:
                outcome[_track_one(archive, out, cfg, get_client)].append(archive)
            except (InputError, FileNotFoundError, FileExistsError) as err:  # bad input of this archive
                log.error("%s: %s", archive, err)
                outcome["failed"].append(archive)
            except Exception as err:  # a bug or a failure: its traceback; the other archives still run
                log.exception("%s failed: %s", archive, err)
                outcome["failed"].append(archive)
    finally:
        get_client.close()
    log.info("summary: %s", ", ".join(f"{len(v)} {k}" for k, v in outcome.items()))
    return outcome


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Track every archive a config file names; safe to rerun.")
    parser.add_argument("config", help="TOML or JSON config (see workflows/config.example.toml)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be done, change nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(f"reprocess: config error: {err}", file=sys.stderr)
        return 2
    from magtrack_dask.logs import setup_logging

    setup_logging(logging.DEBUG if args.verbose else logging.INFO, log_file=cfg["output"]["log"])
    lock = Lock(os.path.join(cfg["output"]["folder"], ".reprocess.lock"))
    if not args.dry_run and not lock.acquire():
        log.warning("another run holds %s; exiting", lock.path)
        return 3
    log.info("reprocess %s (pid %d)", os.path.abspath(args.config), os.getpid())
    try:
        outcome = reprocess(cfg, dry_run=args.dry_run)
    except ConfigError as err:
        log.error("config error: %s", err)
        return 2
    finally:
        lock.release()
    return 1 if outcome["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
