"""The job record (magtrack_dask.jobs.record): the `_job` group, its done marks, job_status."""

import numpy as np
import zarr

from magtrack_dask.jobs import JOB_GROUP, job_status
from magtrack_dask.jobs.record import JOB_FORMAT, JobRecord, fingerprint_changes


def new_record(path, n_chunks=5, fingerprint=None):
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    return JobRecord.create(root, fingerprint or {"source": "a", "parameters": {"n": 1}}, n_chunks)


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


def test_unreadable_chunks_by_first_frame(tmp_path):
    record = new_record(tmp_path / "r.zarr", n_chunks=4)
    bounds = np.array([0, 16, 32, 48, 50])
    record.save_summary([[16, 31], [48, 49]], {"n_frames": 50})
    assert record.unreadable_chunks(bounds) == {1, 3}
    record.mark_done([3])  # a chunk done since is no longer unreadable
    assert record.unreadable_chunks(bounds) == {1}
    status = job_status(tmp_path / "r.zarr")
    assert status["unreadable_frames"] == [[16, 31], [48, 49]] and status["summary"] == {"n_frames": 50}


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
