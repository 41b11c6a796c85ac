"""require_gpu: asks where the tasks will run."""

import pytest

from magtrack_dask._backend import check_cupy
from magtrack_dask.tracking import require_gpu, track


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_without_a_gpu_in_this_process():
    with pytest.raises(RuntimeError, match="device='gpu' needs CuPy and a working CUDA GPU in this process"):
        require_gpu()


@pytest.mark.skipif(check_cupy(), reason="a GPU is present")
def test_checked_on_the_workers_of_a_client(client, archives):
    # The workers run the tasks, so they are asked, not the process that builds the graph.
    with pytest.raises(RuntimeError, match=r"on every worker; none on tcp://127\.0\.0\.1:\d+, tcp://"):
        require_gpu(client)
    with pytest.raises(RuntimeError, match=r"on every worker; none on tcp://127\.0\.0\.1:\d+, tcp://"):
        track(archives["tyx"], device="gpu")  # the default client's workers


@pytest.mark.gpu
@pytest.mark.skipif(not check_cupy(), reason="needs CuPy and a CUDA GPU")
def test_passes_with_a_gpu():
    require_gpu()
