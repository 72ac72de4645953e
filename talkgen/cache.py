"""talkgen's own cache folder: models converted once for this machine (the bundled LLM's
safetensors, the voice's patched ONNX graph). $TALKGEN_CACHE, else ~/.cache/talkgen."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("TALKGEN_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "talkgen")
    return Path(base)
