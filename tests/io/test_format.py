"""The archive format's defaults (magtrack_dask.io.format): codecs and chunk sizes."""

import pytest
from zarr.codecs import BloscCodec, Crc32cCodec

from magtrack_dask.io.archive import create_archive, open_archive
from magtrack_dask.io.format import TARGET_ROIS_PER_CHUNK, auto_chunk_frames, default_compressors
from magtrack_dask.sim.archives import write_simulated_archive


def test_default_compressors_are_blosc_zstd_bitshuffle_then_a_checksum(tmp_path):
    blosc, crc = default_compressors()
    assert isinstance(blosc, BloscCodec) and isinstance(crc, Crc32cCodec)
    assert blosc.cname.value == "zstd" and blosc.clevel == 5 and blosc.shuffle.value == "bitshuffle"
    frames = create_archive(tmp_path / "a.zarr", shape=(8, 8, 4), layout="yxt")["frames"]
    assert [type(c) for c in frames.compressors] == [BloscCodec, Crc32cCodec]


def test_default_chunks_carry_a_checksum(tmp_path):
    # Blosc checks only its header: a byte damaged inside a chunk must fail the read, not decode to wrong pixels.
    write_simulated_archive(tmp_path / "a.zarr", 32, 1, roi=16, chunk_frames=16, shard_frames=0, photons=1e4, seed=1)
    chunk = tmp_path / "a.zarr" / "frames" / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    frames = open_archive(tmp_path / "a.zarr", check=False).group["frames"]
    assert frames[:16].shape[0] == 16
    with pytest.raises(ValueError, match="checksum"):
        frames[16:]


@pytest.mark.parametrize(
    ("frame_bytes", "n_frames", "n_beads", "expected"),
    [
        (2 * 64 * 64, 10**6, 1, TARGET_ROIS_PER_CHUNK),  # one small bead: the ROI target
        (2 * 176 * 176, 10**6, 4, TARGET_ROIS_PER_CHUNK // 4),  # four beads per frame
        (2 * 2048 * 2048, 10**6, 1, 8),  # 8 MiB camera frames: the 64 MiB cap
        (2 * 64 * 64, 100, 1, 100),  # never more than the archive holds
        (2**30, 10, 1, 1),  # at least one frame
        (0, 5, 0, 5),  # degenerate sizes do not divide by zero
    ],
)
def test_auto_chunk_frames(frame_bytes, n_frames, n_beads, expected):
    assert auto_chunk_frames(frame_bytes, n_frames, n_beads) == expected
