"""The text-to-speech protocol: text in, audio plus per-phoneme timing out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Speech:
    """One sentence of speech: mono float32 audio and its phonemes as (symbol, samples)."""

    audio: "np.ndarray"
    phonemes: list[tuple[str, int]]


class TTSEngine(Protocol):
    sample_rate: int

    def identity(self) -> dict:
        """What the cache key needs to know: engine, voice, version, settings."""
        ...

    def speak(self, text: str) -> Iterator[Speech]:
        """Speak already-normalised text; one item per sentence the engine makes of it."""
        ...


ENGINES = ("piper",)


def _check(config) -> None:
    if config.engine not in ENGINES:
        from talkgen.errors import UsageError

        raise UsageError(f"unknown tts.engine '{config.engine}': the available engines are {', '.join(ENGINES)}")


def tts_identity(config) -> dict:
    """The engine's identity for cache keys, known without loading the model."""
    _check(config)
    from talkgen.engines import piper_tts

    return piper_tts.identity(config)


def load_tts(config) -> TTSEngine:
    _check(config)
    from talkgen.engines.piper_tts import PiperTTS

    return PiperTTS(config)
