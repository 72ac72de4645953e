"""speak: script text -> speech.wav + alignment.json, paragraph by paragraph, streamed to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from talkgen.engines.tts import TTSEngine
from talkgen.job import atomic_path, write_json_atomic
from talkgen.speech import SILENT_SYMBOLS, WavWriter
from talkgen.text.normalize import normalize
from talkgen.text.script import has_words, paragraphs, sentences

# The code that makes the speech, for the stage's cache key (talkgen.job.code_hash); the voice's own module is added to it.
MADE_BY = (__name__, "talkgen.stages.voice", "talkgen.text")
LEAD_IN_S = 0.2
TAIL_S = 0.4


def speak(
    text: str,
    tts: TTSEngine,
    wav_path: Path,
    alignment_path: Path,
    sentence_pause_s: float,
    paragraph_pause_s: float,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Speak `text`; return the alignment dict that is also written to alignment_path."""
    sr = tts.sample_rate
    paras = [sentences(p) for p in paragraphs(text)]
    total = sum(len(p) for p in paras)
    done = 0
    out_sentences: list[dict] = []
    phonemes: list[list] = []
    aligned = True
    with atomic_path(wav_path) as tmp:
        writer = WavWriter(tmp, sr)
        try:
            writer.silence(int(LEAD_IN_S * sr))
            for pi, para in enumerate(paras):
                if pi:
                    writer.silence(int(paragraph_pause_s * sr))
                for si, sentence in enumerate(para):
                    if si:
                        writer.silence(int(sentence_pause_s * sr))
                    spoken = normalize(sentence)
                    start = writer.samples
                    sentence_phonemes: list[list] = []
                    if has_words(spoken):
                        for part in tts.speak(spoken):
                            aligned = aligned and getattr(part, "aligned", True)
                            pos = writer.samples
                            for symbol, n in part.phonemes:
                                sentence_phonemes.append([symbol, pos, int(n)])
                                pos += int(n)
                            writer.write(part.audio)
                    if writer.samples > start:
                        phonemes.extend(sentence_phonemes)
                        out_sentences.append(
                            {
                                "text": sentence,
                                "spoken": spoken,
                                "paragraph": pi,
                                "start": start,
                                "end": writer.samples,
                                "words": _words(sentence, sentence_phonemes, start, writer.samples),
                            }
                        )
                    done += 1
                    if progress:
                        progress(done, total)
            writer.silence(int(TAIL_S * sr))
        finally:
            writer.close()
    if not out_sentences:
        from talkgen.errors import UsageError

        raise UsageError("the script has nothing a voice can say (no letters or digits)")
    alignment = {"sample_rate": sr, "samples": writer.samples, "sentences": out_sentences, "phonemes": phonemes,
                 "aligned": aligned}
    write_json_atomic(alignment_path, alignment)
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
