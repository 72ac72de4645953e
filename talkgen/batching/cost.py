"""What a batch will cost, before it runs: video minutes from the scripts, then talkgen.estimate.

A script said as written (--say) is as long as its words take to speak; an answered
question is at most llm.max_reply_words per paragraph; a recording said as written is as
long as the recording. The GPU-hours and money come from the benchmark figure of the
recipe's avatar back end, as `talkgen render`'s own estimate does.
"""

from __future__ import annotations

from pathlib import Path

from talkgen.batching.jobs import JobSpec

# Piper's joe voice at length_scale 1, measured on the bundled examples: about 2.7 words a
# second of speech, plus the recipe's pauses between sentences and paragraphs.
WORDS_PER_S = 2.7


def video_seconds(spec: JobSpec) -> float:
    from talkgen.inputs import input_kind

    recipe = spec.to_recipe()
    t = recipe.tts
    path = Path(spec.input)
    try:
        kind = input_kind(path)
        if kind == "audio":
            from talkgen import media

            if spec.say:
                return media.audio_duration(path)
            return recipe.llm.max_reply_words / WORDS_PER_S
        from talkgen.text.script import paragraphs, read_script, sentences

        text = read_script(path)
    except Exception:  # noqa: BLE001 - an input only rendering can judge: it costs nothing if it fails
        return 0.0
    paras = paragraphs(text)
    if not spec.say:
        return len(paras) * (recipe.llm.max_reply_words / WORDS_PER_S + t.paragraph_pause_s)
    words = len(text.split())
    n_sentences = sum(len(sentences(p)) for p in paras)
    return words / WORDS_PER_S * t.length_scale + n_sentences * t.sentence_pause_s + len(paras) * t.paragraph_pause_s


def batch_cost(specs: list[JobSpec], workers: int) -> dict:
    """The batch's estimate: video minutes, GPU-hours and dollars (None where the back end has no figure)."""
    from talkgen.estimate import estimate

    video_s = [video_seconds(s) for s in specs]
    total = sum(video_s)
    est = estimate(specs[0].to_recipe(), max(total, 1e-9)) if specs else None
    out = {"jobs": len(specs), "video_s": round(total, 1), "video_minutes": round(total / 60, 2), "workers": workers,
           "per_job_video_s": {s.name: round(v, 1) for s, v in zip(specs, video_s)}}
    if est is None:
        out.update(gpu_hours=None, cost_usd=None, wall_s=None, source="no benchmark figure for this avatar back end yet")
    else:
        out.update(gpu_hours=est["gpu_hours"], cost_usd=est["cost_usd"], gpu_hour_usd=est["gpu_hour_usd"],
                   wall_s=round(est["device_seconds"] / max(1, workers), 1), source=est["source"],
                   cost_usd_slowest=est["slowest"]["cost_usd"] if "slowest" in est else None)
    return out


def describe(cost: dict) -> str:
    line = f"{cost['jobs']} job(s), about {cost['video_minutes']:.1f} video minutes (estimated from the scripts)"
    if cost["gpu_hours"] is None:
        return line + f"; GPU-hours and cost: {cost['source']}"
    slowest = f" (up to ${cost['cost_usd_slowest']:.2f} at the slowest reported speed)" if cost.get("cost_usd_slowest") else ""
    return (line + f"; about {cost['wall_s']:.0f} s on {cost['workers']} worker(s), {cost['gpu_hours']:.4f} GPU-hours, "
            f"${cost['cost_usd']:.2f} at ${cost['gpu_hour_usd']:.2f}/GPU-hour{slowest}")
