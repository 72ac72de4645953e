"""Where a served job's files are, and the live playlist as a client gets it.

The video, its subtitles and its report are what `talkgen batch` publishes for a job named as
the job's id. The live HLS playlist is what the sequencer writes beside the video of a job run
live (every served job is), its segments in a folder beside it: live_playlist() is the one
place that says where it is.
A client gets it rewritten so that every segment is fetched through /v1/jobs/{id}/live/..., and
only the segments the playlist lists are served: the route can reach no other file.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from talkgen.batching import queue as q

_URI_ATTR = re.compile(r'URI="([^"]*)"')


def video(out: Path, job_id: str) -> Path:
    return q.video_path(out, job_id)


def subtitles(out: Path, job_id: str) -> Path:
    return video(out, job_id).with_suffix(".srt")


def report(out: Path, job_id: str) -> Path:
    return out / f"{job_id}.report.json"


def live_playlist(out: Path, job_id: str) -> Path:
    """The job's live HLS playlist, beside its video (talkgen.live). Until the job's first
    segment is written, its live route answers 404."""
    from talkgen.live import playlist_for

    return playlist_for(video(out, job_id))


def listed(playlist_text: str) -> list[str]:
    """The files a playlist names (its segments, and an init segment's URI), as written in it."""
    names = []
    for line in playlist_text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            names += _URI_ATTR.findall(line)
        elif line:
            names.append(line)
    return names


def segment(out: Path, job_id: str, name: str) -> Path | None:
    """The segment `name` if the job's playlist lists it and it is a file under the playlist's folder."""
    playlist = live_playlist(out, job_id)
    try:
        text = playlist.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if name not in listed(text) or name.startswith("/") or ".." in Path(name).parts or "://" in name:
        return None
    from talkgen.live import segments_for

    path = (playlist.parent / name).resolve()
    if not path.is_relative_to(segments_for(playlist).resolve()) or not path.is_file():
        return None
    return path


def for_client(playlist_text: str, token: str | None) -> str:
    """The playlist with each file it names fetched through the job's live/ route (with the token, if the client sent one)."""
    suffix = f"?token={quote(token)}" if token else ""

    def routed(name: str) -> str:
        return f"live/{quote(name)}{suffix}"

    lines = []
    for line in playlist_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            lines.append(_URI_ATTR.sub(lambda m: f'URI="{routed(m.group(1))}"', line))
        elif stripped:
            lines.append(routed(stripped))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"
