"""The graph: one blockwise layer, one task per frame chunk, each chunk read once."""

import numpy as np
import zarr
from zarr.storage import LocalStore, WrapperStore

from magtrack_dask.tracking import track, write_results


class CountingStore(WrapperStore):
    """Logs every get() key to a file (works from any worker process)."""

    def __init__(self, store, log):
        super().__init__(store)
        self.log = str(log)

    def _with_store(self, store):
        return type(self)(store, self.log)

    async def get(self, key, prototype, byte_range=None):
        with open(self.log, "a") as f:
            f.write(key + "\n")
        return await super().get(key, prototype, byte_range)


def test_each_chunk_read_once(client, archives, zlut, tmp_path):
    log = tmp_path / "reads.log"
    store = CountingStore(LocalStore(archives["tyx"], read_only=True), log)
    ds = track(zarr.open_group(store, mode="r"), zlut)
    log.write_text("")  # count only the job's reads, not the metadata
    write_results(ds, tmp_path / "results.zarr")
    reads = [k for k in log.read_text().split() if k.startswith("frames/c/")]
    assert sorted(reads) == [f"frames/c/{i}/0/0" for i in range(3)]  # 3 chunks, once each


def test_one_task_per_chunk_in_one_layer(archives, zlut):
    for source in (archives["tyx"], zarr.open_group(archives["tbyx"], mode="r")["frames"][...]):
        stacked = track(source, zlut, layout=None if isinstance(source, str) else "tbyx").x.data
        layers = [k for k in stacked.dask.layers if k.startswith("track-")]
        assert len(layers) == 1
        tasks = [k for k in stacked.dask if isinstance(k, tuple) and k[0] == layers[0]]
        assert len(tasks) == len(stacked.chunks[1])  # one per frame chunk, all beads in each
    # The name follows the inputs: the same call twice, the same graph; another option, another one.
    a, b = track(archives["tyx"], zlut), track(archives["tyx"], zlut)
    assert a.x.data.name == b.x.data.name
    assert track(archives["tyx"], zlut, min_symmetry=0.3).x.data.name != a.x.data.name
    assert track(archives["tyx"], zlut + 1.0).x.data.name != a.x.data.name
    assert np.isfinite(a.radius.values).all()
