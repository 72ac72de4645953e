"""The dispatcher: served jobs to the batch's warm workers, and their fate back to the clients.

It runs the batch coordinator's own loop (talkgen.batching.run.run_feed) in a thread, with the
queue on disk under --out, and feeds it:
- first one warm-up job per worker, a short reply rendered from scratch, so that every model is
  loaded before /v1/health says ok (the speech-to-text loads with the first spoken question);
- then the clients' jobs, a few at a time (two per worker: one running, one whose text and voice
  the worker's look-ahead makes), taking the clients in turn so that one client's queue cannot
  starve another's, and a session's jobs one after another, each with the turns before it.
A job not yet fed is cancelled here; a fed one through its cancel flag, which its worker meets at
the next event. The loop writes each job's state into the queue (queue.json), and the dispatcher,
watching those writes, records the job's fate and appends it to the job's event log.
"""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from talkgen.batching import job_events
from talkgen.batching import queue as q
from talkgen.batching.jobs import JobSpec, build_recipe
from talkgen.errors import TalkgenError
from talkgen.server import sessions, views
from talkgen.server.store import ACTIVE, FINISHED, Served, Store, state_dir

FED_PER_WORKER = 2
WARMUP = "Hello there."
WARMUP_PREFIX = ".warmup-"


class _Stop(Exception):
    """Raised by the feed to end the loop: the server is stopping."""


class _Watched(q.Queue):
    """The batch's queue, with every change also told to the dispatcher."""

    def __init__(self, out: Path, changed: Callable[[str, str, dict], None]):
        super().__init__(out)
        self.changed = changed

    def set(self, name: str, digest: str, status: str, **fields) -> None:
        super().set(name, digest, status, **fields)
        self.changed(name, status, fields)


class Dispatcher:
    def __init__(self, store: Store, recipe: str, overrides: list[str], persona: str | None, workers: int,
                 ray_address: str | None, on_fail: Callable[[str], None]):
        self.store, self.out = store, store.out
        self.recipe, self.overrides, self.persona = recipe, list(overrides), persona
        self.base = build_recipe(recipe, self.overrides, persona=persona)
        self.workers, self.ray_address, self.on_fail = workers, ray_address, on_fail
        self.ready = threading.Event()
        self.error: str | None = None
        self._stopping = threading.Event()
        self._warming: set[str] = set()
        self._fed: set[str] = set()
        self._turns: dict[str, float] = {}  # client -> when one of its jobs was last fed
        with store.lock:
            self._waiting = [j.id for j in sorted(store.jobs.values(), key=lambda j: j.created) if j.status in ACTIVE]
            for job_id in self._waiting:  # a server killed while they ran: they run again, from their chunks
                self._set(store.jobs[job_id], "queued")
        self._thread = threading.Thread(target=self._run, name="talkgen-dispatch", daemon=True)

    # -- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        from talkgen.batching.run import run_feed

        try:
            run_feed(self._feed, _Watched(self.out, self._changed), self.base, self.workers, self.ray_address)
            self._fail("every worker was lost: see the worker logs in " + str(q.state_dir(self.out) / "workers"))
        except _Stop:
            pass
        except TalkgenError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: one line for the person, the traceback in the log
            log = state_dir(self.out) / "server.log"
            with open(log, "a", encoding="utf-8") as f:
                f.write(traceback.format_exc())
            self._fail(f"{type(exc).__name__}: {exc} (see {log})")

    def _fail(self, error: str) -> None:
        if self._stopping.is_set():
            return
        self.error = error
        self.ready.set()
        self.on_fail(error)

    # -- the feed --------------------------------------------------------------------------
    def _feed(self) -> list[JobSpec]:
        if self._stopping.is_set():
            raise _Stop
        if not self.ready.is_set():  # the clients' jobs wait for the models
            return [] if self._warming else self._warm_ups()
        specs = []
        with self.store.lock:
            while len(self._fed) < FED_PER_WORKER * self.workers:
                job = self._next()
                if job is None:
                    break
                self._waiting.remove(job.id)
                try:
                    specs.append(self._spec(job))
                except (TalkgenError, OSError) as exc:
                    self._finish(job, "failed", error=str(exc).strip().splitlines()[0])
                    continue
                self._fed.add(job.id)
                self._turns[job.client] = time.monotonic()
        return specs

    def _next(self) -> Served | None:
        """The next job to feed: each client in turn, a session's jobs one at a time, oldest first."""
        busy = {self.store.jobs[j].session for j in self._fed}
        firsts: dict[str, Served] = {}  # each client's oldest job that may go now
        for job_id in self._waiting:
            job = self.store.jobs[job_id]
            if job.session in busy:
                continue
            busy.add(job.session)  # its later jobs wait for it
            firsts.setdefault(job.client, job)
        if not firsts:
            return None
        return min(firsts.values(), key=lambda j: (self._turns.get(j.client, 0.0), j.created))

    def _spec(self, job: Served) -> JobSpec:
        history, persona = sessions.history(self.out, job.session)
        persona = job.persona or persona or self.persona
        voice = self.store.input_path(job, "voice")
        recipe = build_recipe(self.recipe, self.overrides + [f"{k}={v}" for k, v in job.overrides.items()], persona=persona,
                              voice=voice)
        question = self.store.input_path(job, "audio") or self.store.input_path(job, "question")
        portrait = self.store.input_path(job, "portrait")
        return JobSpec(name=job.id, input=str(question), say=job.say, recipe=recipe.to_dict(),
                       portrait=str(portrait) if portrait else None, history=[] if job.say else history, live=True)

    def _warm_ups(self) -> list[JobSpec]:
        script = state_dir(self.out) / "warmup.txt"
        script.write_text(WARMUP + "\n", encoding="utf-8")
        recipe = build_recipe(self.recipe, self.overrides + ["llm.max_reply_words=8"], persona=self.persona)
        specs = [JobSpec(name=f"{WARMUP_PREFIX}{i}", input=str(script), say=False, recipe=recipe.to_dict(),
                         force=["reply", "speak", "plan", "render", "assemble"]) for i in range(self.workers)]
        self._warming = {s.name for s in specs}
        return specs

    # -- what the loop tells ---------------------------------------------------------------
    def _changed(self, name: str, status: str, fields: dict) -> None:
        if name.startswith(WARMUP_PREFIX):
            return self._warmed(name, status, fields)
        with self.store.lock:
            job = self.store.get(name)
            if job is None or job.status in FINISHED:
                if status in FINISHED:
                    self._fed.discard(name)
                return
            if status == "running" or (status == "pending" and fields.get("promised_to")):
                self._set(job, "running")
            elif status == "pending":
                self._set(job, "queued")  # its worker was lost: it goes to another, and resumes from its chunks
            elif status == "done":
                self._fed.discard(name)
                self._done(job, fields["result"])
            elif status == "failed":
                self._fed.discard(name)
                self._finish(job, "failed", error=fields.get("error") or "failed")

    def _warmed(self, name: str, status: str, fields: dict) -> None:
        if status not in FINISHED:
            return
        for path in (q.video_path(self.out, name), q.video_path(self.out, name).with_suffix(".srt"),
                     self.out / f"{name}.report.json"):
            path.unlink(missing_ok=True)
        self._warming.discard(name)
        if status == "failed":
            self._fail(f"the warm-up job failed: {fields.get('error')}")
            self._stopping.set()
        elif not self._warming:
            self.ready.set()

    def _set(self, job: Served, status: str) -> None:
        if job.status != status:
            job_events.append(self.store.job_dir(job.id), "status", status=status)
            self.store.update(job, status=status)

    def _done(self, job: Served, result: dict) -> None:
        report = views.read_report(self.out, job.id) or {}
        turns = report.get("conversation") or []
        heard = views.heard(self.store.job_dir(job.id)) if "audio" in job.inputs else None
        said = heard if job.say and heard else job.question
        reply = said if job.say else " ".join(t["reply"] for t in turns)
        if turns and not job.say:
            sessions.add_turns(self.out, job.session, job.id, turns, job.persona, spoken="audio" in job.inputs)
        _, first = views.progress(self.store.job_dir(job.id))
        self._finish(job, "done", result=result, reply=reply, heard=heard, first_chunk_s=first)

    def _finish(self, job: Served, status: str, **fields) -> None:
        """The job's last state: into its event log first, then its record, so a record that says
        finished always has its last event (a server killed between runs the job again)."""
        with self.store.lock:
            for k, v in dict(fields, status=status, finished=time.time()).items():
                setattr(job, k, v)
            if status == "done":
                job_events.append(self.store.job_dir(job.id), "done", job=views.view(self.store, job))
            elif status == "failed":
                job_events.append(self.store.job_dir(job.id), "failed", error=job.error)
            else:
                job_events.append(self.store.job_dir(job.id), status)
            self.store.save(job)

    # -- what the clients ask --------------------------------------------------------------
    def submit(self, job: Served) -> None:
        with self.store.lock:
            self.store.job_dir(job.id).mkdir(parents=True, exist_ok=True)
            job_events.append(self.store.job_dir(job.id), "status", status="queued")
            self._waiting.append(job.id)

    def cancel(self, job: Served) -> bool:
        """Cancel a job not finished (False for one that is)."""
        with self.store.lock:
            if job.status in FINISHED:
                return False
            if job.id in self._waiting:
                self._waiting.remove(job.id)
            else:
                job_events.cancel(self.store.job_dir(job.id))  # its worker stops it at its next event
            self._finish(job, "cancelled")
            return True
