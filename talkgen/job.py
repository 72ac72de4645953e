"""The job directory: manifest, stage cache keys, atomic writes and a lock.

A stage's outputs are written under temporary names and renamed into place, then the
stage records its cache key and the outputs' sha256 in manifest.json. A re-run reuses a
stage whose key matches and whose files still verify.

A key holds the hashes of the stage's inputs, its settings, its engine's identity and,
through code_hash, the source of the talkgen modules that make its artifact: the one way
code reaches a key, for the stages (each names its modules in MADE_BY) and the avatar back
ends (whose identity carries their own) alike.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from talkgen.errors import TalkgenError

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(**parts: Any) -> str:
    """A stable hash of a stage's inputs, parameters and engine identity."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return sha256_text(blob)[:32]


PACKAGE = Path(__file__).resolve().parent


def code_hash(*modules: str) -> str:
    """A short hash of the source of talkgen modules, named as imported ("talkgen.stages.render");
    a package stands for every module under it. What a stage's cache key holds of the code that
    makes its artifact: edit one of them and the stage runs again."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(name.encode() + b"\0" + _source_digest(name))
    return h.hexdigest()[:16]


@functools.cache
def _source_digest(module: str) -> bytes:
    """Read once per process: every stage of every job a batch worker runs asks again, and the
    code the process runs is what it read when it started, not an edit made since."""
    head, _, rest = module.partition(".")
    if head != "talkgen":
        raise ValueError(f"{module} is not a talkgen module")
    path = PACKAGE.joinpath(*rest.split(".")) if rest else PACKAGE
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    if not files or not files[0].is_file():
        raise ValueError(f"{module} is not a talkgen module: no {path.with_suffix('.py')}")
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(PACKAGE).as_posix().encode() + b"\0" + f.read_bytes())
    return h.digest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only on success."""
    from talkgen import stopping

    path.parent.mkdir(parents=True, exist_ok=True)
    # The thread too: a batch worker's look-ahead writes beside the job it is running.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")
    stopping.temporary(tmp, True)  # a stop that cannot wait for this block still removes it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        stopping.temporary(tmp, False)


def write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass
class StageRecord:
    key: str
    outputs: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    wall_s: float = 0.0
    engine: str = ""
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    complete: bool = True


class Job:
    def __init__(self, root: Path):
        self.root = root
        self._lock_fd: int | None = None
        self.stages: dict[str, StageRecord] = {}
        self._mutex = threading.Lock()  # stages that overlap record from threads of their own

    def path(self, rel: str) -> Path:
        return self.root / rel

    # -- lock ---------------------------------------------------------------------
    def acquire(self) -> None:
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise TalkgenError(
                f"job {self.root} is in use by another talkgen (pid {holder}): wait for it or pass another --job-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        self._sweep_temporaries()
        self._load()

    def _sweep_temporaries(self) -> None:
        """Remove half-written files left by a killed run; holding the lock, no one else is writing."""
        for tmp in self.root.rglob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Job":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- manifest -----------------------------------------------------------------
    def _load(self) -> None:
        path = self.root / MANIFEST
        self.stages = {}
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for name, rec in data.get("stages", {}).items():
                self.stages[name] = StageRecord(**rec)
        except (ValueError, TypeError):
            # A manifest we cannot read only costs a re-run; every artifact is rebuilt.
            self.stages = {}

    def save(self) -> None:
        with self._mutex:
            data = {
                "version": 1,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "stages": {n: dict(r.__dict__) for n, r in self.stages.items()},
            }
            write_json_atomic(self.root / MANIFEST, data)

    def is_fresh(self, stage: str, key: str) -> bool:
        """True when `stage` finished with this key and its outputs still verify."""
        rec = self.stages.get(stage)
        if rec is None or rec.key != key or not rec.complete:
            return False
        for rel, digest in rec.outputs.items():
            p = self.root / rel
            if not p.is_file() or sha256_file(p) != digest:
                return False
        return True

    def record(self, stage: str, rec: StageRecord) -> None:
        with self._mutex:
            self.stages[stage] = rec
        self.save()

    def forget(self, stage: str) -> None:
        with self._mutex:
            gone = self.stages.pop(stage, None)
        if gone is not None:
            self.save()

    def output_hashes(self, rels: list[str]) -> dict[str, str]:
        return {rel: sha256_file(self.root / rel) for rel in rels}
