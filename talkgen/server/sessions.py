"""A served conversation: a chat session folder (talkgen.chat.session), kept by the server.

    <out>/.talkgen-serve/sessions/<id>/   session.json, history.jsonl: as `talkgen chat` keeps them

Each answered job adds its turns to the history, and the next job of the session is answered
with that history, as the next turn of a chat is; a persona a job sets stays with the session.
A session's jobs run one after another (the dispatcher holds the next back until the one
before it is finished), so each is answered knowing the turns before it.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from talkgen.chat import session as chats
from talkgen.server.intake import Rejected
from talkgen.server.store import state_dir

_ID = re.compile(r"^[0-9a-f]{16}$")


def root(out: Path) -> Path:
    return state_dir(out) / "sessions"


def create(out: Path, recipe: dict) -> str:
    """A new session; its id is unguessable, so only who was given it goes on with it."""
    session = chats.new_session(recipe, root=root(out) / secrets.token_hex(8))
    session.close()  # the server's lock on its folder keeps other writers out
    return session.id


def folder(out: Path, session_id: str) -> Path:
    """The folder of a session this server made; a Rejected for any other name (never a path)."""
    path = root(out) / session_id
    if not _ID.match(session_id) or not (path / chats.INFO).is_file():
        raise Rejected(400, f"no session '{session_id[:40]}' here: leave session out to start one")
    return path


def _open(out: Path, session_id: str) -> chats.Session:
    path = folder(out, session_id)
    return chats.Session(path, chats.read_info(path), chats.read_jsonl(path / chats.HISTORY))


def history(out: Path, session_id: str) -> tuple[list[dict], str | None]:
    """What the model remembers of the session, and the persona it last set."""
    records = _open(out, session_id).records
    return chats.messages(records), chats.persona(records)


def add_turns(out: Path, session_id: str, job_id: str, turns: list[dict], persona: str | None, spoken: bool) -> None:
    """A finished job's questions and replies, as the session's next turns."""
    session = _open(out, session_id)
    if any(r.get("job") == job_id for r in session.records):
        return  # recorded before the server was killed, and the job run again
    if persona is not None and persona != chats.persona(session.records):
        session.add({"type": "persona", "persona": persona})
    for t in turns:
        session.add({"type": "turn", "turn": chats.next_turn(session.records), "question": t["question"], "reply": t["reply"],
                     "source": "spoken" if spoken else "typed", "persona": persona, "job": job_id,
                     "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
