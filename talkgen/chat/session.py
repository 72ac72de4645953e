"""A chat session on disk: what was said, each turn's files, and a log of what happened when.

    <session>/session.json    id, creation time, the recipe it started with
    <session>/history.jsonl   the conversation, one record a line: turn, clip, persona, reset
    <session>/events.jsonl    model loads, questions, first tokens, clips, with timestamps
    <session>/turns/0001/     reply.txt, speech.wav, alignment.json, plan.json, chunks/, clip.mp4, clip.srt

history.jsonl is rewritten whole and renamed into place after every record, so a crash
leaves the last complete version and loses at most the turn in flight. events.jsonl is
an append-only log; a line cut short by a crash is skipped when read.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from talkgen.errors import TalkgenError, UsageError
from talkgen.job import Job, atomic_path, write_json_atomic

CHATS = Path(".talkgen") / "chats"
INFO = "session.json"
HISTORY = "history.jsonl"
EVENTS = "events.jsonl"


@dataclass
class Session:
    root: Path
    info: dict
    records: list[dict] = field(default_factory=list)
    _job: Job | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def id(self) -> str:
        return self.info["id"]

    def add(self, record: dict) -> None:
        """Append a record to the history, on disk before this returns."""
        with self._lock:
            self.records.append(record)
            with atomic_path(self.root / HISTORY) as tmp:
                tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records), encoding="utf-8")

    def log(self, event: str, **fields) -> None:
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields}, ensure_ascii=False)
        with self._lock, open(self.root / EVENTS, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def turn_dir(self, number: int) -> Path:
        path = self.root / "turns" / f"{number:04d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        if self._job is not None:
            self._job.release()
            self._job = None


def new_session(recipe_dict: dict, base: Path = CHATS, root: Path | None = None) -> Session:
    """A new session in `root`, or in base/<date-time> (with -2, -3... when that exists)."""
    if root is None:
        base.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d-%H%M")
        for n in range(1, 1000):
            root = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                root.mkdir()
                break
            except FileExistsError:
                continue
    else:
        if (root / INFO).exists():
            raise UsageError(f"{root} already holds a chat session: continue it with --resume {root}, or choose another --session-dir")
        if root.exists() and not root.is_dir():
            raise UsageError(f"--session-dir {root} is a file: name a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create --session-dir {root} ({exc.strerror}): choose another folder") from None
    session = Session(root, {"id": root.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "recipe": recipe_dict})
    _lock(session)
    write_json_atomic(root / INFO, session.info)
    return session


def find_session(ref: str, base: Path = CHATS) -> Path:
    """The folder of a session given its id (under base) or its path."""
    for path in (base / ref, Path(ref)):
        if (path / INFO).is_file():
            return path
    raise UsageError(f"no chat session '{ref}': give an id from {base} (ls {base}) or the path of a session folder")


def read_info(root: Path) -> dict:
    try:
        return json.loads((root / INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{root / INFO} cannot be read ({exc}): the session is damaged") from None


def open_session(root: Path) -> Session:
    session = Session(root, read_info(root), read_jsonl(root / HISTORY))
    _lock(session)
    return session


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line a crash cut short
    return out


def _lock(session: Session) -> None:
    # The job lock also sweeps half-written files a killed session left behind.
    job = Job(session.root)
    try:
        job.acquire()
    except TalkgenError:
        raise TalkgenError(f"chat session {session.root} is open in another talkgen chat: close that one first") from None
    session._job = job


# -- views of the history -----------------------------------------------------------------

def turns(records: list[dict]) -> list[dict]:
    """Every answered turn in order, with its clip record under "clip" once there is one."""
    out: dict[int, dict] = {}
    for r in records:
        if r.get("type") == "turn":
            out[r["turn"]] = dict(r)
        elif r.get("type") == "clip" and r["turn"] in out:
            out[r["turn"]]["clip"] = r
    return [out[k] for k in sorted(out)]


def messages(records: list[dict]) -> list[dict]:
    """What the model remembers: the questions and replies since the last /reset."""
    out: list[dict] = []
    for r in records:
        if r.get("type") == "reset":
            out = []
        elif r.get("type") == "turn":
            out += [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["reply"]}]
    return out


def dropped(records: list[dict]) -> int:
    """How many of the oldest turns the last prompt since the last /reset left out (see fit_context)."""
    out = 0
    for r in records:
        if r.get("type") == "reset":
            out = 0
        elif r.get("type") == "turn":
            out = r.get("dropped_turns", 0)
    return out


def persona(records: list[dict]) -> str | None:
    """The persona the last /persona (or --persona) set, if any."""
    found = None
    for r in records:
        if r.get("type") == "persona":
            found = r["persona"]
    return found


def unrendered(records: list[dict]) -> list[dict]:
    """Turns asked with video on whose clip was neither made nor stopped: lost in a crash."""
    done = {r["turn"] for r in records if r.get("type") in ("clip", "clip_stopped")}
    return [t for t in turns(records) if t.get("video") and t["turn"] not in done]


def next_turn(records: list[dict]) -> int:
    return max((r["turn"] for r in records if r.get("type") == "turn"), default=0) + 1
