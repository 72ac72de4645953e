"""The live stream's segments, written in Python (talkgen/mp4.py reads a chunk, talkgen/mpegts.py
writes the segment), against what ffmpeg's own mpegts muxer makes from the same chunk and AAC
frames: the same packets at the same times, decoding to the same pictures and sound."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from talkgen import media, mp4, mpegts
from talkgen.live import write_segment

SR = 22050
FPS = 25


def _chunk(path: Path, frames: int, **extra) -> Path:
    """A chunk as the render writes it (ChunkEncoder), of moving noise so every frame differs."""
    rng = np.random.default_rng(7)
    enc = media.ChunkEncoder(path, 64, 64, FPS, **extra)
    base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for i in range(frames):
        enc.write(np.roll(base, i, axis=1))
    enc.close()
    return path


def _aac(seconds: float) -> list[bytes]:
    t = np.arange(int(seconds * SR)) / SR
    pcm = (np.sin(2 * np.pi * 330 * t) * 12000 * (t % 0.5 < 0.3)).astype("<i2").tobytes()
    stream = media.AacStream(SR)
    stream.write(pcm)
    stream.close()
    return stream.frames


def _ffmpeg_segment(chunk: Path, adts: bytes, out: Path, video_at: float, audio_at: float) -> None:
    """The reference: ffmpeg's muxer, both streams copied, at the same places (how talkgen made them before)."""
    subprocess.run([media.ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", "-itsoffset", f"{video_at:.6f}", "-i",
                    str(chunk), "-itsoffset", f"{audio_at:.6f}", "-f", "aac", "-i", "pipe:0", "-map", "0:v", "-map", "1:a",
                    "-c", "copy", "-copyts", "-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts", str(out)],
                   input=adts, check=True, capture_output=True)


def _packets(path: Path) -> tuple[dict, str]:
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts,dts,size,flags", "-of", "csv=p=0",
                           str(path)], capture_output=True, text=True, check=True)
    streams: dict = {}
    for line in proc.stdout.split():
        index, pts, dts, size, flags = line.strip(",").split(",")[:5]
        streams.setdefault(index, []).append((int(pts), int(dts), int(size), flags))
    return streams, proc.stderr


def _decoded(path: Path) -> list[str]:
    out = subprocess.run([media.ffmpeg_bin(), "-v", "error", "-i", str(path), "-f", "framemd5", "-"], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("first", [0, 37])
def test_a_segment_is_the_one_ffmpeg_muxes(tmp_path, first):
    chunk = _chunk(tmp_path / "00000.mp4", 60)  # a key frame every 50 frames: two in this chunk
    frames = _aac(6.0)
    given, upto = first, first + 55
    video_at = media.LIVE_START_S + 1.48
    audio_at = media.LIVE_START_S + (given * 1024 - 1024) / SR
    ours = tmp_path / "ours.ts"
    write_segment(chunk, video_at, [(mpegts.ticks(media.LIVE_START_S + ((given + i) * 1024 - 1024) / SR), f)
                                    for i, f in enumerate(frames[given:upto])], ours)
    ref = tmp_path / "ref.ts"
    _ffmpeg_segment(chunk, b"".join(frames[given:upto]), ref, video_at, audio_at)

    got, errors = _packets(ours)
    want, _ = _packets(ref)
    assert errors == ""  # tables, CRCs, continuity: nothing ffprobe complains of
    assert ours.stat().st_size % mpegts.PACKET == 0 and ours.read_bytes()[:: mpegts.PACKET] == b"\x47" * (ours.stat().st_size // 188)
    # Every picture at its time with its key flag; a size a byte apart at most (a start code of 3
    # bytes where ffmpeg writes 4, or the other way round).
    assert [(pts, dts, flags) for pts, dts, _, flags in got["0"]] == [(pts, dts, flags) for pts, dts, _, flags in want["0"]]
    assert all(abs(a[2] - b[2]) <= 1 for a, b in zip(got["0"], want["0"]))
    assert len(got["1"]) == len(want["1"]) == 55
    for (pts, _, size, flags), (ref_pts, _, ref_size, ref_flags) in zip(got["1"], want["1"]):
        assert abs(pts - ref_pts) <= 1 and (size, flags) == (ref_size, ref_flags)  # ffmpeg rounds once more, by a tick
    assert _decoded(ours) == _decoded(ref)


def test_a_chunk_with_b_frames_and_an_edit_list_reads_in_presentation_order(tmp_path):
    """The reader is not tied to CHUNK_VIDEO's settings: with B-frames, the samples' composition
    offsets and the edit list give each picture its time."""
    src = _chunk(tmp_path / "src.mp4", 30)
    chunk = tmp_path / "b.mp4"
    subprocess.run([media.ffmpeg_bin(), "-v", "error", "-i", str(src), "-c:v", "libx264", "-bf", "2", "-g", "12", str(chunk)],
                   check=True)
    track = mp4.read_h264(chunk)
    assert any(s.pts != s.dts for s in track.samples)
    assert sorted(s.pts for s in track.samples) == [i * track.timescale // FPS for i in range(30)]
    out = tmp_path / "b.ts"
    write_segment(chunk, 1.0, [], out)
    assert _decoded(out) == _decoded(chunk)


def test_a_damaged_chunk_is_one_clear_error(tmp_path):
    chunk = _chunk(tmp_path / "00000.mp4", 10)
    whole = chunk.read_bytes()
    chunk.write_bytes(whole[:-200])  # its index cut short
    with pytest.raises(media.TalkgenError, match="is not a chunk talkgen can read .*delete it and render again"):
        mp4.read_h264(chunk)
    chunk.write_bytes(whole.replace(b"avcC", b"xxxx"))  # no parameter sets
    with pytest.raises(media.TalkgenError, match=r"no parameter sets \(avcC\)\): delete it and render again"):
        mp4.read_h264(chunk)
