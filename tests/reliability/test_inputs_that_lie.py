"""Inputs that lie: archives whose metadata disagrees with itself or with what the chunks hold.

``zarr.json`` and the group attributes are edited on disk after the chunks
were written. ``open_archive`` must notice (cheap checks: the metadata, one
listing of the chunk keys, a 16-byte Blosc header) with an ArchiveError that
names the array or attribute and says what was expected and what was found;
``magtrack-dask track`` refuses each of them (exit 2, one line) before it
writes anything.
A lie that only one chunk tells is seen when that chunk is read
(``read_frames``): never silently misread, never read as fill values.
"""

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import zarr

from magtrack_dask.core.flags import Flag
from magtrack_dask.cli import main
from magtrack_dask.io.archive import create_archive, describe_archive, open_archive
from magtrack_dask.io.chunk_read import read_frames
from magtrack_dask.io.paths import ArchiveError
from magtrack_dask.tracking import track

from tests.conftest import snapshot

N_FRAMES, CHUNK, SIZE = 8, 4, 32


def pixels(n_frames=N_FRAMES, dtype="uint16"):
    frames = np.arange(n_frames * SIZE * SIZE).reshape(n_frames, SIZE, SIZE) % 1000 + 100
    return frames.astype(dtype)


def make(tmp_path, name="a.zarr", **kwargs) -> str:
    """A truthful tyx archive: 8 frames of 32 x 32 px uint16 in unsharded chunks of 4, one 16 px ROI."""
    path = str(tmp_path / name)
    options = dict(layout="tyx", rois=[[8, 24, 8, 24]], chunk_frames=CHUNK, shard_frames=0) | kwargs
    create_archive(path, kwargs.pop("data", pixels()), **{k: v for k, v in options.items() if k != "data"})
    return path


def edit_frames_json(path, change) -> None:
    meta = os.path.join(path, "frames", "zarr.json")
    with open(meta) as f:
        doc = json.load(f)
    change(doc)
    with open(meta, "w") as f:
        json.dump(doc, f)


def set_chunk_shape(shape):
    return lambda doc: doc["chunk_grid"]["configuration"].__setitem__("chunk_shape", list(shape))


def set_attrs(path, name="", **attrs) -> None:
    node = zarr.open_group(path, mode="r+") if not name else zarr.open_group(path, mode="r+")[name]
    node.attrs.update(attrs)


def replace_array(path, name, values, **kwargs) -> None:
    group = zarr.open_group(path, mode="r+")
    del group[name]
    group.create_array(name, data=np.asarray(values), **kwargs)


# -- (name, how the archive lies, expected exception, message) -------------------------------------------------------


def _dtype_narrower(p):
    edit_frames_json(p, lambda d: d.__setitem__("data_type", "uint8"))


def _dtype_wider_with_codec(p):  # a thorough liar: the codec's typesize edited too
    def change(doc):
        doc["data_type"] = "float32"
        doc["fill_value"] = 0.0
        doc["codecs"][1]["configuration"]["typesize"] = 4
    edit_frames_json(p, change)


def _chunks_smaller(p):
    edit_frames_json(p, set_chunk_shape((2, SIZE, SIZE)))


def _chunks_larger(p):
    edit_frames_json(p, set_chunk_shape((8, SIZE, SIZE)))


def _uncompressed_dtype(p):
    edit_frames_json(p, lambda d: d.__setitem__("data_type", "uint8"))


def _shape_larger(p):
    edit_frames_json(p, lambda d: d.__setitem__("shape", [12, SIZE, SIZE]))


def _chunk_deleted(p):
    os.remove(os.path.join(p, "frames", "c", "1", "0", "0"))


def _layout_tbyx_on_3d(p):
    set_attrs(p, layout="tbyx")


def _layout_not_a_name(p):
    set_attrs(p, layout=["tyx"])


def _dimension_names(p):
    edit_frames_json(p, lambda d: d.__setitem__("dimension_names", ["y", "x", "frame"]))


def _rois_outside(p):
    replace_array(p, "rois", [[20, 36, 8, 24]])


def _rois_not_square(p):
    replace_array(p, "rois", [[8, 24, 8, 20]])


def _timestamps_short(p):
    replace_array(p, "timestamps", np.arange(N_FRAMES - 1) * 0.02)


def _truth_length(p):
    replace_array(p, "truth_z", np.zeros((1, N_FRAMES + 3)))


def _truth_beads(p):
    replace_array(p, "truth_x", np.zeros((2, N_FRAMES)))


def _calibration_length(p):
    replace_array(p, "calibration_z", np.zeros(N_FRAMES // 2))


def _pixel_size_negative(p):
    set_attrs(p, pixel_size_nm=-65.0)


def _frame_rate_text(p):
    set_attrs(p, frame_rate_hz="fast")


def _newer_format(p):
    set_attrs(p, magtrack_dask_archive=99)


def _complex_dtype(p):
    def change(doc):
        doc["data_type"] = "complex64"
        doc["fill_value"] = [0.0, 0.0]
    edit_frames_json(p, change)


def _frames_is_group(p):
    group = zarr.open_group(p, mode="r+")
    del group["frames"]
    group.create_group("frames")


LIES = [
    ("dtype-narrower", {}, _dtype_narrower, ArchiveError,
     r"frames: zarr\.json declares data_type uint8 \(1-byte values\) but its blosc codec was set up for 2-byte "
     r"values: the chunks were written as another dtype"),
    ("dtype-wider-codec-too", {}, _dtype_wider_with_codec, ArchiveError,
     r"frames: chunk 0/0/0 \(frames 0-3\) holds 8192 bytes of 2-byte values, but zarr\.json declares chunks of "
     r"\(4, 32, 32\) float32 = 16384 bytes: its data_type or chunk_shape disagrees with what the chunks hold"),
    ("chunk-shape-smaller", {}, _chunks_smaller, ArchiveError,
     r"frames: chunk 0/0/0 \(frames 0-1\) holds 8192 bytes of 2-byte values, but zarr\.json declares chunks of "
     r"\(2, 32, 32\) uint16 = 4096 bytes"),
    ("chunk-shape-larger", {}, _chunks_larger, ArchiveError,
     r"frames: chunk 0/0/0 \(frames 0-7\) holds 8192 bytes .* declares chunks of \(8, 32, 32\) uint16 = 16384"),
    ("uncompressed-dtype", {"compressors": None}, _uncompressed_dtype, ArchiveError,
     r"frames: chunk 0/0/0 \(frames 0-3\) holds 8192 bytes, but zarr\.json declares chunks of \(4, 32, 32\) uint8 "
     r"= 4096 bytes"),
    ("shape-larger-than-data", {}, _shape_larger, ArchiveError,
     r"frames: 1 of 3 chunks declared by its shape \(12, 32, 32\) are missing from the store \(chunk 2/0/0 "
     r"\(frames 8-11\)\); zarr would read them as fill-value \(0\) frames"),
    ("chunk-missing", {}, _chunk_deleted, ArchiveError,
     r"frames: 1 of 2 chunks .* missing from the store \(chunk 1/0/0 \(frames 4-7\)\).*check=False"),
    ("layout-tbyx-on-3d", {}, _layout_tbyx_on_3d, ArchiveError,
     r"archive attribute layout='tbyx' means a 4-D frames array \('frame', 'bead', 'y', 'x'\), but 'frames' has "
     r"shape \(8, 32, 32\)"),
    ("layout-not-a-name", {}, _layout_not_a_name, ArchiveError,
     r"archive attribute 'layout' is \['tyx'\]; expected one of 'tyx', 'tbyx', 'yxt'"),
    ("dimension-names", {}, _dimension_names, ArchiveError,
     r"frames: dimension_names \('y', 'x', 'frame'\) disagree with the archive attribute layout='tyx' "
     r"\('frame', 'y', 'x'\)"),
    ("rois-outside-frame", {}, _rois_outside, ArchiveError,
     r"archive ROI table disagrees with its frames: rois: ROI 0 \[20, 36, 8, 24\] lies outside the frame of "
     r"shape \(height=32, width=32\)"),
    ("rois-not-square", {}, _rois_not_square, ArchiveError,
     r"archive ROI table disagrees with its frames: rois must be square"),
    ("timestamps-length", {"timestamps": np.arange(N_FRAMES) * 0.02}, _timestamps_short, ArchiveError,
     r"archive 'timestamps' has shape \(7,\), expected \(8,\): one value per frame"),
    ("truth-length", {}, _truth_length, ArchiveError,
     r"archive 'truth_z' has shape \(1, 11\), expected \(1, 8\): \(bead, frame\)"),
    ("truth-beads", {}, _truth_beads, ArchiveError,
     r"archive 'truth_x' has shape \(2, 8\), expected \(1, 8\)"),
    ("calibration-z-length", {}, _calibration_length, ArchiveError,
     r"archive 'calibration_z' has shape \(4,\), expected \(8,\)"),
    ("pixel-size-negative", {"pixel_size_nm": 65.0}, _pixel_size_negative, ArchiveError,
     r"archive attribute pixel_size_nm must be a finite number > 0 \(nm per pixel\), got -65\.0"),
    ("frame-rate-text", {}, _frame_rate_text, ArchiveError,
     r"archive attribute frame_rate_hz must be a finite number > 0 \(frames per second\), got 'fast'"),
    ("newer-format", {}, _newer_format, ArchiveError,
     r"archive format version 99 is newer than this magtrack-dask reads \(1\)"),
    ("complex-dtype", {}, _complex_dtype, TypeError,
     r"frames: dtype complex64 is not a pixel type; expected integers or floats"),
    ("frames-is-group", {}, _frames_is_group, ArchiveError, r"archive 'frames' is a group; expected the image array"),
]


def _with_extras(path, lie):
    """Add the arrays some lies edit (truth, calibration z), truthfully first."""
    group = zarr.open_group(path, mode="r+")
    if lie in (_truth_length, _truth_beads):
        for name in ("truth_x", "truth_z"):
            group.create_array(name, data=np.zeros((1, N_FRAMES)))
    if lie is _calibration_length:
        group.create_array("calibration_z", data=np.zeros(N_FRAMES))


@pytest.mark.parametrize("options, lie, exc, match", [c[1:] for c in LIES], ids=[c[0] for c in LIES])
def test_open_archive_detects_the_lie(tmp_path, options, lie, exc, match):
    path = make(tmp_path, **options)
    _with_extras(path, lie)
    open_archive(path)  # the truthful archive opens
    lie(path)
    before = snapshot(path)
    with pytest.raises(exc, match=match):
        open_archive(path)
    assert snapshot(path) == before  # looking changes nothing


def test_missing_chunks_read_with_check_false_and_described(tmp_path):
    path = make(tmp_path)
    _shape_larger(path)
    arch = open_archive(path, check=False)
    assert arch.n_frames == 12 and not arch.data[8:].compute().any()  # what check=True protects against
    assert describe_archive(path)["n_frames"] == 12  # info still describes a partly written archive


def test_dark_chunks_are_stored_not_missing(tmp_path):
    data = pixels()
    data[4:] = 0  # a dark chunk equals the fill value: zarr would skip it by default
    path = make(tmp_path, data=data)
    np.testing.assert_array_equal(open_archive(path).data.compute(), data)


def test_a_single_chunk_that_lies_is_caught_when_read(tmp_path, caplog):
    path = make(tmp_path)
    # Chunk 1 re-encoded from uint8 pixels: metadata and chunk 0 are truthful, so only reading it can tell.
    other = make(tmp_path, "u8.zarr", data=pixels(dtype="uint8"))
    shutil.copy(os.path.join(other, "frames", "c", "1", "0", "0"), os.path.join(path, "frames", "c", "1", "0", "0"))
    arch = open_archive(path)
    frames = arch.group["frames"]
    np.testing.assert_array_equal(read_frames(frames, 0, 4, 0), pixels()[:4])
    with pytest.raises(ArchiveError, match=re.escape(
            "frames: the chunk holding frames 4-7 decodes to 4096 bytes, but zarr.json declares chunks of "
            "(4, 32, 32) uint16 = 8192 bytes: its data_type or chunk_shape disagrees with what the chunk holds")):
        read_frames(frames, 2, 8, 0)
    # Tracking never misreads it: those frames are NaN, flagged unreadable, and the log says why.
    import dask

    with dask.config.set(scheduler="synchronous"), caplog.at_level(logging.WARNING, "magtrack_dask"):
        ds = track(path).compute()
    flags = ds.flags.values[0]
    assert (flags[4:] & Flag.INPUT_UNREADABLE).all() and not (flags[:4] & Flag.INPUT_UNREADABLE).any()
    assert np.isnan(ds.x.values[0, 4:]).all() and np.isnan(ds.profiles.values[0, 4:]).all()
    assert "the chunk holding frames 4-7 decodes to 4096 bytes" in caplog.text


@pytest.mark.parametrize("options, lie, match", [(c[1], c[2], c[4]) for c in LIES], ids=[c[0] for c in LIES])
def test_cli_refuses_a_lying_archive_before_writing(tmp_path, capsys, options, lie, match):
    path = make(tmp_path, **options)
    _with_extras(path, lie)
    lie(path)
    before = snapshot(tmp_path)
    out = tmp_path / "results.zarr"
    assert main(["track", path, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("magtrack-dask: error: ") and re.search(match, err[0]), err
    assert snapshot(tmp_path) == before  # no results store, the archive untouched
