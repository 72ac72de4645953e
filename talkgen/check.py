"""`talkgen check`: is a finished video sound? Measured from the file alone, plus its job when known.

What peers' users lose hours to is a video that looks fine in a file listing: no audio, a
mouth a second ahead of the voice, a renderer that stalled on one frame. Each finding here
is a measurement with a bound; the bounds for lip sync were calibrated on talkgen's own
renders and on copies with the audio shifted (docs/check.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.errors import UsageError
from talkgen.speech import SILENCE_DB

if TYPE_CHECKING:
    import numpy as np

DECODE_SIZE = 128  # grey frames this size are enough for motion and quick to decode
AUDIO_RATE = 16000
SEAM_RATE = 8000  # resolves well under a frame and is quick to correlate
IDENTICAL = 0.002  # mean grey difference (0-255) below which two decoded frames are the same picture
FROZEN_S = 1.0  # a longer run of identical frames while someone speaks is a stall
SYNC_MAX_LAG_MS = 120.0  # calibrated: good renders 0-40 ms, audio shifted by 0.2 s measures 160-280 ms
SYNC_MIN_PEAK = 0.35  # calibrated: good renders 0.46-0.70, another video's audio 0.10-0.33
SYNC_SEARCH_S = 2.0
SYNC_MIN_SPEECH_S = 2.0  # less speech than this cannot show a lag reliably
SYNC_MIN_MOUTH_PX = 16  # measured: a 128 px render (mouth 11 px wide) peaks at 0.30, in the range of unrelated audio
SEAM_MAX_MS = 40.0
SEAM_MIN_SIMILARITY = 0.5  # AAC at 128 kb/s keeps a matching window above 0.9
# Lags are searched within +-100 ms: further out, a script that repeats a phrase matches
# itself (Piper speaks the same words the same way), so a larger offset shows instead as a
# window that matches nowhere in reach.
SEAM_SEARCH = SEAM_RATE // 10
START_TOLERANCE_S = 0.005  # one AAC priming slip is 21 ms


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    values: dict = field(default_factory=dict)
    judged: bool = True  # False: measured, but the back end does not claim it, so it cannot fail


def figure(value: float, bound: float, digits: int) -> str:
    """`value` with `digits` decimals, or as many more as it takes to sit on the same side of
    `bound` as it really does: a correlation of 0.3496 against a bound of 0.35 must not read 0.35."""
    text = f"{value:.{digits}f}"
    for d in range(digits, digits + 8):
        text = f"{value:.{d}f}"
        shown = float(text)
        if (shown < bound) == (value < bound) and (shown > bound) == (value > bound):
            break
    return text


@dataclass
class CheckResult:
    video: str
    ok: bool
    findings: list[Finding]
    job: str | None = None

    @property
    def reasons(self) -> list[str]:
        return [f"{f.name}: {f.detail}" for f in self.findings if not f.ok]

    def to_dict(self) -> dict:
        return {"video": self.video, "ok": self.ok, "job": self.job, "findings": [asdict(f) for f in self.findings]}


def check_video(path: Path, job_dir: Path | None = None, expects: dict | None = None) -> CheckResult:
    """Measure `path`; a UsageError when it is missing or not a video at all.

    `expects` is what the back end that made the video claims (engines/avatar.py, traits
    "check"); left out, it is read from the job, and without a job every finding is judged."""
    from talkgen import media
    from talkgen.errors import TalkgenError

    if not path.exists():
        raise UsageError(f"{path} does not exist: give the path of a video")
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give the path of a video")
    try:
        info = media.probe(path)
    except TalkgenError:
        raise UsageError(f"{path} is not a video ffprobe can read: give an MP4 (or any file ffmpeg plays)") from None
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise UsageError(f"{path} has no video stream: give a video file")
    if job_dir is None:
        job_dir = find_job(path)
    elif not (job_dir / "speech.wav").is_file() or not (job_dir / "plan.json").is_file():
        raise UsageError(f"{job_dir} is not a talkgen job directory (no speech.wav and plan.json): pass the --job-dir the render used")

    if expects is None:
        expects = job_expects(job_dir)

    findings: list[Finding] = []
    fps = _rate(video.get("r_frame_rate") or video.get("avg_frame_rate") or "25/1")
    if audio is None:
        findings.append(Finding("streams", False, "no audio stream"))
    else:
        findings.append(Finding("streams", True, f"video {video.get('codec_name')} {video.get('width')}x{video.get('height')} "
                                                 f"at {fps:g} fps, audio {audio.get('codec_name')}"))
    try:
        frames = _measure_frames(path, video, fps)
    except TalkgenError as exc:
        findings.append(Finding("decode", False, f"the video does not decode: {exc}"))
        return _result(path, findings, job_dir)
    samples = None
    if audio is not None:
        try:
            samples = media.decode_audio(path, AUDIO_RATE)
        except TalkgenError as exc:
            findings.append(Finding("decode", False, f"the audio does not decode: {exc}"))
            return _result(path, findings, job_dir)
    expected = int(video.get("nb_read_packets") or video.get("nb_frames") or 0)
    if frames.count == 0 or (expected and frames.count < expected):
        findings.append(Finding("decode", False, f"{frames.count} of {expected} frames decode", {"frames": frames.count, "packets": expected}))
    else:
        findings.append(Finding("decode", True, f"{frames.count} frames and {0 if samples is None else len(samples) / AUDIO_RATE:.2f} s of audio decode",
                                {"frames": frames.count}))
    if samples is None:
        return _result(path, findings, job_dir)

    from talkgen.sync import frame_levels_db

    video_s = frames.count / fps
    # The stream's own duration, as players see it: AAC decoders may hand out the encoder's
    # end padding (up to one 1024-sample frame) as extra samples.
    audio_s = _float(audio.get("duration")) or len(samples) / AUDIO_RATE
    findings.append(_durations(video_s, audio_s, fps))
    findings.append(_start(video, audio))
    levels = frame_levels_db(samples, AUDIO_RATE, fps, frames.count)
    findings.append(_frozen(frames.still, levels, fps))
    findings.append(_lip_sync(frames, levels, fps, expects))
    if job_dir is not None:
        findings.append(_seams(path, job_dir))
    return _result(path, findings, job_dir)


def _result(path: Path, findings: list[Finding], job_dir: Path | None) -> CheckResult:
    return CheckResult(str(path), all(f.ok for f in findings), findings, str(job_dir) if job_dir else None)


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _rate(text: str) -> float:
    num, _, den = text.partition("/")
    try:
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 25.0
    return value if value > 0 else 25.0


def job_expects(job_dir: Path | None) -> dict:
    """What the job's avatar back end claims, as its render recorded it, with the engine's name."""
    if job_dir is None:
        return {}
    try:
        render = json.loads((job_dir / "manifest.json").read_text(encoding="utf-8"))["stages"]["render"]
        return {"engine": render.get("engine", ""), **render.get("extra", {}).get("check_expects", {})}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def find_job(video: Path) -> Path | None:
    """The job that made `video`: the one its render report names, or the job it sits in as final.mp4."""
    report = video.with_name(video.stem + ".report.json")
    candidates = []
    if report.is_file():
        try:
            data = json.loads(report.read_text(encoding="utf-8"))
            if Path(data["artifacts"]["video"]).resolve() == video.resolve():
                candidates.append(Path(data["artifacts"]["job"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if video.name == "final.mp4":
        candidates.append(video.parent)
    for job in candidates:
        if (job / "speech.wav").is_file() and (job / "plan.json").is_file():
            return job
    return None


@dataclass
class _Frames:
    count: int
    still: "np.ndarray"  # bool per frame pair: identical pictures
    motion: "np.ndarray"  # mean difference in the mouth region per frame (the first repeats the second)
    mouth: str  # how the mouth region was found
    mouth_px: float  # the mouth's width in the video's pixels; 0 when no face was found


def _measure_frames(path: Path, video: dict, fps: float) -> _Frames:
    """One pass over small grey frames: which neighbours are identical, and how much the mouth moves."""
    import numpy as np

    from talkgen import media

    (y0, y1, x0, x1), how, mouth_px = _mouth_box(path, video)
    s = DECODE_SIZE
    ry = slice(int(y0 * s), max(int(y0 * s) + 2, int(np.ceil(y1 * s))))
    rx = slice(int(x0 * s), max(int(x0 * s) + 2, int(np.ceil(x1 * s))))
    still, motion = [], []
    prev = None
    count = 0
    for frame in media.gray_frames(path, s):
        count += 1
        cur = frame.astype(np.int16)
        if prev is not None:
            diff = np.abs(cur - prev)
            still.append(float(diff.mean()) < IDENTICAL)
            motion.append(float(diff[ry, rx].mean()))
        prev = cur
    if motion:
        motion.insert(0, motion[0])
    return _Frames(count, np.asarray(still, bool), np.asarray(motion, np.float64), how, mouth_px)


def _mouth_box(path: Path, video: dict) -> tuple[tuple[float, float, float, float], str, float]:
    """The lower face as fractions of the frame (top, bottom, left, right), from the first frame's face,
    how it was found, and the mouth's width in pixels.

    Around the lips and down to the chin, 0.4 mouth widths to each side: what an animated
    jaw moves. Without a face, the lower middle of the frame (and lip sync goes unmeasured).
    """
    from talkgen import media
    from talkgen.errors import TalkgenError

    w, h = int(video.get("width") or 0), int(video.get("height") or 0)
    try:
        from talkgen.face import NoFaceError, find_landmarks

        m = find_landmarks(media.first_frame(path, w, h), name=str(path))
    except (TalkgenError, ValueError) as exc:
        why = "no face found" if isinstance(exc, NoFaceError) else str(exc)  # or no face finder (OpenCV 5)
        return (0.55, 0.9, 0.3, 0.7), f"{why}: the lower middle of the frame", 0.0
    mw = max(4.0, m.mouth_right[0] - m.mouth_left[0])
    top = max(0.0, (m.upper_lip_top - 0.3 * mw) / h)
    bottom = min(1.0, max(m.chin_y, m.lower_lip_bottom + 0.3 * mw) / h)
    left = max(0.0, (m.mouth_left[0] - 0.4 * mw) / w)
    right = min(1.0, (m.mouth_right[0] + 0.4 * mw) / w)
    return (top, bottom, left, right), "the face's mouth and jaw", mw


def _durations(video_s: float, audio_s: float, fps: float) -> Finding:
    gap = audio_s - video_s
    values = {"video_s": round(video_s, 3), "audio_s": round(audio_s, 3), "difference_s": round(gap, 3)}
    if abs(gap) <= 1 / fps + 1e-3:
        return Finding("durations", True, f"video {video_s:.3f} s, audio {audio_s:.3f} s", values)
    return Finding("durations", False, f"audio lasts {audio_s:.3f} s but the video {video_s:.3f} s "
                                       f"({figure(abs(gap) * 1000, 1000 / fps + 1, 0)} ms apart, more than one frame)", values)


def _start(video: dict, audio: dict) -> Finding:
    def start(s: dict) -> float:
        try:
            return float(s.get("start_time") or 0.0)
        except ValueError:
            return 0.0

    a, v = start(audio), start(video)
    values = {"audio_start_s": a, "video_start_s": v}
    if abs(a - v) <= START_TOLERANCE_S:
        return Finding("audio start", True, "audio and video start together", values)
    return Finding("audio start", False, f"the audio starts at {a:.3f} s and the video at {v:.3f} s", values)


def _frozen(still, levels, fps: float) -> Finding:
    import numpy as np

    worst, worst_at, run_start = 0, 0, None
    flags = list(still) + [False]
    for i, same in enumerate(flags):
        if same and run_start is None:
            run_start = i
        elif not same and run_start is not None:
            # Pair i-1 joins frames i-1 and i, so the run shows frames run_start..i.
            frames = i - run_start + 1
            spoken = float(np.mean(levels[run_start : i + 1] > SILENCE_DB)) if len(levels) else 0.0
            if spoken >= 0.5 and frames > worst:
                worst, worst_at = frames, run_start
            run_start = None
    values = {"longest_frozen_s": round(worst / fps, 3), "at_s": round(worst_at / fps, 3), "bound_s": FROZEN_S}
    if worst / fps > FROZEN_S:
        return Finding("frozen frames", False, f"the picture stands still for {figure(worst / fps, FROZEN_S, 2)} s at {worst_at / fps:.2f} s "
                                               f"while there is speech (bound {FROZEN_S:g} s)", values)
    return Finding("frozen frames", True, f"no still picture longer than {FROZEN_S:g} s during speech", values)


def _lip_sync(frames: _Frames, levels, fps: float, expects: dict | None = None) -> Finding:
    import numpy as np

    from talkgen.sync import mouth_lag

    expects = expects or {}
    min_peak = float(expects.get("lip_sync_min_peak", SYNC_MIN_PEAK))
    max_lag = float(expects.get("lip_sync_max_lag_ms", SYNC_MAX_LAG_MS))
    speech_s = float(np.sum(levels > SILENCE_DB)) / fps
    values = {"speech_s": round(speech_s, 2), "mouth_region": frames.mouth, "max_lag_ms": max_lag, "min_peak": min_peak}
    if speech_s < SYNC_MIN_SPEECH_S or len(frames.motion) < 3 * fps:
        return Finding("lip sync", True, f"not measured: {speech_s:.1f} s of speech is too little to show a lag", values)
    # Motion in an unseen or tiny mouth does not separate sync from chance (calibration: docs/check.md).
    if not frames.mouth_px:
        return Finding("lip sync", True, "not measured: no face found in the first frame", values)
    if frames.mouth_px < SYNC_MIN_MOUTH_PX:
        return Finding("lip sync", True, f"not measured: the mouth is {frames.mouth_px:.0f} px wide, under the "
                                         f"{SYNC_MIN_MOUTH_PX} px that lip sync can be measured at", values)
    if float(np.std(frames.motion)) < 1e-6:
        finding = Finding("lip sync", False, "the mouth region never moves while the audio has speech", values)
    else:
        lag = mouth_lag(frames.motion, levels, fps, SYNC_SEARCH_S)
        values.update(lag_ms=round(lag.lag_ms, 1), peak=round(lag.peak, 3), at_zero=round(lag.at_zero, 3))
        finding = judge_sync(lag.lag_ms, lag.peak, min_peak, max_lag, frames.mouth, values)
    if expects.get("lip_sync", True):
        return finding
    # Measured all the same, so a back end that starts to claim lip sync can be calibrated from its reports.
    who = f"render.engine={expects['engine']}" if expects.get("engine") else "the back end that made it"
    return Finding("lip sync", True, f"not judged: {who} does not claim lip sync (measured: {finding.detail})",
                   {**values, "judged": False}, judged=False)


def judge_sync(lag_ms: float, peak: float, min_peak: float, max_lag_ms: float, region: str, values: dict) -> Finding:
    """The lip-sync verdict on a measured lag and correlation peak, against the back end's bounds."""
    where = "after" if lag_ms > 0 else "before"
    if peak < min_peak:
        return Finding("lip sync", False, f"the mouth does not move with the speech (best correlation {figure(peak, min_peak, 2)}, "
                                          f"needs {min_peak:g}; region: {region})", values)
    if abs(lag_ms) > max_lag_ms:
        return Finding("lip sync", False, f"the mouth moves {figure(abs(lag_ms), max_lag_ms, 0)} ms {where} the sound "
                                          f"(bound {max_lag_ms:g} ms; correlation {peak:.2f})", values)
    return Finding("lip sync", True, f"mouth and voice line up within {figure(abs(lag_ms), max_lag_ms, 0)} ms "
                                     f"(correlation {figure(peak, min_peak, 2)})", values)


def _seams(path: Path, job_dir: Path) -> Finding:
    """The video's audio against the job's speech.wav at every chunk join, within SEAM_MAX_MS."""
    from talkgen import media
    from talkgen.chunks import Plan
    from talkgen.sync import audio_lag_ms

    try:
        plan = Plan.load(job_dir / "plan.json")
        fps, seams = plan.fps, plan.seams()
    except (OSError, ValueError, KeyError, TypeError):
        return Finding("seams", False, f"{job_dir / 'plan.json'} is unreadable: render again to rebuild the job")
    ref = media.decode_audio(job_dir / "speech.wav", SEAM_RATE)
    got = media.decode_audio(path, SEAM_RATE)
    # Seams sit in pauses; the half-second window either side reaches the speech around them.
    points = seams or [plan.total_frames // 2]
    found = [(f, audio_lag_ms(ref, got, SEAM_RATE, f * SEAM_RATE // fps, SEAM_RATE // 2, SEAM_SEARCH)) for f in points]
    measured = [(f, m[0], m[1]) for f, m in found if m is not None]
    values = {"job": str(job_dir), "seams": len(seams), "lags_ms": [round(x, 1) for _, x, _ in measured],
              "similarity": [round(x, 3) for _, _, x in measured], "bound_ms": SEAM_MAX_MS}
    if not measured:
        return Finding("seams", True, "no speech near any seam to compare", values)
    frame, worst, _ = max(measured, key=lambda p: abs(p[1]))
    values["max_lag_ms"] = round(worst, 1)
    unlike = [f for f, _, sim in measured if sim < SEAM_MIN_SIMILARITY]
    if unlike:
        return Finding("seams", False, f"the audio around frame {unlike[0]} matches the job's speech.wav nowhere within "
                                       f"100 ms (similarity {figure(min(x for _, _, x in measured), SEAM_MIN_SIMILARITY, 2)}): it is further off, "
                                       "or not this job's video", values)
    if abs(worst) > SEAM_MAX_MS:
        return Finding("seams", False, f"the audio is {figure(abs(worst), SEAM_MAX_MS, 0)} ms off the job's speech.wav at frame {frame} "
                                       f"(bound {SEAM_MAX_MS:g} ms)", values)
    what = f"{len(seams)} seams" if seams else "one chunk"
    return Finding("seams", True, f"the audio matches the job's speech.wav within {figure(abs(worst), SEAM_MAX_MS, 0)} ms ({what})", values)
