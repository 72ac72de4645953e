"""Where a model's files live: weights/manifest.yaml names each model and its local folder."""

from __future__ import annotations

import os
from pathlib import Path

from talkgen.errors import TalkgenError

ROOT = Path(__file__).resolve().parent.parent / "weights"


def manifest() -> dict:
    import yaml

    path = ROOT / "manifest.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")).get("models", {})
    except (OSError, AttributeError, yaml.YAMLError) as exc:
        raise TalkgenError(f"cannot read the weights manifest {path}: {exc}") from None


def local_dir(name: str) -> Path:
    """The folder a downloaded model lives in: $TALKGEN_WEIGHTS/<dir> or weights/<dir>."""
    models = manifest()
    if name not in models:
        raise TalkgenError(f"model '{name}' is not in weights/manifest.yaml")
    base = Path(os.environ.get("TALKGEN_WEIGHTS") or ROOT)
    return base / models[name].get("dir", name)
