"""talkgen serve on loopback, with the real server: uvicorn and its warm worker in a subprocess.

One server (no token, on 127.0.0.1) serves the module's tests in order; the last test kills it
with SIGKILL in the middle of a job and starts it again on the same folder, now with a token,
which resumes the job from its chunks and answers the token tests. Every wait is bounded.
"""

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_browser import children_of

from talkgen import media
from talkgen.speech import WavWriter
from talkgen.stages.reply import bound_words

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "examples" / "question.wav"
SMALL = ["render.size=96", "render.max_chunk_s=1", "render.min_chunk_s=0.5"]
JOB_S = 300  # the longest any job may take here, under a shared machine's load
HOSTILE = ["render.python", "render.launcher", "render.gpus", "render.portrait", "render.engine", "render.nproc", "llm.model",
           "llm.weights", "llm.persona", "tts.voice", "tts.model", "tts.vocoder", "stt.model", "placement.avatar", "placement.llm",
           "render.liveavatar.checkout", "render.liveavatar.ckpt_dir", "cost.gpu_hour_usd", "render", "../../x"]


class Server:
    """`talkgen serve --port 0` in a subprocess; its address read from its first line."""

    def __init__(self, out: Path, *args: str):
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-m", "talkgen", "serve", "--port", "0", "--out", str(out), *args, *SMALL],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=out.parent)
        self.lines: list[str] = []
        self.url = ""
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"http://127\.0\.0\.1:\d+", line)
                if m and not self.url:
                    self.url = m.group(0)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        assert found.wait(120) and self.url, self.lines

    def wait_ready(self, headers: dict | None = None) -> None:
        deadline = time.monotonic() + JOB_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.lines
            try:
                if httpx.get(self.url + "/v1/health", headers=headers, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"not ready in {JOB_S} s: {self.lines}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def events(client: httpx.Client, job_id: str, headers: dict | None = None, params: dict | None = None,
           on_event=None) -> list[tuple[int, str, dict]]:
    """Every event of the job, read as a client reads them, to its last (bounded in time);
    on_event(name, data) is called as each arrives."""
    found = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, params=params, timeout=JOB_S) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        block: dict = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if block:
                    found.append((int(block["id"]), block["event"], json.loads(block["data"])))
                    if on_event:
                        on_event(found[-1][1], found[-1][2])
                    block = {}
                continue
            key, _, value = line.partition(": ")
            block[key] = value
    return found


def one_line_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"], body
    return body["error"]


def ask(client: httpx.Client, **job) -> dict:
    r = client.post("/v1/jobs", json=job)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "out"
    s = Server(out, "--max-queued", "6")
    s.wait_ready()
    yield s
    s.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_a_job_end_to_end_its_events_and_its_files(server, client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["recipe"] == "cpu" and health["workers"] == 1
    script = "The server speaks. It says this. Then it says more, so that the stream is watched while it grows. And more."
    posted = ask(client, script=script, say=True)
    assert posted["status"] == "queued" and posted["session"]
    early = []  # the live playlist, fetched when the first segment event came

    def watch(name: str, data: dict) -> None:
        if name == "segment" and data["index"] == 0:
            early.append(client.get(f"/v1/jobs/{posted['id']}/live.m3u8"))

    got = events(client, posted["id"], on_event=watch)
    names = [name for _, name, _ in got]
    assert [n for _, n, _ in got][:2] == ["status", "status"] and got[0][2]["status"] == "queued" and got[1][2]["status"] == "running"
    # A served job runs live, its stages side by side: each ends once, in whatever order, assemble last.
    ended = [d["name"] for _, n, d in got if n == "stage"]
    assert sorted(ended) == sorted(["speak", "plan", "render", "assemble"]) and ended[-1] == "assemble", names
    chunks = [d for _, n, d in got if n == "chunk"]
    assert [c["index"] for c in chunks] == list(range(len(chunks))) and len(chunks) >= 2 and chunks[0]["first_chunk_s"] > 0
    assert names[-1] == "done" and [i for i, _, _ in got] == list(range(1, len(got) + 1))
    job = client.get(f"/v1/jobs/{posted['id']}").json()
    assert job == {**got[-1][2]["job"], "report": job["report"]}
    assert job["status"] == "done" and job["question"] == job["reply"] == script
    assert job["video_s"] > 1 and job["render_s"] > 0 and job["wall_s"] >= job["render_s"] and job["cost_usd"] == 0.0
    assert job["first_chunk_s"] == chunks[0]["first_chunk_s"] and job["report"]["check"]["ok"]
    video = client.get(job["urls"]["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = server.out / "fetched.mp4"
    path.write_bytes(video.content)
    assert abs(float(media.probe(path)["format"]["duration"]) - job["video_s"]) < 0.1
    assert client.get(job["urls"]["video"], headers={"range": "bytes=0-99"}).status_code == 206
    assert "It says this." in client.get(job["urls"]["srt"]).text
    assert client.get(job["urls"]["report"]).json()["video_s"] == job["video_s"]
    # A late client gets every event from the start; one that lost its connection, the ones after its last.
    assert events(client, posted["id"]) == got
    assert events(client, posted["id"], headers={"last-event-id": "3"}) == got[3:]
    assert client.get("/v1/jobs").json()["jobs"][0]["id"] == posted["id"]
    # The live stream: a segment event for each chunk, and the playlist, ended, lists each one,
    # fetched through the job's live/ route.
    # While it rendered: at its first segment event the playlist listed that segment, and had not ended.
    assert early[0].status_code == 200 and "#EXTINF" in early[0].text and "#EXT-X-ENDLIST" not in early[0].text, early[0].text
    segments = [d for _, n, d in got if n == "segment"]
    assert [s["index"] for s in segments] == list(range(len(chunks))) and segments[0]["first_segment_s"] > 0
    playlist = client.get(job["urls"]["live"])
    assert playlist.status_code == 200 and playlist.text.rstrip().endswith("#EXT-X-ENDLIST")
    listed = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
    assert len(listed) == len(chunks) and all(line.startswith("live/") for line in listed)
    first = client.get(f"/v1/jobs/{posted['id']}/{listed[0]}")
    assert first.status_code == 200 and first.headers["content-type"] == "video/mp2t" and first.content[:1] == b"G"  # MPEG-TS sync byte
    one_line_error(client.get(f"/v1/jobs/{posted['id']}/live/{posted['id']}.mp4"), 404)


def test_a_session_goes_on_from_its_earlier_turns_and_the_reply_streams(server, client):
    words = {"llm.max_reply_words": 8}
    first = ask(client, script="My name is Ada.", persona="a cheerful astronomer", overrides=words)
    second = ask(client, script="What is my name?", session=first["session"], overrides=words)
    assert second["session"] == first["session"]
    for posted in (first, second):
        got = events(client, posted["id"])
        assert got[-1][1] == "done", got
        streamed = "".join(d["text"] for _, n, d in got if n == "text")
        assert bound_words(streamed, 8) == got[-1][2]["job"]["reply"]  # the reply, as it was written
    reply = json.loads((server.out / ".talkgen-batch" / "jobs" / second["id"] / "reply.json").read_text())
    said = [m["content"] for m in reply["messages"]]
    assert "cheerful astronomer" in said[0] and said[1] == "My name is Ada." and said[3] == "What is my name?"
    assert said[2] == client.get(f"/v1/jobs/{first['id']}").json()["reply"]
    assert reply["turns"][0]["seed"] == 1  # the session's second turn, as chat numbers it


def test_a_recorded_question_with_a_portrait(server, client):
    from talkgen.portrait import DEFAULT_PORTRAIT

    with open(QUESTION, "rb") as audio, open(DEFAULT_PORTRAIT, "rb") as face:
        r = client.post("/v1/jobs", data={"say": "true"}, files={"audio": ("q.bin", audio), "portrait": ("me", face)})
    assert r.status_code == 202, r.text
    got = events(client, r.json()["id"])
    job = got[-1][2]["job"]
    assert got[-1][1] == "done" and job["source"] == "spoken" and "tallest mountain" in job["question"].lower()
    assert job["reply"] == job["question"]  # said as heard


def test_every_hostile_or_broken_request_gets_a_4xx_in_one_line(server, client):
    before = len(client.get("/v1/jobs").json()["jobs"])
    for key in HOSTILE:
        assert "not a setting a client may change" in one_line_error(client.post("/v1/jobs", json={"script": "Hi.", "overrides": {key: "/bin/sh"}}), 400)
    bad = [
        ({"script": "Hi.", "overrides": {"render.size": 97}}, "even whole number"),
        ({"script": "Hi.", "overrides": {"render.size": 100000}}, "from 64 to 1024"),
        ({"script": "Hi.", "overrides": {"llm.max_reply_words": "6; rm -rf /"}}, "whole number"),
        ({"script": "Hi.", "overrides": {"llm.temperature": True}}, "a number"),
        ({"script": "Hi.", "overrides": "render.python=/bin/sh"}, "overrides"),
        ({"script": "Hi.", "colour": "red"}, "unknown field 'colour'"),
        ({"script": "Hi.", "say": "yes"}, "say"),
        ({"script": 5}, "script"),
        ({"say": True}, "exactly one question"),
        ({"script": "   "}, "no words"),
        ({"script": "x" * 3000}, "at most"),
        ({"script": "Hi.", "persona": ""}, "persona"),
        ({"script": "Hi.", "session": "../../../etc"}, "no session"),
        ({"script": "Hi.", "session": "0123456789abcdef"}, "no session"),
    ]
    for body, words in bad:
        assert words in one_line_error(client.post("/v1/jobs", json=body), 400), body
    one_line_error(client.post("/v1/jobs", content=b"[1]", headers={"content-type": "application/json"}), 400)
    one_line_error(client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}), 400)
    one_line_error(client.post("/v1/jobs", content=b"script=hi", headers={"content-type": "text/plain"}), 415)
    one_line_error(client.post("/v1/jobs", content=b"x" * 70000, headers={"content-type": "application/json"}), 413)
    for boundary, body in (("", b"x"), ("b" * 100, b"--" + b"b" * 100), ("b", b"garbage"), ("b", b"--b\r\nno headers end"),
                           ("b", b'--b\r\nContent-Disposition: form-data; name="script"\r\n\r\n\xff\xfe\r\n--b--\r\n')):
        form = {"content-type": f"multipart/form-data; boundary={boundary}"}
        one_line_error(client.post("/v1/jobs", content=body, headers=form), 400)
    one_line_error(client.post("/v1/jobs?debug=1", json={"script": "Hi."}), 400)
    one_line_error(client.get("/v1/jobs", params={"token": "x"}), 400)
    one_line_error(client.get("/v1/jobs/..%2f..%2fetc"), 404)
    one_line_error(client.get("/v1/jobs/20260101-000000-00000000"), 404)
    one_line_error(client.delete("/v1/jobs/nope"), 404)
    one_line_error(client.get("/v1/nothing"), 404)
    one_line_error(client.put("/v1/jobs"), 405)
    one_line_error(client.get("/page/../../talkgen/server/app.py"), 404)
    one_line_error(client.get("/page/%2e%2e/app.py"), 404)
    # A page of another origin, and a name rebound to 127.0.0.1, are turned away.
    one_line_error(client.post("/v1/jobs", json={"script": "Hi."}, headers={"origin": "http://evil.example"}), 403)
    one_line_error(client.get("/v1/health", headers={"host": "evil.example"}), 403)
    assert len(client.get("/v1/jobs").json()["jobs"]) == before
    assert not (server.out / ".talkgen-serve" / "server.log").exists()  # no request met a bug (a 500 is logged there)


def _form(parts: list[tuple[str, str, bytes]], boundary: str = "talkgen-test-boundary") -> bytes:
    body = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _raw(url: str, head: bytes, blocks) -> tuple[bytes, int]:
    """Send a request by hand, stopping as soon as an answer comes: the answer, and how many
    body bytes had been sent by then."""
    import select

    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sent, reply = 0, b""
    try:
        sock.sendall(head)
        sock.setblocking(False)
        pending = b""
        blocks = iter(blocks)
        while True:
            if not pending:
                pending = next(blocks, b"")
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 10)
            if readable or not pending:
                break
            n = sock.send(pending)
            sent, pending = sent + n, pending[n:]
        sock.setblocking(True)
        while True:  # the server closes the connection after a refusal
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    return reply, sent


def test_uploads_are_capped_while_they_stream_and_judged_by_content(server, client, tmp_path):
    host = server.url.removeprefix("http://")
    # A declared length over the cap: refused before a byte of the body.
    head = f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    reply, sent = _raw(server.url, f"{head}Content-Length: {200 << 20}\r\n\r\n".encode(), [])
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # A recording that grows past its cap, sent chunked: refused while it streams, the connection closed.
    part = b'--b\r\nContent-Disposition: form-data; name="audio"; filename="q.wav"\r\n\r\n'
    blocks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (1 << 20, b"\0" * (1 << 20))] * 60
    reply, sent = _raw(server.url, f"{head}Transfer-Encoding: chunked\r\n\r\n".encode(), blocks)
    assert reply.startswith(b"HTTP/1.1 413") and b"audio is over 20 MB" in reply, reply[:300]
    assert sent < 40 << 20  # the rest was never read
    # Judged by what they are, not by their names.
    long = tmp_path / "long.wav"
    w = WavWriter(long, 16000)
    w.write((0.1 * np.sin(np.arange(16000 * 70) / 10)).astype(np.float32))
    w.close()
    text = tmp_path / "q.wav"
    text.write_text("What is a comet?\n")
    cases = [({"audio": ("q.wav", long.read_bytes())}, 413, "longer than 60 s"),
             ({"audio": ("q.wav", text.read_bytes())}, 400, "audio"),
             ({"audio": ("q.wav", b"RIFF\0\0\0\0WAVEjunk" * 100)}, 400, "audio"),
             ({"audio": ("q.wav", QUESTION.read_bytes()), "portrait": ("me.png", QUESTION.read_bytes())}, 400, "PNG or JPEG"),
             ({"audio": ("q.wav", QUESTION.read_bytes()), "voice": ("v.wav", QUESTION.read_bytes())}, 400, "does not clone a voice"),
             ({"audio": ("q.wav", QUESTION.read_bytes()), "resume": ("r", b"x")}, 400, "unknown field 'resume'")]
    blank = tmp_path / "blank.png"
    from talkgen.png import write_png

    write_png(blank, np.full((64, 64, 3), 200, np.uint8))
    cases.append(({"audio": ("q.wav", QUESTION.read_bytes()), "portrait": ("me.png", blank.read_bytes())}, 400, "face"))
    for files, status, words in cases:
        error = one_line_error(client.post("/v1/jobs", files=files), status)
        assert words in error and str(server.out) not in error, error
    one_line_error(client.post("/v1/jobs", files={"audio": ("q.wav", QUESTION.read_bytes())}, data={"script": "Hi."}), 400)
    assert not any((server.out / ".talkgen-serve" / "incoming").iterdir())  # nothing refused is kept


def test_one_client_is_held_to_its_share_and_a_job_can_be_cancelled(server, client):
    posted = []
    for _ in range(7):
        r = client.post("/v1/jobs", json={"script": "One more question, please.", "say": True})
        if r.status_code == 429:
            assert "6 jobs queued or running" in one_line_error(r, 429)
            break
        posted.append(r.json()["id"])
    else:
        raise AssertionError("no 429 after 7 jobs")
    for job_id in posted:
        r = client.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200 and r.json() == {"id": job_id, "status": "cancelled"}, r.text
        one_line_error(client.delete(f"/v1/jobs/{job_id}"), 409)
        assert events(client, job_id)[-1][1] == "cancelled"
        one_line_error(client.get(f"/v1/jobs/{job_id}/video.mp4"), 404)
    assert client.post("/v1/jobs", json={"script": "Hi.", "say": True}).status_code == 202  # its share is free again


def test_four_clients_at_once_while_others_vanish(server):
    host = server.url.removeprefix("http://")
    # A client that goes away mid-stream, and one that goes away mid-upload.
    with httpx.Client(base_url=server.url, timeout=60) as c:
        job_id = c.get("/v1/jobs").json()["jobs"][-1]["id"]
        with c.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            next(r.iter_lines())
    sock = socket.create_connection(host.split(":"))
    sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                 "Content-Length: 5000000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"audio\"\r\n\r\n".encode() + b"\0" * 100000)
    sock.close()
    results: dict[int, object] = {}

    def one(n: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                posted = ask(c, script=f"Client {n} asks this.", say=True)
                got = events(c, posted["id"])
                results[n] = (got[-1][2]["job"], c.get(f"/v1/jobs/{posted['id']}/video.mp4").status_code)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * JOB_S)
    assert sorted(results) == [0, 1, 2, 3]
    for n, result in results.items():
        assert not isinstance(result, Exception), result
        job, video = result
        assert job["status"] == "done" and job["reply"] == f"Client {n} asks this." and video == 200


def test_refused_starts_in_one_line(server, tmp_path):
    def serve(*args):
        return subprocess.run([sys.executable, "-m", "talkgen", "serve", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)

    proc = serve("--host", "0.0.0.0", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--token-file" in proc.stderr, proc.stderr
    token = tmp_path / "cfg" / "token"
    proc = serve("--new-token", "--token-file", str(token))
    assert proc.returncode == 0 and proc.stdout.strip() == str(token)
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) >= 32
    proc = serve("--new-token", "--token-file", str(token))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    token.chmod(0o644)
    proc = serve("--host", "0.0.0.0", "--token-file", str(token), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "chmod 600" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = serve("--out", str(server.out))
    assert proc.returncode == 2 and "another talkgen" in proc.stderr, proc.stderr
    port = server.url.rsplit(":", 1)[1]
    proc = serve("--port", port, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr, proc.stderr


def test_killed_then_started_again_it_resumes_and_then_needs_its_token(server, client, tmp_path):
    script = " ".join(f"Sentence number {k} is here." for k in range(14))
    posted = ask(client, script=script, say=True)
    job_dir = server.out / ".talkgen-batch" / "jobs" / posted["id"]
    with client.stream("GET", f"/v1/jobs/{posted['id']}/events", timeout=JOB_S) as r:
        for line in r.iter_lines():
            if line == "event: chunk":
                break
    workers = children_of(server.proc.pid)
    assert workers
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    finished = len(list((job_dir / "chunks").glob("*.mp4.json")))
    assert finished >= 1
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)  # the worker died with the server
    token = tmp_path / "token"
    token.write_text("t" * 40 + "\n")
    token.chmod(0o600)
    again = Server(server.out, "--token-file", str(token))
    try:
        auth = {"authorization": "Bearer " + "t" * 40}
        again.wait_ready(auth)
        with httpx.Client(base_url=again.url, timeout=60) as c:
            assert "needs its token" in one_line_error(c.get("/v1/jobs"), 401)
            assert "wrong token" in one_line_error(c.get("/v1/jobs", headers={"authorization": "Bearer " + "x" * 40}), 401)
            one_line_error(c.get(f"/v1/jobs/{posted['id']}", params={"token": "t" * 40}), 401)  # ?token= only where a URL must carry it
            one_line_error(c.post("/v1/jobs", json={"script": "Hi."}, params={"token": "t" * 40}), 401)
            got = events(c, posted["id"], params={"token": "t" * 40})
            assert got[-1][1] == "done", got
            statuses = [d["status"] for _, n, d in got if n == "status"]
            assert statuses[:2] == ["queued", "running"] and statuses[2:] == ["queued", "running"]  # before the kill, then again
            report = c.get(f"/v1/jobs/{posted['id']}/report.json", headers=auth).json()
            render = next(s for s in report["stages"] if s["name"] == "render")
            assert render["cache"] == "miss" and render["detail"]["reused_chunks"] >= finished
            assert report["check"]["ok"]
            assert c.get(f"/v1/jobs/{posted['id']}/video.mp4", params={"token": "t" * 40}).status_code == 200
            # The jobs from before the kill are all there, finished as they were.
            listed = c.get("/v1/jobs", headers=auth).json()["jobs"]
            assert listed[0]["id"] == posted["id"] and {j["status"] for j in listed} <= {"done", "cancelled"}
    finally:
        assert again.stop() in (0, 143, -signal.SIGTERM)




def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
