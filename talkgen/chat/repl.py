"""The conversation loop: read a line, answer it (streaming), queue its clip, handle commands.

Ctrl-C while a reply streams stops that reply; at the prompt it stops the clips being
rendered, and a second Ctrl-C at the prompt leaves.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from talkgen.chat import session as sessions
from talkgen.chat.models import Models
from talkgen.chat.renderer import Callbacks, ClipJob, Renderer
from talkgen.chat.screen import Screen
from talkgen.chat.session import Session
from talkgen.errors import TalkgenError, UsageError
from talkgen.job import atomic_path
from talkgen.recipe import Recipe

HELP = [
    ("/audio PATH", "ask with a recording (any format ffmpeg reads)"),
    ("/save [PATH]", "join every turn's clip into one video with subtitles (default: <session>/chat.mp4)"),
    ("/history", "the conversation so far, with each turn's clip"),
    ("/reset", "start the conversation afresh (the turns stay in the session)"),
    ("/persona TEXT", "who the avatar is from now on"),
    ("/help", "this list"),
    ("/quit", "leave (Ctrl-D, or Ctrl-C twice at the prompt, too)"),
]


@dataclass
class Chat:
    session: Session
    recipe: Recipe
    screen: Screen
    models: Models
    video: bool
    history: list[dict] = field(default_factory=list)  # what the model remembers
    renderer: Renderer | None = None

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
            record = answer(question, n - 1, system, self.history, llm, c, on_text, note=self.screen.notice)
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
        if self.renderer is not None:
            self.renderer.submit(ClipJob(n, record["reply"], asked_at))

    # -- clips (called on the render thread) ------------------------------------------------
    def render(self, job: ClipJob, stop: Callable[[], None]) -> dict:
        from talkgen.chat.clip import render_clip

        self.session.log("render_start", turn=job.turn)
        return render_clip(self.session.turn_dir(job.turn), job.text, self.recipe, self.models.tts(), self.models.avatar(), stop)

    def ready(self, job: ClipJob, clip: dict, render_s: float) -> None:
        since = time.monotonic() - job.asked_at
        self.session.add({"type": "clip", "turn": job.turn, **clip, "render_s": round(render_s, 3)})
        self.session.log("clip_ready", turn=job.turn, duration_s=clip["duration_s"], render_s=round(render_s, 3),
                         since_question_s=round(since, 3))
        path = shown(self.session.turn_dir(job.turn) / clip["clip"])
        self.screen.notice(f"clip {job.turn} ready: {path} ({clip['duration_s']:.1f} s, rendered in {render_s:.1f} s)", "green")

    def stopped(self, job: ClipJob) -> None:
        self.session.add({"type": "clip_stopped", "turn": job.turn})  # so --resume does not render it again
        self.session.log("render_stopped", turn=job.turn)
        self.screen.notice(f"clip {job.turn} stopped", "yellow")

    def failed(self, job: ClipJob, message: str) -> None:
        first, _, rest = message.partition("\n")
        self.session.log("render_failed", turn=job.turn, error=first, traceback=rest or None)
        self.screen.notice(f"clip {job.turn} failed: {first}", "red")

    # -- commands -------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; False when the chat should end."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            for cmd, what in HELP:
                self.screen.line(f"{cmd:14s} {what}")
        elif name == "/history":
            self.show_history()
        elif name == "/reset":
            self.history = []
            self.session.add({"type": "reset"})
            self.session.log("reset")
            self.screen.line("the conversation starts afresh (earlier turns stay in the session)")
        elif name == "/persona":
            if not arg:
                raise UsageError("say who the avatar is: /persona a tour guide in Lisbon")
            self.recipe.llm.persona = arg
            self.session.add({"type": "persona", "persona": arg})
            self.screen.line(f"persona: {arg}")
        elif name == "/audio":
            self.ask_audio(arg)
        elif name == "/save":
            self.save(arg)
        else:
            raise UsageError(f"unknown command {name}: /help lists the commands")
        return True

    def show_history(self) -> None:
        turns = sessions.turns(self.session.records)
        if not turns:
            self.screen.line("no turns yet")
        for t in turns:
            self.screen.line(f"{t['turn']}. you: {t['question']}")
            self.screen.line(f"   avatar: {t['reply']}")
            if "clip" in t:
                clip = self.session.turn_dir(t["turn"]) / t["clip"]["clip"]
                self.screen.line(f"   clip: {shown(clip)} ({t['clip']['duration_s']:.1f} s)")

    def ask_audio(self, arg: str) -> None:
        from talkgen import media
        from talkgen.stages.transcribe import transcribe

        if not arg:
            raise UsageError("give the recording: /audio question.wav")
        path = Path(os.path.expanduser(_unquote(arg)))
        if not path.is_file():
            raise UsageError(f"no file {path}: give the path of a recording, e.g. /audio question.wav")
        asked_at = time.monotonic()
        media.audio_duration(path)  # not audio: one line now, before any model loads
        c = self.recipe.stt
        n = sessions.next_turn(self.session.records)
        self.screen.status("listening...")
        result = transcribe(path, self.models.stt(), self.models.vad(), self.session.turn_dir(n) / "transcript.json",
                            c.piece_s, c.vad_threshold)
        self.screen.line(f"heard: {result['text']}")
        self.ask(result["text"], source=f"audio:{path}", asked_at=asked_at)

    def save(self, arg: str) -> None:
        from talkgen.chat.clip import join_clips
        from talkgen.pipeline import check_output

        if not self.video:
            raise UsageError("this chat makes no clips (--no-video): there is nothing to save")
        out = Path(os.path.expanduser(_unquote(arg))) if arg else self.session.root / "chat.mp4"
        check_output(out)
        if self.renderer is not None and self.renderer.pending():
            self.screen.status(f"waiting for {self.renderer.pending()} clip(s) to finish...")
            self.renderer.wait()
        turns = [t for t in sessions.turns(self.session.records) if "clip" in t]
        if not turns:
            raise UsageError("no clip is ready yet: ask a question first")
        t = time.monotonic()
        info = join_clips([self.session.turn_dir(x["turn"]) for x in turns], out, self.session.root / ".save")
        self.session.log("save", path=str(out), turns=len(turns), duration_s=info["duration_s"])
        self.screen.line(f"saved {shown(out)} ({len(turns)} turns, {info['duration_s']:.1f} s, "
                         f"subtitles in {shown(out.with_suffix('.srt'))}, {time.monotonic() - t:.1f} s)", "green")


def shown(path: Path) -> str:
    """A path as short as it can be shown: relative to where the chat was started when it is inside."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _unquote(arg: str) -> str:
    """A path as typed, or in quotes when it holds spaces."""
    try:
        parts = shlex.split(arg)
    except ValueError:
        return arg
    return parts[0] if len(parts) == 1 else arg


def run(chat: Chat) -> None:
    """The loop; returns when the person leaves. Clips still rendering are finished first."""
    screen = chat.screen
    where = shown(chat.session.root)
    screen.line(f"talkgen chat: session {where}. Type a question; /help lists the commands.", "dim")
    armed = False  # a Ctrl-C at the prompt: the next one leaves
    while True:
        try:
            line = screen.read()
        except KeyboardInterrupt:
            if armed:
                break
            armed = True
            if chat.renderer is not None and chat.renderer.pending():
                chat.renderer.stop_all()
                screen.line("stopping the clips being rendered (Ctrl-C again to leave)", "yellow")
            else:
                screen.line("(Ctrl-C again or /quit to leave)", "dim")
            continue
        if line is None:
            break
        armed = False
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not chat.command(line):
                    break
            else:
                chat.ask(line)
        except KeyboardInterrupt:
            screen.line("stopped", "yellow")
        except TalkgenError as exc:
            screen.error(str(exc))
        except OSError as exc:
            screen.error(f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}")
    if chat.renderer is not None:
        if chat.renderer.pending():
            screen.status(f"finishing {chat.renderer.pending()} clip(s) (Ctrl-C stops them)...")
        try:
            chat.renderer.wait()
        except KeyboardInterrupt:
            chat.renderer.stop_all()
            chat.renderer.wait()
        chat.renderer.close()


def check_can_chat(recipe: Recipe, video: bool) -> None:
    """Refuse, in one line and before any model loads, what chat cannot do."""
    from talkgen.engines.llm import llm_identity

    llm_identity(recipe.llm)
    if not video:
        return
    from talkgen import media
    from talkgen.engines.avatar import avatar_traits

    c = recipe.render
    if c.size % 2 or not 64 <= c.size <= 4096:
        raise UsageError(f"render.size={c.size} must be an even number of pixels between 64 and 4096")
    traits = avatar_traits(c)
    if traits["world_size"] > 1:
        raise UsageError(f"talkgen chat renders in its own process only, and render.engine={c.engine} needs "
                         f"{traits['world_size']} processes: use --no-video, or talkgen render")
    if c.portrait:
        from talkgen.portrait import read_image

        read_image(Path(c.portrait))
    media.require_ffmpeg()


def start(recipe: Recipe, video: bool, session: Session, persona: str | None) -> None:
    """Load the models, run the conversation, close the session."""
    interactive = os.isatty(0)
    screen = Screen(interactive)
    if persona is not None and persona != sessions.persona(session.records):
        session.add({"type": "persona", "persona": persona})
    recipe.llm.persona = sessions.persona(session.records) or recipe.llm.persona
    models = Models(recipe, session.log, screen.status, session.root / "avatar-state", video)
    chat = Chat(session, recipe, screen, models, video, history=sessions.messages(session.records))
    session.log("start", recipe=recipe.name, video=video, interactive=interactive, resumed_turns=len(sessions.turns(session.records)))
    try:
        if video:
            chat.renderer = Renderer(Callbacks(chat.render, chat.ready, chat.stopped, chat.failed),
                                     warm_up=lambda: (models.tts(), models.avatar()))
            for t in sessions.unrendered(session.records):
                screen.status(f"rendering the clip of turn {t['turn']} again: the session stopped before it was ready")
                chat.renderer.submit(ClipJob(t["turn"], t["reply"], time.monotonic()))
        screen.status("loading the models...")
        models.llm()
        run(chat)
    finally:
        session.log("end")
        session.close()
