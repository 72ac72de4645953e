import multiprocessing
import os

import pytest

from talkgen.errors import TalkgenError
from talkgen.job import Job, StageRecord, atomic_path, cache_key


def test_cache_key_is_stable_and_sensitive():
    assert cache_key(a=1, b=[1, 2]) == cache_key(b=[1, 2], a=1)
    assert cache_key(a=1) != cache_key(a=2)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_fresh_only_when_key_matches_and_files_verify(tmp_path):
    job = Job(tmp_path / "job")
    with job:
        job.path("a.txt").write_text("x")
        job.record("speak", StageRecord(key="k1", outputs=job.output_hashes(["a.txt"])))
        assert job.is_fresh("speak", "k1")
        assert not job.is_fresh("speak", "k2")
        job.path("a.txt").write_text("tampered")
        assert not job.is_fresh("speak", "k1")
    again = Job(tmp_path / "job")
    with again:
        assert again.stages["speak"].key == "k1"


def _hold(path, ready, release):
    with Job(path):
        ready.set()
        release.wait(10)


def test_lock_stops_a_second_writer(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(tmp_path / "job", ready, release))
    p.start()
    try:
        assert ready.wait(10)
        with pytest.raises(TalkgenError, match=f"in use by another talkgen \\(pid {p.pid}\\)"):
            Job(tmp_path / "job").acquire()
    finally:
        release.set()
        p.join(10)
    with Job(tmp_path / "job"):
        pass


def test_unreadable_manifest_means_rebuild(tmp_path):
    root = tmp_path / "job"
    root.mkdir()
    (root / "manifest.json").write_text("{not json")
    with Job(root) as job:
        assert job.stages == {}
        assert os.path.exists(root / "lock")


def test_code_hash_is_stable_and_follows_the_source(tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys

    from talkgen import job

    mine = job.code_hash("talkgen.stages.render", "talkgen.chunks")
    assert mine == job.code_hash("talkgen.chunks", "talkgen.stages.render", "talkgen.chunks")  # order and repeats aside
    assert mine != job.code_hash("talkgen.stages.render")
    # The same in another process: nothing from the clock or the interpreter's hash seed.
    code = "from talkgen.job import code_hash; print(code_hash('talkgen.stages.render', 'talkgen.chunks'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == mine
    with pytest.raises(ValueError, match="not a talkgen module"):
        job.code_hash("talkgen.stages.nowhere")
    # Edit a module, or a module inside a package named whole, and the hash moves.
    copy = tmp_path / "talkgen"
    shutil.copytree(job.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(job, "PACKAGE", copy)
    job._source_digest.cache_clear()
    try:
        assert job.code_hash("talkgen.stages.render", "talkgen.chunks") == mine
        rig = job.code_hash("talkgen.rig")
        (copy / "chunks.py").write_text((copy / "chunks.py").read_text() + "\n# edited\n")
        (copy / "rig" / "warp.py").write_text((copy / "rig" / "warp.py").read_text() + "\n# edited\n")
        assert job.code_hash("talkgen.stages.render", "talkgen.chunks") == mine  # read once per process
        job._source_digest.cache_clear()
        assert job.code_hash("talkgen.stages.render", "talkgen.chunks") != mine
        assert job.code_hash("talkgen.rig") != rig
    finally:
        job._source_digest.cache_clear()  # the copy's digests must not serve the tests after this one


def test_every_stage_and_engine_names_code_that_exists():
    """A module named wrongly would fail every render of its stage; a new engine left out would key on no code of its own."""
    from talkgen.engines.registry import LISTED, module_of
    from talkgen.job import code_hash
    from talkgen.stages import assemble, plan, render, reply, speak, transcribe

    for stage in (transcribe, reply, speak, plan, render, assemble):
        assert stage.__name__ in stage.MADE_BY
        code_hash(*stage.MADE_BY)
    for kind, name, module in LISTED:
        assert module_of(kind, name) == module
        code_hash(module)
