"""The text-to-speech protocol: text in, audio plus per-phoneme timing out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

if TYPE_CHECKING:
    import numpy as np


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


ENGINES = ("piper", "f5-tts")


def _check(config) -> None:
    from talkgen.errors import UsageError

    if config.engine not in ENGINES:
        raise UsageError(f"unknown tts.engine '{config.engine}': the available engines are {', '.join(ENGINES)}")
    if config.engine == "piper" and config.device != "cpu":
        raise UsageError(f"piper runs on the CPU only: set placement.tts=cpu (it is {config.device})")


def tts_identity(config) -> dict:
    """The engine's identity for cache keys, known without loading the model."""
    _check(config)
    if config.engine == "f5-tts":
        from talkgen.engines import f5_tts
        from talkgen.job import sha256_file

        return f5_tts.identity(config, sha256_file(f5_tts.voice_path(config)))
    from talkgen.engines import piper_tts

    return piper_tts.identity(config)


def load_tts(config, reference=None, recipe: str = "cpu") -> TTSEngine:
    """Load the engine; f5-tts also takes the voice to clone (see engines/f5_tts.py: Reference)."""
    _check(config)
    if config.engine == "f5-tts":
        from talkgen.engines.f5_tts import F5TTS

        return F5TTS(config, reference, recipe)
    from talkgen.engines.piper_tts import PiperTTS

    return PiperTTS(config)
