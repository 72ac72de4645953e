"""The HTTP API and the page: routes only; what they rely on lives in the modules beside this one.

Every refusal is a 4xx with {"error": "one line saying what to do"}; nothing a client sends
gets a 5xx. The routes are listed in docs/serve.md and, with their schemas, at /docs.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from talkgen.errors import TalkgenError
from talkgen.server import events, files, intake, sessions, uploads
from talkgen.server.auth import opened_by_url
from talkgen.server.dispatch import Dispatcher
from talkgen.server.intake import Rejected
from talkgen.server.store import Served, Store, new_id, state_dir
from talkgen.server.views import view

PAGE = Path(__file__).resolve().parent / "page"
_JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$")
_MEDIA = {".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".aac": "audio/aac", ".m3u8": "application/vnd.apple.mpegurl"}


@dataclass
class State:
    store: Store
    dispatcher: Dispatcher
    recipe: str
    workers: int
    persona: str
    max_queued: int
    stopping: threading.Event = field(default_factory=threading.Event)


def _error(status: int, message: str, close: bool = False) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"connection": "close"} if close else None)


def build(state: State) -> FastAPI:
    store, dispatcher = state.store, state.dispatcher
    out = store.out

    def known_query(request: Request) -> None:
        if not request.url.path.startswith("/v1/"):
            return
        allowed = {"token"} if request.method in ("GET", "HEAD") and opened_by_url(request.url.path) else set()
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise Rejected(400, f"unknown query parameter '{unknown[0][:40]}'" + (": only ?token= is taken here" if allowed else ""))

    app = FastAPI(title="talkgen serve", summary="Talking-avatar jobs on your own hardware", docs_url="/docs", redoc_url=None,
                  dependencies=[Depends(known_query)])

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected):
        return _error(exc.status, exc.message, close=request.method == "POST")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return _error(404, f"no route {request.method} {request.url.path[:80]}: the API is under /v1 (see /docs)")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not a method of {request.url.path[:80]} (see /docs)")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return _error(400, f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log = state_dir(out) / "server.log"
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {request.method} {request.url.path}\n{traceback.format_exc()}\n")
        return _error(500, f"the server failed ({type(exc).__name__}): the traceback is in {log}")

    def job_or_404(job_id: str) -> Served:
        job = store.get(job_id) if _JOB_ID.match(job_id) else None
        if job is None:
            raise Rejected(404, f"no job '{job_id[:40]}': GET /v1/jobs lists them")
        return job

    # -- the page ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page():
        return page_file("index.html")

    @app.get("/page/{name:path}", include_in_schema=False)
    def page_file(name: str):
        path = (PAGE / name).resolve()
        if not path.is_relative_to(PAGE.resolve()) or not path.is_file():
            raise Rejected(404, f"no page file '{name[:60]}'")
        return FileResponse(path)

    # -- the API -----------------------------------------------------------------------------
    @app.get("/v1/health", summary="200 once the models are loaded; 503 before")
    def health():
        if dispatcher.error:
            return _error(503, dispatcher.error)
        if not dispatcher.ready.is_set():
            return _error(503, "loading: the workers are loading their models (a warm-up job each)")
        return {"status": "ok", "recipe": state.recipe, "workers": state.workers, "persona": state.persona}

    @app.post("/v1/jobs", status_code=202, summary="Ask a question (or, with say, have words said): a job",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": intake.JobIn.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      **{k: {"type": "string"} for k in intake.TEXT_FIELDS},
                      **{k: {"type": "string", "format": "binary"} for k in intake.FILE_FIELDS}}}}}}})
    async def submit(request: Request):
        client = request.client.host if request.client else "unknown"
        if dispatcher.error:
            return _error(503, dispatcher.error)
        _limit(client)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        length = request.headers.get("content-length")
        length = int(length) if length and length.isdigit() else None
        folder = None
        try:
            if kind == "application/json":
                ask = intake.from_json(await uploads.read_json(request.stream(), length))
            elif kind == "multipart/form-data":
                folder = store.incoming()
                fields, found = await uploads.read_form(request.stream(), request.headers["content-type"], length, folder)
                ask = intake.from_form(fields, found)
            else:
                raise Rejected(415, "send the job as JSON (Content-Type: application/json) or as a multipart form (with a recording)")
            job = await run_in_threadpool(_accept, ask, client, folder)
        except ClientDisconnect:
            if folder is not None:
                Store.discard(folder)
            return Response(status_code=400)  # nobody is there to read it
        except BaseException:
            if folder is not None:
                Store.discard(folder)
            raise
        return JSONResponse({"id": job.id, "status": job.status, "session": job.session}, status_code=202,
                            headers={"location": f"/v1/jobs/{job.id}"})

    def _limit(client: str) -> None:
        if store.active(client) >= state.max_queued:
            raise Rejected(429, f"this client has {state.max_queued} jobs queued or running: wait for one to finish, or cancel one")

    def _accept(ask: intake.Ask, client: str, folder: Path | None) -> Served:
        """Judge the uploads and the settings (in a thread: ffmpeg, the face finder), then queue the job."""
        from talkgen.batching.jobs import build_recipe

        if "voice" in ask.files and dispatcher.base.tts.engine != "f5-tts":
            raise Rejected(400, f"voice: this server speaks with {dispatcher.base.tts.engine}, which does not clone a voice: leave voice out")
        inputs = {}
        for name, judge in (("audio", intake.judge_audio), ("portrait", intake.judge_portrait), ("voice", intake.judge_voice)):
            if name in ask.files:
                judge(ask.files[name])
                inputs[name] = ask.files[name].name
        try:
            build_recipe(dispatcher.recipe, dispatcher.overrides + ask.override_items(), persona=ask.persona,
                         voice=ask.files.get("voice"))
        except TalkgenError as exc:
            raise Rejected(400, str(exc).replace(str(folder), "upload") if folder else str(exc)) from None
        _limit(client)  # again: the client may have sent others while this one streamed
        session = sessions.folder(out, ask.session).name if ask.session else sessions.create(out, dispatcher.base.to_dict())
        if ask.script is not None:
            folder = folder or store.incoming()
            (folder / "question.txt").write_text(ask.script.strip() + "\n", encoding="utf-8")
            inputs["question"] = "question.txt"
        job = Served(id=new_id(), created=time.time(), client=client, session=session, say=ask.say, persona=ask.persona,
                     overrides=ask.overrides, question=ask.script, inputs=inputs)
        store.add(job, folder)
        dispatcher.submit(job)
        return job

    @app.get("/v1/jobs", summary="The jobs, newest first")
    def jobs():
        return {"jobs": [view(store, j, report=False) for j in store.newest_first()]}

    @app.get("/v1/jobs/{job_id}", summary="A job: its status, and its report when done")
    def job(job_id: str):
        return view(store, job_or_404(job_id))

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a job")
    def cancel(job_id: str):
        found = job_or_404(job_id)
        if not dispatcher.cancel(found):
            raise Rejected(409, f"job {job_id} is already {found.status}: only a queued or running job can be cancelled")
        return {"id": found.id, "status": found.status}

    @app.get("/v1/jobs/{job_id}/events", summary="Server-sent events: status, text, stage, chunk, segment, done/failed/cancelled")
    def job_events(job_id: str, request: Request):
        job_or_404(job_id)
        after = request.headers.get("last-event-id", "0")
        after = int(after) if after.isdigit() else 0
        return StreamingResponse(events.stream(store.job_dir(job_id), after, state.stopping.is_set), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.get("/v1/jobs/{job_id}/live.m3u8", summary="The live HLS playlist (404 until its first segment)")
    def live(job_id: str, request: Request):
        job_or_404(job_id)
        try:
            text = files.live_playlist(out, job_id).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise Rejected(404, f"job {job_id} has no live stream yet: wait for its first segment event, or play video.mp4 when done") from None
        return Response(files.for_client(text, request.query_params.get("token")), media_type=_MEDIA[".m3u8"],
                        headers={"cache-control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/live/{name:path}", summary="A segment the live playlist lists")
    def live_segment(job_id: str, name: str):
        job_or_404(job_id)
        path = files.segment(out, job_id, name)
        if path is None:
            raise Rejected(404, f"job {job_id}'s live playlist lists no segment '{name[:60]}'")
        return FileResponse(path, media_type=_MEDIA.get(path.suffix, "application/octet-stream"))

    def finished_file(job_id: str, path: Path, media_type: str):
        found = job_or_404(job_id)
        if found.status != "done" or not path.is_file():
            raise Rejected(404, f"job {job_id} is {found.status}: its files are there once it is done")
        return FileResponse(path, media_type=media_type)

    @app.get("/v1/jobs/{job_id}/video.mp4", summary="The video, once done")
    def video(job_id: str):
        return finished_file(job_id, files.video(out, job_id), "video/mp4")

    @app.get("/v1/jobs/{job_id}/video.srt", summary="Its subtitles, once done")
    def subtitles(job_id: str):
        return finished_file(job_id, files.subtitles(out, job_id), "application/x-subrip")

    @app.get("/v1/jobs/{job_id}/report.json", summary="Its report, once done")
    def report(job_id: str):
        return finished_file(job_id, files.report(out, job_id), "application/json")

    return app

