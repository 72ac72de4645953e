"""The speech-to-text protocol: 16 kHz mono audio in, text with word timings out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16000


@dataclass
class Transcript:
    text: str
    language: str
    words: list[tuple[str, float, float]] = field(default_factory=list)  # seconds from the piece's start


class STTEngine(Protocol):
    def identity(self) -> dict: ...

    def transcribe(self, audio: "np.ndarray") -> Transcript:
        """Transcribe 16 kHz mono float32 audio of at most a few tens of seconds."""
        ...


ENGINES = ("faster-whisper", "openai-whisper")


def _check(config) -> None:
    if config.engine not in ENGINES:
        from talkgen.errors import UsageError

        raise UsageError(f"unknown stt.engine '{config.engine}': the available engines are {', '.join(ENGINES)}")


def stt_identity(config) -> dict:
    _check(config)
    if config.engine == "openai-whisper":
        from talkgen.engines import openai_whisper_stt

        return openai_whisper_stt.identity(config)
    from talkgen.engines import faster_whisper_stt

    return faster_whisper_stt.identity(config)


def load_stt(config, recipe: str = "cpu") -> STTEngine:
    _check(config)
    if config.engine == "openai-whisper":
        from talkgen.engines.openai_whisper_stt import OpenAIWhisperSTT

        return OpenAIWhisperSTT(config, recipe)
    from talkgen.engines.faster_whisper_stt import FasterWhisperSTT

    return FasterWhisperSTT(config)
