"""The conversation loop: read a line, answer it or run its command; and starting a chat.

Ctrl-C while a reply streams stops that reply; at the prompt it stops the clips being
rendered, and a second Ctrl-C at the prompt leaves.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from talkgen.chat import session as sessions
from talkgen.chat.commands import run_command
from talkgen.chat.models import Models
from talkgen.chat.renderer import Callbacks, ClipJob, Renderer
from talkgen.chat.screen import Screen
from talkgen.chat.session import Session
from talkgen.chat.turns import Chat, shown
from talkgen.errors import TalkgenError, UsageError
from talkgen.recipe import Recipe
from talkgen import stopping
from talkgen.stopping import Terminated


def run(chat: Chat) -> None:
    """The loop; returns when the person leaves. Clips still rendering are finished first."""
    screen = chat.screen
    where = shown(chat.session.root)
    screen.line(f"talkgen chat: session {where}. Type a question; /help lists the commands.", "dim")
    armed = False  # a Ctrl-C at the prompt: the next one leaves
    while True:
        # The second Ctrl-C can come while the first is still handled: the person sees "Ctrl-C again"
        # once it is written, before the loop is back at the prompt (on a loaded machine, long
        # before). It leaves too, instead of escaping the loop as an interrupt (exit 130).
        try:
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
        except KeyboardInterrupt:
            break
        if line is None:
            break
        armed = False
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not run_command(chat, line):
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


def _check_memory(recipe: Recipe, video: bool) -> None:
    """The memory planner, with every engine resident: a chat keeps its models for the whole session."""
    import copy

    from talkgen.memory import check_placement

    engines = {"llm", "stt"} | ({"tts", "avatar"} if video else set())
    planned = copy.deepcopy(recipe)
    planned.placement.resident = sorted(engines)
    check_placement(planned, engines)


def check_can_chat(recipe: Recipe, video: bool) -> None:
    """Refuse, in one line and before any model loads, what chat cannot do."""
    from talkgen.engines.llm import llm_identity

    llm_identity(recipe.llm)
    if not video:
        _check_memory(recipe, video)
        return
    from talkgen import media
    from talkgen.engines.avatar import check_avatar, traits_for

    c = recipe.render
    if c.size % 2 or not 64 <= c.size <= 4096:
        raise UsageError(f"render.size={c.size} must be an even number of pixels between 64 and 4096")
    traits_for(c)  # render.nproc that does not suit the back end
    check_avatar(c)  # missing checkout, weights or GPUs: one line now, not a failed clip every turn
    from talkgen.ranks.interpreter import check_rank_python, needs_probe

    if needs_probe(c):
        check_rank_python(c)  # the back end's own environment, asked from there (slower): once the files are there
    if c.portrait:
        from talkgen.portrait import read_image

        read_image(Path(c.portrait))
    media.require_ffmpeg()
    _check_memory(recipe, video)


def start(recipe: Recipe, video: bool, session: Session, persona: str | None) -> None:
    """Load the models, run the conversation, close the session."""
    interactive = os.isatty(0)
    screen = Screen(interactive)
    if persona is not None and persona != sessions.persona(session.records):
        session.add({"type": "persona", "persona": persona})
    recipe.llm.persona = sessions.persona(session.records) or recipe.llm.persona
    models = Models(recipe, session.log, screen.status, session.root / "avatar-state")
    chat = Chat(session, recipe, screen, models, video, history=sessions.messages(session.records),
                dropped=sessions.dropped(session.records))
    session.log("start", recipe=recipe.name, video=video, interactive=interactive, resumed_turns=len(sessions.turns(session.records)))
    # The clip's threads take a Ctrl-C or SIGTERM now and then: the prompt must still wake for it.
    # At a terminal, Ctrl-C is the person's: taken even when chat was started with it ignored.
    with stopping.main_wakes(), stopping.ctrl_c() if interactive else contextlib.nullcontext():
        _converse(chat, models, session, video)


def _converse(chat: Chat, models: Models, session: Session, video: bool) -> None:
    screen = chat.screen
    try:
        if video:
            chat.renderer = Renderer(Callbacks(chat.render, chat.ready, chat.stopped, chat.failed),
                                     warm_up=lambda: (models.tts(), models.avatar()))
            for t in sessions.unrendered(session.records):
                screen.status(f"rendering the clip of turn {t['turn']} again: the session stopped before it was ready")
                chat.renderer.submit(ClipJob(t["turn"], t["reply"], time.monotonic(), origin=t.get("origin", "")))
        screen.status("loading the models...")
        models.llm()
        run(chat)
    except Terminated as exc:
        exc.kept, exc.resume = _stop(chat, exc)
        raise
    finally:
        models.engines.close()  # a rank group's ranks finish and leave
        session.log("end")
        session.close()


def _stop(chat: Chat, exc: Terminated) -> tuple[str, str]:
    """Told to stop (SIGTERM, SIGHUP): stop the clip being rendered so that no encoder is left
    writing, keep it unrendered so that --resume renders it, and say what the session keeps."""
    chat.session.log("terminated", signal=exc.name)
    if chat.renderer is not None:
        chat.terminating = True
        chat.renderer.stop_all()
        chat.renderer.wait()  # between two frames: well within the stop's grace period
        chat.renderer.close()
    records = chat.session.records
    turns = sessions.turns(records)
    clips = sum(1 for t in turns if "clip" in t)
    again = [t["turn"] for t in sessions.unrendered(records)] if chat.video else []
    what = f"session {shown(chat.session.root)} keeps {len(turns)} turn(s) and {clips} clip(s)"
    if again:
        what += f"; the clip of turn {', '.join(map(str, again))} renders again on resume"
    return what, f"continue it with talkgen chat --resume {shown(chat.session.root)}"
