import numpy as np
import pytest

from talkgen import media
from talkgen.errors import TalkgenError
from talkgen.speech import WavWriter

import video_fixtures


def _encode(path, frames, size=64, fps=25, colour_step=7):
    enc = media.ChunkEncoder(path, size, size, fps, preset="ultrafast")
    for i in range(frames):
        enc.write(np.full((size, size, 3), (i * colour_step) % 256, np.uint8))
    enc.close()
    return enc


def test_chunk_appears_only_when_complete(tmp_path):
    path = tmp_path / "c.mp4"
    enc = media.ChunkEncoder(path, 64, 64, 25, preset="ultrafast")
    enc.write(np.zeros((64, 64, 3), np.uint8))
    assert not path.exists()
    enc.abort()
    assert not path.exists() and list(tmp_path.iterdir()) == []
    _encode(path, 10)
    info = media.probe(path)
    (video,) = info["streams"]
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p" and int(video["nb_read_packets"]) == 10


def test_join_and_mux_keep_every_frame_and_the_audio(tmp_path):
    paths = [tmp_path / f"{i}.mp4" for i in range(3)]
    for p, n in zip(paths, (13, 7, 30)):
        _encode(p, n)
    joined, final = tmp_path / "joined.mp4", tmp_path / "final.mp4"
    media.concat_videos(paths, joined, tmp_path / "list.txt")
    wav = tmp_path / "a.wav"
    w = WavWriter(wav, 16000)
    w.write(0.3 * np.sin(np.arange(int(16000 * 50 / 25)) * 0.1).astype(np.float32))
    w.close()
    srt = tmp_path / "a.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    media.mux(joined, wav, final, 2.0, srt)
    info = media.probe(final)
    kinds = {s["codec_type"]: s for s in info["streams"]}
    assert int(kinds["video"]["nb_read_packets"]) == 50
    assert kinds["audio"]["codec_name"] == "aac"
    assert kinds["subtitle"]["codec_name"] == "mov_text"
    assert abs(float(kinds["audio"]["duration"]) - 2.0) <= 0.024  # at most one AAC frame over
    assert len(video_fixtures.frame_hashes(final)) == 50


def test_missing_ffmpeg_is_one_clear_line(monkeypatch):
    media.require_ffmpeg.cache_clear()
    monkeypatch.setenv("TALKGEN_FFMPEG", "/nonexistent/ffmpeg")
    try:
        with pytest.raises(TalkgenError, match="not found: install ffmpeg"):
            media.require_ffmpeg()
    finally:
        media.require_ffmpeg.cache_clear()


def test_ffmpeg_without_x264_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Encoders:'\necho ' V..... mpeg4  MPEG-4 part 2'\necho ' A..... aac    AAC'\n")
    fake.chmod(0o755)
    media.require_ffmpeg.cache_clear()
    monkeypatch.setenv("TALKGEN_FFMPEG", str(fake))
    try:
        with pytest.raises(TalkgenError, match="lacks the libx264 encoder"):
            media.require_ffmpeg()
    finally:
        media.require_ffmpeg.cache_clear()


def test_the_ffmpeg_check_is_kept_for_the_same_binaries(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!/bin/sh\necho run >> {runs}\necho 'ffmpeg version 9.9-test' >&2\n"
                    "echo 'Encoders:'\necho ' V..... libx264  H.264'\necho ' A..... aac    AAC'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TALKGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TALKGEN_FFMPEG", str(fake))
    try:
        for _ in range(2):
            media.require_ffmpeg.cache_clear()
            assert media.require_ffmpeg() == "ffmpeg version 9.9-test"
        assert runs.read_text().count("run") == 1  # the second process would not start ffmpeg
        # Another ffmpeg at the same path (an upgrade): checked again.
        fake.write_text(fake.read_text().replace("9.9-test", "10.0-test"))
        media.require_ffmpeg.cache_clear()
        assert media.require_ffmpeg() == "ffmpeg version 10.0-test"
        assert runs.read_text().count("run") == 2
        # A refusal is not kept: the same binary is asked again.
        fake.write_text(fake.read_text().replace("libx264", "mpeg4"))
        for _ in range(2):
            media.require_ffmpeg.cache_clear()
            with pytest.raises(TalkgenError, match="lacks the libx264 encoder"):
                media.require_ffmpeg()
        assert runs.read_text().count("run") == 4
    finally:
        media.require_ffmpeg.cache_clear()


def test_seam_quality_finds_the_jump():
    from talkgen.stages.assemble import seam_quality

    diffs = np.full(99, 2.0, np.float32)  # 100 frames moving steadily
    diffs[49] = 20.0  # a jump between frames 49 and 50: the seam at frame 50
    q = seam_quality(diffs, [25, 50, 75])
    assert q["median_inside"] == 2.0
    assert [s["ratio"] for s in q["per_seam"]] == [1.0, 10.0, 1.0]
    assert q["max_ratio"] == 10.0


def test_frame_differences_measure_the_video(tmp_path):
    path = tmp_path / "c.mp4"
    _encode(path, 20, colour_step=10)
    diffs = media.frame_differences(path, size=16)
    assert len(diffs) == 19 and np.all(diffs > 5)


def test_a_queued_encoder_copies_frames_the_engine_reuses(tmp_path):
    """The puppet hands out one buffer, rewritten for every frame: the queue must hold copies."""
    buffer = np.zeros((64, 64, 3), np.uint8)
    queued = media.ChunkEncoder(tmp_path / "q.mp4", 64, 64, 25, preset="ultrafast", queue_mb=1)
    for i in range(30):
        buffer[:] = (i * 8) % 256
        queued.write(buffer)
    queued.close()
    _encode(tmp_path / "d.mp4", 30, colour_step=8)
    assert video_fixtures.frame_hashes(tmp_path / "q.mp4") == video_fixtures.frame_hashes(tmp_path / "d.mp4")


def test_a_queued_encoder_whose_ffmpeg_dies_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TALKGEN_FFMPEG", str(fake))
    out = tmp_path / "out"
    out.mkdir()
    enc = media.ChunkEncoder(out / "c.mp4", 256, 256, 25, queue_mb=1)  # a 5-frame queue: writes outrun the dead pipe
    with pytest.raises(TalkgenError, match="ffmpeg failed while encoding.*Unknown encoder libx264"):
        for _ in range(200):
            enc.write(np.zeros((256, 256, 3), np.uint8))
        enc.close()
    assert list(out.iterdir()) == []


def test_chunks_finish_in_order_behind_the_back_end_and_a_short_one_is_refused(tmp_path):
    from talkgen.chunk_writer import ChunkFinisher
    from talkgen.chunks import Chunk, chunk_name, finished_chunk, sidecar_path

    (tmp_path / "chunks").mkdir()
    chunks = [Chunk(i, 10 * i, 10 * i + 10) for i in range(3)]
    finisher = ChunkFinisher(tmp_path, "key")
    for chunk, frames in zip(chunks, (10, 10, 9)):  # the last one is a frame short
        enc = media.ChunkEncoder(tmp_path / chunk_name(chunk.index), 64, 64, 25, preset="ultrafast", queue_mb=1)
        for i in range(frames):
            enc.write(np.full((64, 64, 3), i * 20, np.uint8))
        finisher.submit(enc, chunk, {"continuity": {"n": chunk.index}, "compute_s": 0.0, "wait_s": 0.0})
    with pytest.raises(TalkgenError, match="chunk 2 has 9 frames, the plan says 10") as err:
        finisher.join()
    assert err.value.chunk == 2
    assert [finished_chunk(tmp_path, c, "key")["continuity"] for c in chunks[:2]] == [{"n": 0}, {"n": 1}]
    assert not (tmp_path / chunk_name(2)).exists() and not sidecar_path(tmp_path, 2).exists()
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == ["00000.mp4", "00000.mp4.json", "00001.mp4", "00001.mp4.json"]
