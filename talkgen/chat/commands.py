"""The slash commands: /audio, /save, /history, /reset, /persona, /help, /quit."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from talkgen.chat import session as sessions
from talkgen.chat.turns import Chat, shown
from talkgen.errors import UsageError

HELP = [
    ("/audio PATH", "ask with a recording (any format ffmpeg reads)"),
    ("/save [PATH]", "join every turn's clip into one video with subtitles (default: <session>/chat.mp4)"),
    ("/history", "the conversation so far, with each turn's clip"),
    ("/reset", "start the conversation afresh (the turns stay in the session)"),
    ("/persona TEXT", "who the avatar is from now on"),
    ("/help", "this list"),
    ("/quit", "leave (Ctrl-D, or Ctrl-C twice at the prompt, too)"),
]


def run_command(chat: Chat, line: str) -> bool:
    """Run a /command; False when the chat should end."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/help":
        for cmd, what in HELP:
            chat.screen.line(f"{cmd:14s} {what}")
    elif name == "/history":
        show_history(chat)
    elif name == "/reset":
        chat.history, chat.dropped = [], 0
        chat.session.add({"type": "reset"})
        chat.session.log("reset")
        chat.screen.line("the conversation starts afresh (earlier turns stay in the session)")
    elif name == "/persona":
        if not arg:
            raise UsageError("say who the avatar is: /persona a tour guide in Lisbon")
        chat.recipe.llm.persona = arg
        chat.session.add({"type": "persona", "persona": arg})
        chat.screen.line(f"persona: {arg}")
    elif name == "/audio":
        ask_audio(chat, arg)
    elif name == "/save":
        save(chat, arg)
    else:
        raise UsageError(f"unknown command {name}: /help lists the commands")
    return True

def show_history(chat: Chat) -> None:
    turns = sessions.turns(chat.session.records)
    if not turns:
        chat.screen.line("no turns yet")
    for t in turns:
        chat.screen.line(f"{t['turn']}. you: {t['question']}")
        chat.screen.line(f"   avatar: {t['reply']}")
        if "clip" in t:
            clip = chat.session.turn_dir(t["turn"]) / t["clip"]["clip"]
            chat.screen.line(f"   clip: {shown(clip)} ({t['clip']['duration_s']:.1f} s)")

def ask_audio(chat: Chat, arg: str) -> None:
    from talkgen.inputs import require_recording
    from talkgen.stages.transcribe import transcribe

    if not arg:
        raise UsageError("give the recording: /audio question.wav")
    path = Path(os.path.expanduser(_unquote(arg)))
    if not path.is_file():
        raise UsageError(f"no file {path}: give the path of a recording, e.g. /audio question.wav")
    asked_at = time.monotonic()
    require_recording(path)  # not a recording: one line now, before any model loads
    c = chat.recipe.stt
    n = sessions.next_turn(chat.session.records)
    chat.screen.status("listening...")
    result = transcribe(path, chat.models.stt(), chat.models.vad(), chat.session.turn_dir(n) / "transcript.json",
                        c.piece_s, c.vad_threshold)
    chat.screen.line(f"heard: {result['text']}")
    chat.ask(result["text"], source=f"audio:{path}", asked_at=asked_at)

def save(chat: Chat, arg: str) -> None:
    from talkgen.chat.clip import join_clips
    from talkgen.pipeline import check_output

    if not chat.video:
        raise UsageError("this chat makes no clips (--no-video): there is nothing to save")
    out = Path(os.path.expanduser(_unquote(arg))) if arg else chat.session.root / "chat.mp4"
    check_output(out)
    if chat.renderer is not None and chat.renderer.pending():
        chat.screen.status(f"waiting for {chat.renderer.pending()} clip(s) to finish...")
        chat.renderer.wait()
    turns = [t for t in sessions.turns(chat.session.records) if "clip" in t]
    if not turns:
        raise UsageError("no clip is ready yet: ask a question first")
    t = time.monotonic()
    info = join_clips([chat.session.turn_dir(x["turn"]) for x in turns], out, chat.session.root / ".save")
    chat.session.log("save", path=str(out), turns=len(turns), duration_s=info["duration_s"])
    chat.screen.line(f"saved {shown(out)} ({len(turns)} turns, {info['duration_s']:.1f} s, "
                     f"subtitles in {shown(out.with_suffix('.srt'))}, {time.monotonic() - t:.1f} s)", "green")


def _unquote(arg: str) -> str:
    """A path as typed, or in quotes when it holds spaces."""
    try:
        parts = shlex.split(arg)
    except ValueError:
        return arg
    return parts[0] if len(parts) == 1 else arg
