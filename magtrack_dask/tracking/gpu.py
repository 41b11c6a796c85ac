"""Is there a GPU where the tracking tasks will run?"""

from __future__ import annotations

__all__ = ["require_gpu"]


def require_gpu(client=None) -> None:
    """Raise unless CuPy and a CUDA GPU work where the tracking tasks will run.

    Parameters
    ----------
    client : distributed.Client, optional
        Check on this client's workers. Default: the current default client's
        workers when there is one (so a GPU-less login node may drive a GPU
        cluster), else this process (the local scheduler runs tasks here).

    Raises
    ------
    RuntimeError
        Naming the workers (or this process) without a usable GPU.
    """
    from magtrack_dask._backend import check_cupy

    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):  # no distributed, or no client
            client = None
    if client is None:
        if not check_cupy():
            raise RuntimeError("device='gpu' needs CuPy and a working CUDA GPU in this process; none found "
                               "(install magtrack-dask[gpu], connect to a GPU cluster first, or use device='cpu')")
        return
    # No workers yet (an adaptive cluster): each task then fails with its own clear error.
    missing = sorted(w for w, ok in client.run(check_cupy).items() if not ok)
    if missing:
        raise RuntimeError(f"device='gpu' needs CuPy and a working CUDA GPU on every worker; none on "
                           f"{', '.join(missing)} (use dask-cuda workers, or device='cpu')")
