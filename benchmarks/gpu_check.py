"""The GPU check: one prepared run on a lent GPU machine (issues 4, 5 and 27), under 10 minutes.

    python3 benchmarks/gpu_check.py            # on a CUDA machine: every check in bf16 on cuda:0
    python3 benchmarks/gpu_check.py --cpu      # the same checks on the CPU (proves the script here)
    python3 benchmarks/gpu_check.py --only=llama,render   # only the checks whose names hold these words

On the GPU machine, after benchmarks/device_setup.sh (docs/production.md, "The GPU check: how
to run it"). It builds tiny random-weight F5-TTS + Vocos and Llama in their real formats and
runs them through talkgen's real engines on the device, checking that each says the same twice.
Then the production models at full size with random weights (benchmarks/production_models.py;
reduced sizes with --cpu): Whisper large-v3, Llama 3.2 3B Instruct, F5-TTS v1 Base with Vocos,
each loaded through talkgen's loader with gpu-1x's settings, with its load time, speed
(real-time factor; tokens/s), the weights as loaded and the peak torch allocated against the
planner's estimate. It renders, speaking with the tiny F5-TTS (Piper and its voice are too
large to carry to the GPU machine), with the tp-test back end in bf16 in process, through
torchrun with NCCL as one rank (render.launcher=torchrun), and as two ranks when there are two
GPUs or more; it renders once under render.python (this interpreter named explicitly: the probe
and the far-side launcher); it runs `talkgen batch` with one warm worker rendering two jobs on
one rank group, and runs `talkgen doctor --json`, keeping nvidia-smi's own output beside it.
Prints each row as it finishes and rewrites $OUT/gpu_check.json (or ./gpu_check.json) after
each; writes doctor.json and nvidia-smi.{out,rc,txt} beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What examples/question.wav says (6.5 s): F5-TTS sizes its speech by the reference's rate.
QUESTION_TEXT = "Hi there, what is the tallest mountain in the world, and how long does it take to climb it?"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    import torch

    cpu = "--cpu" in sys.argv or not torch.cuda.is_available()
    device = "cpu" if cpu else "cuda:0"
    rows: list[dict] = []
    info = {"torch": torch.__version__, "device": "cpu" if cpu else torch.cuda.get_device_name(0)}
    if not cpu:
        info.update(bf16=torch.cuda.is_bf16_supported(), gpus=torch.cuda.device_count(),
                    capability=".".join(map(str, torch.cuda.get_device_capability(0))))
    work = Path(tempfile.mkdtemp(prefix="talkgen-gpu-check-"))
    os.environ.setdefault("TALKGEN_CACHE", str(work / "cache"))
    outdir = Path(os.environ.get("OUT", "."))
    print(json.dumps(info), flush=True)

    only = [part for arg in sys.argv[1:] if arg.startswith("--only=") for part in arg.removeprefix("--only=").split(",")]

    def check(name: str, fn) -> None:
        if only and not any(part in name for part in only):
            return
        if not cpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            detail = fn() or {}
            ok = True
        except Exception as exc:  # a check script reports every failure and goes on
            detail, ok = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}, False
        row = {"check": name, "ok": ok, "seconds": round(time.perf_counter() - t, 2), **detail}
        if not cpu:
            row["peak_alloc_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            row["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        rows.append(row)
        # Each row as it comes, and the JSON rewritten after each: a run stopped at its time
        # limit still leaves what it measured.
        rest = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("check", "ok", "seconds"))
        print(f"{'ok  ' if ok else 'FAIL'} {name:<34} {row['seconds']:>7.2f} s  {rest}", flush=True)
        (outdir / "gpu_check.json").write_text(json.dumps({"info": info, "rows": rows}, indent=2))

    check("bf16 matmul", lambda: _matmul(torch, device))
    check("f5-tts tiny", lambda: _f5(work, device))
    check("llama tiny", lambda: _llama(work, device))
    size = "reduced" if cpu else "full size"
    check(f"llama 3.2 3B, {size}", lambda: _llama_3b(work, device, reduced=cpu))
    check(f"f5-tts v1 base + vocos, {size}", lambda: _f5_base(work, device, reduced=cpu))
    # Last of the models: random weights decode to the end of every window, so how long it
    # takes is the least known.
    check(f"whisper large-v3, {size}", lambda: _whisper_large(work, device, reduced=cpu))
    backend = "gloo" if cpu else "nccl"
    check("tp-test render, 1 rank in process", lambda: _render(work, cpu, 1))
    check(f"tp-test render, 1 rank by torchrun ({backend})", lambda: _render(work, cpu, 1, "torchrun"))
    if cpu or torch.cuda.device_count() >= 2:
        check(f"tp-test render, 2 ranks ({backend})", lambda: _render(work, cpu, 2))
    # The ranks under render.python: this same interpreter named explicitly, so the probe, the
    # far-side launcher and the link folder run on the card (a second torch would not fit in what
    # can be carried to the GPU machine).
    check(f"tp-test render, render.python, 1 rank ({backend})", lambda: _render(work, cpu, 1, python=sys.executable))
    check(f"warm worker: 2 jobs, 1 rank group ({backend})", lambda: _batch(work, cpu))
    check("doctor --json (gpu-1x, render.python)", lambda: _doctor(work, outdir))
    shutil.rmtree(work, ignore_errors=True)  # gigabytes of random weights are built there
    return 0 if all(r["ok"] for r in rows) else 1


def _matmul(torch, device: str) -> dict:
    a = torch.randn(2048, 2048, device=device, dtype=torch.bfloat16)
    b = a @ a.T
    ref = a.float() @ a.float().T
    return {"max_rel_err": round(float(((b.float() - ref).abs().max() / ref.abs().max())), 5)}


def _planned(recipe, engine: str) -> float:
    from talkgen.memory import needs

    found = needs(recipe, {engine})
    return round(found[0].gib * 1024, 1) if found else 0.0


def _gpu_planned(name: str, settings: list[str], engine: str) -> float:
    """The planner's estimate for the engine placed on cuda:0, also when the check runs on the CPU."""
    from talkgen.recipe import load_recipe

    return _planned(load_recipe(name, [*settings, f"placement.{engine}=cuda:0"]), engine)


def _settle(device: str) -> None:
    """Let go of what building a model left on the device, so the peak measured is the load's and the run's."""
    import gc

    import torch

    gc.collect()
    if device != "cpu":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _timed(fn, *args, **kwargs) -> tuple[object, float]:
    """fn's result and its seconds, the device's queued work included."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def _question(sample_rate: int):
    """examples/question.wav (a recorded question, 6.5 s), decoded by talkgen's ffmpeg."""
    from talkgen import media

    return media.decode_audio(ROOT / "examples" / "question.wav", sample_rate)


def _whisper_large(work: Path, device: str, reduced: bool) -> dict:
    """Whisper large-v3's checkpoint through talkgen's loader, transcribing examples/question.wav
    with gpu-1x's settings (beam 5, English, word timings), cold and then warm. Random weights
    say noise to the end of each window (224 tokens) and move on by random timestamps, so a
    second of audio costs many times what speech would: the real-time factor is an upper bound.
    Reduced (on a CPU), the first 2 s, once."""
    from production_models import weights_mib, whisper

    from talkgen.engines.stt import SAMPLE_RATE, load_stt
    from talkgen.recipe import load_recipe

    path = whisper(work / "large-v3.pt", reduced, device)
    _settle(device)
    settings = [f"stt.model={path}"]
    recipe = load_recipe("gpu-1x", [*settings, f"placement.stt={device}"])
    stt, load_s = _timed(load_stt, recipe.stt, recipe.name)
    audio = _question(SAMPLE_RATE)[: 2 * SAMPLE_RATE if reduced else None]
    result, first_s = _timed(stt.transcribe, audio)
    if not reduced:
        result, again_s = _timed(stt.transcribe, audio)
    seconds = len(audio) / SAMPLE_RATE
    out = {"params_m": round(sum(p.numel() for p in stt.model.parameters()) / 1e6, 1), "load_s": round(load_s, 2),
           "audio_s": round(seconds, 2), "first_rtf": round(first_s / seconds, 3), **({} if reduced else {"rtf": round(again_s / seconds, 3)}),
           "words": len(result.words), "weights_mib": weights_mib(stt.model), "planned_mib": _gpu_planned("gpu-1x", settings, "stt")}
    del stt
    path.unlink()
    return out


def _llama_3b(work: Path, device: str, reduced: bool) -> dict:
    """Llama 3.2 3B Instruct's folder through talkgen's loader, replying with gpu-1x's settings
    (bfloat16, 200 new tokens at most), cold and then warm. Reduced (on a CPU), float32 as the
    tests run it, 50 tokens."""
    from production_models import llama, weights_mib

    from talkgen.engines.llm import load_llm
    from talkgen.recipe import load_recipe

    folder = llama(work / "Llama-3.2-3B-Instruct", reduced, device)
    _settle(device)
    settings = [f"llm.model={folder}"]
    recipe = load_recipe("gpu-1x", [*settings, f"placement.llm={device}", *(["llm.dtype=float32", "llm.max_new_tokens=50"] if reduced else [])])
    llm, load_s = _timed(load_llm, recipe.llm, recipe=recipe.name)
    messages = [{"role": "user", "content": "hello there, how are you?"}]
    (_, first_tokens), first_s = _timed(llm.chat, messages, seed=1)
    (_, tokens), again_s = _timed(llm.chat, messages, seed=2)
    out = {"params_m": round(sum(p.numel() for p in llm.model.parameters()) / 1e6, 1), "dtype": str(llm.model.dtype),
           "load_s": round(load_s, 2), "first_tokens_per_s": round(first_tokens / first_s, 1), "tokens": tokens,
           "tokens_per_s": round(tokens / again_s, 1), "weights_mib": weights_mib(llm.model),
           "planned_mib": _gpu_planned("gpu-1x", settings, "llm")}
    del llm
    shutil.rmtree(folder)
    return out


def _f5_base(work: Path, device: str, reduced: bool) -> dict:
    """F5-TTS v1 Base and Vocos through talkgen's loader, cloning examples/question.wav with
    gpu-1x's settings (32 steps, classifier-free guidance 2.0), cold and then warm. Reduced (on
    a CPU), 8 steps, once."""
    import tiny_f5
    from production_models import f5, weights_mib

    from talkgen.engines import f5_tts
    from talkgen.engines.tts import load_tts
    from talkgen.recipe import load_recipe

    paths = f5(work / "f5-base", reduced)
    _settle(device)
    steps = 8 if reduced else 32
    settings = [*tiny_f5.overrides(paths, steps=steps), f"tts.voice={ROOT / 'examples' / 'question.wav'}",
                f"tts.voice_text={QUESTION_TEXT}"]
    recipe = load_recipe("gpu-1x", [*settings, f"placement.tts={device}"])
    engine, load_s = _timed(load_tts, recipe.tts, f5_tts.load_reference(recipe.tts, recipe.tts.voice_text), recipe.name)
    text = "The check says this sentence on the device, and then it says another one."
    [speech], first_s = _timed(list, engine.speak(text))
    if not reduced:
        [speech], again_s = _timed(list, engine.speak(text))
    seconds = len(speech.audio) / f5_tts.SAMPLE_RATE
    out = {"params_m": round((paths["params"] + paths["vocoder_params"]) / 1e6, 1), "dtype": str(next(engine.model.parameters()).dtype),
           "steps": steps, "load_s": round(load_s, 2), "audio_s": round(seconds, 2), "first_rtf": round(first_s / seconds, 3),
           **({} if reduced else {"rtf": round(again_s / seconds, 3)}),
           "weights_mib": round(weights_mib(engine.model) + weights_mib(engine.vocoder), 1), "planned_mib": _gpu_planned("gpu-1x", settings, "tts")}
    del engine
    shutil.rmtree(work / "f5-base")
    return out


def _tiny_voice(work: Path, device: str) -> list[str]:
    """Settings that speak with the tiny F5-TTS (built once), cloning examples/question.wav."""
    import tiny_f5

    if not (work / "f5" / "F5TTS_tiny" / "model_1.safetensors").is_file():
        tiny_f5.build(work / "f5")
    paths = {"checkpoint": work / "f5" / "F5TTS_tiny" / "model_1.safetensors", "arch": work / "f5" / "F5TTS_tiny.yaml",
             "vocoder": work / "f5" / "vocos-tiny"}
    return [*tiny_f5.overrides(paths, steps=8), f"tts.voice={ROOT / 'examples' / 'question.wav'}", f"tts.voice_text={QUESTION_TEXT}",
            f"placement.tts={device}"]


def _f5(work: Path, device: str) -> dict:
    from talkgen.engines import f5_tts
    from talkgen.engines.tts import load_tts
    from talkgen.recipe import load_recipe

    recipe = load_recipe("cpu", _tiny_voice(work, device))
    engine = load_tts(recipe.tts, f5_tts.load_reference(recipe.tts, recipe.tts.voice_text), recipe.name)
    t = time.perf_counter()
    [a] = list(engine.speak("The check says this sentence on the device."))
    [b] = list(load_tts(recipe.tts, engine.reference, recipe.name).speak("The check says this sentence on the device."))
    return {"dtype": str(next(engine.model.parameters()).dtype), "speak_s": round(time.perf_counter() - t, 3),
            "samples": len(a.audio), "deterministic": bool((a.audio == b.audio).all()), "planned_mib": _planned(recipe, "tts")}


def _llama(work: Path, device: str) -> dict:
    from test_reply import _tiny_llama

    from talkgen.engines.llm import load_llm
    from talkgen.recipe import load_recipe

    folder = _tiny_llama(work / "llama", mute=False)
    recipe = load_recipe("cpu", [f"llm.model={folder}", "llm.max_new_tokens=16", f"placement.llm={device}"])
    llm = load_llm(recipe.llm)
    text, tokens = llm.chat([{"role": "user", "content": "hello"}], seed=1)
    again, _ = llm.chat([{"role": "user", "content": "hello"}], seed=1)
    return {"dtype": str(llm.model.dtype), "tokens": tokens, "deterministic": text == again, "planned_mib": _planned(recipe, "llm")}


def _render(work: Path, cpu: bool, ranks: int, launcher: str = "auto", python: str = "") -> dict:
    out = work / f"tp{ranks}-{launcher}{'-python' if python else ''}.mp4"
    avatar = "cpu" if cpu else ("cuda:0" if ranks == 1 else "cuda:" + ",".join(str(i) for i in range(ranks)))
    proc = subprocess.run(
        [sys.executable, "-m", "talkgen", "render", str(ROOT / "examples" / "script.txt"), "--say", "-q", "-o", str(out),
         *_tiny_voice(work, "cpu" if cpu else "cuda:0"), "render.engine=tp-test", f"render.nproc={ranks}",
         f"render.launcher={launcher}", f"placement.avatar={avatar}", "render.size=256",
         f"render.dtype={'float32' if cpu else 'bfloat16'}", *([f"render.python={python}"] if python else [])],
        capture_output=True, text=True, cwd=work,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    report = json.loads(out.with_name(out.stem + ".report.json").read_text())
    render = next(s for s in report["stages"] if s["name"] == "render")
    return {"video_s": report["video_s"], "render_s": render["wall_s"], "overhead": render["detail"].get("overhead_ratio"),
            "ranks_python": render["detail"].get("python"), "ranks_torch": render["detail"].get("torch")}


def _batch(work: Path, cpu: bool) -> dict:
    """`talkgen batch`: one warm worker renders two jobs through one tp-test rank group kept up
    between them (launched by torchrun, so the group's NCCL rendezvous serves both jobs)."""
    folder = work / "batch-in"
    folder.mkdir(exist_ok=True)
    for name, text in (("first", "The first of two videos."), ("second", "And the second, on the same ranks.")):
        (folder / f"{name}.txt").write_text(text + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "talkgen", "batch", str(folder), "-o", str(work / "batch-out"), "--say", "--json", "-q",
         *_tiny_voice(work, "cpu" if cpu else "cuda:0"), "render.engine=tp-test", "render.nproc=1", "render.launcher=torchrun",
         f"placement.avatar={'cpu' if cpu else 'cuda:0'}", "render.size=256", f"render.dtype={'float32' if cpu else 'bfloat16'}"],
        capture_output=True, text=True, cwd=work,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
    rep = json.loads(proc.stdout)
    [worker] = rep["workers"]
    failed = [f"{j['name']}: {j['error']}" for j in rep["jobs"] if j["status"] != "done"]
    if failed or worker["rank_launches"] != 1:
        raise RuntimeError(f"jobs not done: {failed}" if failed else f"{worker['rank_launches']} rank launches for 2 jobs")
    return {"jobs": len(rep["jobs"]), "rank_launches": worker["rank_launches"], "wall_s": [j["wall_s"] for j in rep["jobs"]],
            "video_s": round(rep["totals"]["video_minutes"] * 60, 2)}


def _doctor(work: Path, outdir: Path) -> dict:
    """doctor on this machine, and what nvidia-smi prints for the query talkgen.gpus makes, kept
    beside gpu_check.json: the doctor fixtures in tests/data/doctor/ were written by hand."""
    from talkgen.gpus import QUERY

    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], capture_output=True, text=True)
        (outdir / "nvidia-smi.out").write_text(smi.stdout)
        (outdir / "nvidia-smi.rc").write_text(f"{smi.returncode}\n")
        full = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
        (outdir / "nvidia-smi.txt").write_text(full.stdout + full.stderr)
    proc = subprocess.run([sys.executable, "-m", "talkgen", "doctor", "--json", "--recipe", "gpu-1x", f"render.python={sys.executable}"],
                          capture_output=True, text=True, cwd=work)
    (outdir / "doctor.json").write_text(proc.stdout)
    checks = {c["name"]: c["status"] for c in json.loads(proc.stdout)["checks"]}
    return {"doctor_exit": proc.returncode, "checks": checks}


if __name__ == "__main__":
    sys.exit(main())
