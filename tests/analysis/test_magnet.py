import numpy as np
import pytest

from magtrack_dask.analysis.magnet import read_magnet_log, split_plateaus
from magtrack_dask.validation import InputError


def test_plateaus_of_position_and_rotation(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("Time (s),Magnet position (mm),Rotation (turns)\n0,5,0\n1.0,2,0\n2.0,2,10\n2.5,2,10\n3.1,1,10\n")
    log = read_magnet_log(path)
    np.testing.assert_array_equal(log.position, [5, 2, 2, 2, 1])
    t = np.arange(30) / 10.0  # 0 .. 2.9 s
    pl = split_plateaus(log, t, settle_s=0.25)
    np.testing.assert_array_equal(pl.position, [5, 2, 2])
    np.testing.assert_array_equal(pl.rotation, [0, 0, 10])  # a rotation step starts a plateau; a repeated row not
    np.testing.assert_array_equal(pl.first_frame, [0, 10, 20])
    np.testing.assert_array_equal(pl.stop_frame, [10, 20, 30])
    np.testing.assert_array_equal(pl.labels[:12], [-1, -1, -1, 0, 0, 0, 0, 0, 0, 0, -1, -1])
    no_rot = tmp_path / "norot.csv"
    no_rot.write_text("time_s,position\n0,5\n9,5\n")
    assert np.isnan(read_magnet_log(no_rot).rotation).all()
    assert len(split_plateaus(read_magnet_log(no_rot), t).position) == 1


@pytest.mark.parametrize(("text", "pattern"), [
    ("time,position\n0,5\n", "covers t = 0..0 s"),
    ("time,position\n2,5\n1,4\n", "times must increase"),
    ("time,position\n0,five\n", "not a number"),
    ("time,rotation\n0,1\n", "no 'pos' column"),
    ("time,position\n", "at least one row"),
])
def test_bad_logs(tmp_path, text, pattern):
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=pattern):
        split_plateaus(read_magnet_log(path), np.arange(10) / 10.0)
