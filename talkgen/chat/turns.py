"""A chat's state and the life of a turn: the reply streamed, recorded, then its clip queued.

The render thread calls back into ready/stopped/failed as each clip finishes, in order.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from talkgen.chat import session as sessions
from talkgen.chat.models import Models
from talkgen.chat.renderer import ClipJob, Renderer
from talkgen.chat.screen import Screen
from talkgen.chat.session import Session
from talkgen.job import atomic_path
from talkgen.recipe import Recipe


@dataclass
class Chat:
    session: Session
    recipe: Recipe
    screen: Screen
    models: Models
    video: bool
    history: list[dict] = field(default_factory=list)  # what the model remembers
    dropped: int = 0  # the oldest question-and-answer pairs of history the last prompt left out
    renderer: Renderer | None = None
    terminating: bool = False  # told to stop (SIGTERM): a clip stopped now is rendered again on resume

    # -- a turn ---------------------------------------------------------------------------
    def ask(self, question: str, source: str = "typed", asked_at: float | None = None) -> None:
        from talkgen.stages.reply import answer, system_prompt

        asked_at = asked_at or time.monotonic()
        c = self.recipe.llm
        n = sessions.next_turn(self.session.records)
        llm = self.models.llm()
        self.session.log("question", turn=n, source=source)
        system = {"role": "system", "content": system_prompt(c.persona, c.max_reply_words)}
        first: list[float] = []

        def on_text(chunk: str) -> None:
            if not first:
                first.append(time.monotonic() - asked_at)
                self.session.log("first_token", turn=n, seconds=round(first[0], 3))
            self.screen.reply_text(chunk)

        self.screen.reply_start()
        try:
            record = answer(question, n - 1, system, self.history, llm, c, on_text, note=self.screen.notice, dropped=self.dropped)
        except KeyboardInterrupt:
            self.screen.reply_end(stopped=True)
            self.session.log("reply_stopped", turn=n)
            return
        except BaseException:
            self.screen.reply_end()
            raise
        self.screen.reply_end()
        turn_dir = self.session.turn_dir(n)
        with atomic_path(turn_dir / "reply.txt") as tmp:
            tmp.write_text(record["reply"] + "\n", encoding="utf-8")
        record.update(type="turn", turn=n, source=source, persona=c.persona, video=self.video, first_token_s=round(first[0], 3) if first else None,
                      at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        self.session.add(record)
        self.session.log("reply", turn=n, tokens=record["tokens"], seconds=record["seconds"])
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": record["reply"]}]
        self.dropped = record["dropped_turns"]
        if self.renderer is not None:
            self.renderer.submit(ClipJob(n, record["reply"], asked_at))

    # -- clips (called on the render thread) ------------------------------------------------
    def render(self, job: ClipJob, stop: Callable[[], None]) -> dict:
        from talkgen.chat.clip import render_clip

        self.session.log("render_start", turn=job.turn)
        from talkgen.placement import runs_in_ranks

        portrait = self.models.portrait() if runs_in_ranks(self.recipe.render) else None
        return render_clip(self.session.turn_dir(job.turn), job.text, self.recipe, self.models.tts(), self.models.avatar(), stop,
                           portrait)

    def ready(self, job: ClipJob, clip: dict, render_s: float) -> None:
        since = time.monotonic() - job.asked_at
        self.session.add({"type": "clip", "turn": job.turn, **clip, "render_s": round(render_s, 3)})
        self.session.log("clip_ready", turn=job.turn, duration_s=clip["duration_s"], render_s=round(render_s, 3),
                         since_question_s=round(since, 3))
        path = shown(self.session.turn_dir(job.turn) / clip["clip"])
        self.screen.notice(f"clip {job.turn} ready: {path} ({clip['duration_s']:.1f} s, rendered in {render_s:.1f} s)", "green")

    def stopped(self, job: ClipJob) -> None:
        if self.terminating:  # not the person's choice: no clip_stopped record, so --resume renders it
            self.session.log("render_stopped", turn=job.turn, reason="terminated")
            return
        self.session.add({"type": "clip_stopped", "turn": job.turn})  # so --resume does not render it again
        self.session.log("render_stopped", turn=job.turn)
        self.screen.notice(f"clip {job.turn} stopped", "yellow")

    def failed(self, job: ClipJob, message: str) -> None:
        first, _, rest = message.partition("\n")
        self.session.log("render_failed", turn=job.turn, error=first, traceback=rest or None)
        self.screen.notice(f"clip {job.turn} failed: {first}", "red")


def shown(path: Path) -> str:
    """A path as short as it can be shown: relative to where the chat was started when it is inside."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel
