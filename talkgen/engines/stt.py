"""The speech-to-text protocol: 16 kHz mono audio in, text with word timings out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from talkgen.engines.registry import checked

if TYPE_CHECKING:
    import numpy as np

    from talkgen.recipe import STTConfig

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


def stt_identity(config: STTConfig) -> dict:
    return checked("stt", config).identity(config)


def load_stt(config: STTConfig, recipe: str = "cpu") -> STTEngine:
    return checked("stt", config).load(config, recipe)
