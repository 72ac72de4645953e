"""transcribe: a recording -> transcript.json (text, language, word timings).

The audio is decoded as a stream and fed through Silero VAD; silence before the first
and after the last speech is trimmed, and speech is handed to Whisper in pieces of at
most `piece_s`, cut in the longest silence available, so memory stays bounded however
long the recording is. VAD runs in a thread ahead of Whisper: on two cores the two
overlap (a minute of speech: 0.114 x real time one after the other, about 0.07 together).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from talkgen import media
from talkgen.engines.silero_vad import WINDOW
from talkgen.engines.stt import SAMPLE_RATE
from talkgen.errors import UsageError
from talkgen.job import write_json_atomic
from talkgen.stages import Context, Stage, put_text
from talkgen.text.script import has_words

if TYPE_CHECKING:
    import numpy as np

    from talkgen.job import StageRecord

    from talkgen.engines.silero_vad import VAD
    from talkgen.engines.stt import STTEngine

# The code that makes transcript.json, for the stage's cache key (talkgen.job.code_hash); the STT engine's module is added to it.
MADE_BY = (__name__, "talkgen.engines.silero_vad")
MARGIN = int(0.25 * SAMPLE_RATE)  # kept around speech so the first and last words are not clipped


@dataclass
class SpeechSpan:
    first: int | None = None  # sample where speech starts
    last: int | None = None  # sample where it ends
    end: int = 0  # where the kept audio ends (last + margin, within the recording)


def speech_pieces(
    audio_path: Path, vad: VAD, piece_s: float, threshold: float, span: SpeechSpan, progress: Callable[[float], None] | None = None
) -> Iterator[tuple["np.ndarray", int]]:
    """Yield (audio, start_sample) pieces that hold speech, trimmed and cut at silences."""
    import numpy as np

    piece = int(piece_s * SAMPLE_RATE) // WINDOW * WINDOW
    buf = np.zeros(0, np.float32)  # samples from buf_start on
    flags = np.zeros(0, bool)  # speech flag per whole window of buf
    buf_start = 0
    pending = np.zeros(0, np.float32)
    for block in media.stream_audio(audio_path, SAMPLE_RATE, SAMPLE_RATE * 4):
        if progress:
            progress(len(block) / SAMPLE_RATE)
        pending = np.concatenate([pending, block])
        usable = len(pending) // WINDOW * WINDOW
        if not usable:
            continue
        chunk, pending = pending[:usable], pending[usable:]
        speech = vad.probabilities(chunk) >= threshold
        chunk_start = buf_start + len(buf)
        buf = np.concatenate([buf, chunk])
        flags = np.concatenate([flags, speech])
        if speech.any():
            idx = np.flatnonzero(speech)
            if span.first is None:
                span.first = chunk_start + int(idx[0]) * WINDOW
                # Trim the leading silence, keeping a margin before the first word.
                drop = max(0, span.first - MARGIN - buf_start) // WINDOW * WINDOW
                buf, flags, buf_start = buf[drop:], flags[drop // WINDOW :], buf_start + drop
            span.last = chunk_start + (int(idx[-1]) + 1) * WINDOW
        if span.first is None:
            # Nothing said yet: keep only a margin's worth of the silence before speech.
            keep = min(len(buf), MARGIN // WINDOW * WINDOW)
            buf_start += len(buf) - keep
            buf, flags = buf[len(buf) - keep :], flags[len(flags) - keep // WINDOW :]
            continue
        while len(buf) >= piece:
            cut = _cut(flags, piece // WINDOW) * WINDOW
            if flags[: cut // WINDOW].any():
                yield buf[:cut], buf_start
            buf, flags, buf_start = buf[cut:], flags[cut // WINDOW :], buf_start + cut
    if span.first is None:
        return
    span.end = min(buf_start + len(buf), span.last + MARGIN)
    if span.last > buf_start:
        yield buf[: span.end - buf_start], buf_start  # trailing silence past the margin is dropped


def ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Run a generator in a thread, `depth` items ahead of its consumer; its errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put((done, exc))

    thread = threading.Thread(target=produce, name="talkgen-vad", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def transcribe(
    audio_path: Path,
    stt: "STTEngine",
    vad: VAD,
    out_path: Path,
    piece_s: float,
    threshold: float,
    progress: Callable[[float], None] | None = None,
) -> dict:
    span = SpeechSpan()
    words: list[list] = []
    texts: list[str] = []
    language = ""
    pieces = 0
    for audio, start in ahead(speech_pieces(audio_path, vad, piece_s, threshold, span, progress)):
        result = stt.transcribe(audio)
        pieces += 1
        language = language or result.language
        if result.text:
            texts.append(result.text)
        for w, a, b in result.words:
            words.append([w, round(start / SAMPLE_RATE + a, 3), round(start / SAMPLE_RATE + b, 3)])
    if span.first is None:
        raise UsageError(f"no speech found in {audio_path.name}: record the question again, closer to the microphone")
    text = " ".join(texts).strip()
    # A recognizer can answer with only punctuation or a music sign; that is no words either, and
    # saying so here is clearer than the speak stage's later "nothing a voice can say".
    if not has_words(text):
        raise UsageError(f"no speech found in {audio_path.name}: the recognizer heard no words")
    result = {
        "text": text,
        "language": language,
        "speech_start_s": round(max(0, span.first - MARGIN) / SAMPLE_RATE, 3),
        "speech_end_s": round(span.end / SAMPLE_RATE, 3),
        "pieces": pieces,
        "words": words,
    }
    write_json_atomic(out_path, result)
    return result


def _cut(flags: "np.ndarray", limit: int) -> int:
    """Window index to cut a piece at: the middle of the longest silence in its second half."""
    best_len, best_at, run = 0, limit, 0
    for i in range(limit // 2, limit):
        run = run + 1 if not flags[i] else 0
        if run > best_len:
            best_len, best_at = run, i - run // 2
    return best_at if best_len else limit


# -- the stage ---------------------------------------------------------------------------

def _key(ctx: Context) -> str:
    from talkgen.engines.registry import module_of, output_settings
    from talkgen.engines.stt import stt_identity
    from talkgen.job import cache_key, code_hash, sha256_file

    c = ctx.recipe.stt
    return cache_key(audio=sha256_file(ctx.source.path), stt=stt_identity(c), settings=output_settings("stt", c),
                     piece_s=c.piece_s, vad=c.vad_threshold, talkgen=code_hash(*MADE_BY, module_of("stt", c.engine)))


def _run(ctx: Context) -> StageRecord:
    from talkgen.job import StageRecord

    c = ctx.recipe.stt
    duration = media.audio_duration(ctx.source.path)
    stt = ctx.engines.stt(c, ctx.recipe.name)
    ctx.progress.stage("transcribe", round(duration, 1), "s of audio")
    result = transcribe(ctx.source.path, stt, ctx.engines.vad(), ctx.job.path("transcript.json"), c.piece_s, c.vad_threshold,
                        lambda s: ctx.progress.advance(s, "transcribe"))
    _hand_on(ctx, result)
    return StageRecord(key="", device=c.device, outputs=ctx.job.output_hashes(["transcript.json"]),
                       extra={"audio_s": round(duration, 3), "pieces": result["pieces"], "language": result["language"]})


def _load(ctx: Context) -> None:
    import json

    _hand_on(ctx, json.loads(ctx.job.path("transcript.json").read_text(encoding="utf-8")))


def _hand_on(ctx: Context, transcript: dict) -> None:
    ctx.feeds.transcript.set(transcript)
    if ctx.source.say:
        put_text(ctx.feeds.text, transcript["text"])


def _engine(ctx: Context) -> tuple[str, str]:
    from talkgen.engines.stt import stt_identity

    ident = stt_identity(ctx.recipe.stt)
    return ctx.recipe.stt.engine, ident.get("faster_whisper") or ident.get("openai_whisper", "")


STAGE = Stage("transcribe", reads=("input",), writes=("transcript.json",), roles=("stt", "vad"), kept="the transcript",
              applies=lambda source: source.kind == "audio", key=_key, run=_run, load=_load, engine=_engine)
