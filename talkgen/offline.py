"""Keep the hub libraries off the network: every file talkgen loads is local."""

import os

HUB_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    # Library progress bars (tqdm) would tear through talkgen's own rich progress on stderr.
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def go_offline() -> None:
    """Set before importing transformers, huggingface_hub or faster_whisper (they read these at import)."""
    for key, value in HUB_OFFLINE.items():
        os.environ.setdefault(key, value)
