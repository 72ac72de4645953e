"""Benchmark the question path on this machine and print a table of times and ratios.

    python benchmarks/bench_ask.py

Targets (issue 3): transcribe real-time factor <= 0.1; LLM load warm < 2 s (cold is the
one-time GGUF conversion); >= 15 tokens/s; and the whole `render examples/question.wav`
against the duration of the answer video.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ROOT / "examples" / "question.wav"


VARIED = (
    "The first electric telephone call was made in eighteen seventy six. Since then the network has grown into a web "
    "of cables, towers and satellites that carries voices across oceans in a fraction of a second. Engineers measure "
    "the delay in milliseconds, and listeners notice when it passes two hundred. In the kitchen, bread rises faster in "
    "a warm room because yeast works harder when the dough is near body temperature. Bakers fold the dough to build "
    "strength, then rest it so the gluten relaxes. A river carries sand from the mountains to the sea, slowly shaping "
    "valleys, deltas and beaches over thousands of years. Farmers along its banks depend on the floods that bring fresh "
    "soil each spring. Chess players think several moves ahead, weighing threats against opportunities, and the best of "
    "them recognise patterns they have seen thousands of times before."
)


def transcribe_rtf(d: Path) -> tuple[str, str, str, str]:
    """Real-time factor of VAD + Whisper on about a minute of varied speech from the embedded voice, model loaded.

    Varied on purpose: repeated sentences compress so well that Whisper's temperature
    fallback (meant to catch hallucination loops) decodes them several times over.
    """
    import wave

    from talkgen.engines.silero_vad import VAD
    from talkgen.engines.stt import load_stt
    from talkgen.engines.tts import load_tts
    from talkgen.recipe import load_recipe
    from talkgen.speech import WavWriter
    from talkgen.stages.transcribe import transcribe

    tts = load_tts(load_recipe().tts)
    long = d / "long.wav"
    w = WavWriter(long, tts.sample_rate)
    for part in tts.speak(VARIED):
        w.write(part.audio)
        w.silence(tts.sample_rate // 4)
    w.close()
    with wave.open(str(long)) as f:
        seconds = f.getnframes() / f.getframerate()
    t = time.perf_counter()
    stt = load_stt(load_recipe().stt)
    load = time.perf_counter() - t
    t = time.perf_counter()
    transcribe(long, stt, VAD(), d / "t.json", piece_s=30, threshold=0.5)
    wall = time.perf_counter() - t
    return (f"transcribe {seconds:.0f} s of speech (VAD + Whisper)", f"{wall:.1f} s", f"{wall / seconds:.3f} x audio (+ {load:.2f} s load)", "<= 0.1")


def main() -> None:
    from talkgen import media

    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        env = {**os.environ, "TALKGEN_CACHE": str(d / "cache")}
        code = (
            "import json; from talkgen.engines.llm import load_llm; from talkgen.recipe import load_recipe; "
            "llm = load_llm(load_recipe().llm); "
            "print(json.dumps({'import_s': llm.import_s, 'convert_s': llm.convert_s, 'load_s': llm.load_s, 'converted': llm.converted}))"
        )
        for label in ("cold (GGUF -> safetensors once)", "warm (safetensors cache)"):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            convert = f", + {r['convert_s']:.1f} s converting" if r["converted"] else ""
            rows.append((f"LLM load, {label}", f"{r['load_s']:.2f} s", f"+ {r['import_s']:.1f} s imports{convert}",
                         "< 2 s" if not r["converted"] else ""))
        rows.append(transcribe_rtf(d))
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "talkgen", "render", str(QUESTION), "-o", str(d / "a.mp4"), "--job-dir", str(d / "job"), "-q"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - t
        rep = json.loads((d / "a.report.json").read_text())
        stages = {s["name"]: s for s in rep["stages"]}
        q = media.audio_duration(QUESTION)
        tr = stages["transcribe"]
        rows.append(("transcribe stage, question.wav", f"{tr['wall_s']:.2f} s", f"{tr['wall_s'] / q:.3f} x audio (load included)", ""))
        rp = stages["reply"]["detail"]
        rows.append(("reply: generation speed", f"{rp['tokens']} tokens", f"{rp['tokens_per_s']:.1f} tokens/s", ">= 15"))
        rows.append(("reply: model load inside render", f"{rp['load_s']:.2f} s", f"+ {rp['import_s']:.1f} s imports", "< 2 s"))
        video = rep["video_s"]
        rows.append((f"render question.wav ({q:.1f} s question)", f"{wall:.1f} s", f"{wall / video:.2f} x the {video:.1f} s answer", ""))
    print_table("talkgen question benchmark", rows)


if __name__ == "__main__":
    main()
