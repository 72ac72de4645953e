"""The LiveAvatar adapter, against a stand-in checkout with LiveAvatar's module paths and signatures."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import video_fixtures

from talkgen import media
from talkgen.engines.liveavatar import preflight
from talkgen.gpus import Gpu
from talkgen.recipe import load_recipe

STANDIN = Path(__file__).resolve().parent / "standin_liveavatar"


@pytest.fixture
def weights(tmp_path):
    ckpt, lora = tmp_path / "wan", tmp_path / "lora"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    lora.mkdir()
    (lora / "liveavatar.safetensors").write_bytes(b"x")
    return ckpt, lora


def _recipe(ckpt, lora, *extra):
    return load_recipe("cpu", [
        "render.engine=liveavatar", f"render.liveavatar.checkout={STANDIN}", f"render.liveavatar.ckpt_dir={ckpt}",
        f"render.liveavatar.lora_dir={lora}", "render.liveavatar.size=128*64", "render.liveavatar.infer_frames=12",
        "render.liveavatar.clips_per_chunk=2", "render.dtype=bfloat16", *extra,
    ])


H100, A100, RTX4090 = Gpu(0, "NVIDIA H100 80GB HBM3", 79.6, (9, 0)), Gpu(0, "NVIDIA A100-SXM4-80GB", 79.2, (8, 0)), Gpu(1, "NVIDIA RTX 4090", 23.6, (8, 9))


def test_preflight_says_everything_that_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("TALKGEN_LIVEAVATAR", raising=False)
    r = load_recipe("cpu", ["render.engine=liveavatar", "render.nproc=3", "placement.avatar=cuda",
                            f"render.liveavatar.ckpt_dir={tmp_path / 'none'}", f"render.liveavatar.lora_dir={tmp_path / 'none'}"])
    problems = " | ".join(preflight(r.render, gpus=[H100, RTX4090]))
    assert "render.nproc=3: LiveAvatar runs on 1 GPU (offloading) or on exactly 5 ranks (4 DiT + 1 VAE): set render.nproc=1 or 5" in problems
    assert "no LiveAvatar checkout: clone github.com/Alibaba-Quark/LiveAvatar" in problems
    assert "Wan2.2-S2V-14B weights missing" in problems and "talkgen weights pull --model wan2.2-s2v-14b" in problems
    assert "Live-Avatar LoRA missing" in problems
    assert "3 GPU(s) needed, 2 visible" in problems
    assert "GPU 1 (NVIDIA RTX 4090, 24 GiB) has less" in problems


def test_five_h100s_pass_the_gpu_check(weights):
    r = _recipe(*weights, "render.nproc=5", "placement.avatar=cuda")
    assert preflight(r.render, gpus=[H100] * 5) == []
    assert preflight(r.render, gpus=[H100] * 4) == ["5 GPU(s) needed, 4 visible"]


def test_settings_their_code_cannot_run_with_are_each_one_line_saying_what_to_set(weights):
    def problems(*extra):
        return preflight(_recipe(*weights, *extra).render, [])

    assert problems("render.nproc=6") == ["render.nproc=6: LiveAvatar runs on 1 GPU (offloading) or on exactly 5 ranks (4 DiT + 1 VAE): "
                                          "set render.nproc=1 or 5"]
    assert problems("render.nproc=5", "render.liveavatar.num_gpus_dit=3", "render.liveavatar.enable_vae_parallel=false",
                    "render.liveavatar.sample_steps=3") == [
        "render.liveavatar.num_gpus_dit=3: LiveAvatar's 5 ranks are 4 DiT ranks and 1 VAE rank: set render.liveavatar.num_gpus_dit=4",
        "render.liveavatar.enable_vae_parallel=false: LiveAvatar's multi-GPU mode decodes on a rank of its own: "
        "set render.liveavatar.enable_vae_parallel=true",
        "render.liveavatar.sample_steps=3: on 5 ranks each DiT rank runs one step: set render.liveavatar.sample_steps=4"]
    assert problems("render.nproc=5", "render.liveavatar.sample_steps=8") == [
        "render.liveavatar.sample_steps=8: on 5 ranks each DiT rank runs one step: set render.liveavatar.sample_steps=4"]
    assert problems("render.liveavatar.sample_steps=5", "render.liveavatar.solver=unipc", "render.fps=30",
                    "render.liveavatar.infer_frames=40") == [
        "render.liveavatar.sample_steps=5: LiveAvatar on one GPU has KV caches for 4 steps: set render.liveavatar.sample_steps=4 or fewer",
        "render.liveavatar.solver=unipc: LiveAvatar samples only with euler: set render.liveavatar.solver=euler",
        "render.fps=30: LiveAvatar's audio features and video run at 25 fps: set render.fps=25",
        "render.liveavatar.infer_frames=40: LiveAvatar denoises blocks of 12 frames: set a multiple of 12, e.g. 48"]
    assert problems("render.liveavatar.sample_steps=2") == []
    assert problems("render.dtype=float32") == [
        "render.dtype=float32: LiveAvatar always runs in bfloat16 (its param_dtype): set render.dtype=bfloat16"]


def test_a_checkout_whose_code_calls_cuda_is_refused_on_the_cpu_in_one_line(tmp_path, weights):
    """Upstream's pipelines put their model on f"cuda:{device_id}" and call torch.cuda throughout;
    the stand-in calls neither, so the tests run it on the CPU."""
    import shutil

    cuda = tmp_path / "LiveAvatar"
    shutil.copytree(STANDIN, cuda)
    for name in ("causal_s2v_pipeline.py", "causal_s2v_pipeline_tpp.py"):
        path = cuda / "liveavatar" / "models" / "wan" / name
        path.write_text(path.read_text() + "\n# torch.cuda in a comment says nothing\nDEVICE = 'cuda:0'\n")
    line = ("placement.avatar=cpu: LiveAvatar's code runs on CUDA GPUs only (liveavatar/models/wan/causal_s2v_pipeline.py puts its "
            "model on cuda:N and calls torch.cuda): set placement.avatar=cuda:0, or cuda:0,1,2,3,4 for 5 ranks")
    assert preflight(_recipe(*weights, f"render.liveavatar.checkout={cuda}").render, []) == [line]
    assert preflight(_recipe(*weights).render, []) == []
    commented = tmp_path / "commented"
    shutil.copytree(STANDIN, commented)
    path = commented / "liveavatar" / "models" / "wan" / "causal_s2v_pipeline.py"
    path.write_text(path.read_text() + "\n# torch.cuda in a comment says nothing\n")
    assert preflight(_recipe(*weights, f"render.liveavatar.checkout={commented}").render, []) == []
    five = preflight(_recipe(*weights, f"render.liveavatar.checkout={cuda}", "render.nproc=5").render, [])
    assert five == [line.replace("causal_s2v_pipeline.py", "causal_s2v_pipeline_tpp.py")]


def test_the_shipped_gpu_recipes_suit_upstream_and_wait_out_the_first_chunks_compilation():
    from talkgen.engines.liveavatar import _setting_problems
    from talkgen.recipe import list_recipes

    for name in ("gpu-1x", "h100-8x"):
        assert _setting_problems(load_recipe(name).render) == [], name
    # TPP ranks sit in recv while a peer torch.compiles its first chunk: minutes.
    assert load_recipe("h100-8x").render.collective_timeout_s >= 1800
    described = dict(list_recipes())["gpu-1x"]
    assert load_recipe("gpu-1x").render.liveavatar.fp8 and ("A100" not in described or "fp8=false" in described)


def test_fp8_needs_compute_capability_8_9_on_every_gpu_it_runs_on(weights):
    def problems(gpus, *extra):
        return preflight(_recipe(*weights, "placement.avatar=cuda", *extra).render, gpus)

    fp8 = ("render.liveavatar.fp8 needs compute capability 8.9 or newer (Ada, Hopper): GPU 0 (NVIDIA A100-SXM4-80GB, compute 8.0) "
           "has no FP8 matmul: set render.liveavatar.fp8=false")
    assert problems([A100]) == [fp8]
    assert problems([A100], "render.liveavatar.fp8=false") == []
    assert problems([H100]) == [] and problems([Gpu(0, "an old driver's H100", 79.6, None)]) == []
    assert problems([]) == ["1 GPU(s) needed, 0 visible"]  # no GPU to ask: nothing said about FP8


def test_the_check_reads_compute_capability_from_nvidia_smi_without_starting_cuda(tmp_path, weights):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA A100-SXM4-80GB, 81920, 8.0, 535.183.01, 00000000:00:04.0'\n")
    smi.chmod(0o755)
    code = f"""
import sys
from talkgen.engines.liveavatar import check
from talkgen.errors import TalkgenError
from talkgen.recipe import load_recipe
r = load_recipe("gpu-1x", ["render.liveavatar.checkout={STANDIN}", "render.liveavatar.ckpt_dir={weights[0]}",
                           "render.liveavatar.lora_dir={weights[1]}"])
try:
    check(r.render)
except TalkgenError as exc:
    print(exc)
print('torch' in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}, "TALKGEN_NVIDIA_SMI": str(smi)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "LiveAvatar cannot run: render.liveavatar.fp8 needs compute capability 8.9 or newer (Ada, Hopper): "
        "GPU 0 (NVIDIA A100-SXM4-80GB, compute 8.0) has no FP8 matmul: set render.liveavatar.fp8=false", "False"]


def test_a_gpu_other_than_cuda_0_goes_to_a_rank_which_sees_it_as_its_own_cuda_0(tmp_path, weights, monkeypatch):
    """Their one-GPU pipeline runs on cuda:0 whatever it is given; a torchrun rank sees only its card, as cuda:0."""
    from talkgen.engines.liveavatar import check
    from talkgen.errors import TalkgenError

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f"echo '{i}, NVIDIA H100 80GB HBM3, 81559, 9.0, 570.124.06, 00000000:{i + 24:02X}:00.0'\n"
                                           for i in range(4)))
    smi.chmod(0o755)
    monkeypatch.setenv("TALKGEN_NVIDIA_SMI", str(smi))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    third = ["placement.avatar=cuda:3", "render.liveavatar.fp8=false"]
    with pytest.raises(TalkgenError, match=r"placement.avatar=cuda:3: LiveAvatar's one-GPU pipeline always runs on cuda:0: "
                                           r"set placement.avatar=cuda:0, or render.launcher=torchrun"):
        check(_recipe(*weights, *third).render)
    check(_recipe(*weights, *third, "render.launcher=torchrun").render)  # the parent, before the launch
    # The rank itself: the launcher gave it CUDA_VISIBLE_DEVICES=3, so it sees one card, its cuda:0.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "talkgen")
    check(_recipe(*weights, *third, "render.launcher=torchrun").render)


def test_missing_checkout_is_one_line_from_the_cli(tmp_path, weights):
    (tmp_path / "s.txt").write_text("Hello there.")
    from incli import talkgen

    proc = talkgen(["render", "s.txt", "--say", "-o", "o.mp4", "render.engine=liveavatar", f"render.liveavatar.checkout={tmp_path / 'nowhere'}",
                    f"render.liveavatar.ckpt_dir={weights[0]}", f"render.liveavatar.lora_dir={weights[1]}"], tmp_path)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "LiveAvatar cannot run:" in proc.stderr and "is not a LiveAvatar checkout" in proc.stderr


@pytest.mark.slow
def test_renders_through_the_standin_with_lora_fp8_steps_and_continuity(tmp_path, weights):
    from talkgen.pipeline import RenderRequest, run

    (tmp_path / "s.txt").write_text("Hello there, this is the first sentence. And this is a second one, a little longer.")
    recipe = _recipe(*weights)
    report = run(RenderRequest(tmp_path / "s.txt", tmp_path / "o.mp4", recipe, job_dir=tmp_path / "job", say=True))
    from liveavatar.models.wan import causal_s2v_pipeline as standin
    from liveavatar.utils import fp8_linear

    plan = json.loads((tmp_path / "job" / "plan.json").read_text())
    assert len(plan["chunks"]) >= 2
    # Whole clips less the 3 frames each generate() call drops, which are made from the audio before the chunk.
    assert plan["lead_frames"] == 3 and all((c["end_frame"] - c["start_frame"] + 3) % 12 == 0 for c in plan["chunks"])
    assert max(c["end_frame"] - c["start_frame"] for c in plan["chunks"]) <= 24 - 3  # clips_per_chunk x infer_frames
    calls = standin.LOG[-len(plan["chunks"]):]
    assert [c["num_repeat"] * 12 - 3 for c in calls] == [c["end_frame"] - c["start_frame"] for c in plan["chunks"]]
    # Each call hears 2 s on each side of its audio, as far as the speech goes, and keeps its own frames' features.
    speech = math.ceil(plan["samples"] * 25 / plan["sample_rate"])
    assert [round(c["audio_s"] * 25) for c in calls] == [
        min(50, c["start_frame"]) + c["end_frame"] - c["start_frame"] + 3 + max(0, min(50, speech - c["end_frame"])) for c in plan["chunks"]]
    assert [len(c["features"]) for c in calls] == [c["end_frame"] - c["start_frame"] + 3 for c in plan["chunks"]]
    assert {c["sampling_steps"] for c in calls} == {4} and {c["solver"] for c in calls} == {"euler"}
    assert {c["max_area"] for c in calls} == {128 * 64} and all(c["offload"] for c in calls)
    assert fp8_linear.CALLS[-1][0] == "text_embedding"
    # The first chunk's motion frames are the portrait; every later chunk's are the previous chunk's last frames.
    ref_mean = calls[0]["motion_mean"]
    for call, before in zip(calls[1:], calls):
        t = call["motion_t"]  # the reference repeated 5 x motion_frames times
        prev = ((before["video"].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 3, 0).numpy()[-73:]  # as the adapter saved it
        clip = prev.astype(np.float32) / 127.5 - 1.0
        padded = np.concatenate([np.repeat(clip[:1], t - len(clip), axis=0), clip])  # the oldest frame repeated to fill
        assert call["motion_mean"] == pytest.approx(padded.mean(), abs=1e-3)
        assert call["context_mean"] == pytest.approx(padded.mean(), abs=1e-3)  # the decode context too (audit W5)
        assert call["motion_mean"] != pytest.approx(ref_mean, abs=1e-3)
    # The 512x512 portrait scaled into the 128*64 area: square 64x64 frames, not stretched to 128x64.
    assert {c["size"] for c in calls} == {(64, 64)}
    info = media.probe(tmp_path / "o.mp4")["streams"][0]
    assert (info["width"], info["height"]) == (64, 64)
    assert report["output"]["frames"] == plan["total_frames"]


@pytest.mark.slow
def test_five_ranks_render_through_the_launcher_with_the_video_from_the_decoding_rank(tmp_path, weights):
    """The TPP stand-in returns frames on rank num_gpus_dit - 1 + 1 = 4 only, as LiveAvatar does:
    the job finishes only if talkgen's output rank is that one, and rank 4 saves each seed."""
    (tmp_path / "s.txt").write_text("Hello there, this is the first sentence. And this is a second one, a little longer.")
    ckpt, lora = weights
    from incli import talkgen

    proc = talkgen(["render", "s.txt", "--say", "--size", "96", "-o", "o.mp4", "--job-dir", "job", "-q", "render.engine=liveavatar",
                    "render.nproc=5", "render.dtype=bfloat16", f"render.liveavatar.checkout={STANDIN}", f"render.liveavatar.ckpt_dir={ckpt}",
                    f"render.liveavatar.lora_dir={lora}", "render.liveavatar.size=128*64", "render.liveavatar.infer_frames=12",
                    "render.liveavatar.clips_per_chunk=2"], tmp_path, {"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads((tmp_path / "job" / "plan.json").read_text())
    assert len(plan["chunks"]) >= 2
    # Rank 4 saved each chunk's seed in the job; the finished render needs none of them, so none is left.
    sides = [json.loads((tmp_path / "job" / "chunks" / f"{c['index']:05d}.mp4.json").read_text()) for c in plan["chunks"]]
    seeds = [Path(s["continuity"]["state_file"]) for s in sides]
    assert [p.name for p in seeds] == [f"motion-{c['end_frame']:07d}.npy" for c in plan["chunks"]]
    assert {p.parent for p in seeds} == {(tmp_path / "job" / "chunks").resolve()}
    assert not list((tmp_path / "job" / "chunks").glob("motion-*.npy"))
    info = next(s for s in media.probe(tmp_path / "o.mp4")["streams"] if s["codec_type"] == "video")
    assert (info["width"], info["height"]) == (64, 64) and int(info["nb_frames"]) == plan["total_frames"]


def _five_ranks(tmp_path, name, log, weights, wait_for=None):
    """A 5-rank render of the stand-in into job `name`, its ranks' generate() calls logged to `log`;
    with wait_for=N, stopped (Ctrl-C) once N chunks are finished, to be resumed by the next call."""
    import signal
    import time

    ckpt, lora = weights
    args = [sys.executable, "-m", "talkgen", "render", "s.txt", "--say", "--size", "96", "-o", f"{name}.mp4", "--job-dir", name,
            "-q", "render.engine=liveavatar", "render.nproc=5", "render.dtype=bfloat16", f"render.liveavatar.checkout={STANDIN}",
            f"render.liveavatar.ckpt_dir={ckpt}", f"render.liveavatar.lora_dir={lora}", "render.liveavatar.size=128*64",
            "render.liveavatar.infer_frames=12", "render.liveavatar.clips_per_chunk=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIVEAVATAR_STANDIN_LOG": str(log)}
    # Ctrl-C as at a terminal, also when this test run was started with SIGINT ignored (a shell's
    # background job, a CI runner): a render keeps an ignored SIGINT, so the stop would never come.
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if wait_for is not None:
        chunks, deadline = tmp_path / name / "chunks", time.time() + 300
        while len(list(chunks.glob("*.mp4.json"))) < wait_for and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_five_ranks_resume_frame_for_frame_and_decode_each_chunk_against_the_frames_just_before_it(tmp_path, weights):
    """Upstream primes the decoding rank's streaming decoder with the oldest motion latents and
    draws unseeded random numbers in every forward on every rank; its decoder's state runs on
    from call to call. talkgen primes with the newest, seeds every rank from the chunk's seed,
    and starts the decoder afresh in each call, so a render stopped and resumed in new ranks
    makes the same video as one that never stopped."""
    (tmp_path / "s.txt").write_text("Hello there, this is the first sentence. And this is a second one, a little longer.")
    code, err = _five_ranks(tmp_path, "whole", tmp_path / "whole.jsonl", weights)
    assert code == 0, err[-2000:]
    code, err = _five_ranks(tmp_path, "cut", tmp_path / "cut.jsonl", weights, wait_for=2)
    assert code != 0 and not (tmp_path / "cut.mp4").exists(), err[-2000:]
    code, err = _five_ranks(tmp_path, "cut", tmp_path / "cut.jsonl", weights)
    assert code == 0, err[-2000:]
    reused = next(s for s in json.loads((tmp_path / "cut.report.json").read_text())["stages"] if s["name"] == "render")
    assert reused["detail"]["reused_chunks"] >= 2
    assert video_fixtures.frame_hashes(tmp_path / "cut.mp4") == video_fixtures.frame_hashes(tmp_path / "whole.mp4")

    whole = _calls(tmp_path / "whole.jsonl")
    decoded = [c for c in whole if c["rank"] == 4]
    assert len(decoded) >= 3
    for call in decoded:
        m = call["motion_latents"]  # each latent frame's mean level: the oldest first
        newest = m[-7]
        for level in m[-6:]:
            newest = 0.9 * newest + 0.1 * level  # the stand-in decoder's context after those 7
        assert call["primed_context"] == pytest.approx(newest, abs=1e-5)
    assert any(abs(m["motion_latents"][0] - m["motion_latents"][-1]) > 0.01 for m in decoded[1:])  # oldest and newest differ
    # Every DiT rank drew the same numbers for a chunk, and the resumed render drew what the whole one did.
    by_chunk = {}
    for call in whole:
        by_chunk.setdefault(call["seed"], {})[call["rank"]] = call["draws"]
    assert all(len({json.dumps(d[r]) for r in range(4)}) == 1 for d in by_chunk.values())
    for call in _calls(tmp_path / "cut.jsonl"):
        assert call["draws"] == by_chunk[call["seed"]][call["rank"]]


def _engine(tmp_path, weights, *extra, side=64, state="state"):
    """The adapter on the stand-in checkout, with a flat grey portrait `side` pixels square."""
    from talkgen.engines.liveavatar import LiveAvatarEngine
    from talkgen.portrait import Portrait

    portrait = Portrait(np.full((side, side, 3), 100, np.uint8), None, tmp_path / "portrait.png", "0" * 64)
    return LiveAvatarEngine(_recipe(*weights, *extra).render, portrait, state_dir=tmp_path / state)


def _track(tmp_path, frames, loud, sr=16000):
    """Silence for `frames` frames at 25 fps, except frame `loud` (or each of a tuple of them)."""
    from talkgen.speech import SpeechTrack, WavWriter

    per = sr // 25
    audio = np.zeros(frames * per, np.float32)
    for f in (loud,) if isinstance(loud, int) else loud:
        audio[f * per:(f + 1) * per] = 0.5
    w = WavWriter(tmp_path / "speech.wav", sr)
    w.write(audio)
    w.close()
    return SpeechTrack(tmp_path / "speech.wav", sr, len(audio), [], [])


def test_each_call_hears_three_frames_before_its_chunk_so_every_frame_shows_its_own_audio(tmp_path, weights):
    engine = _engine(tmp_path, weights)
    track = _track(tmp_path, 42, loud=(1, 20, 23))
    assert engine.lead_frames == 3

    def bright(frames):
        """The frames brighter than each neighbour by 5 grey levels: their audio's features, which
        hear a frame to each side, peak at the loud frames."""
        level = np.array([f.astype(np.float32).mean() for f in frames])
        padded = np.concatenate([[-np.inf], level, [-np.inf]])
        return set(np.flatnonzero((level > padded[:-2] + 5) & (level > padded[2:] + 5)).tolist())

    # Chunks are whole 12-frame clips less the 3 generate() drops; each call hears 3 frames of
    # audio before its chunk (silence before the first), so every frame shows its own audio frame.
    first = list(engine.render_chunk(track, 0, 21))
    assert len(first) == 21 and bright(first) == {1, 20}
    second = list(engine.render_chunk(track, 21, 42, engine.continuity_after(21)))
    assert len(second) == 21 and bright(second) == {23 - 21}  # frame 20 was heard in the lead, and dropped


def test_each_chunk_hears_the_audio_around_it_so_its_features_are_those_of_one_encoding_of_the_whole_speech(tmp_path, weights):
    """Their audio encoder normalises the file it is given and hears across frames (the stand-in's
    as upstream's wav2vec2 processor and model do). Encoded alone, a chunk's audio gives other
    features at its edges than the same frames in one encoding of the whole speech, which is
    what upstream's own scripts make; with 2 s heard on each side, the same."""
    from conftest import synthetic_track

    track = synthetic_track(tmp_path, [("gap", 0.3), ("talk", 3.2), ("gap", 0.5)])
    engine = _engine(tmp_path, weights)
    from liveavatar.models.wan import causal_s2v_pipeline as standin

    whole = standin.audio_features(*standin.read_wav(engine._chunk_audio(track, -3, 100)))  # from the first chunk's lead
    scale = np.abs(whole).max()
    for start in range(0, 84, 21):
        list(engine.render_chunk(track, start, start + 21))
        heard = np.array(standin.LOG[-1]["features"])  # frames start - 3 .. start + 20
        # Within 6% of the features' scale: the normalisation is the window's own, which holds a
        # little more or less silence than the whole speech. Encoded alone, the edges were 18-33% off.
        assert np.abs(heard - whole[start:start + 24]).max() <= 0.06 * scale, start


def test_frames_take_the_portraits_shape_within_the_area_and_are_never_stretched(tmp_path, weights, monkeypatch):
    from talkgen.errors import TalkgenError

    engine = _engine(tmp_path, weights, side=96)  # 96x96 into 128*64 = 8192 pixels: 64x64
    assert (engine.width, engine.height) == (64, 64)
    frames = list(engine.render_chunk(_track(tmp_path, 12, loud=5), 0, 9))
    assert {f.shape for f in frames} == {(64, 64, 3)}
    big = _engine(tmp_path / "big", weights, "render.liveavatar.size=704*384", side=512)
    assert (big.width, big.height) == (512, 512)  # docs/production.md's example: 704*384 is an area, not a shape
    small = preflight(_recipe(*weights, "render.liveavatar.size=64*48").render, [])
    assert small == ["render.liveavatar.size=64*48 is too small: LiveAvatar's frames are multiples of 64 on each side, "
                     "so set an area of at least 64*64 (704*384 gives 512x512 frames)"]
    # Their KV caches hold the condition tokens of a 720*400 frame at most (causal_s2v_pipeline_tpp.py).
    assert preflight(_recipe(*weights, "render.liveavatar.size=720*400").render, []) == []
    assert preflight(_recipe(*weights, "render.liveavatar.size=1280*720").render, []) == [
        "render.liveavatar.size=1280*720 is too large: LiveAvatar's caches have room for frames of up to 720*400 pixels: "
        "set render.liveavatar.size=704*384 or smaller"]
    # A pipeline whose frames disagree with its own get_gen_size() is an error, not a resize.
    generate = engine.pipe.generate
    monkeypatch.setattr(engine.pipe, "generate", lambda **kw: (generate(**kw)[0][:, :, :, :32], {}))
    with pytest.raises(TalkgenError, match="LiveAvatar returned 32x64 frames where its get_gen_size"):
        list(engine.render_chunk(_track(tmp_path, 12, loud=5), 0, 9))


def test_a_new_portrait_reaches_the_loaded_pipeline_which_makes_its_frames_as_a_fresh_one_would(tmp_path, weights):
    """Their generate() reads the reference and makes its KV cache anew at every call, so a job's
    portrait is its input: a loaded engine renders a second portrait as one loaded with it does."""
    from talkgen.portrait import Portrait

    engine = _engine(tmp_path, weights, side=64)
    track = _track(tmp_path, 24, loud=(4, 12))
    list(engine.render_chunk(track, 0, 21))
    other = Portrait(np.full((64, 64, 3), 180, np.uint8), None, tmp_path / "other.png", "1" * 64)
    engine.use_portrait(other)
    again = list(engine.render_chunk(track, 0, 21))
    fresh = _engine(tmp_path / "fresh", weights, side=64)
    fresh.use_portrait(other)
    assert [f.tobytes() for f in again] == [f.tobytes() for f in fresh.render_chunk(track, 0, 21)]
    assert engine.identity()["portrait"] == "1" * 64 and abs(float(again[0].mean()) - 180) < 40


def test_a_released_engine_goes_at_once_not_at_the_next_garbage_collection(tmp_path, weights):
    """A bound method of the VAE set back on it as an attribute made a reference cycle: the VAE,
    its weights on the GPU, stayed until the collector ran, after the next back end had loaded."""
    import gc
    import weakref

    engine = _engine(tmp_path, weights)
    list(engine.render_chunk(_track(tmp_path, 12, loud=5), 0, 9))
    pipe, vae = weakref.ref(engine.pipe), weakref.ref(engine.pipe.vae)
    gc.collect()
    gc.disable()
    try:
        del engine
        assert pipe() is None and vae() is None
    finally:
        gc.enable()


def test_the_render_key_knows_the_weights_by_content_not_by_folder(tmp_path, weights):
    """Pointing lora_dir or ckpt_dir at other weights renders again; at a copy of the same, it resumes."""
    import shutil

    from talkgen.engines.liveavatar import identity

    ckpt, lora = weights
    (ckpt / "diffusion_pytorch_model.safetensors").write_bytes(bytes(range(256)) * 9000)
    (lora / "liveavatar.safetensors").write_bytes(b"lora one" * 300000)  # over 2 MiB: its first and last MiB are read
    first = identity(_recipe(ckpt, lora).render)
    copy = tmp_path / "copy"
    shutil.copytree(lora, copy)
    assert identity(_recipe(ckpt, copy).render) == first
    other = tmp_path / "other"
    other.mkdir()
    (other / "liveavatar.safetensors").write_bytes(b"lora one" * 299999 + b"lora two")
    assert identity(_recipe(ckpt, other).render) != first
    ckpt2 = tmp_path / "wan2"
    shutil.copytree(ckpt, ckpt2)
    (ckpt2 / "diffusion_pytorch_model.safetensors").write_bytes(bytes(range(255, -1, -1)) * 9000)
    assert identity(_recipe(ckpt2, lora).render) != first
    assert identity(_recipe(ckpt, other, "render.liveavatar.lora=false").render) == identity(
        _recipe(ckpt, lora, "render.liveavatar.lora=false").render)  # no LoRA: its folder does not matter


def test_the_lora_is_liveavatar_safetensors_by_name_even_when_another_file_sorts_first(tmp_path, weights):
    ckpt, lora = weights
    (lora / "adapter_model.safetensors").write_bytes(b"x")  # sorts before liveavatar.safetensors
    assert _engine(tmp_path, weights).pipe.lora["path"] == str(lora / "liveavatar.safetensors")
    (lora / "liveavatar.safetensors").unlink()  # a renamed copy: the search is the fallback
    assert _engine(tmp_path, weights).pipe.lora["path"] == str(lora / "adapter_model.safetensors")


def test_the_seed_is_the_models_motion_window_of_73_frames_where_the_chunk_has_them(tmp_path, weights):
    engine = _engine(tmp_path, weights)
    assert engine.pipe.motion_frames == 73
    track = _track(tmp_path, 81 + 21, loud=90)
    frames = list(engine.render_chunk(track, 0, 81))
    seed = np.load(engine.continuity_after(81)["state_file"])
    assert np.array_equal(seed, np.stack(frames[-73:]))
    list(engine.render_chunk(track, 81, 81 + 21, engine.continuity_after(81)))
    assert len(np.load(engine.continuity_after(102)["state_file"])) == 21  # a shorter chunk: all of it


def test_any_other_frame_count_from_generate_is_an_error(tmp_path, weights, monkeypatch):
    from talkgen.errors import TalkgenError

    engine = _engine(tmp_path, weights)
    generate = engine.pipe.generate
    monkeypatch.setattr(engine.pipe, "generate", lambda **kw: (generate(**kw)[0][:, 1:], {}))
    with pytest.raises(TalkgenError, match="LiveAvatar returned 20 frames for a chunk of 21, where its generate.. drops 3 of 24"):
        list(engine.render_chunk(_track(tmp_path, 24, loud=10), 0, 21))
    with pytest.raises(TalkgenError, match="whole clips of 12 frames less the 3 generate.. drops, got 24"):
        list(engine.render_chunk(_track(tmp_path, 24, loud=10), 0, 24))


@pytest.mark.slow
def test_one_gpu_mode_starts_the_one_rank_group_their_pipeline_asks_for(tmp_path, weights):
    """In a fresh process, as talkgen renders gpu-1x and chat: importing starts nothing (not even
    torch), and loading the engine starts a 1-rank gloo group, without which generate() fails."""
    code = f"""
import json, sys
from pathlib import Path
import talkgen.engines.liveavatar, talkgen.ranks.group
torch_at_import = 'torch' in sys.modules
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_liveavatar as t
import torch.distributed as dist
before = dist.is_initialized()
engine = t._engine(Path({str(tmp_path)!r}), (Path({str(weights[0])!r}), Path({str(weights[1])!r})))
frames = list(engine.render_chunk(t._track(Path({str(tmp_path)!r}), 12, loud=5), 0, 9))
from talkgen.ranks.group import ensure_single_process_group
print(json.dumps([torch_at_import, before, dist.get_world_size(), dist.get_backend(), len(frames),
                  ensure_single_process_group(Path({str(tmp_path)!r}))]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [False, False, 1, "gloo", 9, False]


@pytest.mark.slow
def test_a_group_that_does_not_start_is_one_line_saying_what_to_do(tmp_path):
    code = f"""
import torch.distributed as dist
from pathlib import Path
from talkgen.ranks.group import ensure_single_process_group
from talkgen.errors import TalkgenError
def refuse(*a, **kw):
    raise RuntimeError("Gloo connectFullMesh failed with [enforce fail]\\nmore detail")
dist.init_process_group = refuse
try:
    ensure_single_process_group(Path({str(tmp_path)!r}))
except TalkgenError as exc:
    print(exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("the one-rank gloo process group LiveAvatar needs on one GPU did not start (Gloo connectFullMesh "
                                   "failed with [enforce fail]): set render.launcher=torchrun to render in a torchrun rank instead")


def test_gpus_are_read_from_nvidia_smi_output():
    from talkgen.gpus import OLD_QUERY, parse_query, select

    smi = "\n".join(f"{i}, NVIDIA H100 80GB HBM3, 81559, 9.0, 535.183.01, 00000000:{i:02X}:00.0" for i in range(8))
    gpus = select(parse_query(smi), "0,1,2,3,4")
    assert len(gpus) == 5 and (gpus[0].name, gpus[0].memory_gib, gpus[0].compute_cap) == ("NVIDIA H100 80GB HBM3", 81559 / 1024, (9, 0))
    assert [g.index for g in select(parse_query(smi), "4,2")] == [4, 2]
    assert len(select(parse_query(smi))) == 8
    assert select(parse_query(""), "0") == []
    old = parse_query("0, Tesla T4, 15360, 470.57.02, 00000000:00:04.0", OLD_QUERY)
    assert old[0].compute_cap is None and old[0].bf16 is None and old[0].driver == "470.57.02"


def _staged(tmp_path, weights, state):
    """A 6-chunk plan for the stand-in (126 frames, chunks of two 12-frame clips less 3), and a
    fresh adapter keeping its motion seeds in tmp_path/state."""
    from talkgen.stages.plan import make_plan

    track = _track(tmp_path, 126, loud=tuple(range(2, 126, 9)))
    plan = make_plan(track, 25, 24 / 25, 24 / 25, 12, 3)
    assert [c.frames for c in plan.chunks] == [21] * 6
    return _engine(tmp_path, weights, state=state), track, plan


def _render(job_dir, engine, track, plan, on_frames=None):
    from talkgen.job import Job
    from talkgen.stages.render import render_chunks

    (job_dir / "chunks").mkdir(parents=True, exist_ok=True)
    return render_chunks(Job(job_dir), "key", plan, engine, track, 23, "ultrafast", on_frames=on_frames)


def _shas(job_dir, plan):
    return [json.loads((job_dir / "chunks" / f"{c.index:05d}.mp4.json").read_text())["sha256"] for c in plan.chunks]


def test_a_render_keeps_only_the_seeds_it_can_still_resume_from(tmp_path, weights):
    """A 57 MB seed per 7.56 s chunk at 512x512 came to 4.5 GB for ten minutes of video when all were kept."""
    engine, track, plan = _staged(tmp_path, weights, "state")
    held = []
    _render(tmp_path / "job", engine, track, plan, on_frames=lambda n: held.append(len(list((tmp_path / "state").glob("*.npy")))))
    # The last finished chunk's seed, the one of the chunk being finished, the one of the chunk
    # queued behind it (the chunk writer holds one) and the one just made: 4 at most of the 6.
    # Quiet, the finisher keeps up and 3 is the most seen; under load the queue fills (CI: 4).
    assert max(held) <= 4
    assert not list((tmp_path / "state").glob("*.npy"))  # a finished render needs none


def test_a_render_stopped_midway_resumes_from_the_last_kept_seed_as_if_never_stopped(tmp_path, weights):
    engine, track, plan = _staged(tmp_path, weights, "whole")
    from liveavatar.models.wan import causal_s2v_pipeline as standin  # on the path once an engine has loaded

    _render(tmp_path / "whole", engine, track, plan)
    whole = [c["motion_mean"] for c in standin.LOG[-6:]]

    engine, track, plan = _staged(tmp_path, weights, "stopped")
    made = []

    def stop(n):
        made.append(n)
        if sum(made) == 3 * 21 + 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _render(tmp_path / "stopped", engine, track, plan, on_frames=stop)
    before = len(standin.LOG)
    rec = _render(tmp_path / "stopped", engine, track, plan)
    resumed = [c["motion_mean"] for c in standin.LOG[before:]]
    assert 2 <= rec.extra["reused_chunks"] <= 3
    assert resumed == whole[rec.extra["reused_chunks"]:]  # continued from the kept seed, not from the portrait
    assert _shas(tmp_path / "stopped", plan) == _shas(tmp_path / "whole", plan)


def test_a_chunk_lost_after_its_seeds_were_dropped_is_rendered_again_from_the_last_seed_left(tmp_path, weights):
    """Seeds go once the next chunk is on disk, so a chunk deleted or damaged later cannot start
    from its predecessor's: the render goes back to the nearest chunk it can start faithfully."""
    engine, track, plan = _staged(tmp_path, weights, "state")
    from liveavatar.models.wan import causal_s2v_pipeline as standin

    _render(tmp_path / "job", engine, track, plan)
    shas = _shas(tmp_path / "job", plan)
    (tmp_path / "job" / "chunks" / "00002.mp4").write_bytes(b"damaged")
    before = len(standin.LOG)
    rec = _render(tmp_path / "job", engine, track, plan)
    assert rec.extra["reused_chunks"] == 0 and len(standin.LOG) - before == 3  # chunks 0-2 again; 3-5 kept
    assert _shas(tmp_path / "job", plan) == shas
    assert not list((tmp_path / "state").glob("*.npy"))
