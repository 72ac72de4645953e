"""openai-whisper: large-v3 (or any official name) from the weights manifest, or a checkpoint path.

Never downloads by itself: an official name resolves to the file `talkgen weights pull`
put in the weights folder's whisper/, checked against the sha256 in the manifest (which is the one in
OpenAI's own download URL), and loaded with whisper's own loader (torch.load with
weights_only=True).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from talkgen.engines.registry import Backend, Settings
from talkgen.engines.stt import Transcript
from talkgen.errors import TalkgenError

if TYPE_CHECKING:
    import numpy as np

    from talkgen.engines.footprint import Need
    from talkgen.recipe import STTConfig

OFFICIAL = ("large-v3", "large-v2", "medium", "small", "base", "tiny", "medium.en", "small.en", "base.en", "tiny.en", "turbo")


def checkpoint(config: STTConfig, recipe: str) -> Path:
    from talkgen.errors import UsageError
    from talkgen.weights import require_file

    if config.model in OFFICIAL:
        return require_file(f"whisper-{config.model}", f"{config.model}.pt", recipe)
    path = Path(config.model)
    if not path.is_file():
        raise UsageError(f"stt.model '{config.model}' is neither an official Whisper name ({', '.join(OFFICIAL)}) nor a checkpoint file")
    return path


def identity(config: STTConfig) -> dict:
    model = config.model if config.model in OFFICIAL else str(Path(config.model).resolve())
    return {"engine": "openai-whisper", "openai_whisper": metadata.version("openai-whisper"), "model": model,
            "language": config.language, "device": config.device, "beam_size": config.beam_size}


def memory_need(config: STTConfig, device: str) -> Need | None:
    """Its weights in float32, counted from the checkpoint: whisper.load_model keeps the float16
    checkpoint's weights in float32, and with fp16 each layer casts its weight as it runs."""
    if device == "cpu":
        return None
    from talkgen.engines.footprint import count_files, param_count, weights_need

    if config.model in OFFICIAL:
        from talkgen.weights import local_dir

        name = f"whisper-{config.model}"
        params, source = param_count(name, [local_dir(name) / f"{config.model}.pt"])
    else:
        name, (params, source) = config.model, (count_files([Path(config.model)]), "files")
    return weights_need("stt", name, device, params, "float32", source)


class OpenAIWhisperSTT:
    def __init__(self, config: STTConfig, recipe: str = "cpu"):
        from talkgen.offline import go_offline

        go_offline()
        try:
            import whisper
        except ImportError:
            raise TalkgenError("openai-whisper is not installed: run ./install.sh (or pip install --build-constraint "
                               "build-constraints.txt 'talkgen[production]')") from None

        self.config = config
        path = checkpoint(config, recipe)
        from talkgen.engines.building import BUILDING

        with BUILDING:  # engines/building.py: torch's default dtype is the LLM's while transformers builds it
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


def load(config: STTConfig, recipe: str = "cpu") -> OpenAIWhisperSTT:
    return OpenAIWhisperSTT(config, recipe)


BACKEND = Backend(kind="stt", names=("openai-whisper",), identity=identity, check=None, load=load, memory=memory_need,
                  formats=None, doctor=None, avatar=None,
                  settings=Settings(output=("model", "beam_size", "language", "device"), reload=("model", "device")))
