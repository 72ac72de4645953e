"""speak: script text -> speech.wav + alignment.json, piece by piece, streamed to disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from talkgen.engines.tts import TTSEngine
from talkgen.job import atomic_path, write_json_atomic
from talkgen.speech import SILENT_SYMBOLS, LiveTrack, WavWriter
from talkgen.stages import Context, Stage
from talkgen.text.normalize import normalize
from talkgen.text.script import has_words

if TYPE_CHECKING:
    from talkgen.job import StageRecord

# The code that makes the speech, for the stage's cache key (talkgen.job.code_hash); the voice's own module is added to it.
MADE_BY = (__name__, "talkgen.stages.voice", "talkgen.text")
LEAD_IN_S = 0.2
TAIL_S = 0.4


def speak(
    text: str | Iterable[tuple[int, str, bool]],
    tts: TTSEngine,
    wav_path: Path,
    alignment_path: Path,
    sentence_pause_s: float,
    paragraph_pause_s: float,
    progress: Callable[[int, int], None] | None = None,
    track: LiveTrack | None = None,
) -> dict:
    """Speak `text` (or its pieces as they come: (paragraph, piece, whether it ends a sentence), as
    stages.put_text gives them); return the alignment dict that is also written to alignment_path.
    The voice says one piece at a time (text.script.pieces: a paragraph's first sentence in phrases).
    With `track`, each piece is readable there as soon as it is written, each sentence's record once
    it ends, and the track is whole once the file is in place."""
    from talkgen.speech import Sentence
    from talkgen.text.script import text_pieces

    if isinstance(text, str):
        items: Iterable[tuple[int, str, bool]] = text_pieces(text)
        total = sum(last for _, _, last in items)
    else:
        items, total = text, 0  # not known until the text has all come
    sr = tts.sample_rate
    done = 0
    out_sentences: list[dict] = []
    phonemes: list[list] = []
    aligned = True
    last_paragraph = None
    parts: list[str] = []  # the pieces of the sentence being said
    with atomic_path(wav_path) as tmp:
        writer = WavWriter(tmp, sr)
        try:
            if track is not None:
                track.attach(tmp)
            writer.silence(int(LEAD_IN_S * sr))
            for pi, piece, ends in items:
                if not parts:
                    if last_paragraph is not None:
                        writer.silence(int((paragraph_pause_s if pi != last_paragraph else sentence_pause_s) * sr))
                    last_paragraph = pi
                    start = writer.samples
                    sentence_phonemes: list[list] = []
                    spoken_parts: list[str] = []
                    sentence_aligned = True
                parts.append(piece)
                spoken = normalize(piece)
                spoken_parts.append(spoken)
                said_from = len(sentence_phonemes)
                if has_words(spoken):
                    for part in tts.speak(spoken):
                        sentence_aligned = sentence_aligned and getattr(part, "aligned", True)
                        pos = writer.samples
                        for symbol, n in part.phonemes:
                            sentence_phonemes.append([symbol, pos, int(n)])
                            pos += int(n)
                        writer.write(part.audio)
                record = None
                if ends:
                    aligned = aligned and sentence_aligned
                    if writer.samples > start:
                        phonemes.extend(sentence_phonemes)
                        sentence = " ".join(parts)
                        record = {"text": sentence, "spoken": " ".join(spoken_parts), "paragraph": pi, "start": start,
                                  "end": writer.samples, "words": _words(sentence, sentence_phonemes, start, writer.samples)}
                        out_sentences.append(record)
                    parts = []
                    done += 1
                if track is not None:
                    writer.flush()
                    track.grow(writer.samples, [Sentence.from_dict(record)] if record else (),
                               [tuple(p) for p in sentence_phonemes[said_from:]], sentence_aligned)
                if ends and progress:
                    progress(done, total)
            if parts:
                raise ValueError(f"the text ended inside a sentence, after {' '.join(parts)!r}")
            writer.silence(int(TAIL_S * sr))
        finally:
            writer.close()
    if not out_sentences:
        from talkgen.errors import UsageError

        raise UsageError("the script has nothing a voice can say (no letters or digits)")
    alignment = {"sample_rate": sr, "samples": writer.samples, "sentences": out_sentences, "phonemes": phonemes,
                 "aligned": aligned}
    write_json_atomic(alignment_path, alignment)
    if track is not None:
        track.finish(wav_path, writer.samples)
    return alignment


def _words(text: str, phonemes: list[list], start: int, end: int) -> list[list]:
    """Time each written word from the phoneme stream's word breaks.

    espeak may read one written word as several ("42" -> "forty two"), so when the
    counts differ the spoken span is shared out in proportion to word length.
    """
    written = text.split()
    spans: list[tuple[int, int]] = []
    cur: int | None = None
    last = start
    for symbol, pos, n in phonemes:
        if symbol in SILENT_SYMBOLS:
            if cur is not None:
                spans.append((cur, last))
                cur = None
        else:
            if cur is None:
                cur = pos
            last = pos + n
    if cur is not None:
        spans.append((cur, last))
    if len(spans) == len(written):
        return [[w, s, e] for w, (s, e) in zip(written, spans)]
    lo = spans[0][0] if spans else start
    hi = spans[-1][1] if spans else end
    weights = [len(w) + 1 for w in written]
    total = sum(weights) or 1
    out, acc = [], 0
    for w, wt in zip(written, weights):
        s = lo + (hi - lo) * acc // total
        acc += wt
        out.append([w, s, lo + (hi - lo) * acc // total])
    return out


# -- the stage ---------------------------------------------------------------------------

def _key(ctx: Context) -> str:
    from talkgen.engines.registry import module_of, output_settings
    from talkgen.engines.tts import tts_identity
    from talkgen.job import cache_key, code_hash

    c = ctx.recipe.tts
    extra = {}
    if c.engine == "f5-tts":
        from talkgen.engines import f5_tts
        from talkgen.engines.stt import stt_identity

        if not f5_tts.voice_text(c):  # the transcript talkgen makes of the voice depends on the STT engine
            extra["voice_stt"] = stt_identity(ctx.recipe.stt)
    return cache_key(text=ctx.spoken_key(), tts=tts_identity(c), settings=output_settings("tts", c),
                     pauses=[c.sentence_pause_s, c.paragraph_pause_s], **extra,
                     talkgen=code_hash(*MADE_BY, module_of("tts", c.engine)))


def _run(ctx: Context) -> StageRecord:
    from talkgen.job import StageRecord

    c = ctx.recipe.tts
    if not ctx.source.say and c.device == "cpu":
        # A voice on the CPU loads in a second or less, and has nothing to say before the LLM's first
        # sentence: loaded beside the LLM's import (seconds of Python holding the interpreter), it
        # would only slow that down. It loads while the LLM writes its first sentence.
        ctx.feeds.writer.wait()
    tts = ctx.engines.tts(c, ctx.recipe.stt, ctx.recipe.name, fresh=True)  # the same speech as a render of its own
    if hasattr(tts, "ready"):
        # Text still being written when the voice starts is written beside it (the LLM, on a core of its own).
        # Stages side by side (--live): the render and its encoders share the cores, so the voice's
        # threads sleep when idle. Measured on 2 cores, 8 runs each, `render --say --live` of the
        # example script: first segment 1.46 -> 1.26 s median, the whole render 5.73 -> 5.18 s.
        tts.ready(threads=0 if ctx.feeds.text.closed else 1, spin=not ctx.overlapped)
    reference = getattr(tts, "reference", None)
    track = LiveTrack(tts.sample_rate)
    ctx.feeds.speech.set(track)
    text = ctx.feeds.text
    ctx.progress.stage("speak", sum(last for _, _, last in text.so_far()) if text.closed else None, "sentences")
    try:
        speak(iter(ctx.feeds.text), tts, ctx.job.path("speech.wav"), ctx.job.path("alignment.json"), c.sentence_pause_s,
              c.paragraph_pause_s, progress=lambda done, total: ctx.progress.advance(1, "speak"), track=track)
    except BaseException as exc:
        track.fail(exc)
        raise
    return StageRecord(key="", outputs=ctx.job.output_hashes(["speech.wav", "alignment.json"]), device=c.device,
                       extra={"voice_text": reference.text} if reference else {})


def _load(ctx: Context) -> None:
    from talkgen.speech import SpeechTrack

    ctx.feeds.speech.set(SpeechTrack.load(ctx.job.path("speech.wav"), ctx.job.path("alignment.json")))


def _engine(ctx: Context) -> tuple[str, str]:
    from talkgen.engines.tts import tts_identity

    ident = tts_identity(ctx.recipe.tts)
    return ctx.recipe.tts.engine, ident.get("piper") or ident.get("f5_tts", "")


STAGE = Stage("speak", reads=("input", "transcribe", "reply"), writes=("speech.wav", "alignment.json"), roles=("tts",),
              kept="the speech", applies=lambda source: True, key=_key, run=_run, load=_load, engine=_engine)
