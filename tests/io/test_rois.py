"""ROI tables (magtrack_dask.io.rois): check, grid, read from and write to files."""

import json

import numpy as np
import pytest

from magtrack_dask.io.rois import check_rois, read_rois, roi_grid, write_rois
from magtrack_dask.validation import InputError

ROIS = [[0, 8, 0, 8], [4, 12, 10, 18]]


def test_roi_grid_and_check():
    rois, shape = roi_grid(5, 16)
    assert shape == (4 + 2 * 20, 4 + 3 * 20)
    np.testing.assert_array_equal(check_rois(rois, shape), rois)
    assert rois.dtype == np.int64 and rois.shape == (5, 4)
    assert np.all(rois[:, 1] - rois[:, 0] == 16) and np.all(rois[:, 3] - rois[:, 2] == 16)
    with pytest.raises(InputError, match="cannot hold"):
        roi_grid(5, 16, frame_shape=(30, 30))


def test_roi_grid_in_a_given_frame_fills_rows_first():
    rois, shape = roi_grid(3, 10, frame_shape=(40, 100), gap=2)
    assert shape == (40, 100)
    np.testing.assert_array_equal(rois, [[2, 12, 2, 12], [2, 12, 14, 24], [2, 12, 26, 36]])


@pytest.mark.parametrize(
    ("rois", "frame_shape", "match"),
    [
        ([1, 2, 3, 4], None, r"rois must have shape \(n_beads, 4\)"),
        (np.zeros((0, 4)), None, r"rois must have shape \(n_beads, 4\) .* n_beads >= 1"),
        ([[0, 8.5, 0, 8.5]], None, "rois must hold whole pixel numbers"),
        ([[0, np.nan, 0, 8]], None, "rois must hold whole pixel numbers"),
        ([[8, 0, 8, 0]], None, r"rois must be square with bottom > top: ROI 0 \[8, 0, 8, 0\]"),
        ([[0, 8, 0, 8], [0, 6, 0, 6]], None, r"rois must all have the same size; got sizes \[6, 8\] px"),
        (ROIS, (10, 24), r"rois: ROI 1 \[4, 12, 10, 18\] lies outside the frame of shape \(height=10, width=24\)"),
        ([[-1, 7, 0, 8]], (20, 20), "rois: ROI 0 .* lies outside the frame"),
    ],
)
def test_check_rois_names_what_is_wrong(rois, frame_shape, match):
    with pytest.raises(InputError, match=match):
        check_rois(rois, frame_shape)


def test_check_rois_takes_whole_floats():
    out = check_rois(np.array(ROIS, dtype=float))
    assert out.dtype == np.int64 and out.tolist() == ROIS


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rois.csv", "top,bottom,left,right\n0,8,0,8\n4,12,10,18\n"),
        ("rois.csv", "0,8,0,8\n4,12,10,18\n"),
        ("rois.txt", "0 8 0 8\n4 12 10 18\n"),
        ("rois.json", json.dumps(ROIS)),
        ("rois.json", json.dumps({"rois": ROIS, "note": "from the camera software"})),
    ],
)
def test_read_rois_text_formats(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    out = read_rois(tmp_path / name)
    assert out.dtype == np.int64 and out.tolist() == ROIS


def test_read_rois_npy_and_a_single_row(tmp_path):
    np.save(tmp_path / "rois.npy", np.array(ROIS))
    assert read_rois(str(tmp_path / "rois.npy")).tolist() == ROIS
    (tmp_path / "one.csv").write_text("0,8,0,8\n")
    assert read_rois(tmp_path / "one.csv").tolist() == [[0, 8, 0, 8]]


def test_read_rois_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ROI file not found: .*missing.csv"):
        read_rois(tmp_path / "missing.csv")
    (tmp_path / "rois.xlsx").write_text("")
    with pytest.raises(InputError, match=r"cannot read ROI table .*rois.xlsx: unknown ROI file type '.xlsx'"):
        read_rois(tmp_path / "rois.xlsx")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read ROI table .*bad.json"):
        read_rois(tmp_path / "bad.json")
    (tmp_path / "nokey.json").write_text(json.dumps({"regions": ROIS}))
    with pytest.raises(InputError, match="cannot read ROI table .*nokey.json: 'rois'"):
        read_rois(tmp_path / "nokey.json")
    (tmp_path / "ragged.csv").write_text("0,8,0,8\n4,12\n")
    with pytest.raises(InputError, match="cannot read ROI table .*ragged.csv"):
        read_rois(tmp_path / "ragged.csv")
    (tmp_path / "bad.json").write_text(json.dumps({"rois": [[0, 10, 0, 12]]}))
    with pytest.raises(InputError, match="rois must be square"):
        read_rois(tmp_path / "bad.json")


@pytest.mark.parametrize("name", ["t.csv", "t.txt", "t.json", "t.npy"])
def test_write_rois_reads_back(tmp_path, name):
    rois = np.array([[3, 35, 4, 36], [40, 72, 50, 82]])
    path = write_rois(tmp_path / name, rois, extra={"x": [19.5, 65.5]})
    np.testing.assert_array_equal(read_rois(path), rois)
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        write_rois(path, rois)
    np.testing.assert_array_equal(read_rois(write_rois(path, rois[:1], overwrite=True)), rois[:1])


def test_write_rois_refuses_bad_tables_and_types(tmp_path):
    with pytest.raises(InputError, match="unknown ROI file type '.xls'"):
        write_rois(tmp_path / "t.xls", [[0, 8, 0, 8]])
    with pytest.raises(InputError, match="rois must be square"):
        write_rois(tmp_path / "t.csv", [[0, 8, 0, 9]])
    assert not (tmp_path / "t.csv").exists()
