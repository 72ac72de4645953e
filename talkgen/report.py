"""The render report: per-stage timings, real-time factors, cache hits, memory and cost."""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass, field


@dataclass
class StageReport:
    name: str
    cache: str  # "miss" (made now), "hit" (cached) or "ahead" (made for this job by a batch worker's look-ahead)
    wall_s: float  # from its start to its end; stages that overlap count their waits for the stage before
    engine: str = ""
    version: str = ""
    device: str = "cpu"
    rtf: float = 0.0  # stage time / speech duration
    detail: dict = field(default_factory=dict)


def peak_rss_mb() -> dict:
    """Peak resident memory of the talkgen process, in MiB.

    Children are left out: the kernel counts a forked ffmpeg's pages from before its
    exec, so RUSAGE_CHILDREN reports talkgen's own size again, not ffmpeg's.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"talkgen_mb": round(own, 1)}


def cost(stages: list[StageReport], gpus: int, gpu_hour_usd: float, video_s: float, device_s: float | None = None) -> dict:
    """device_s: the seconds the devices were held, when the stages overlapped (their times would add up to more)."""
    if device_s is None:
        device_s = sum(s.wall_s for s in stages if s.cache != "hit")
    gpu_hours = device_s * gpus / 3600
    usd = gpu_hours * gpu_hour_usd
    return {
        "device_seconds": round(device_s, 3),
        "gpus": gpus,
        "gpu_hours": round(gpu_hours, 6),
        "gpu_hour_usd": gpu_hour_usd,
        "cost_usd": round(usd, 6),
        "cost_per_video_minute_usd": round(usd / (video_s / 60), 6) if video_s > 0 else 0.0,
    }


def build(stages: list[StageReport], speech_s: float, total_s: float, artifacts: dict, output: dict, recipe, gpus: int,
          first_chunk_s: float | None = None, overlapped_s: float | None = None) -> dict:
    """overlapped_s: how long the stages ran, when they ran side by side."""
    for s in stages:
        s.rtf = round(s.wall_s / speech_s, 4) if speech_s else 0.0
        s.wall_s = round(s.wall_s, 3)
    video_s = output.get("duration_s", speech_s)
    return {
        "recipe": recipe.name,
        "speech_s": round(speech_s, 3),
        "video_s": video_s,
        "total_wall_s": round(total_s, 3),
        "total_rtf": round(total_s / speech_s, 4) if speech_s else 0.0,
        "first_chunk_s": first_chunk_s,
        "overlapped": overlapped_s is not None,
        "stages": [asdict(s) for s in stages],
        "peak_rss": peak_rss_mb(),
        "cost": cost(stages, gpus, recipe.cost.gpu_hour_usd, video_s, overlapped_s),
        "output": output,
        "artifacts": artifacts,
    }


def print_table(report: dict, console) -> None:
    """The render summary: a table on a terminal, whole tab-separated rows when piped (tables.py)."""
    from talkgen.tables import print_line, print_rows

    rows = [[s["name"], s["cache"], f"{s['wall_s']:.2f} s", f"{s['rtf']:.3f}", s["engine"], s["device"]] for s in report["stages"]]
    total = [["total", "", f"{report['total_wall_s']:.2f} s", f"{report['total_rtf']:.3f}", "", ""]]
    print_rows(console, ["stage", "cache", "time", "x realtime", "engine", "device"], rows,
               title=f"talkgen render ({report['video_s']:.1f} s of video)", right=("time", "x realtime"), end_rows=total)
    if report.get("first_chunk_s") is not None:
        side = "; the stages overlapped" if report.get("overlapped") else ""
        print_line(console, f"first chunk out {report['first_chunk_s']:.2f} s after the start{side}")
    c = report["cost"]
    print_line(console, f"peak memory {report['peak_rss']['talkgen_mb']:.0f} MiB; "
                        f"{c['device_seconds']:.1f} device-seconds, {c['gpu_hours']:.4f} GPU-hours, ${c['cost_usd']:.4f}")
    if "check" in report:
        sync = next((f for f in report["check"]["findings"] if f["name"] == "lip sync"), None)
        print_line(console, f"talkgen check: {'sound' if report['check']['ok'] else 'FAILED'}" + (f"; lip sync: {sync['detail']}" if sync else ""))
