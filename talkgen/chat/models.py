"""The session's engines, from the engine holder that render and batch use (talkgen.holder).

Each is loaded on first use and kept for every later turn. Every load is written to the
session log with its time, which is how a test shows that a turn after the first loaded
nothing. What is chat's own is which settings it asks for (the recipe's, the portrait of
the recipe) and how it shares the CPU between the reply and the clip beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from talkgen.holder import Engines
from talkgen.recipe import Recipe


class Models:
    def __init__(self, recipe: Recipe, log: Callable[..., None], status: Callable[[str], None], state_dir: Path):
        self.recipe = recipe
        self._state_dir = state_dir

        def loaded(role: str, model: str, seconds: float) -> None:
            log("load", model=role, seconds=round(seconds, 3))

        self.engines = Engines(keep="all", on_load=loaded, on_status=status)

    def llm(self):
        return self.engines.llm(self.recipe.llm, self.recipe.name)

    def stt(self):
        return self.engines.stt(self.recipe.stt, self.recipe.name)

    def vad(self):
        return self.engines.vad()

    def tts(self, fresh: bool = False):
        """The voice, its session made: on one thread, as the LLM writes beside it (stages/speak.py).
        fresh: a new session, its noise started again, for the next turn (made once a clip is done,
        while the person reads the reply: 0.25 s or more that the next turn's voice need not wait)."""
        engine = self.engines.tts(self.recipe.tts, self.recipe.stt, self.recipe.name, fresh=fresh)
        if hasattr(engine, "ready"):
            engine.ready(threads=1)
        return engine

    def portrait(self):
        c = self.recipe.render
        return self.engines.portrait(Path(c.portrait) if c.portrait else None, c.size)

    def avatar(self):
        """The avatar in this process, or (for a multi-rank back end) its rank group, launched once."""
        from talkgen.placement import runs_in_ranks

        c = self.recipe.render
        if runs_in_ranks(c):
            return self.engines.ranks(c, self._state_dir.with_name("avatar-ranks"))
        return self.engines.avatar(c, self.portrait(), state_dir=self._state_dir)
