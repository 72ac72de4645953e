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
