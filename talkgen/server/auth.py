"""Who may talk to the server: loopback by default, a bearer token anywhere else.

Started on 127.0.0.0/8 or ::1, the server needs no token (only this machine, or an ssh tunnel,
reaches it) but answers only requests addressed to a loopback name and refuses requests a web
page of another origin sends (so a site open in the browser cannot post jobs to it, and a DNS
name rebound to 127.0.0.1 gets nothing). Started on any other address it refuses to start
without --token-file, and every /v1 route then needs `Authorization: Bearer TOKEN`. The token
is also taken as `?token=` on the GET routes a browser opens by URL (the events, the live stream,
the video and its files), which cannot carry a header.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import re
import secrets
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from talkgen.errors import UsageError

DEFAULT_TOKEN_FILE = Path("~/.config/talkgen/token")
MIN_TOKEN_CHARS = 32
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
# GET routes opened by URL (EventSource, <video>, hls.js): the token may come as ?token=.
_BY_URL = re.compile(r"^/v1/jobs/[^/]+/(events|live\.m3u8|live/.+|video\.mp4|video\.srt|report\.json)$")


def opened_by_url(path: str) -> bool:
    """A GET route a browser opens by URL, which may carry the token as ?token=."""
    return bool(_BY_URL.match(path))


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token(path: Path) -> Path:
    """Write a new random token into `path`, readable by its owner only; refuse to replace one."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists: use it with --token-file {path}, or remove it to make a new one") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror}): choose another --token-file") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def read_token(path: Path) -> str:
    """The token in `path`: a file only its owner can read, holding one line of at least 32 characters."""
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(f"--token-file {path} does not exist: make one with talkgen serve --new-token --token-file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"--token-file {path} can be read by others (mode {stat.S_IMODE(mode):o}): chmod 600 {path}")
    if len(text) < MIN_TOKEN_CHARS or any(c.isspace() for c in text):
        raise UsageError(f"--token-file {path} must hold one token of at least {MIN_TOKEN_CHARS} characters: "
                         "make one with talkgen serve --new-token")
    return text


def check_start(host: str, token_file: Path | None) -> str | None:
    """The token the server will require (None: none), or a UsageError for an unsafe start."""
    if token_file is None:
        if not is_loopback(host):
            raise UsageError(f"--host {host} is reachable from other machines: give --token-file (make one with "
                             "talkgen serve --new-token), or keep the default 127.0.0.1 and use ssh -L")
        return None
    return read_token(token_file)


DRAIN_BYTES = 1 << 16
DRAIN_S = 2.0


async def _drain(receive) -> None:
    """Read a refused request's body (up to DRAIN_BYTES, for up to DRAIN_S) before answering: a
    connection closed with the body unread is reset, and the client can lose the answer with it
    (seen under load: "Connection reset by peer" in place of a 403). A larger body is not read."""

    async def read() -> None:
        seen = 0
        while seen <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    try:
        await asyncio.wait_for(read(), DRAIN_S)
    except asyncio.TimeoutError:
        pass


class Guard:
    """ASGI middleware: the token, the Host and the Origin of every request, before any route."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = self.refusal(scope)
        if refused is None:
            return await self.app(scope, receive, send)
        status, message = refused
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await _drain(receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        origin = headers.get("origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"a page from {origin} may not use this server: open the page the server itself serves"
        if origin == "null":
            return 403, "a page with no origin may not use this server: open the page the server itself serves"
        path = scope["path"]
        if self.token is None:
            if not is_loopback(urlsplit(f"//{host}").hostname or ""):
                return 403, "this server answers only to a loopback name (127.0.0.1, localhost): use ssh -L to reach it"
            return None
        if not path.startswith("/v1/"):
            return None  # the page and the API docs: static, they hold nothing
        given = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif scope["method"] in ("GET", "HEAD") and opened_by_url(path):
            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
        if given is None:
            return 401, "this server needs its token: send Authorization: Bearer TOKEN (the token is in the server's --token-file)"
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401, "wrong token: send the one in the server's --token-file"
        return None
