"""The text-to-speech protocol: text in, audio plus per-phoneme timing out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

from talkgen.engines.registry import checked

if TYPE_CHECKING:
    import numpy as np

    from talkgen.engines.f5_tts import Reference
    from talkgen.recipe import TTSConfig


@dataclass
class Speech:
    """One sentence of speech: mono float32 audio and its phonemes as (symbol, samples).

    aligned says whether those durations were measured by the engine (Piper's alignment) or
    only spread over the audio (F5-TTS); the puppet reads mouth shapes only from the former.
    """

    audio: "np.ndarray"
    phonemes: list[tuple[str, int]]
    aligned: bool = True


class TTSEngine(Protocol):
    sample_rate: int

    def identity(self) -> dict:
        """What the cache key needs to know: engine, voice, version, settings."""
        ...

    def speak(self, text: str) -> Iterator[Speech]:
        """Speak already-normalised text; one item per sentence the engine makes of it."""
        ...


def tts_identity(config: TTSConfig) -> dict:
    """The engine's identity for cache keys, known without loading the model."""
    return checked("tts", config).identity(config)


def load_tts(config: TTSConfig, reference: Reference | None = None, recipe: str = "cpu") -> TTSEngine:
    """Load the engine; f5-tts also takes the voice to clone (see engines/f5_tts.py: Reference)."""
    return checked("tts", config).load(config, reference, recipe)
