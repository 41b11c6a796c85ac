"""Dask clusters for batch tracking: start one on this machine, connect to one, close it.

Distributed's housekeeping is tuned for interactive work: every process
checks its event loop every 20 ms, samples its system load every 500 ms,
each worker samples its task thread's stack every 10 ms for the dashboard's
profile page, and each nanny reads its worker's memory every 100 ms. That
costs CPU a batch job's workers lose when they share the machine with the
scheduler, so :func:`start_cluster` starts its clusters with slower intervals
(:data:`BATCH_CONFIG`); the measured savings are in ``benchmarks/README.md``.
The command line and ``workflows/reprocess.py`` start and close their
clusters here.
"""

from __future__ import annotations

import warnings

import dask

from magtrack_dask.validation import InputError

__all__ = ["BATCH_CONFIG", "batch_settings", "close_client", "connect", "start_cluster"]

#: Dask settings of the clusters :func:`start_cluster` starts, with what each
#: costs. A key the user's own Dask config sets to something other than
#: distributed's default is left as the user set it.
BATCH_CONFIG = {
    # the dashboard's "Profile" page stays empty
    "distributed.worker.profile.enabled": False,
    # "event loop unresponsive" warnings are still given (tick.limit, 3 s)
    "distributed.admin.tick.interval": "500ms",
    # the dashboard's CPU, memory and network plots update every 2 s
    "distributed.admin.system-monitor.interval": "2s",
    # memory limits are enforced (pause, spill, restart) within 0.5 s; a
    # nanny that scale() adds later checks at the interval of the global config
    "distributed.worker.memory.monitor-interval": "500ms",
}


def batch_settings() -> dict:
    """The entries of :data:`BATCH_CONFIG` whose keys the current Dask
    config leaves at distributed's defaults."""
    import distributed  # noqa: F401  (registers distributed's defaults)

    defaults = dask.config.merge(*dask.config.defaults)
    return {key: value for key, value in BATCH_CONFIG.items()
            if dask.config.get(key) == dask.config.get(key, config=defaults)}


def start_cluster(workers: int | None = None, *, gpu: bool = False, scheduler_address: str | None = None,
                  threads_per_worker: int = 1, batch_config: bool = True, **cluster_kwargs):
    """Start (or connect to) a Dask cluster and return a ``distributed.Client``.

    Parameters
    ----------
    workers : int, optional
        Worker processes (GPUs with ``gpu=True``); default one per core (GPU).
    gpu : bool, optional
        Start a ``dask_cuda.LocalCUDACluster`` (imported only then).
    scheduler_address : str, optional
        Connect to this running scheduler instead of starting a cluster; its
        settings are its own.
    threads_per_worker : int, optional
        Default 1: the core is vectorised NumPy, processes scale better.
    batch_config : bool, optional
        Start the cluster with :data:`BATCH_CONFIG` (slower housekeeping, no
        statistical profiler) where the Dask config leaves those keys at
        their defaults. Default True; False keeps Dask's settings.
    **cluster_kwargs
        Passed to the cluster class (``memory_limit=``, ``dashboard_address=``...).

    Returns
    -------
    distributed.Client
        ``client.dashboard_link`` shows the dashboard.

    Examples
    --------
    >>> from magtrack_dask import start_cluster, track   # doctest: +SKIP
    >>> client = start_cluster(4)                         # doctest: +SKIP
    >>> ds = track("frames.zarr").compute()               # doctest: +SKIP
    """
    from distributed import Client, LocalCluster

    if scheduler_address:
        return connect(scheduler_address)
    settings = batch_settings() if batch_config else {}
    if settings:  # each nanny's worker process gets them, also nannies added later by scale()
        cluster_kwargs["config"] = {**settings, **cluster_kwargs.get("config", {})}
    with dask.config.set(settings), warnings.catch_warnings():  # the scheduler and nannies read theirs as they start
        # "Port 8787 is already in use ...": the client's dashboard_link says which port it took instead
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        if gpu:
            from magtrack_dask._backend import check_cupy

            if not check_cupy():
                raise RuntimeError("gpu=True needs CuPy and a working CUDA GPU; none found")
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(n_workers=workers, threads_per_worker=threads_per_worker, **cluster_kwargs)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                                   **cluster_kwargs)
    return Client(cluster)


def connect(address: str):
    """A ``distributed.Client`` of the running scheduler at ``address``.

    Waits at most Dask's connect timeout (``distributed.comm.timeouts.connect``,
    30 s unless configured).

    Raises
    ------
    InputError
        No scheduler answers at ``address``.
    """
    from distributed import Client

    try:
        return Client(address, timeout=dask.config.get("distributed.comm.timeouts.connect"))
    except (OSError, TimeoutError, ValueError) as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {err}") from err


def close_client(client) -> None:
    """Close ``client`` and the cluster it started, if any (a connected scheduler keeps running)."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
