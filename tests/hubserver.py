"""A small HTTP server on 127.0.0.1 that serves files in the Hugging Face hub's URL layout.

HEAD and GET /{repo}/resolve/{revision}/{filename}, with the headers huggingface_hub reads
(X-Repo-Commit, ETag, Content-Length) and byte ranges for resumed downloads. `cut` maps a
file to the byte counts its next GETs stop after, like dropped connections.

`redirect` makes the server answer every /resolve/ request with a 302, as the hub does for
file downloads: to another Hub's URL (a storage host elsewhere), or "self" (a path of its
own, /blobs/...). `log` records each request's Authorization header too.
"""

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self, files: dict[tuple[str, str], bytes], cut: dict[str, list[int]] | None = None,
                 host: str = "127.0.0.1", redirect: str | None = None):
        self.files = files  # (repo, filename) -> bytes
        self.cut = {k: list(v) for k, v in (cut or {}).items()}
        self.log: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self.auth: list[tuple[str, str]] = []  # (path, Authorization header) of every request
        self.redirect = redirect
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _redirected(self) -> bool:
                hub.auth.append((self.path, self.headers.get("Authorization", "")))
                if hub.redirect is None or "/resolve/" not in self.path:
                    return False
                base = hub.url if hub.redirect == "self" else hub.redirect
                self.send_response(302)
                self.send_header("Location", base + self.path.replace("/resolve/", "/blobs/", 1))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def _find(self):
                m = re.match(r"^/(.+?/.+?)/(?:resolve|blobs)/([^/]+)/(.+)$", self.path)
                if not m:
                    return None
                return hub.files.get((m.group(1), m.group(3))), m.group(3)

            def _headers(self, data: bytes, status: int = 200, start: int = 0):
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def do_HEAD(self):
                if self._redirected():
                    return
                hub.log.append(("HEAD", self.path, self.headers.get("Range", "")))
                found = self._find()
                if not found or found[0] is None:
                    self.send_error(404)
                    return
                self._headers(found[0])

            def do_GET(self):
                if self._redirected():
                    return
                hub.log.append(("GET", self.path, self.headers.get("Range", "")))
                found = self._find()
                if not found or found[0] is None:
                    self.send_error(404)
                    return
                data, name = found
                start = 0
                rng = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if rng:
                    start = int(rng.group(1))
                self._headers(data, 206 if start else 200, start)
                body = data[start:]
                if hub.cut.get(name):
                    body = body[: hub.cut[name].pop(0)]
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
