"""The job record (magtrack_dask.jobs.record): the `_job` group, its done marks, job_status."""

import numpy as np
import zarr

from magtrack_dask.jobs import JOB_GROUP, job_status
from magtrack_dask.jobs.record import JOB_FORMAT, JobRecord, fingerprint_changes
from magtrack_dask.jobs.summary import BeadSums


def new_record(path, n_chunks=5, fingerprint=None, n_beads=None):
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    return JobRecord.create(root, fingerprint or {"source": "a", "parameters": {"n": 1}}, n_chunks, n_beads)


def test_create_then_status(tmp_path):
    record = new_record(tmp_path / "r.zarr")
    assert record.n_chunks == 5 and not record.done.any()
    status = job_status(tmp_path / "r.zarr")
    assert status["fingerprint"] == {"source": "a", "parameters": {"n": 1}}
    assert (status["n_chunks"], status["n_done"], status["complete"]) == (5, 0, False)
    assert status["done"].tolist() == [False] * 5 and status["unreadable_frames"] == [] and status["summary"] is None
    attrs = dict(zarr.open_group(str(tmp_path / "r.zarr"), mode="r")[JOB_GROUP].attrs)
    assert attrs["magtrack_dask_job"] == JOB_FORMAT and attrs["complete"] is False


def test_mark_done_writes_only_what_finished(tmp_path):
    record = new_record(tmp_path / "r.zarr")
    record.mark_done([])
    record.mark_done([3, 1])
    assert record.done.tolist() == [False, True, False, True, False]
    stored = zarr.open_array(str(tmp_path / "r.zarr" / JOB_GROUP / "done"), mode="r")[...]
    assert stored.dtype == np.uint8 and stored.tolist() == [0, 1, 0, 1, 0]
    again = JobRecord.open(zarr.open_group(str(tmp_path / "r.zarr"), mode="r"))
    assert again.done.tolist() == record.done.tolist()
    # complete only with every chunk done
    record.mark_complete()
    assert not job_status(tmp_path / "r.zarr")["complete"]
    record.mark_done([0, 2, 4])
    assert job_status(tmp_path / "r.zarr")["complete"]


def sums_of(x, flags):
    """BeadSums of (bead, frame) positions (x and y alike)."""
    return BeadSums.of(np.asarray(x, float), np.asarray(x, float), np.asarray(flags, np.uint8))


def test_save_folds_sums_and_tracks_unreadable_chunks(tmp_path):
    record = new_record(tmp_path / "r.zarr", n_chunks=4, n_beads=1)
    bounds = np.array([0, 2, 4, 6, 7])
    unread = sums_of([[np.nan, np.nan]], [[17, 17]])
    record.save({0: sums_of([[1.0, 2.0]], [[0, 0]])}, {1: unread, 3: sums_of([[np.nan]], [[17]])}, bounds)
    assert record.unreadable_chunks() == {1, 3} and record.done.tolist() == [True, False, False, False]
    status = job_status(tmp_path / "r.zarr")
    assert status["unreadable_frames"] == [[2, 3], [6, 6]]
    summary = status["summary"]
    assert summary["n_frames"] == 5 and summary["flag_counts"]["input_unreadable"] == [3]
    record.save({3: sums_of([[4.0]], [[0]])}, {}, bounds)  # repaired: no longer unreadable, counted once
    again = JobRecord.open(str(tmp_path / "r.zarr"))
    assert again.unreadable_chunks() == {1} and again.done.tolist() == [True, False, False, True]
    summary = job_status(tmp_path / "r.zarr")["summary"]
    assert summary["n_frames"] == 5 and summary["flag_counts"]["input_unreadable"] == [2]
    assert summary["xy_std_px"] == [[np.std([1.0, 2.0, 4.0])] * 2]


def test_sums_do_not_depend_on_the_order_or_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(10, 0.3, (2, 60))
    flags = (rng.random((2, 60)) < 0.1).astype(np.uint8) * 8
    whole = sums_of(x, flags)
    for seed in (1, 2):
        total = BeadSums.zeros(2)
        for i in np.random.default_rng(seed).permutation(6):
            total = total.add(BeadSums.from_json(sums_of(x[:, 10 * i : 10 * i + 10], flags[:, 10 * i : 10 * i + 10])
                                                 .to_json()))
        assert total.to_json() == whole.to_json()
    np.testing.assert_allclose([s[0] for s in whole.xy_std_px()], x.std(axis=1), rtol=1e-12)


def test_pending_chunks_are_marked_done_on_open(tmp_path):
    """A run killed between saving a chunk's sums and its done mark: the chunk counts once, as done."""
    record = new_record(tmp_path / "r.zarr", n_chunks=3, n_beads=1)
    record.group.attrs.update({"pending_done": [2]})
    assert job_status(tmp_path / "r.zarr")["done"].tolist() == [False, False, True]
    again = JobRecord.open(str(tmp_path / "r.zarr"))
    assert again.done.tolist() == [False, False, True] and again.group.attrs["pending_done"] == []
    stored = zarr.open_array(str(tmp_path / "r.zarr" / JOB_GROUP / "done"), mode="r")[...]
    assert stored.tolist() == [0, 0, 1]


def test_status_of_what_holds_no_record(tmp_path):
    assert job_status(tmp_path / "missing") is None
    (tmp_path / "file").write_text("x")
    assert job_status(tmp_path / "file") is None
    (tmp_path / "folder").mkdir()
    assert job_status(tmp_path / "folder") is None
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    assert job_status(tmp_path / "plain.zarr") is None
    root = zarr.open_group(str(tmp_path / "nofp.zarr"), mode="w", zarr_format=3)
    root.create_group(JOB_GROUP).create_array("done", shape=(2,), dtype="uint8")
    assert job_status(tmp_path / "nofp.zarr") is None


def test_fingerprint_changes_name_each_leaf():
    old = {"source": "a", "parameters": {"n": 1, "layout": "tyx"}, "zlut_sha256": "0123456789abcdef" * 4}
    new = {"source": "a", "parameters": {"n": 2, "layout": "tyx", "extra": True}, "zlut_sha256": "f" * 64}
    assert fingerprint_changes(old, old) == []
    assert fingerprint_changes(old, new) == [
        "parameters.extra: '<unset>' -> True",
        "parameters.n: 1 -> 2",
        "zlut_sha256: '0123456789ab...' -> 'ffffffffffff...'",
    ]
