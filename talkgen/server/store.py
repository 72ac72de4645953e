"""The served jobs on disk: what each client asked, and what became of it.

    <out>/.talkgen-serve/jobs/<id>/job.json    the job: who asked what, its status and result
    <out>/.talkgen-serve/jobs/<id>/*.upload    the question's recording, a portrait, a voice
    <out>/.talkgen-serve/jobs/<id>/question.txt a typed question
    <out>/.talkgen-batch/jobs/<id>/            its job directory (stages, chunks, events.jsonl)
    <out>/<id>.mp4, .srt, .report.json         what it made

job.json is rewritten whole and renamed into place at every change, so a server killed at any
point finds each job as it last was; one not finished is run again, and resumes from its chunks.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from talkgen.batching import queue as q
from talkgen.job import write_json_atomic

STATE = ".talkgen-serve"
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


@dataclass
class Served:
    id: str
    created: float
    client: str
    session: str
    say: bool
    persona: str | None
    overrides: dict
    question: str | None  # typed; a recording's words are known once it is transcribed
    inputs: dict[str, str]  # audio or question, portrait, voice: file names in the job's request folder
    status: str = "queued"
    error: str | None = None
    finished: float | None = None
    result: dict | None = None  # the worker's result (batch report entry), once done
    reply: str | None = None  # final, once done
    heard: str | None = None  # a recording's transcript, once done
    first_chunk_s: float | None = None
    cancel_asked: bool = False


def state_dir(out: Path) -> Path:
    return out / STATE


def request_dir(out: Path, job_id: str) -> Path:
    return state_dir(out) / "jobs" / job_id


def new_id() -> str:
    """Sortable by time, unguessable: 20260102-153000-1a2b3c4d."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


class Store:
    def __init__(self, out: Path):
        self.out = out
        self.jobs: dict[str, Served] = {}
        self.lock = threading.RLock()
        (state_dir(out) / "jobs").mkdir(parents=True, exist_ok=True)
        shutil.rmtree(state_dir(out) / "incoming", ignore_errors=True)  # uploads a killed server was still reading
        for path in sorted((state_dir(out) / "jobs").glob("*/job.json")):
            try:
                job = Served(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue  # accepted but never recorded whole: the client was not told it exists
            self.jobs[job.id] = job

    def incoming(self) -> Path:
        """A folder for a request's uploads while they stream, before it is a job."""
        folder = state_dir(self.out) / "incoming" / secrets.token_hex(8)
        folder.mkdir(parents=True)
        return folder

    def add(self, job: Served, uploads: Path | None) -> None:
        """Record an accepted job, its uploads moved into its own folder."""
        folder = request_dir(self.out, job.id)
        if uploads is not None:
            uploads.rename(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.jobs[job.id] = job
            self.save(job)

    def save(self, job: Served) -> None:
        write_json_atomic(request_dir(self.out, job.id) / "job.json", asdict(job))

    def get(self, job_id: str) -> Served | None:
        return self.jobs.get(job_id)

    def newest_first(self) -> list[Served]:
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: (j.created, j.id), reverse=True)

    def active(self, client: str) -> int:
        with self.lock:
            return sum(1 for j in self.jobs.values() if j.client == client and j.status in ACTIVE)

    def update(self, job: Served, **fields) -> None:
        with self.lock:
            for k, v in fields.items():
                setattr(job, k, v)
            self.save(job)

    def input_path(self, job: Served, name: str) -> Path | None:
        rel = job.inputs.get(name)
        return request_dir(self.out, job.id) / rel if rel else None

    def job_dir(self, job_id: str) -> Path:
        return q.job_dir(self.out, job_id)

    @staticmethod
    def discard(folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
