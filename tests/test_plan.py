import numpy as np
import pytest

from talkgen.stages.plan import make_plan


def _check_cover(plan, max_frames):
    chunks = plan["chunks"]
    assert chunks[0]["start_frame"] == 0
    assert chunks[-1]["end_frame"] == plan["total_frames"]
    for a, b in zip(chunks, chunks[1:]):
        assert a["end_frame"] == b["start_frame"]
    for c in chunks:
        assert 0 < c["end_frame"] - c["start_frame"] <= max_frames
        assert c["index"] == chunks.index(c)


def test_cuts_fall_in_the_pauses(make_track):
    # 5 s talk, 0.6 s pause, 5 s talk, 0.6 s pause, 5 s talk: with 8 s chunks, both pauses must be cut points.
    track = make_track([("talk", 5), ("gap", 0.6), ("talk", 5), ("gap", 0.6), ("talk", 5)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=2)
    _check_cover(plan, 200)
    assert plan["total_frames"] == int(np.ceil(track.samples * 25 / track.sample_rate))
    cuts = [c["end_s"] for c in plan["chunks"][:-1]]
    assert len(cuts) == 2
    assert 5.0 <= cuts[0] <= 5.6 and 10.6 <= cuts[1] <= 11.2
    # Cut in the middle of the pause: 0.6 s of silence leaves about 0.3 s on each side.
    assert all(c["pause_s"] >= 0.2 for c in plan["chunks"][:-1])


def test_longest_pause_wins(make_track):
    track = make_track([("talk", 3), ("gap", 0.2), ("talk", 2), ("gap", 0.9), ("talk", 2.5), ("gap", 0.3), ("talk", 4)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=1)
    first_cut = plan["chunks"][0]["end_s"]
    assert 5.2 <= first_cut <= 6.1  # inside the 0.9 s pause, not the 0.2 s one


def test_no_pause_cuts_at_the_limit(make_track):
    track = make_track([("talk", 20)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=2)
    _check_cover(plan, 200)
    assert [c["end_frame"] - c["start_frame"] for c in plan["chunks"][:2]] == [200, 200]
    assert plan["chunks"][0]["pause_s"] == 0


def test_chunks_are_whole_clips(make_track):
    track = make_track([("talk", 6), ("gap", 0.5), ("talk", 7), ("gap", 0.4), ("talk", 3)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=2, frames_per_clip=48)
    _check_cover(plan, 192)
    assert all((c["end_frame"] - c["start_frame"]) % 48 == 0 for c in plan["chunks"])
    assert plan["total_frames"] % 48 == 0


def test_chunk_shorter_than_a_clip_is_a_usage_error(make_track):
    from talkgen.errors import UsageError

    track = make_track([("talk", 2)])
    with pytest.raises(UsageError, match="shorter than one clip"):
        make_plan(track, fps=25, max_chunk_s=1, min_chunk_s=0.5, frames_per_clip=48)
