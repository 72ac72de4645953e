"""A job's stages, as data: what each reads, its cache key, the engine roles it needs, how it runs.

Each stage module declares one STAGE; talkgen.sequencer runs them, in this order, for
`talkgen render`, every batch job and every chat turn:

    question.wav -> transcribe -> reply -> speak -> plan -> render -> assemble
    script.txt   ->               reply -> speak -> ...       (--say skips reply)
    a chat reply ->                        speak -> ...

A stage's key is known before anything runs: it holds the key of each stage it reads (or the
hash of the input), its settings, its engine's identity and the settings its back end declares
change its output (engines/registry.py Settings), and the code that makes it. So a stage can
start on what the stage before it has made so far: its results are keyed already, and a job
stopped at any point resumes from what it finished.

Stages hand their results on through feeds (talkgen/feeds.py): the text sentence by sentence,
the speech as it is spoken, the plan's chunks as they are cut, the chunks as they are finished.
A cached stage fills its feed from its files at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from talkgen.feeds import Feed, Stopped, Value

if TYPE_CHECKING:
    from talkgen.job import Job, StageRecord
    from talkgen.portrait import Portrait
    from talkgen.recipe import Recipe


class Progress:
    """What a job tells whoever watches it; the stages print nothing themselves. Stages that
    overlap call it from threads of their own, each naming itself."""

    def stage(self, name: str, total: float | None, unit: str) -> None: ...
    def advance(self, n: float = 1, stage: str = "") -> None: ...
    def done(self, name: str, cache: str) -> None: ...
    def note(self, message: str) -> None: ...
    def turn(self, index: int, question: str) -> None: ...
    def text(self, chunk: str) -> None: ...
    def chunk(self, index: int, seconds: float) -> None:
        """Chunk `index` is finished, `seconds` after the job started (the first: time to first chunk)."""

    def segment(self, index: int, playlist: Path, seconds: float) -> None:
        """Chunk `index` is in the live stream's playlist, `seconds` after the job started."""


@dataclass
class Source:
    """What a job starts from."""

    kind: str  # "audio" (a recording) or "script" (paragraphs: questions, or what to say with `say`)
    path: Path | None = None  # the recording, or the script's file
    text: str | None = ""  # the script's text; None: it comes sentence by sentence (the job's text feed)
    say: bool = False  # speak the text (or the recording's transcript) as it is: no reply
    # Where the text to say comes from, when it is given as it is written (a chat turn's reply):
    # the key of what made it, which the speech is keyed by in place of the text (stages/reply.py origin).
    origin: str = ""
    # The conversation before this job's questions (a served session's earlier turns, as
    # {"role", "content"} messages): the reply goes on from it.
    history: list[dict] = field(default_factory=list)


@dataclass
class Feeds:
    transcript: Value = field(default_factory=Value)  # what Whisper heard (transcript.json's content)
    writer: Value = field(default_factory=Value)  # True once the reply's LLM is loaded (at once, when the replies are cached)
    text: Feed = field(default_factory=Feed)  # (paragraph, sentence): the words to speak, in order
    speech: Value = field(default_factory=Value)  # the SpeechTrack (a LiveTrack while it is spoken)
    chunks: Feed = field(default_factory=Feed)  # the plan's Chunks as they are cut
    plan: Value = field(default_factory=Value)  # the whole Plan
    finished: Feed = field(default_factory=Feed)  # the indices of the chunks on disk, in order

    def fail(self, reason: BaseException) -> None:
        for feed in (self.transcript, self.writer, self.text, self.speech, self.chunks, self.plan, self.finished):
            feed.fail(reason)
        track = self.speech.so_far()
        if track and hasattr(track[0], "fail"):
            track[0].fail(reason)


@dataclass
class Context:
    """One job while its stages run."""

    job: Job
    recipe: Recipe
    source: Source
    engines: Any  # the engine holder (talkgen.holder.Engines): models loaded once, kept across jobs
    progress: Progress
    portrait_path: Path | None = None
    group_root: Path | None = None  # where the avatar's rank group keeps its files
    stale: set[str] = field(default_factory=set)  # stages to make again whatever the cache says
    keys: dict[str, str] = field(default_factory=dict)  # each stage's cache key, all known before any runs
    feeds: Feeds = field(default_factory=Feeds)
    values: dict[str, Any] = field(default_factory=dict)  # what the report needs: transcript, replies, assembly
    ffmpeg: str = ""  # ffmpeg's version line
    overlapped: bool = False  # the stages run side by side, each on what the one before it has made so far

    def portrait(self) -> Portrait:
        return self.engines.portrait(self.portrait_path, self.recipe.render.size)

    def spoken_key(self) -> str:
        """The key of the words the voice speaks: the input's text, the transcript's or the replies'."""
        from talkgen.job import sha256_text

        if not self.source.say:
            return self.keys["reply"]
        if self.source.origin:
            return self.source.origin
        return self.keys["transcribe"] if self.source.kind == "audio" else sha256_text(self.source.text)


def put_text(feed: Feed, text: str) -> None:
    """Every piece the voice says of `text` (text.script.pieces), by paragraph, into the text feed
    as (paragraph, piece, whether it ends a sentence); the feed is then complete."""
    from talkgen.text.script import text_pieces

    for item in text_pieces(text):
        feed.put(item)
    feed.close()


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]  # what it reads: the input or the stages before it
    writes: tuple[str, ...]  # its files in the job
    roles: tuple[str, ...]  # the engine holder's roles it loads (let go after it, unless kept)
    kept: str  # what it leaves, in words, for the line a stopped job prints
    applies: Callable[[Source], bool]
    key: Callable[[Context], str]
    run: Callable[[Context], StageRecord]  # makes its files, filling its feeds as it goes
    load: Callable[[Context], None]  # cached: fills its feeds from its files
    engine: Callable[[Context], tuple[str, str]]  # its engine's name and version, for the report


def stage_list() -> list[Stage]:
    from talkgen.stages import assemble, plan, render, reply, speak, transcribe

    return [transcribe.STAGE, reply.STAGE, speak.STAGE, plan.STAGE, render.STAGE, assemble.STAGE]


NAMES = ("transcribe", "reply", "speak", "plan", "render", "assemble")

__all__ = ["Context", "Feeds", "Progress", "Source", "Stage", "Stopped", "NAMES", "put_text", "stage_list"]
