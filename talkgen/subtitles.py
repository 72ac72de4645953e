"""Subtitles (SRT) timed from the speech alignment: one cue per sentence or part of one."""

from __future__ import annotations

from pathlib import Path

from talkgen.job import atomic_path
from talkgen.speech import Sentence

MAX_LINE = 42
MAX_LINES = 2


def cues(sentences: list[Sentence], sample_rate: int) -> list[tuple[float, float, str]]:
    out = []
    for s in sentences:
        for words in _split(s.words):
            start = words[0][1] / sample_rate
            end = words[-1][2] / sample_rate
            out.append((start, max(end, start + 0.2), _wrap(" ".join(w for w, _, _ in words))))
    # Never overlap: a cue ends where the next begins.
    for i in range(len(out) - 1):
        if out[i][1] > out[i + 1][0]:
            out[i] = (out[i][0], out[i + 1][0], out[i][2])
    return out


def _split(words: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """Cut a long sentence into the fewest pieces that fit, of about equal length.

    Equal pieces avoid a dangling last cue of one or two words.
    """
    limit = MAX_LINE * MAX_LINES
    total = sum(len(w[0]) + 1 for w in words) - 1
    pieces_needed = max(1, -(-total // limit))
    while True:
        target = total / pieces_needed
        pieces, cur, length = [], [], 0
        for w in words:
            extra = len(w[0]) + (1 if cur else 0)
            if cur and (length + extra > limit or (length >= target and len(pieces) < pieces_needed - 1)):
                pieces.append(cur)
                cur, length, extra = [], 0, len(w[0])
            cur.append(w)
            length += extra
        if cur:
            pieces.append(cur)
        if len(pieces) <= pieces_needed or pieces_needed >= len(words):
            return pieces
        pieces_needed += 1


def _wrap(text: str) -> str:
    if len(text) <= MAX_LINE:
        return text
    words = text.split()
    best, best_cost = text, None
    for i in range(1, len(words)):
        a, b = " ".join(words[:i]), " ".join(words[i:])
        cost = max(len(a), len(b))
        if best_cost is None or cost < best_cost:
            best, best_cost = f"{a}\n{b}", cost
    return best


def _stamp(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(path: Path, sentences: list[Sentence], sample_rate: int) -> None:
    blocks = [f"{i}\n{_stamp(a)} --> {_stamp(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues(sentences, sample_rate), 1)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(blocks), encoding="utf-8")
