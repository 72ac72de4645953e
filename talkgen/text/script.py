"""Reading a script file and cutting it into paragraphs, sentences and the pieces the voice says."""

from __future__ import annotations

import locale
import re
from pathlib import Path

from talkgen.errors import UsageError

ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "approx", "inc", "ltd", "co", "mt",
                 "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}


def has_words(text: str) -> bool:
    """Whether text has anything a voice can say: a letter or a digit in any script. One rule
    for the transcript, the reply, the voice's reference text and each sentence spoken."""
    return any(c.isalnum() for c in text)


def read_script(path: Path) -> str:
    """Read a text script: UTF-8, then the locale's encoding, then cp1252; refuse binaries."""
    if not path.exists():
        raise UsageError(f"script {path} does not exist")
    if path.is_dir():
        raise UsageError(f"script {path} is a folder: pass a text file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read script {path}: {exc.strerror}") from None
    if not raw:
        raise UsageError(f"script {path} is empty: write what the avatar should say")
    if b"\x00" in raw[:8192] or _looks_binary(raw[:8192]):
        raise UsageError(f"script {path} looks like a binary file, not text: pass a UTF-8 text file")
    text = None
    for encoding in _encodings():
        try:
            text = raw.decode(encoding)
            break
        except (UnicodeDecodeError, LookupError):
            continue
    if text is None:
        raise UsageError(f"script {path} is not UTF-8, {locale.getpreferredencoding(False)} or cp1252 text: save it as UTF-8")
    if not text.strip():
        raise UsageError(f"script {path} holds only whitespace: write what the avatar should say")
    return text


def _encodings() -> list[str]:
    out = ["utf-8-sig"]
    pref = locale.getpreferredencoding(False)
    if pref and pref.lower().replace("-", "") not in ("utf8", "ascii", "ansi_x3.41968"):
        out.append(pref)
    out.append("cp1252")
    return out


def _looks_binary(sample: bytes) -> bool:
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return controls > max(2, len(sample) // 100)


def paragraphs(text: str) -> list[str]:
    """Paragraphs are separated by blank lines; lines inside one are joined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = re.split(r"\n\s*\n", text)
    return [" ".join(p.split()) for p in parts if p.strip()]


_SPLIT = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]*[A-Z0-9À-Ý])")


def sentences(paragraph: str) -> list[str]:
    """Split at sentence ends, but not after a known abbreviation or an initial."""
    out: list[str] = []
    start = 0
    for m in _SPLIT.finditer(paragraph):
        before = paragraph[start : m.start()].rstrip("\"'”’)]")
        last = before.split()[-1] if before.split() else ""
        word = last.rstrip(".!?…").lower()
        if last.endswith(".") and (word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue
        out.append(paragraph[start : m.start()].strip())
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


# The first sentence of a paragraph (of a reply: each turn is one) is said in phrases, so that
# the voice can start while the LLM is still writing it: a live video waits for nothing else so
# long (a small LLM's first sentence is often 20 to 30 words, two seconds of its writing on a
# busy CPU). A phrase ends after a comma, semicolon, colon or dash once it has PHRASE_MIN_WORDS words;
# the first may also end before a joining word (JOINING: "and", "which", "from" ...) once it has
# FIRST_PHRASE_MIN_WORDS, about the second and a half of speech the first chunk needs. Each cut
# leaves PHRASE_MIN_AFTER words or more after it. The sentences after the first are said whole,
# for their intonation, while the first plays. The cuts are the same whether the text comes at
# once or is streamed.
PHRASE_MIN_WORDS = 3
FIRST_PHRASE_MIN_WORDS = 5
PHRASE_MIN_AFTER = 3
PHRASE_END = (",", ";", ":", "–", "—")  # and a hyphen standing alone as a dash, not one ending a word ("x- and y-axis")
JOINING = frozenset(
    "and but or so because which who whose whom when where while with without by from in on at for to of using about "
    "into through if until after before since although unless whether".split())


def _ends_phrase(word: str) -> bool:
    return word.endswith(PHRASE_END) or word == "-"


def _joins(word: str) -> bool:
    return word.strip("\"'“”‘’()[]").lower() in JOINING


def phrase_cuts(words: list[str]) -> list[int]:
    """Where a sentence of these words is cut into phrases: the number of words before each cut.
    Given only the sentence's first words, it gives the cuts they already decide: a cut waits for
    PHRASE_MIN_AFTER words after it, and every cut after it waits longer."""
    cuts, start = [], 0
    for i in range(1, len(words)):
        if len(words) - i < PHRASE_MIN_AFTER:
            break
        ends = i - start >= PHRASE_MIN_WORDS and _ends_phrase(words[i - 1])
        joins = not cuts and i >= FIRST_PHRASE_MIN_WORDS and _joins(words[i])
        if ends or joins:
            cuts.append(i)
            start = i
    return cuts


def phrases(sentence: str) -> list[str]:
    """The sentence in the pieces phrase_cuts makes; joined with spaces, they are the sentence."""
    words = sentence.split()
    bounds = [0, *phrase_cuts(words), len(words)]
    return [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]


def pieces(paragraph: str) -> list[tuple[str, bool]]:
    """What the voice says of a paragraph, one piece at a time: (piece, whether it ends a sentence)."""
    return pieces_of(sentences(paragraph))


def pieces_of(sentence_list: list[str]) -> list[tuple[str, bool]]:
    """The pieces of a paragraph's sentences (or its first ones): the first in phrases, the rest whole."""
    out: list[tuple[str, bool]] = []
    for k, sentence in enumerate(sentence_list):
        parts = phrases(sentence) if k == 0 else [sentence]
        out += [(part, i == len(parts) - 1) for i, part in enumerate(parts)]
    return out


def text_pieces(text: str) -> list[tuple[int, str, bool]]:
    """Everything the voice says of a text, in order: (paragraph, piece, whether it ends a sentence)."""
    return [(i, piece, last) for i, paragraph in enumerate(paragraphs(text)) for piece, last in pieces(paragraph)]
