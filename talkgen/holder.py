"""The engine holder: each engine loaded on first use and kept for the jobs after it.

`talkgen render`, every `talkgen batch` worker and `talkgen chat` get their engines here,
so there is one copy of the model loading. An engine is loaded again only when a job needs
it with settings it was not loaded with (another voice, another portrait); settings that
an engine reads at each call (the LLM's sampling, the persona) are handed to the engine
it already has. A multi-rank avatar is a rank group (talkgen.ranks.launch.RankGroup),
launched once and kept up across jobs the same way.

Whether an engine stays loaded after its stage is the holder's `keep`: a render keeps
only the recipe's placement.resident (engines that share a GPU in turn must let go of
it), a batch worker or a chat keeps everything the memory plan lets it keep.

`loads` counts each model's loads, which is how the batch report (and the tests) show
that a worker loaded each model once.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROLES = ("stt", "vad", "llm", "tts", "avatar", "ranks")


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def _loaded_with(kind: str, config) -> str:
    """What an engine was loaded with: its back end and the settings it declares it reads at load
    (engines/registry.py Settings.reload); the others it reads from its config at each call."""
    from talkgen.engines.registry import reload_settings

    return _key(kind, config.engine, reload_settings(kind, config))


def _hand_over(config) -> Callable[[Any], None]:
    """For an engine kept from an earlier job: the settings it reads at each call are this job's."""
    def reuse(engine) -> None:
        if hasattr(engine, "config"):
            engine.config = config

    return reuse


class Engines:
    """Loaded engines, keyed by what they were loaded with."""

    def __init__(self, keep: set[str] | str = "all", on_load: Callable[[str, str, float], None] | None = None,
                 on_status: Callable[[str], None] | None = None):
        self.keep = set(ROLES) if keep == "all" else set(keep)
        self._on_load = on_load or (lambda role, model, seconds: None)
        self.on_status = on_status or (lambda message: None)
        self._held: dict[str, tuple[str, Any]] = {}
        # One lock per engine: chat loads the LLM (prompt thread) and the voice (render thread) side by side.
        self._locks = {role: threading.Lock() for role in ROLES}
        self.loads: dict[str, int] = {}
        self.launches = 0
        self._portrait: tuple[tuple, Any] | None = None
        self._portrait_lock = threading.Lock()

    def _get(self, role: str, key: str, model: str, load: Callable[[], Any], reuse: Callable[[Any], None] | None = None) -> Any:
        with self._locks[role]:
            held = self._held.get(role)
            if held is not None and held[0] == key:
                if reuse:
                    reuse(held[1])
                return held[1]
            self._drop(role)  # the old one goes before the new one loads: they may not both fit
            t = time.perf_counter()
            engine = load()
            self._held[role] = (key, engine)
            self._count(model)
            self._on_load(role, model, time.perf_counter() - t)
            return engine

    def _count(self, model: str) -> None:
        self.loads[model] = self.loads.get(model, 0) + 1

    def _drop(self, role: str) -> bool:
        held = self._held.pop(role, None)
        if held is not None and role == "ranks":
            held[1].close()
        return held is not None

    # -- the engines --------------------------------------------------------------------
    def portrait(self, path: Path | None, size: int):
        """The portrait, face found and cropped: once, not for every job or turn that shows it."""
        from talkgen.portrait import load_portrait, portrait_hash

        key = (portrait_hash(path), size)  # by content: a file changed between jobs is found again
        with self._portrait_lock:
            if self._portrait is None or self._portrait[0] != key:
                self._portrait = (key, load_portrait(path, size))
            return self._portrait[1]

    def stt(self, config, recipe: str = "cpu"):
        from talkgen.engines.stt import load_stt

        return self._get("stt", _loaded_with("stt", config), config.model, lambda: load_stt(config, recipe), _hand_over(config))

    def vad(self):
        from talkgen.engines.silero_vad import VAD

        return self._get("vad", "silero", "silero-vad", VAD)

    def llm(self, config, recipe: str = "cpu"):
        from talkgen.engines.llm import load_llm

        return self._get("llm", _loaded_with("llm", config), config.model,
                         lambda: load_llm(config, on_status=lambda m: self.on_status(m), recipe=recipe), _hand_over(config))

    def tts(self, config, stt_config=None, recipe: str = "cpu", fresh: bool = False):
        """The voice; F5-TTS's reference voice (transcribed with stt_config when it has no text) is part of it.

        fresh: a voice already loaded starts its noise and seeds again (engine.fresh()), so that
        a job speaks as it would in a render of its own."""
        from talkgen.engines.tts import load_tts

        def load():
            reference = None
            if config.engine == "f5-tts":
                from talkgen.stages.voice import reference_voice

                reference = reference_voice(config, stt_config, recipe, lambda m: self.on_status(m))
            return load_tts(config, reference, recipe)

        def reuse(engine) -> None:
            _hand_over(config)(engine)
            if fresh and hasattr(engine, "fresh"):
                engine.fresh()

        model = config.model if config.engine == "f5-tts" else config.voice
        return self._get("tts", _loaded_with("tts", config), model, load, reuse)

    def avatar(self, config, portrait, state_dir: Path | None = None):
        """The avatar in this process (back ends with a world size of 1)."""
        from talkgen.engines.avatar import load_avatar

        def reuse(engine) -> None:
            engine.use_portrait(portrait)  # a job's input, not the model's identity: no reload for a new face
            if hasattr(engine, "state_dir") and state_dir is not None:
                engine.state_dir = state_dir  # large continuity state goes with the job being rendered

        return self._get("avatar", _loaded_with("avatar", config), config.engine,
                         lambda: load_avatar(config, portrait, device=config.device, state_dir=state_dir), reuse)

    def ranks(self, config, group_root: Path):
        """The avatar's rank group (launched once, kept up across jobs); launched again only
        when a job needs other launch settings or the last group went down."""
        from talkgen.ranks.interpreter import rank_python
        from talkgen.ranks.launch import GroupSettings, RankGroup

        settings = GroupSettings(config.nproc, rank_python(config), config.gpus, "nccl" if config.device == "cuda" else "gloo",
                                 config.collective_timeout_s)
        held = self._held.get("ranks")
        if held is not None and not held[1].alive:
            self._drop("ranks")

        def launch():
            self.launches += 1
            # The back end the ranks load counts as the same model loaded in this process would.
            return RankGroup(group_root, settings, on_load=lambda: self._count(config.engine))

        return self._get("ranks", _key(dataclasses.asdict(settings), str(group_root)), f"{config.engine} ranks", launch)

    # -- between stages and at the end ----------------------------------------------------
    def settle(self, role: str) -> bool:
        """After a stage: let go of its engine unless it is kept (the pipeline then gives its
        memory back with placement.release); whether one was let go."""
        if role in self.keep:
            return False
        with self._locks[role]:
            return self._drop(role)

    def close(self) -> None:
        """Let go of everything; the rank group's ranks finish and leave."""
        from talkgen.placement import release

        for role in list(self._held):
            with self._locks[role]:
                self._drop(role)
        release()
