"""The GPU check: one prepared run on a lent GPU machine (issues 4 and 5), under 10 minutes.

    python3 benchmarks/gpu_check.py            # on a CUDA machine: every check in bf16 on cuda:0
    python3 benchmarks/gpu_check.py --cpu      # the same checks on the CPU (proves the script here)

It builds the tests' tiny random-weight models in their real formats and runs them through
talkgen's real engines on the device: F5-TTS + Vocos, Whisper in the large-v3 layout, a
Llama; it compares the planner's estimate for each with what torch allocated; it renders
with the tp-test back end in bf16 in process, through torchrun with NCCL as one rank
(render.launcher=torchrun), and as two ranks when there are two GPUs or more; it renders once
under render.python (this interpreter named explicitly: the probe and the far-side launcher);
it runs `talkgen batch` with one warm worker rendering two jobs on one rank group, and runs
`talkgen doctor --json`, keeping nvidia-smi's own output beside it. Prints a table
and writes $OUT/gpu_check.json (or ./gpu_check.json), doctor.json and nvidia-smi.{out,rc,txt}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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

    def check(name: str, fn) -> None:
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
        rows.append(row)

    check("bf16 matmul", lambda: _matmul(torch, device))
    check("f5-tts tiny", lambda: _f5(work, device))
    check("whisper tiny (large-v3 layout)", lambda: _whisper(work, device))
    check("llama tiny", lambda: _llama(work, device))
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
    outdir = Path(os.environ.get("OUT", "."))
    check("doctor --json (gpu-1x, render.python)", lambda: _doctor(work, outdir))
    out = outdir / "gpu_check.json"
    out.write_text(json.dumps({"info": info, "rows": rows}, indent=2))
    print(json.dumps(info))
    for r in rows:
        rest = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("check", "ok", "seconds"))
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['check']:<34} {r['seconds']:>7.2f} s  {rest}")
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


def _f5(work: Path, device: str) -> dict:
    import tiny_f5

    from talkgen.engines import f5_tts
    from talkgen.engines.tts import load_tts
    from talkgen.recipe import load_recipe

    paths = tiny_f5.build(work / "f5")
    recipe = load_recipe("cpu", [*tiny_f5.overrides(paths, steps=8), f"tts.voice={ROOT / 'examples' / 'question.wav'}",
                                 "tts.voice_text=a question for the check", f"placement.tts={device}"])
    engine = load_tts(recipe.tts, f5_tts.load_reference(recipe.tts, recipe.tts.voice_text), recipe.name)
    t = time.perf_counter()
    [a] = list(engine.speak("The check says this sentence on the device."))
    [b] = list(load_tts(recipe.tts, engine.reference, recipe.name).speak("The check says this sentence on the device."))
    return {"dtype": str(next(engine.model.parameters()).dtype), "speak_s": round(time.perf_counter() - t, 3),
            "samples": len(a.audio), "deterministic": bool((a.audio == b.audio).all()), "planned_mib": _planned(recipe, "tts")}


def _whisper(work: Path, device: str) -> dict:
    from dataclasses import asdict

    import numpy as np
    import torch
    from whisper.model import ModelDimensions, Whisper

    from talkgen.engines.stt import load_stt
    from talkgen.recipe import load_recipe

    dims = ModelDimensions(n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_vocab=51866, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1)
    torch.manual_seed(0)
    path = work / "whisper.pt"
    torch.save({"dims": asdict(dims), "model_state_dict": Whisper(dims).state_dict()}, path)
    recipe = load_recipe("cpu", ["stt.engine=openai-whisper", f"stt.model={path}", "stt.beam_size=1", f"placement.stt={device}"])
    stt = load_stt(recipe.stt)
    audio = (np.sin(np.arange(16000 * 3) / 7.0) * 0.1).astype(np.float32)
    result = stt.transcribe(audio)
    return {"dtype": "float16" if device != "cpu" else "float32", "words": len(result.words), "planned_mib": _planned(recipe, "stt")}


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
         "render.engine=tp-test", f"render.nproc={ranks}", f"render.launcher={launcher}", f"placement.avatar={avatar}", "render.size=256",
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
         "render.engine=tp-test", "render.nproc=1", "render.launcher=torchrun", f"placement.avatar={'cpu' if cpu else 'cuda:0'}",
         "render.size=256", f"render.dtype={'float32' if cpu else 'bfloat16'}"],
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

    import shutil

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
