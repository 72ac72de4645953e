"""The live stream: an HLS playlist beside the video that lists each chunk as soon as it is on
disk, and ends (#EXT-X-ENDLIST) when the video is done. It plays in ffplay, VLC, mpv and
browsers (hls.js, Safari) while it grows.

    out.mp4   out.m3u8   out.live/00000.ts 00001.ts ...

Each segment is one chunk: its video copied (the same frames as the video file), and beside it
the AAC frames that play during it. The audio is one continuous encoding of the speech, made as
the speech is spoken and cut between AAC frames: encoded per segment, each piece would start
with its own encoder priming and slip about a frame of audio (21-46 ms) at every join. Every
frame carries its place on the stream's one timeline (MPEG-TS timestamps), so the players line
the sound up with the picture at every boundary.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from talkgen import media, mp4, mpegts
from talkgen.chunks import Chunk, chunk_name
from talkgen.feeds import Feed, Stopped, Value
from talkgen.job import atomic_path


def write_segment(chunk: Path, video_at: float, audio: list[tuple[int, bytes]], out: Path) -> None:
    """A segment: the chunk's video copied, from `video_at` s on the stream's timeline, and the AAC
    frames (their times in 90 kHz ticks) that play beside it."""
    track = mp4.read_h264(chunk)
    at = lambda t: mpegts.ticks(video_at + t / track.timescale)  # noqa: E731
    video = [(at(s.pts), at(s.dts), s.key, mp4.annex_b(track, s)) for s in track.samples]
    data = mpegts.segment(video, audio)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)


def playlist_for(video: Path) -> Path:
    return video.with_suffix(".m3u8")


def segments_for(playlist: Path) -> Path:
    return playlist.with_suffix(".live")


class LiveStream:
    """Writes the playlist and its segments on a thread of its own, from a job's feeds: the plan's
    chunks, the chunks as they are finished, and the speech."""

    def __init__(self, playlist: Path, job_root: Path, fps: int, max_chunk_s: float,
                 on_segment: Callable[[int, Path, float], None] | None = None, started: float | None = None):
        self.playlist, self.folder, self.job_root = playlist, segments_for(playlist), job_root
        self.fps, self.target_s = fps, max(1, math.ceil(max_chunk_s))
        self.on_segment = on_segment or (lambda index, playlist, seconds: None)
        self.started = started if started is not None else time.perf_counter()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._entries: list[str] = []
        self._thread: threading.Thread | None = None
        self._feed_error: BaseException | None = None  # the speech feeder's failure, raised on the stream's thread
        for old in (self.playlist,):
            old.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self, chunks: Feed, finished: Feed, speech: Value) -> None:
        self._thread = threading.Thread(target=self._run, args=(chunks, finished, speech), name="talkgen-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        """Until the playlist is whole (or the stream stopped); its failure, if any, raised here."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.1)
        if self.error is not None:
            raise self.error

    # -- on the stream's thread -------------------------------------------------------------
    def _run(self, chunks: Feed, finished: Feed, speech: Value) -> None:
        audio = None
        try:
            track = speech.wait()
            audio = media.AacStream(track.sample_rate)
            feeder = threading.Thread(target=self._feed, args=(track, audio), name="talkgen-live-speech", daemon=True)
            feeder.start()
            given = 0  # AAC frames already in segments
            for index in finished:
                chunk = chunks.get(index)
                # The last chunk is cut once the speech is whole, and the plan closed right after it.
                last = track.known()[1] and chunks.get(index + 1) is None
                given = self._segment(chunk, last, track.sample_rate, audio, given)
            feeder.join()
            if self._feed_error is not None:
                raise self._feed_error
            audio.close()
            audio = None
            self._write(end=True)
        except Stopped:
            pass  # the job stopped: the playlist stays as far as it got
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.error = exc
        finally:
            if audio is not None:
                audio.abort()

    def _feed(self, track, audio: media.AacStream) -> None:
        """The speech into the encoder as it is spoken, then the end of it."""
        import numpy as np

        fed = 0
        try:
            while not self._stop.is_set():
                track.wait_for(fed + 1)
                known, complete = track.known()
                if known > fed:
                    # speech.wav's own 16-bit samples: read back as x / 32768, exact in float32
                    audio.write(np.round(track.read(fed, known) * 32768).astype("<i2").tobytes())
                    fed = known
                if complete:
                    break
        except (Stopped, OSError):
            self._stop.set()
        except BaseException as exc:  # noqa: BLE001 - its encoder failed (or was killed by a stop): handed to _run
            self._feed_error = exc
            self._stop.set()
        finally:
            audio.end_input()

    def _segment(self, chunk: Chunk, last: bool, sample_rate: int, audio: media.AacStream, given: int) -> int:
        """Chunk `chunk` as the next segment, with the AAC frames that start before its end (all that
        are left, for the last); how many frames are in segments now."""
        a = media.LIVE_AUDIO
        end = chunk.end_frame / self.fps
        # Frame i holds the speech from sample i * frame - priming on.
        need = 1 << 62 if last else math.ceil((end * sample_rate + a["priming"]) / a["frame"])
        have = audio.wait_frames(need, self._stop.is_set)
        if self._stop.is_set():
            raise Stopped("stopped")
        upto = min(have, need)
        name = f"{chunk.index:05d}.ts"
        frames = [(mpegts.ticks(media.LIVE_START_S + ((given + i) * a["frame"] - a["priming"]) / sample_rate), frame)
                  for i, frame in enumerate(audio.frames[given:upto])]
        write_segment(self.job_root / chunk_name(chunk.index), media.LIVE_START_S + chunk.start_frame / self.fps, frames,
                      self.folder / name)
        self._entries += [f"#EXTINF:{chunk.frames / self.fps:.6f},", f"{self.folder.name}/{name}"]
        self._write(end=False)
        self.on_segment(chunk.index, self.playlist, time.perf_counter() - self.started)
        return upto

    def _write(self, end: bool) -> None:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{self.target_s}", "#EXT-X-MEDIA-SEQUENCE:0",
                 "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-INDEPENDENT-SEGMENTS", *self._entries, *(["#EXT-X-ENDLIST"] if end else [])]
        with atomic_path(self.playlist) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
