"""Every ffmpeg and ffprobe call in talkgen: argument lists, never a shell string."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from talkgen.errors import TalkgenError
from talkgen.job import atomic_path

if TYPE_CHECKING:
    import numpy as np


def ffmpeg_bin() -> str:
    return os.environ.get("TALKGEN_FFMPEG", "ffmpeg")


def ffprobe_bin() -> str:
    return os.environ.get("TALKGEN_FFPROBE", "ffprobe")


@functools.cache
def require_ffmpeg() -> str:
    """Check ffmpeg and ffprobe exist and have libx264 and aac; return ffmpeg's version line.

    The answer is kept on disk for the same two binaries (path, size, modification time): an
    ffmpeg start is about 0.1 s here (215 shared libraries), paid by every render before its
    first stage, and by a live one before its first segment."""
    tools = []
    for tool in (ffmpeg_bin(), ffprobe_bin()):
        found = shutil.which(tool)
        if found is None:
            raise TalkgenError(f"{tool} not found: install ffmpeg (./install.sh does, or apt-get install ffmpeg)")
        tools.append(found)
    key = _binaries_key(tools)
    known = _checked_before(key)
    if known is not None:
        return known
    try:
        # One run: the encoders on stdout, the banner (its first line the version) on stderr.
        out = _capture([ffmpeg_bin(), "-encoders"], text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TalkgenError(f"{ffmpeg_bin()} does not run ({exc}): reinstall ffmpeg") from None
    names = {line.split()[1] for line in out.stdout.splitlines() if len(line.split()) > 1 and line.startswith(" ")}
    missing = [enc for enc in ("libx264", "aac") if enc not in names]
    if missing:
        raise TalkgenError(
            f"{ffmpeg_bin()} lacks the {' and '.join(missing)} encoder: install a full ffmpeg build (Debian's ffmpeg package has both)"
        )
    banner = [line for line in out.stderr.splitlines() if line.startswith("ffmpeg version")]
    version = banner[0] if banner else "ffmpeg"
    _remember_check(key, version)
    return version


def _binaries_key(paths: list[str]) -> list:
    key = []
    for path in paths:
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
        except OSError:
            return []
        key.append([real, st.st_size, st.st_mtime_ns, st.st_ino])
    return key


def _check_file() -> Path:
    from talkgen.cache import cache_root

    return cache_root() / "ffmpeg-check.json"


def _checked_before(key: list) -> str | None:
    if not key:
        return None
    try:
        saved = json.loads(_check_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(saved, dict) and saved.get("binaries") == key and isinstance(saved.get("version"), str):
        return saved["version"]
    return None


def _remember_check(key: list, version: str) -> None:
    if not key:
        return
    try:
        _check_file().parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(_check_file()) as tmp:
            tmp.write_text(json.dumps({"binaries": key, "version": version}), encoding="utf-8")
    except OSError:
        pass  # a cache that cannot be written: checked again next time


# ffmpeg runs in its own session, out of reach of the terminal's Ctrl-C: in talkgen chat a
# Ctrl-C that stops a reply must not kill the clip encoding behind it. talkgen still stops
# its children itself when Python is interrupted (_capture and the finally blocks kill them),
# and every child is tracked so that a SIGTERM's hard stop can kill what is left (stopping.py).
DETACHED = {"start_new_session": True}


def _popen(args: list[str], **kwargs) -> subprocess.Popen:
    from talkgen.stopping import deferred, track

    kwargs.setdefault("stdin", subprocess.DEVNULL)  # never the terminal's or chat's own input
    with deferred():  # a SIGTERM waits until the child is tracked
        return track(subprocess.Popen(args, **DETACHED, **kwargs))


def _capture(args: list[str], text: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True) with the child detached and tracked."""
    proc = _popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # a timeout, Ctrl-C or a stop: the child must not outlive the call
        proc.kill()
        proc.wait()
        raise
    finally:
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _run(args: list[str], what: str) -> None:
    proc = _capture(args, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise TalkgenError(f"ffmpeg failed while {what}: {tail}")


# How every chunk is encoded, besides the recipe's render.crf and render.preset. Data rather
# than literals in the argument list, so that the render cache key holds it (chunk_encoding):
# a change here renders the chunks again instead of joining new ones to chunks encoded the old way.
CHUNK_VIDEO = {
    "codec": "libx264",
    "pix_fmt": "yuv420p",
    # No B-frames: chunks start without a composition offset, so stream-copy joins stay frame exact.
    "bframes": 0,
    "keyframe_s": 2,
    "timescale_per_frame": 512,
    "bitexact": True,
}
# How the final file's speech is encoded (its video is the chunks, copied): in the assemble key.
FINAL_AUDIO = {"codec": "aac", "bitrate": "128k", "faststart": True, "bitexact": True}


def chunk_encoding(crf: int, preset: str) -> dict:
    """Every setting that decides how a chunk's frames become bytes: part of the render cache key."""
    return {**CHUNK_VIDEO, "crf": crf, "preset": preset}


class ChunkEncoder:
    """Streams RGB frames into a video-only H.264 file that appears atomically when closed.

    Video-only on purpose: the speech is muxed once at the end, which avoids the AAC
    priming drift that per-chunk audio adds at every join: measured here, `-c copy` joins of
    chunks with their own AAC slip about 21 ms a join (1.3 s after 60 chunks), against 0 ms this way.

    With `queue_mb`, frames are copied into a bounded queue that a feeder thread drains
    into ffmpeg, so the back end makes the next frames while x264 encodes the last ones;
    `wait_s` is how long `write` was held up by a full queue.
    """

    def __init__(self, path: Path, width: int, height: int, fps: int, crf: int = 20, preset: str = "veryfast", queue_mb: int = 0):
        self.path = path
        self.frames = 0
        self.wait_s = 0.0
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        v = CHUNK_VIDEO
        args = [
            ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0",
            "-an", "-c:v", v["codec"], "-preset", preset, "-crf", str(crf), "-pix_fmt", v["pix_fmt"],
            "-bf", str(v["bframes"]), "-g", str(fps * v["keyframe_s"]), "-r", str(fps),
            "-video_track_timescale", str(fps * v["timescale_per_frame"]),
            *(["-fflags", "+bitexact", "-flags:v", "+bitexact"] if v["bitexact"] else []), "-f", "mp4", str(self._tmp),
        ]
        self._proc = _popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self._queue = None
        self._broken = False
        if queue_mb > 0:
            import queue
            import threading

            self._queue = queue.Queue(max(2, queue_mb * 2**20 // (width * height * 3)))
            self._feeder = threading.Thread(target=self._feed, name=f"encode {path.name}", daemon=True)
            self._feeder.start()

    def write(self, frame: "np.ndarray") -> None:
        if self._queue is None:
            self._send(memoryview(frame).cast("B"))
        else:
            import time

            if self._broken:
                self._fail("encoding a chunk")
            data = frame.tobytes()  # a copy: engines may reuse their frame buffer
            t = time.perf_counter()
            self._queue.put(data)
            self.wait_s += time.perf_counter() - t
        self.frames += 1

    def _send(self, data) -> None:
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, ValueError):
            self._fail("encoding a chunk")

    def _feed(self) -> None:
        # After a broken pipe the feeder keeps draining, so that a writer never blocks on a full queue.
        while (data := self._queue.get()) is not None:
            if not self._broken:
                try:
                    self._proc.stdin.write(data)
                except (BrokenPipeError, ValueError, OSError):
                    self._broken = True

    def _drain(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._feeder.join()
            self._queue = None

    def _fail(self, what: str) -> None:
        self._proc.kill()
        self._drain()
        err = self._proc.stderr.read().decode(errors="replace").strip() if self._proc.stderr else ""
        self._proc.wait()
        self._atomic.__exit__(RuntimeError, None, None)
        raise TalkgenError(f"ffmpeg failed while {what}: {err.splitlines()[-1] if err else 'no message'}")

    def close(self) -> None:
        self._drain()
        if self._broken:
            self._fail(f"encoding {self.path.name}")
        self._proc.stdin.close()
        rc = self._proc.wait()
        if rc != 0:
            self._fail(f"encoding {self.path.name}")
        self._proc.stderr.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._drain()
        self._proc.wait()
        self._atomic.__exit__(RuntimeError, None, None)


def concat_videos(paths: list[Path], out: Path, list_file: Path) -> None:
    """Join video-only chunks with stream copy (no re-encode)."""
    lines = []
    for p in paths:
        escaped = str(p.resolve()).replace("'", "'\\''")
        lines.append(f"file '{escaped}'\n")
    list_file.write_text("".join(lines), encoding="utf-8")
    with atomic_path(out) as tmp:
        _run(
            [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
             "-i", str(list_file), "-c", "copy", "-fflags", "+bitexact", "-f", "mp4", str(tmp)],
            "joining chunks",
        )


def mux(video: Path, wav: Path, out: Path, duration_s: float, srt: Path | None = None) -> None:
    """Mux the joined video with the speech WAV, encoded once to AAC, and soft subtitles.

    The audio is padded with silence and everything cut at the video's exact duration
    (-shortest overshoots with apad, and stops at the subtitles' end when they are muxed).
    """
    args = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-i", str(wav)]
    maps = ["-map", "0:v", "-map", "1:a"]
    if srt is not None:
        args += ["-i", str(srt)]
        maps += ["-map", "2:s", "-c:s", "mov_text", "-metadata:s:s:0", "language=eng"]
    a = FINAL_AUDIO
    with atomic_path(out) as tmp:
        _run(
            args + maps + ["-c:v", "copy", "-c:a", a["codec"], "-b:a", a["bitrate"], "-af", "apad", "-t", f"{duration_s:.6f}",
                           *(["-movflags", "+faststart"] if a["faststart"] else []),
                           *(["-fflags", "+bitexact"] if a["bitexact"] else []), "-f", "mp4", str(tmp)],
            f"writing {out.name}",
        )


def probe(path: Path) -> dict:
    proc = _capture(
        [ffprobe_bin(), "-v", "error", "-show_streams", "-show_format", "-count_packets", "-of", "json", str(path)],
        text=True,
    )
    if proc.returncode != 0:
        raise TalkgenError(f"cannot read {path}: {proc.stderr.strip() or 'ffprobe failed'}")
    return json.loads(proc.stdout)


def decode_audio(path: Path, sample_rate: int) -> "np.ndarray":
    """Decode the first audio stream of any file ffmpeg reads to mono float32."""
    import numpy as np

    proc = _capture(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-vn", "-ac", "1",
         "-ar", str(sample_rate), "-f", "f32le", "pipe:1"],
    )
    if proc.returncode != 0:
        raise TalkgenError(f"cannot decode audio in {path}: {proc.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(proc.stdout, dtype=np.float32)


def stream_kinds(path: Path) -> tuple[set[str], set[str]] | None:
    """(the kinds of stream in `path`: audio, video..., the names of its container format), or
    None when ffprobe cannot read it. Cover art (an attached picture) is not a video stream.
    Quick: reads the header only, not every packet as probe() does."""
    proc = _capture(
        [ffprobe_bin(), "-v", "error", "-show_entries", "stream=codec_type:stream_disposition=attached_pic:format=format_name",
         "-of", "json", str(path)],
        text=True,
    )
    try:
        info = json.loads(proc.stdout or "{}") if proc.returncode == 0 else {}
    except ValueError:
        return None
    if "format" not in info:
        return None
    kinds = {s.get("codec_type", "") for s in info.get("streams", []) if not s.get("disposition", {}).get("attached_pic")}
    return kinds, set(info["format"].get("format_name", "").split(","))


def audio_duration(path: Path) -> float:
    """Seconds of the first audio stream; a UsageError when the file holds no readable audio."""
    from talkgen.errors import UsageError

    proc = _capture(
        [ffprobe_bin(), "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=duration:format=duration",
         "-of", "json", str(path)],
        text=True,
    )
    info = json.loads(proc.stdout or "{}") if proc.returncode == 0 else {}
    if proc.returncode != 0 or not info.get("streams"):
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no audio stream"
        raise UsageError(f"{path} is not audio that ffmpeg can read ({why}): pass a WAV, MP3, M4A, OGG or FLAC recording")
    stream, fmt = info["streams"][0], info.get("format", {})
    return float(stream.get("duration") or fmt.get("duration") or 0.0)


def decoded_audio_s(path: Path, at_most_s: float, timeout_s: float = 60.0) -> float:
    """Seconds of the first audio stream, counted by decoding it (up to `at_most_s` and a little
    more): a header's duration can be missing, as in a browser's MediaRecorder WebM, or false.
    A UsageError when there is no audio ffmpeg can decode."""
    from talkgen.errors import UsageError

    rate = 8000  # mono 16-bit: 16 kB a second, enough to count
    proc = _capture([ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-vn", "-map", "0:a:0",
                     "-t", f"{at_most_s + 1:.3f}", "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"], timeout=timeout_s)
    if proc.returncode != 0 or not proc.stdout:
        why = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"{path.name} is not audio that ffmpeg can decode ({why[-1] if why else 'no audio'}): "
                         "send a recording (WebM/Opus, WAV, MP3, M4A, OGG or FLAC)")
    return len(proc.stdout) / (2 * rate)


def _read_stream(args: list[str], block_bytes: int, fail: "Callable[[str], Exception]"):
    """Run ffmpeg writing raw data to stdout and yield it in blocks of block_bytes (the last may be short).

    stderr is kept for the error (-loglevel error keeps it small, so it cannot fill its pipe).
    """
    proc = _popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            data = proc.stdout.read(block_bytes)
            if not data:
                break
            yield data
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise fail(err.splitlines()[-1] if err else "ffmpeg failed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def stream_audio(path: Path, sample_rate: int, block: int):
    """Decode any audio ffmpeg reads to mono float32, yielded in blocks of `block` samples.

    Memory stays bounded for recordings of any length.
    """
    import numpy as np

    from talkgen.errors import UsageError

    args = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1",
            "-ar", str(sample_rate), "-f", "f32le", "pipe:1"]
    for data in _read_stream(args, block * 4, lambda why: UsageError(f"cannot decode the audio in {path}: {why}")):
        yield np.frombuffer(data[: len(data) // 4 * 4], dtype=np.float32)


def frame_differences(path: Path, size: int = 64) -> "np.ndarray":
    """Mean absolute difference between each pair of consecutive frames, on a small grey copy.

    Decoded as a stream, one small frame at a time, so memory does not grow with the video.
    """
    import numpy as np

    args = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-map", "0:v",
            "-vf", f"scale={size}:{size}:flags=area,format=gray", "-f", "rawvideo", "pipe:1"]
    diffs = []
    prev = None
    for data in _read_stream(args, size * size, lambda why: TalkgenError(f"cannot decode {path} to measure its seams: {why}")):
        if len(data) < size * size:
            break
        frame = np.frombuffer(data, np.uint8).astype(np.int16)
        if prev is not None:
            diffs.append(float(np.abs(frame - prev).mean()))
        prev = frame
    return np.asarray(diffs, np.float32)


def gray_frames(path: Path, size: int):
    """Every frame of the first video stream as a size x size grey uint8 array, decoded as a stream.

    Small and grey on purpose: `talkgen check` runs after every render and must stay quick.
    """
    import numpy as np

    args = [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
            "-vf", f"scale={size}:{size}:flags=area,format=gray", "-f", "rawvideo", "pipe:1"]
    for data in _read_stream(args, size * size, lambda why: TalkgenError(f"cannot decode the video in {path}: {why}")):
        if len(data) == size * size:
            yield np.frombuffer(data, np.uint8).reshape(size, size)


def first_frame(path: Path, width: int, height: int) -> "np.ndarray":
    """The first video frame at full size, RGB uint8."""
    import numpy as np

    proc = _capture(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
    )
    if proc.returncode != 0 or len(proc.stdout) != width * height * 3:
        raise TalkgenError(f"cannot decode the first frame of {path}: {proc.stderr.decode(errors='replace').strip() or 'no frame'}")
    return np.frombuffer(proc.stdout, np.uint8).reshape(height, width, 3)


# -- the live stream (talkgen/live.py) ---------------------------------------------------------
# The stream's speech, encoded once as it is spoken: encoded per segment, each piece would start
# with its own encoder priming (1024 samples, about 21 ms at 48 kHz, 46 ms at 22.05 kHz) and slip.
LIVE_AUDIO = {"codec": "aac", "bitrate": FINAL_AUDIO["bitrate"], "priming": 1024, "frame": 1024}
LIVE_START_S = 1.0  # the stream's first video frame; the priming frame before it must not be at a negative time


class AacStream:
    """Mono 16-bit PCM in, as it is known; AAC frames (ADTS) out, read on a thread as ffmpeg makes them.

    Frame i (from 0) holds input samples from i * 1024 - priming: frame 0 is mostly the
    encoder's priming. close() flushes the last frames out."""

    def __init__(self, sample_rate: int):
        import threading

        self.sample_rate = sample_rate
        self.frames: list[bytes] = []
        self.done = False
        self.error = ""
        self._cond = threading.Condition()
        a = LIVE_AUDIO
        # No probing: the input's form is given, and ffmpeg would otherwise read about two seconds of it
        # before encoding any (the first segment waited for the speech after its own; measured).
        self._proc = _popen([ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-probesize", "32", "-analyzeduration", "0",
                             "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
                             "-c:a", a["codec"], "-b:a", a["bitrate"], "-flush_packets", "1", "-f", "adts", "pipe:1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, name="talkgen-live-audio", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        out = self._proc.stdout
        try:
            while (head := out.read(7)) and len(head) == 7:
                length = ((head[3] & 3) << 11) | (head[4] << 3) | (head[5] >> 5)  # the ADTS frame's length, header included
                body = out.read(length - 7)
                with self._cond:
                    self.frames.append(head + body)
                    self._cond.notify_all()
        finally:
            rc = self._proc.wait()
            err = self._proc.stderr.read().decode(errors="replace").strip()
            with self._cond:
                self.done = True
                self.error = "" if rc == 0 else (err.splitlines()[-1] if err else f"exit {rc}")
                self._cond.notify_all()

    def write(self, pcm: bytes) -> None:
        try:
            self._proc.stdin.write(pcm)
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self._reader.join()
            raise TalkgenError(f"ffmpeg failed while encoding the live stream's audio: {self.error or 'it stopped reading'}") from None

    def end_input(self) -> None:
        """No more input: the last frames come out."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass

    def close(self) -> None:
        """Once every frame is out (after end_input); an error if ffmpeg failed."""
        self.end_input()
        self._reader.join()
        self._proc.stdout.close()
        self._proc.stderr.close()
        if self.error:
            raise TalkgenError(f"ffmpeg failed while encoding the live stream's audio: {self.error}")

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        if not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        self._reader.join(timeout=5)

    def wait_frames(self, n: int, stop: "Callable[[], bool]") -> int:
        """Until n frames are out (or all of them, at the end); how many are."""
        with self._cond:
            while len(self.frames) < n and not self.done and not stop():
                self._cond.wait(0.1)
            return len(self.frames)
