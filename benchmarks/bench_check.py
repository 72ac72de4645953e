"""Calibrate and time `talkgen check`: lip-sync figures on good renders, shifted copies and swapped audio.

    python benchmarks/bench_check.py            # about 2 minutes on 2 cores

Renders a few scripts with --say at 512x512 (the default size), then measures with the
check's own code: each good render, copies with the audio late or early by 0.1-1.0 s, and
copies carrying another render's audio. The lip-sync bounds in talkgen/check.py
(|lag| <= 120 ms, best correlation >= 0.35) were chosen from this table. Asserts nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # video_fixtures: the shifted and swapped copies

from talkgen import media  # noqa: E402
from talkgen.check import check_video  # noqa: E402
from video_fixtures import replace_audio, shift_audio  # noqa: E402

SCRIPTS = {
    "examples/script.txt": (ROOT / "examples" / "script.txt").read_text(encoding="utf-8"),
    "two paragraphs": "Hello, and welcome. This is a short test of the whole pipeline, from text to video.\n\n"
                      "It speaks 2 paragraphs, with about 12 words each; then it stops.",
    "longer": "Every stage of a talkgen job is saved to disk as it finishes, so a render that stops halfway picks up "
              "where it left off. The voice is Piper, the face is a puppet, and ffmpeg joins the chunks.\n\n"
              "My name is Joe. I like long walks, short meetings, and quiet mornings with a cup of coffee. What about you?",
    "short words": "Yes. No. Maybe.\n\nOne, two, three, four, five. Stop!",
}
SHIFTS = (0.1, 0.2, 0.3, 0.5, 1.0)


def render(text: str, d: Path, name: str) -> Path:
    (d / f"{name}.txt").write_text(text, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "talkgen", "render", f"{name}.txt", "--say", "-o", f"{name}.mp4", "--job-dir",
                    f"job-{name}", "-q"], cwd=d, check=True, stdout=subprocess.DEVNULL)
    return d / f"{name}.mp4"


def sync(path: Path) -> dict:
    result = check_video(path)
    return next(f for f in result.findings if f.name == "lip sync").values | {"ok": result.ok}


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        videos = {label: render(text, d, f"v{i}") for i, (label, text) in enumerate(SCRIPTS.items())}
        times, seconds = [], []
        for label, video in videos.items():
            t = time.perf_counter()
            result = check_video(video)
            times.append(time.perf_counter() - t)
            seconds.append(float(media.probe(video)["format"]["duration"]))
            s = next(f for f in result.findings if f.name == "lip sync").values
            rows.append((f"good: {label}", f"{times[-1]:.2f} s", f"lag {s['lag_ms']:+.0f} ms, peak {s['peak']:.2f}, "
                         f"at 0: {s['at_zero']:.2f}", "pass" if result.ok else "FAIL"))
        for shift in SHIFTS:
            for sign in (1, -1):
                lags, peaks, fails = [], [], 0
                for i, video in enumerate(videos.values()):
                    out = d / f"s{i}_{sign * shift:+.1f}.mp4"
                    shift_audio(video, out, sign * shift)
                    s = sync(out)
                    lags.append(s["lag_ms"])
                    peaks.append(s["peak"])
                    fails += not s["ok"]
                rows.append((f"audio {'late' if sign > 0 else 'early'} {shift:.1f} s", "",
                             f"lags {', '.join(f'{x:+.0f}' for x in lags)} ms; peaks {min(peaks):.2f}-{max(peaks):.2f}",
                             f"{fails}/{len(lags)} fail"))
        names = list(videos.values())
        peaks, fails = [], 0
        for i, video in enumerate(names):
            other = names[(i + 1) % len(names)]
            mixed = d / f"mixed{i}.mp4"
            replace_audio(video, other, mixed)
            s = sync(mixed)
            peaks.append(s["peak"])
            fails += not s["ok"]
        rows.append(("another render's audio", "", f"peaks {', '.join(f'{p:.2f}' for p in peaks)}", f"{fails}/{len(peaks)} fail"))
        total = sum(seconds)
        rows.append(("check time (512x512)", f"{sum(times):.2f} s", f"{sum(times) / total:.3f} x video ({total:.0f} s of video)", ""))
    print_table("talkgen check calibration", rows)


if __name__ == "__main__":
    main()
