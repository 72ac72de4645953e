import numpy as np
import pytest

from talkgen.chunks import Plan
from talkgen.stages.plan import make_plan


def _check_cover(plan, max_frames):
    chunks = plan.chunks
    assert chunks[0].start_frame == 0
    assert chunks[-1].end_frame == plan.total_frames
    for a, b in zip(chunks, chunks[1:]):
        assert a.end_frame == b.start_frame
    for c in chunks:
        assert 0 < c.frames <= max_frames
        assert c.index == chunks.index(c)


def test_cuts_fall_in_the_pauses(make_track):
    # 5 s talk, 0.6 s pause, 5 s talk, 0.6 s pause, 5 s talk: with 8 s chunks, both pauses must be cut points.
    track = make_track([("talk", 5), ("gap", 0.6), ("talk", 5), ("gap", 0.6), ("talk", 5)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=2)
    _check_cover(plan, 200)
    assert plan.total_frames == int(np.ceil(track.samples * 25 / track.sample_rate))
    cuts = [c.end_s for c in plan.chunks[:-1]]
    assert len(cuts) == 2
    assert 5.0 <= cuts[0] <= 5.6 and 10.6 <= cuts[1] <= 11.2
    # Cut in the middle of the pause: 0.6 s of silence leaves about 0.3 s on each side.
    assert all(c.pause_s >= 0.2 for c in plan.chunks[:-1])


def test_longest_pause_wins(make_track):
    track = make_track([("talk", 3), ("gap", 0.2), ("talk", 2), ("gap", 0.9), ("talk", 2.5), ("gap", 0.3), ("talk", 4)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=1)
    first_cut = plan.chunks[0].end_s
    assert 5.2 <= first_cut <= 6.1  # inside the 0.9 s pause, not the 0.2 s one


def test_no_pause_cuts_at_the_limit(make_track):
    track = make_track([("talk", 20)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=2)
    _check_cover(plan, 200)
    assert [c.frames for c in plan.chunks[:2]] == [200, 200]
    assert plan.chunks[0].pause_s == 0


def test_chunks_are_whole_clips(make_track):
    track = make_track([("talk", 6), ("gap", 0.5), ("talk", 7), ("gap", 0.4), ("talk", 3)])
    plan = make_plan(track, fps=25, max_chunk_s=8, min_chunk_s=2, frames_per_clip=48)
    _check_cover(plan, 192)
    assert all(c.frames % 48 == 0 for c in plan.chunks)
    assert plan.total_frames % 48 == 0


def test_chunk_shorter_than_a_clip_is_a_usage_error(make_track):
    from talkgen.errors import UsageError

    track = make_track([("talk", 2)])
    with pytest.raises(UsageError, match="shorter than one clip"):
        make_plan(track, fps=25, max_chunk_s=1, min_chunk_s=0.5, frames_per_clip=48)


def test_a_back_end_with_lead_frames_gets_whole_clips_less_its_lead(make_track):
    """LiveAvatar: 48-frame clips, 3 frames made from the audio before the chunk and dropped."""
    track = make_track([("talk", 5.3), ("gap", 0.7), ("talk", 5), ("gap", 0.6), ("talk", 9)])
    plan = make_plan(track, fps=25, max_chunk_s=7.68, min_chunk_s=2, frames_per_clip=48, lead_frames=3)
    _check_cover(plan, 192 - 3)
    assert plan.lead_frames == 3
    assert all((c.frames + 3) % 48 == 0 for c in plan.chunks)
    speech = int(np.ceil(track.samples * 25 / track.sample_rate))
    assert speech <= plan.total_frames < speech + 48  # the last chunk runs on to its clip boundary
    # Cuts can fall only every 48 frames (3.72 s, 5.64 s, 7.56 s into the first chunk): 5.64 s is in the pause.
    assert plan.chunks[0].end_frame == 141 and plan.chunks[0].pause_s > 0
    # Without a lead the plan is what it always was: whole clips from frame 0.
    plain = make_plan(track, fps=25, max_chunk_s=7.68, min_chunk_s=2, frames_per_clip=48)
    assert plain.lead_frames == 0 and all(c.start_frame % 48 == 0 for c in plain.chunks)
    assert plain.total_frames == int(np.ceil(speech / 48)) * 48


def test_plan_json_keeps_its_format_and_old_plans_load(make_track, tmp_path):
    """Job folders written before the plan was a dataclass resume: plan.json is the same file."""
    import json

    track = make_track([("talk", 3), ("gap", 0.5), ("talk", 3)])
    plan = make_plan(track, fps=25, max_chunk_s=4, min_chunk_s=1)
    data = plan.to_dict()
    assert list(data) == ["fps", "sample_rate", "samples", "total_frames", "max_chunk_s", "frames_per_clip", "lead_frames", "chunks"]
    assert list(data["chunks"][0]) == ["index", "start_frame", "end_frame", "start_s", "end_s", "pause_s"]
    (tmp_path / "plan.json").write_text(json.dumps(data))
    assert Plan.load(tmp_path / "plan.json") == plan
    assert plan.seams() == [c.end_frame for c in plan.chunks[:-1]] and len(plan.seams()) == 1
    assert plan.frames_before(1) == plan.chunks[0].frames and plan.frames_before(2) == plan.total_frames
    # A plan from before the back ends' clip lengths: no frames_per_clip or lead_frames.
    old = {k: v for k, v in data.items() if k not in ("frames_per_clip", "lead_frames")}
    loaded = Plan.from_dict(old)
    assert (loaded.frames_per_clip, loaded.lead_frames, loaded.chunks) == (1, 0, plan.chunks)
    with pytest.raises(KeyError):
        Plan.from_dict({k: v for k, v in data.items() if k != "chunks"})


@pytest.mark.parametrize("clip, lead, first", [(1, 0, 0.0), (1, 0, 2.0), (4, 0, 1.0), (48, 3, 2.0)])
def test_a_plan_cut_while_the_speech_is_spoken_is_the_plan_of_the_whole(make_track, clip, lead, first):
    """The planner is fed the speech in pieces of random length, as the voice writes it: each cut
    comes as soon as the audio it needs is known, and the plan is the one made from the whole."""
    from talkgen.stages.plan import Planner

    rng = np.random.default_rng(clip + lead)
    pattern = [(kind, float(rng.uniform(0.1, 2.5 if kind == "talk" else 1.2))) for _ in range(14) for kind in ("talk", "gap")]
    track = make_track(pattern)
    whole = make_plan(track, 25, 4.0, 1.0, clip, lead, first_chunk_s=first)
    planner = Planner(25, track.sample_rate, 4.0, 1.0, clip, lead, first)
    known, early = 0, []
    while known < track.samples:
        known = min(track.samples, known + int(rng.integers(1, track.sample_rate)))
        for chunk in planner.cut(track, known, complete=False):
            # Cut before the end: from the speech up to this chunk's window and the pause after it.
            assert chunk.end_frame * track.sample_rate / 25 <= known
            early.append(chunk)
    planner.cut(track, track.samples, complete=True)
    assert planner.plan() == whole
    assert len(early) >= len(whole.chunks) // 2  # most cuts came while the speech was still coming
    if first:
        assert whole.chunks[0].frames + lead <= max(clip, int(first * 25) // clip * clip)
