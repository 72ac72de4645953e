"""A served job as the API shows it: GET /v1/jobs/{id}, the list, and the done event."""

from __future__ import annotations

import json
import time
from pathlib import Path

from talkgen.batching import job_events
from talkgen.server import files
from talkgen.server.store import FINISHED, Served, Store


def view(store: Store, job: Served, report: bool = True) -> dict:
    """The job's JSON; while it runs, the reply as written so far (from its event log)."""
    result = job.result or {}
    question, reply, first_chunk_s = job.question, job.reply, job.first_chunk_s
    if job.status not in FINISHED:
        reply, first_chunk_s = progress(store.job_dir(job.id))
        question = question or heard(store.job_dir(job.id))
    elif job.heard:
        question = job.heard
    base = f"/v1/jobs/{job.id}"
    out = {
        "id": job.id, "status": job.status, "created": _iso(job.created), "session": job.session, "say": job.say,
        "source": "spoken" if "audio" in job.inputs else "typed", "persona": job.persona, "question": question,
        "reply": reply or None, "video_s": result.get("video_s"), "render_s": result.get("wall_s"),
        "wall_s": round(job.finished - job.created, 3) if job.finished else None, "cost_usd": result.get("cost_usd"),
        "error": job.error, "first_chunk_s": first_chunk_s,
        "urls": {"live": f"{base}/live.m3u8", "video": f"{base}/video.mp4", "srt": f"{base}/video.srt", "report": f"{base}/report.json",
                 "events": f"{base}/events"},
    }
    if report and job.status == "done":
        out["report"] = read_report(store.out, job.id)
    return out


def progress(job_dir: Path) -> tuple[str, float | None]:
    """The reply written so far and the first chunk's time, from the job's event log."""
    events, _ = job_events.read(job_dir)
    text = "".join(e.get("text", "") for e in events if e.get("event") == "text")
    first = next((e.get("first_chunk_s") for e in events if e.get("event") == "chunk" and e.get("index") == 0), None)
    return text.strip(), first


def heard(job_dir: Path) -> str | None:
    """A recorded question's words, once transcribed."""
    try:
        return json.loads((job_dir / "transcript.json").read_text(encoding="utf-8")).get("text")
    except (OSError, ValueError, AttributeError):
        return None


def read_report(out: Path, job_id: str) -> dict | None:
    try:
        return json.loads(files.report(out, job_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
