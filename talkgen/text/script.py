"""Reading a script file and cutting it into paragraphs and sentences."""

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
