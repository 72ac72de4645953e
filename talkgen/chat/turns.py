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
from talkgen.stages import Progress


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
        """Answer `question`; with video, its clip starts at once, and speaks each piece of the
        reply (its first sentence in phrases) as soon as it is decided, while the rest is still being written."""
        from talkgen.feeds import Feed, Restart
        from talkgen.stages.reply import answer, origin, system_prompt

        asked_at = asked_at or time.monotonic()
        c = self.recipe.llm
        n = sessions.next_turn(self.session.records)
        llm = self.models.llm()
        self.session.log("question", turn=n, source=source)
        system = {"role": "system", "content": system_prompt(c.persona, c.max_reply_words)}
        made_by = origin(system, self.history, question, n - 1, self.dropped, c)
        first: list[float] = []

        def on_text(chunk: str) -> None:
            if not first:
                first.append(time.monotonic() - asked_at)
                self.session.log("first_token", turn=n, seconds=round(first[0], 3))
            self.screen.reply_text(chunk)

        clip = None
        if self.renderer is not None:
            clip = ClipJob(n, None, asked_at, origin=made_by, pieces=Feed())
            self.renderer.submit(clip)
        said = (lambda piece, last: clip.pieces.put((0, piece, last))) if clip else None
        self.screen.reply_start()
        try:
            record = answer(question, n - 1, system, self.history, llm, c, on_text, note=self.screen.notice, dropped=self.dropped,
                            on_piece=said)
        except Restart as exc:  # what the clip was given is not how the reply begins: it is made again from the whole reply
            record = exc.made
            self.renderer.drop(clip)
            clip = ClipJob(n, record["reply"], asked_at, origin=made_by)
            self.renderer.submit(clip)
        except KeyboardInterrupt:
            if clip:
                self.renderer.drop(clip)
            self.screen.reply_end(stopped=True)
            self.session.log("reply_stopped", turn=n)
            return
        except BaseException:
            if clip:
                self.renderer.drop(clip)
            self.screen.reply_end()
            raise
        self.screen.reply_end()
        turn_dir = self.session.turn_dir(n)
        with atomic_path(turn_dir / "reply.txt") as tmp:
            tmp.write_text(record["reply"] + "\n", encoding="utf-8")
        record.update(type="turn", turn=n, source=source, persona=c.persona, video=self.video, first_token_s=round(first[0], 3) if first else None,
                      at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), origin=made_by)
        self.session.add(record)
        self.session.log("reply", turn=n, tokens=record["tokens"], seconds=record["seconds"])
        self.history += [{"role": "user", "content": question}, {"role": "assistant", "content": record["reply"]}]
        self.dropped = record["dropped_turns"]
        if clip is not None and clip.pieces is not None:
            clip.pieces.close()  # after the turn's record: its clip's record comes after it

    # -- clips (called on the render thread) ------------------------------------------------
    def render(self, job: ClipJob, stop: Callable[[], None]) -> dict:
        """The turn's clip: a job in the turn's folder (cached, resumable, reported), through the same
        sequencer as `talkgen render`, with the session's engines."""
        from talkgen.chunks import Plan, chunk_name
        from talkgen.pipeline import RenderRequest, run

        self.session.log("render_start", turn=job.turn)
        turn_dir = self.session.turn_dir(job.turn)
        request = RenderRequest(None, turn_dir / "clip.mp4", self.recipe, job_dir=turn_dir, say=True, text=job.text,
                                text_feed=job.pieces, origin=job.origin, check=False, live=True)
        def live(playlist: Path, seconds: float) -> None:
            since = time.monotonic() - job.asked_at
            self.session.log("clip_live", turn=job.turn, playlist=str(playlist), since_question_s=round(since, 3))
            self.screen.notice(f"clip {job.turn} live: {shown(playlist)} ({since:.1f} s after the question)", "green")

        rep = run(request, ClipProgress(stop, live), engines=self.models.engines, group_root=self.session.root / "avatar-ranks")
        self.models.tts(fresh=True)
        out = rep["output"]
        return {"clip": "clip.mp4", "duration_s": out["duration_s"], "frames": out["frames"], "fps": out["fps"],
                "width": out["width"], "height": out["height"], "first_chunk_s": rep["first_chunk_s"],
                "chunks": [chunk_name(c.index) for c in Plan.load(turn_dir / "plan.json").chunks]}

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


class ClipProgress(Progress):
    """A clip's progress: every frame and sentence is a point where the person's stop is heard, and
    the clip's live stream is shown once its first segment is there."""

    def __init__(self, stop: Callable[[], None], live: Callable[[Path, float], None]):
        self.stop, self.live = stop, live

    def advance(self, n: float = 1, stage: str = "") -> None:
        self.stop()

    def segment(self, index: int, playlist: Path, seconds: float) -> None:
        if index == 0:
            self.live(playlist, seconds)


def shown(path: Path) -> str:
    """A path as short as it can be shown: relative to where the chat was started when it is inside."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel
