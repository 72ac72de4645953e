"""openai-whisper: large-v3 (or any official name) from the weights manifest, or a checkpoint path.

Never downloads by itself: an official name resolves to the file `talkgen weights pull`
put in weights/whisper/, checked against the sha256 in the manifest (which is the one in
OpenAI's own download URL), and loaded with whisper's own loader (torch.load with
weights_only=True).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.engines.stt import Transcript

if TYPE_CHECKING:
    import numpy as np

OFFICIAL = ("large-v3", "large-v2", "medium", "small", "base", "tiny", "medium.en", "small.en", "base.en", "tiny.en", "turbo")


def checkpoint(config, recipe: str) -> Path:
    from talkgen.errors import UsageError
    from talkgen.weights import require_file

    if config.model in OFFICIAL:
        return require_file(f"whisper-{config.model}", f"{config.model}.pt", recipe)
    path = Path(config.model)
    if not path.is_file():
        raise UsageError(f"stt.model '{config.model}' is neither an official Whisper name ({', '.join(OFFICIAL)}) nor a checkpoint file")
    return path


def identity(config) -> dict:
    model = config.model if config.model in OFFICIAL else str(Path(config.model).resolve())
    return {"engine": "openai-whisper", "openai_whisper": metadata.version("openai-whisper"), "model": model,
            "language": config.language, "device": config.device, "beam_size": config.beam_size}


class OpenAIWhisperSTT:
    def __init__(self, config, recipe: str = "cpu"):
        from talkgen.offline import go_offline

        go_offline()
        import whisper

        self.config = config
        path = checkpoint(config, recipe)
        self.model = whisper.load_model(str(path), device=config.device)
        if config.model in getattr(whisper, "_ALIGNMENT_HEADS", {}):
            # Loaded from a path, whisper would time words from every head of the upper layers;
            # the official models come with the heads that align best.
            self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[config.model])

    def identity(self) -> dict:
        return identity(self.config)

    def transcribe(self, audio: "np.ndarray") -> Transcript:
        import numpy as np
        import whisper

        audio = np.array(audio, dtype=np.float32)  # a writable copy: whisper hands it to torch as is
        result = whisper.transcribe(
            self.model, audio, language=self.config.language or None, word_timestamps=True, temperature=0.0,
            beam_size=self.config.beam_size if self.config.beam_size > 1 else None,
            condition_on_previous_text=False, fp16=self.config.device.startswith("cuda"), verbose=None,
        )
        words = [(w["word"].strip(), float(w["start"]), float(w["end"])) for s in result["segments"] for w in s.get("words", [])]
        return Transcript(text=result["text"].strip(), language=result.get("language") or self.config.language, words=words)
