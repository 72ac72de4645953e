"""The session's engines: each loaded on first use, then kept for every later turn.

Every load is written to the session log with its time, which is how a test shows that
a turn after the first loaded nothing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from talkgen.recipe import Recipe


class Models:
    def __init__(self, recipe: Recipe, log: Callable[..., None], status: Callable[[str], None], state_dir: Path, video: bool):
        self.recipe = recipe
        self._video = video
        self._log = log
        self._status = status
        self._state_dir = state_dir
        self._loaded: dict[str, Any] = {}
        # One lock per model: the LLM (prompt thread) and the voice (render thread) load side by side.
        self._locks = {name: threading.Lock() for name in ("llm", "stt", "vad", "tts", "avatar")}

    def _get(self, name: str, load: Callable[[], Any]) -> Any:
        with self._locks[name]:
            if name not in self._loaded:
                t = time.perf_counter()
                self._loaded[name] = load()
                self._log("load", model=name, seconds=round(time.perf_counter() - t, 3))
            return self._loaded[name]

    def llm(self):
        def load():
            from talkgen.engines.llm import load_llm

            llm = load_llm(self.recipe.llm, on_status=self._status, recipe=self.recipe.name)
            if self._video and self.recipe.llm.device == "cpu":
                # Leave a core to the clip rendering beside it. Torch's threads wait for each other
                # at every layer, so one descheduled thread stalls them all: measured here with the
                # cores busy, 9.5 tokens/s on one thread against 1.3 on two.
                import torch

                torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
            return llm

        return self._get("llm", load)

    def stt(self):
        from talkgen.engines.stt import load_stt

        return self._get("stt", lambda: load_stt(self.recipe.stt, self.recipe.name))

    def vad(self):
        from talkgen.engines.silero_vad import VAD

        return self._get("vad", VAD)

    def tts(self):
        def load():
            from talkgen.engines.tts import load_tts

            reference = None
            if self.recipe.tts.engine == "f5-tts":
                from talkgen.stages.voice import reference_voice

                reference = reference_voice(self.recipe.tts, self.recipe.stt, self.recipe.name, self._status)
            return load_tts(self.recipe.tts, reference, self.recipe.name)

        return self._get("tts", load)

    def avatar(self):
        def load():
            from talkgen.engines.avatar import load_avatar
            from talkgen.portrait import load_portrait

            c = self.recipe.render
            portrait = load_portrait(Path(c.portrait) if c.portrait else None, c.size)
            return load_avatar(c, portrait, device=c.device, state_dir=self._state_dir)

        return self._get("avatar", load)
