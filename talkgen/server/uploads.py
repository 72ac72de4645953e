"""A request's body read as it streams, refused as soon as it is too big.

A Content-Length over the cap is refused before a byte is read; a body that grows past it
(chunked, or lying about its length) is refused at the block that crosses it, with the
connection closed, so the server never holds or writes more than the cap. A form's files go
straight to disk in `folder`, each counted against its own cap, and its text fields against
theirs; a field the API does not know ends the read at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

from talkgen.server.intake import FILE_FIELDS, JSON_CAP, TEXT_FIELDS, UPLOAD_CAPS, Rejected

FORM_OVERHEAD = 64 * 1024  # the form's boundaries and part headers, beside its fields and files


def _mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB"


async def read_json(stream: AsyncIterator[bytes], length: int | None) -> object:
    if length is not None and length > JSON_CAP:
        raise Rejected(413, f"the body is {length} bytes: a JSON job is at most {JSON_CAP} (send recordings as a multipart form)")
    body = bytearray()
    async for block in stream:
        body += block
        if len(body) > JSON_CAP:
            raise Rejected(413, f"the body is over {JSON_CAP} bytes: a JSON job is at most that (send recordings as a multipart form)")
    try:
        return json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "the body is not JSON: send {\"script\": \"...\"} with Content-Type: application/json") from None


async def read_form(stream: AsyncIterator[bytes], content_type: str, length: int | None, folder: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """The form's text fields, and the files it streamed into `folder` (by field name)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise Rejected(400, "the multipart form has no boundary in its Content-Type")
    cap = sum(UPLOAD_CAPS.values()) + len(TEXT_FIELDS) * JSON_CAP + FORM_OVERHEAD
    if length is not None and length > cap:
        raise Rejected(413, f"the body is {length} bytes: a form is at most {_mb(cap)} (audio {_mb(UPLOAD_CAPS['audio'])}, "
                            f"portrait {_mb(UPLOAD_CAPS['portrait'])}, voice {_mb(UPLOAD_CAPS['voice'])})")
    form = _Form(folder)
    parser = MultipartParser(boundary, form.callbacks())
    total = 0
    try:
        async for block in stream:
            total += len(block)
            if total > cap:
                raise Rejected(413, f"the body is over {_mb(cap)}: a form is at most that")
            parser.write(block)
            if form.error is not None:
                raise form.error
        parser.finalize()
    finally:
        form.close()
    if form.error is not None:
        raise form.error
    if not form.ended:
        raise Rejected(400, "the multipart form ended before its closing boundary: send it whole")
    return form.fields, form.files


class _Form:
    """The parser's callbacks: each part's headers, then its bytes to a field or a file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.fields: dict[str, str] = {}
        self.files: dict[str, Path] = {}
        self.error: Rejected | None = None
        self.ended = False
        self._header = [b"", b""]
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._size = 0
        self._text = bytearray()
        self._file = None

    def callbacks(self) -> dict:
        def field(data, start, end):
            self._header[0] += data[start:end]

        def value(data, start, end):
            self._header[1] += data[start:end]

        def header_end():
            self._headers[self._header[0].strip().lower()] = self._header[1].strip()
            self._header = [b"", b""]

        def end():
            self.ended = True

        return {"on_part_begin": self._begin, "on_header_field": field, "on_header_value": value, "on_header_end": header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data, "on_part_end": self._end, "on_end": end}

    def _refuse(self, status: int, message: str) -> None:
        if self.error is None:
            self.error = Rejected(status, message)
        raise self.error

    def _begin(self) -> None:
        self._headers, self._name, self._size, self._text = {}, None, 0, bytearray()

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name not in TEXT_FIELDS and name not in FILE_FIELDS:
            self._refuse(400, f"unknown field '{name[:40]}': a job has {', '.join(TEXT_FIELDS)} and the files {', '.join(FILE_FIELDS)}")
        if name in self.fields or name in self.files:
            self._refuse(400, f"the field '{name}' is sent twice: send it once")
        self._name = name
        if name in FILE_FIELDS:
            path = self.folder / f"{name}.upload"  # a name of ours: what the client called it is never used
            self._file = open(path, "wb")
            self.files[name] = path

    def _data(self, data, start, end) -> None:
        self._size += end - start
        if self._file is not None:
            if self._size > UPLOAD_CAPS[self._name]:
                self._refuse(413, f"{self._name} is over {_mb(UPLOAD_CAPS[self._name])}: send a smaller file")
            self._file.write(data[start:end])
        else:
            if self._size > JSON_CAP:
                self._refuse(413, f"the field {self._name} is over {JSON_CAP} bytes")
            self._text += data[start:end]

    def _end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            try:
                self.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                self._refuse(400, f"the field {self._name} is not UTF-8 text")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
