"""LiveAvatar (Alibaba-Quark/LiveAvatar: a LoRA on Wan2.2-S2V-14B), driven from the user's checkout.

It is not on PyPI, so talkgen imports it from a clone named by render.liveavatar.checkout
or $TALKGEN_LIVEAVATAR, and never edits it. One process on one GPU runs the offloading
pipeline (`causal_s2v_pipeline`); exactly five ranks run the TPP pipeline
(`causal_s2v_pipeline_tpp`: one denoising step on each of 4 DiT ranks and one rank
decoding the VAE). Everything is checked before anything heavy is loaded.

Continuity: LiveAvatar starts every generate() call from motion frames made by repeating
the reference image, so back-to-back chunks would each restart from the still portrait.
A subclass of their pipeline swaps the frames fed to that motion encoding for the last
frames of the previous chunk, so the next chunk moves on from where the last one stopped.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import re
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from talkgen.engines.avatar import AvatarParts, AvatarTraits
from talkgen.engines.registry import Backend, Finding, Settings
from talkgen.errors import TalkgenError

if TYPE_CHECKING:
    import numpy as np

    from talkgen.engines.footprint import Need
    from talkgen.gpus import Gpu
    from talkgen.portrait import Portrait
    from talkgen.recipe import LiveAvatarConfig, RenderConfig
    from talkgen.speech import SpeechTrack

PIPELINE = "liveavatar/models/wan/causal_s2v_pipeline.py"
# Module names LiveAvatar's own launcher keeps out of FP8 (small, precision-sensitive layers).
FP8_KEEP = ["text_embedding", "time_embedding", "time_projection", "head.head", "casual_audio_encoder.encoder.final_linear"]
AUDIO_RATE = 16000
# The upstream commit this adapter was checked against, line by line.
UPSTREAM = "Alibaba-Quark/LiveAvatar@9c2c38d"
# generate() drops the first 3 frames it decodes: its frame k shows audio frame k + 3. So
# talkgen hands it audio from 3 frames before the chunk (the lead) and gets back exactly the
# chunk's frames, each on its own audio frame, with nothing held or thrown away.
DROPPED = 3
# Audio heard on each side of a chunk (2 s at 25 fps): wav2vec2's positional convolution alone
# spans 128 of its 50 Hz frames (2.56 s), and its attention the whole file it is given.
AUDIO_CONTEXT_FRAMES = 50
LORA_FILE = "liveavatar.safetensors"  # the name their load_state_dict fetches from the hub repo
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
SAMPLE_BYTES = 1 << 20  # read at either end of each weight file for the render key
MIN_AREA = 64 * 64  # the smallest area that holds one of LiveAvatar's frames (multiples of 64)
# The largest: their KV caches have fixed room for the reference and motion tokens (2800 on
# one GPU, 3000 in TPP, "hard-coded for 720*400 resolution"), and a larger frame overflows
# them in the first chunk, after the 14B load.
MAX_AREA = 720 * 400
# What their code is written for: TPP hands denoising step i to rank i and decodes on the
# next rank; one GPU keeps a KV cache for each of 4 steps; audio features come at 25 fps;
# a clip is denoised in blocks of 3 latent frames, 12 video frames.
TPP_DIT, SINGLE_GPU_STEPS, FPS, BLOCK_FRAMES = 4, 4, 25, 12
MOTION_FRAMES = 73  # the motion window (wan_s2v_14B_modified.py), so 19 latent frames
# What a GPU holds, from upstream's code. The DiT of Wan2.2-S2V-14B is 40 blocks of width 5120
# (wan_s2v_14B_modified.py); its parameters are counted from the weights' headers once pulled,
# else taken from the weights manifest. A KV cache holds, per block, keys and values for one
# clip's latent tokens and fixed room for the reference and motion tokens: 2800 on one GPU,
# 3000 in TPP (causal_s2v_pipeline.py L601-625, _tpp.py L605-621). One GPU keeps 4 caches,
# one per step (L981-988), beside the DiT, and moves the text encoder, VAE and audio encoder
# to the CPU while it denoises (offload_model, L961-966). A TPP DiT rank keeps one cache, and,
# without offloading, the text encoder, VAE and audio encoder as well.
LAYERS, DIM = 40, 5120
COND_TOKENS_ONE_GPU, COND_TOKENS_TPP = 2800, 3000
# The modules beside the DiT, in bf16, from their files in Wan-AI/Wan2.2-S2V-14B: umT5-XXL's
# encoder (11.4 GB), the VAE (508 MB in fp32), wav2vec2-large-xlsr-53 (315 M parameters).
ENCODERS_GIB = 10.6 + 0.24 + 0.59
# A LoRA of rank 128 on every block's attention (self and cross: q, k, v, o) and FFN, in bf16,
# until the file is there to measure.
LORA_GIB = LAYERS * 128 * (8 * 2 * DIM + 2 * (DIM + 13824)) * 2 / 2**30
WORKSPACE_GIB = 2.0  # a block's activations and the decoded frames: an allowance, not measured


def checkout_dir(la: LiveAvatarConfig) -> Path | None:
    value = la.checkout or os.environ.get("TALKGEN_LIVEAVATAR", "")
    return Path(value) if value else None


def weight_dirs(la: LiveAvatarConfig) -> tuple[Path, Path]:
    """The folders named in the recipe, else the weights manifest's (read in talkgen's own
    process only: the ranks get both resolved, see resolved_paths)."""

    def folder(value: str, model: str) -> Path:
        if value:
            return Path(value)
        from talkgen.weights import local_dir

        return local_dir(model)

    return folder(la.ckpt_dir, "wan2.2-s2v-14b"), folder(la.lora_dir, "live-avatar")


def resolved_paths(la: LiveAvatarConfig) -> dict:
    """The checkout and weight folders as absolute paths, for ranks that cannot read the manifest."""
    root = checkout_dir(la)
    ckpt, lora = weight_dirs(la)
    return {"checkout": str(root.resolve()) if root else "", "ckpt_dir": str(ckpt.resolve()), "lora_dir": str(lora.resolve())}


def output_rank(config: RenderConfig) -> int:
    la = config.liveavatar
    if config.nproc == 1:
        return 0
    return la.num_gpus_dit if la.enable_vae_parallel else la.num_gpus_dit - 1


def max_area(la: LiveAvatarConfig) -> int:
    """The pixel area render.liveavatar.size names. LiveAvatar takes only the area from it:
    its frames keep the reference image's shape (see LiveAvatarEngine._frame_size)."""
    try:
        w, h = (int(v) for v in la.size.split("*"))
    except ValueError:
        raise TalkgenError(f"render.liveavatar.size '{la.size}' must be WIDTH*HEIGHT, e.g. 704*384") from None
    return w * h


def identity(config: RenderConfig) -> dict:
    """What the render key knows of LiveAvatar: its code (talkgen's and the checkout's commit),
    its settings and its weights, by content: other weights in the same folders render again,
    the same weights moved to other folders do not."""
    la = config.liveavatar
    ckpt, lora = weight_dirs(la)
    return {"engine": "liveavatar", "version": metadata.version("talkgen"), "code": _code_hash(), "checkout": _checkout_id(la),
            "settings": {k: v for k, v in la.__dict__.items() if k not in ("checkout", "ckpt_dir", "lora_dir")},
            "weights": {"ckpt": weights_id(ckpt), "lora": weights_id(lora) if la.lora else []}}


def weights_id(folder: Path) -> list:
    """Each weight file in `folder`: its name, size and the sha256 of its first and last MiB.
    Hashing the 49 GB of Wan2.2-S2V-14B at every render would take minutes; other weights of the
    same shapes differ in the tensors at either end. A file changed only in its middle, at the
    same size, is not seen: talkgen weights verify re-hashes whole files."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    return [[str(p.relative_to(folder)), *_sampled(str(p), p.stat().st_size, p.stat().st_mtime_ns)] for p in files]


@functools.lru_cache(maxsize=256)
def _sampled(path: str, size: int, mtime_ns: int) -> tuple[int, str]:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return size, digest.hexdigest()


def traits(config: RenderConfig) -> AvatarTraits:
    la = config.liveavatar
    return AvatarTraits(
        max_chunk_s=la.infer_frames * la.clips_per_chunk / config.fps,
        frames_per_clip=la.infer_frames,
        lead_frames=DROPPED,
        world_size=config.nproc,
        identity=identity(config),
        check={"lip_sync": True},  # it claims lip sync; until calibrated, check's puppet bounds apply
    )


def gpu_need_gib(config: RenderConfig) -> float:
    """GiB each avatar GPU needs: the recipe's figure, else the sum of memory_parts."""
    return config.liveavatar.min_gpu_gb or round(sum(gib for _, gib in memory_parts(config)), 2)


def memory_parts(config: RenderConfig) -> list[tuple[str, float]]:
    """What the most loaded avatar GPU holds at its peak, part by part, in GiB (see LAYERS)."""
    from talkgen.engines.footprint import param_count

    la = config.liveavatar
    ckpt, lora = weight_dirs(la)
    params, _ = param_count("wan2.2-s2v-14b", sorted(ckpt.glob("diffusion_pytorch_model*.safetensors")) if ckpt.is_dir() else [])
    # FP8 keeps the linear layers, nearly all of the parameters, at a byte each.
    parts = [(f"DiT {params / 1e9:.1f}B in {'FP8' if la.fp8 else 'bf16'}", params * (1 if la.fp8 else 2) / 2**30)]
    if la.lora:
        files = sorted(lora.glob("*.safetensors")) if lora.is_dir() else []
        parts.append(("LoRA", files[0].stat().st_size / 2**30 if files else LORA_GIB))
    one_gpu = config.nproc == 1
    caches = SINGLE_GPU_STEPS if one_gpu else 1
    tokens = _latent_frames(la) * _tokens_per_frame(config)
    parts.append((f"{caches} KV cache{'s' if caches > 1 else ''} of {tokens} tokens", caches * LAYERS * tokens * DIM * 4 / 2**30))
    cond = COND_TOKENS_ONE_GPU if one_gpu else COND_TOKENS_TPP
    parts.append((f"the condition cache ({cond} tokens)", LAYERS * cond * DIM * 4 / 2**30))
    if not (la.offload and one_gpu):
        parts.append(("text encoder, VAE and audio encoder", ENCODERS_GIB))
    parts.append(("workspace", WORKSPACE_GIB))
    return [(what, round(gib, 2)) for what, gib in parts]


def _latent_frames(la: LiveAvatarConfig) -> int:
    """A clip's latent frames, as their generate() sizes its noise (causal_s2v_pipeline.py L944-945)."""
    return (la.infer_frames + 3 + MOTION_FRAMES) // 4 - (MOTION_FRAMES + 3) // 4


def _tokens_per_frame(config: RenderConfig) -> int:
    """At most: the frame fits in the area and in the square portrait rounded up to 64 a side,
    and each token is 16x16 pixels (the VAE's 8 and the DiT's patch of 2)."""
    side = -(-config.size // 64) * 64
    return min(max_area(config.liveavatar), side * side) // 256


def memory_need(config: RenderConfig, device: str) -> Need | None:
    if device == "cpu":
        return None
    from talkgen.engines.footprint import Need

    source = "recipe's render.liveavatar.min_gpu_gb" if config.liveavatar.min_gpu_gb else "computed from LiveAvatar's code"
    return Need("avatar", "liveavatar", device, float(gpu_need_gib(config)), source=source)


def formats(config: RenderConfig) -> list[tuple[str, str]]:
    if config.device != "cuda":
        return []
    return [("bf16", "render.dtype=bfloat16"), *([("fp8", "render.liveavatar.fp8")] if config.liveavatar.fp8 else [])]


def rank_settings(config: RenderConfig) -> dict:
    return {"liveavatar": resolved_paths(config.liveavatar)}


def doctor_findings(config: RenderConfig) -> list[Finding]:
    return [_checkout_finding(config), _memory_finding(config)]


def _memory_finding(config: RenderConfig) -> Finding:
    where = "on one GPU" if config.nproc == 1 else f"on each of its {config.nproc} GPUs (a DiT rank's)"
    if config.liveavatar.min_gpu_gb:
        return Finding("memory", True, f"LiveAvatar: {config.liveavatar.min_gpu_gb:g} GiB {where}, as render.liveavatar.min_gpu_gb says")
    parts = " + ".join(f"{what} {gib:.1f}" for what, gib in memory_parts(config))
    return Finding("memory", True, f"LiveAvatar: about {gpu_need_gib(config):.1f} GiB {where}: {parts} "
                                   "(computed from its code and the weights, not measured)")


def _checkout_finding(config: RenderConfig) -> Finding:
    root = checkout_dir(config.liveavatar)
    if root is None:
        return Finding("liveavatar", False, "no LiveAvatar checkout configured",
                       "git clone https://github.com/Alibaba-Quark/LiveAvatar and set TALKGEN_LIVEAVATAR (or render.liveavatar.checkout) to it")
    if not (root / PIPELINE).is_file():
        return Finding("liveavatar", False, f"{root} is not a LiveAvatar checkout (no {PIPELINE})",
                       "point TALKGEN_LIVEAVATAR at a clone of github.com/Alibaba-Quark/LiveAvatar")
    return Finding("liveavatar", True, f"checkout {root}")


def preflight(config: RenderConfig, gpus: list["Gpu"], memory: bool = True) -> list[str]:
    """Everything that would stop LiveAvatar, found before loading 14B parameters.

    `gpus` are the GPUs the ranks will see, as nvidia-smi lists them: reading them does not
    start CUDA in talkgen's own process. memory=False leaves out their memory, which the
    ranks' own check need not weigh again (the weights manifest is not on their side)."""
    la = config.liveavatar
    problems = _setting_problems(config)
    try:
        if max_area(la) < MIN_AREA:
            problems.append(f"render.liveavatar.size={la.size} is too small: LiveAvatar's frames are multiples of 64 on each side, "
                            "so set an area of at least 64*64 (704*384 gives 512x512 frames)")
        elif max_area(la) > MAX_AREA:
            problems.append(f"render.liveavatar.size={la.size} is too large: LiveAvatar's caches have room for frames of up to "
                            "720*400 pixels: set render.liveavatar.size=704*384 or smaller")
    except TalkgenError as exc:
        problems.append(str(exc))
    root = checkout_dir(la)
    if root is None:
        problems.append("no LiveAvatar checkout: clone github.com/Alibaba-Quark/LiveAvatar and set render.liveavatar.checkout or TALKGEN_LIVEAVATAR")
    elif not (root / PIPELINE).is_file():
        problems.append(f"{root} is not a LiveAvatar checkout (no {PIPELINE})")
    elif config.device == "cpu" and _calls_cuda(root / _pipeline_file(config.nproc)):
        problems.append(f"placement.avatar=cpu: LiveAvatar's code runs on CUDA GPUs only ({_pipeline_file(config.nproc)} puts its "
                        "model on cuda:N and calls torch.cuda): set placement.avatar=cuda:0, or cuda:0,1,2,3,4 for 5 ranks")
    ckpt, lora = weight_dirs(la)
    if not ckpt.is_dir() or not any(ckpt.iterdir()):
        problems.append(f"Wan2.2-S2V-14B weights missing in {ckpt}: talkgen weights pull --model wan2.2-s2v-14b (or set render.liveavatar.ckpt_dir)")
    if la.lora and (not lora.is_dir() or not any(lora.iterdir())):
        problems.append(f"Live-Avatar LoRA missing in {lora}: talkgen weights pull --model live-avatar (or set render.liveavatar.lora_dir)")
    if config.device == "cuda":
        need = gpu_need_gib(config) if memory else 0.0
        if len(gpus) < config.nproc:
            problems.append(f"{config.nproc} GPU(s) needed, {len(gpus)} visible")
        small = [f"GPU {i} ({g.name}, {g.memory_gib:.0f} GiB)" for i, g in enumerate(gpus[: config.nproc]) if g.memory_gib < need]
        if small:
            problems.append(f"LiveAvatar needs {need:.1f} GiB per GPU here: {', '.join(small)} has less")
        # torch._scaled_mm exists on an A100 too; only the first FP8 forward fails there.
        no_fp8 = [f"GPU {i} ({g.name}, compute {g.compute_cap[0]}.{g.compute_cap[1]})"
                  for i, g in enumerate(gpus[: config.nproc]) if la.fp8 and g.fp8 is False]
        if no_fp8:
            problems.append(f"render.liveavatar.fp8 needs compute capability 8.9 or newer (Ada, Hopper): {', '.join(no_fp8)} "
                            "has no FP8 matmul: set render.liveavatar.fp8=false")
    return problems


def _pipeline_file(nproc: int) -> str:
    return PIPELINE if nproc == 1 else PIPELINE.replace(".py", "_tpp.py")


def _calls_cuda(path: Path) -> bool:
    """Whether the code in `path`, comments aside, names CUDA: torch.cuda, or a "cuda" device
    string (upstream's constructor puts everything on f"cuda:{device_id}", L102)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return False
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return re.search(r"torch\.cuda\b|[\"']cuda\b", code) is not None


def _setting_problems(config: RenderConfig) -> list[str]:
    """Settings LiveAvatar's code cannot run with, though it would start with them."""
    la, problems = config.liveavatar, []
    if config.nproc not in (1, TPP_DIT + 1):
        problems.append(f"render.nproc={config.nproc}: LiveAvatar runs on 1 GPU (offloading) or on exactly {TPP_DIT + 1} ranks "
                        f"({TPP_DIT} DiT + 1 VAE): set render.nproc=1 or {TPP_DIT + 1}")
    elif config.nproc > 1:
        # Any other split leaves a rank waiting in recv for a step no rank runs, or runs a
        # step on a rank that has no KV cache.
        if la.num_gpus_dit != TPP_DIT:
            problems.append(f"render.liveavatar.num_gpus_dit={la.num_gpus_dit}: LiveAvatar's {TPP_DIT + 1} ranks are {TPP_DIT} DiT "
                            f"ranks and 1 VAE rank: set render.liveavatar.num_gpus_dit={TPP_DIT}")
        if not la.enable_vae_parallel:
            problems.append("render.liveavatar.enable_vae_parallel=false: LiveAvatar's multi-GPU mode decodes on a rank of its own: "
                            "set render.liveavatar.enable_vae_parallel=true")
        if la.sample_steps != TPP_DIT:
            problems.append(f"render.liveavatar.sample_steps={la.sample_steps}: on {TPP_DIT + 1} ranks each DiT rank runs one "
                            f"step: set render.liveavatar.sample_steps={TPP_DIT}")
    elif la.sample_steps > SINGLE_GPU_STEPS:
        problems.append(f"render.liveavatar.sample_steps={la.sample_steps}: LiveAvatar on one GPU has KV caches for "
                        f"{SINGLE_GPU_STEPS} steps: set render.liveavatar.sample_steps={SINGLE_GPU_STEPS} or fewer")
    if config.device == "cuda" and config.nproc == 1 and config.launcher != "torchrun" and config.gpus not in ("", "0"):
        # Their one-GPU pipeline puts its model and caches on cuda:0 whatever device it is given.
        problems.append(f"placement.avatar=cuda:{config.gpus}: LiveAvatar's one-GPU pipeline always runs on cuda:0: "
                        "set placement.avatar=cuda:0, or render.launcher=torchrun to hand its rank that GPU as its cuda:0")
    if config.dtype != "bfloat16":
        problems.append(f"render.dtype={config.dtype}: LiveAvatar always runs in bfloat16 (its param_dtype): set render.dtype=bfloat16")
    if la.solver != "euler":
        problems.append(f"render.liveavatar.solver={la.solver}: LiveAvatar samples only with euler: set render.liveavatar.solver=euler")
    if config.fps != FPS:
        problems.append(f"render.fps={config.fps}: LiveAvatar's audio features and video run at {FPS} fps: set render.fps={FPS}")
    if la.infer_frames <= 0 or la.infer_frames % BLOCK_FRAMES:
        problems.append(f"render.liveavatar.infer_frames={la.infer_frames}: LiveAvatar denoises blocks of {BLOCK_FRAMES} frames: "
                        "set a multiple of 12, e.g. 48")
    return problems


def visible_gpus(selection: str = "") -> list["Gpu"]:
    """The GPUs the ranks will see, read by talkgen.gpus (nvidia-smi, not CUDA); `selection`
    is placement.avatar's list, which counts within CUDA_VISIBLE_DEVICES as torch does."""
    from talkgen.gpus import read_gpus, select, visible

    return select(visible(read_gpus().gpus), selection)


def _continuing(base):
    """Their pipeline class, continuing each generate() call from the last one's frames.

    Per call, seeded from the call's own seed so that every rank and every resumed render
    draws the same: Python's and numpy's generators, which their model draws from unseeded
    in every forward (causal_model_s2v.py L1139-1140, random.randint(4, 30)). The streaming
    decoder starts afresh, as in their first call (first_decode, vae_streaming.py L511 and
    L621-623), so that a chunk decodes the same after a resume as after the chunk before it.
    The VAE is handed in wrapped for the call (_SeedingVAE), never patched: a bound method
    put back on it would make a reference cycle that keeps its weights after a release."""

    class Continuing(base):
        seed_frames = None  # float tensor (1, 3, T, H, W) in [-1, 1]: the previous chunk's last frames
        # (frames before the call's own audio, frames it needs): the features generate() gets are
        # those frames of the audio file's encoding, which heard the audio around them
        audio_window = None

        def generate(self, *args, **kwargs):
            import random

            import numpy as np

            seed = kwargs.get("seed", -1)
            if seed >= 0:
                random.seed(seed)
                np.random.seed(seed % 2**32)
            model = getattr(self.vae, "model", None)
            if model is not None and hasattr(model, "first_decode"):
                model.first_decode = True
            vae = self.vae
            self.vae = _SeedingVAE(vae, self.seed_frames)
            try:
                return super().generate(*args, **kwargs)
            finally:
                self.vae = vae

        def encode_audio(self, audio_path, infer_frames):
            found, clips = super().encode_audio(audio_path, infer_frames)
            if self.audio_window is None:
                return found, clips
            import torch

            before, needed = self.audio_window
            kept = found[..., before:before + needed]
            if kept.shape[-1] < needed:  # past the audio: zero features, as their bucketing gives
                kept = torch.cat([kept, kept.new_zeros(*kept.shape[:-1], needed - kept.shape[-1])], dim=-1)
            return kept, needed // infer_frames

    return Continuing


class _SeedingVAE:
    """The pipeline's VAE for one generate() call.

    generate() encodes the reference clip first and the motion frames second. The seed is
    written into the motion frames' tensor rather than passed in its place: the one-GPU
    pipeline keeps a detach() of that tensor (videos_last_frames, causal_s2v_pipeline.py L897)
    as the start of the decode context for the chunk's second clip, and must see the seed
    there too. The TPP pipeline primes its streaming decoder, before the first block, with
    motion_latents[:, :, :7] (causal_s2v_pipeline_tpp.py L1119-1121): the oldest of the motion
    frames, about 3 s before the chunk once they are the previous chunk's. The newest go in
    their place, so the first block decodes against the frames just before it."""

    def __init__(self, vae, seed):
        self._vae, self._seed = vae, seed
        self._encodes, self._decodes, self._motion = 0, 0, None

    def __getattr__(self, name):
        return getattr(self._vae, name)

    def encode(self, videos, *args, **kwargs):
        self._encodes += 1
        if self._encodes == 2 and self._seed is not None:
            for v in videos if isinstance(videos, list) else [videos]:
                v.copy_(_fit(v, self._seed))
        found = self._vae.encode(videos, *args, **kwargs)
        if self._encodes == 2:
            self._motion = found
        return found

    def stream_decode(self, zs, *args, **kwargs):
        self._decodes += 1
        if self._decodes == 1 and self._motion is not None and getattr(zs, "ndim", 0) >= 3:
            import torch

            motion = torch.stack(list(self._motion)).to(dtype=zs.dtype, device=zs.device)
            n = zs.shape[2]
            if motion.shape[2] > n and torch.equal(zs, motion[:, :, :n]):
                zs = motion[:, :, -n:]
        return self._vae.stream_decode(zs, *args, **kwargs)


def _fit(target, seed):
    """`seed` frames shaped like `target` (…, C, T, H, W): resized, and the oldest repeated if too few."""
    import torch

    t, h, w = target.shape[-3:]
    frames = seed.to(device=target.device, dtype=target.dtype)
    if frames.shape[-2:] != (h, w):
        b, c, n = frames.shape[:3]
        flat = frames.permute(0, 2, 1, 3, 4).reshape(b * n, c, *frames.shape[-2:])
        flat = torch.nn.functional.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False)
        frames = flat.reshape(b, n, c, h, w).permute(0, 2, 1, 3, 4)
    n = frames.shape[2]
    if n < t:
        frames = torch.cat([frames[:, :, :1].expand(-1, -1, t - n, -1, -1), frames], dim=2)
    frames = frames[:, :, -t:]
    return frames.reshape(target.shape)


def check(config: RenderConfig) -> None:
    """Raise one line listing every problem, before anything is loaded or any rank launched."""
    # In a torchrun rank the launcher has already narrowed CUDA_VISIBLE_DEVICES to the
    # avatar's cards, so every card the rank sees is one of them, renumbered from 0.
    in_rank = "TORCHELASTIC_RUN_ID" in os.environ
    problems = preflight(config, visible_gpus("" if in_rank else config.gpus) if config.device == "cuda" else [], memory=not in_rank)
    if problems:
        raise TalkgenError("LiveAvatar cannot run: " + "; ".join(problems))


class LiveAvatarEngine:
    def __init__(self, config: RenderConfig, portrait: "Portrait", rank: int = 0, world_size: int = 1, device: str = "cpu", state_dir: Path | None = None):
        la = config.liveavatar
        check(config)
        self.config, self.la, self.rank, self.world_size = config, la, rank, world_size
        self.fps = config.fps
        self.frames_per_clip = la.infer_frames
        self.lead_frames = DROPPED
        self.max_chunk_s = la.infer_frames * la.clips_per_chunk / config.fps
        self.output_rank = output_rank(config)
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="talkgen-liveavatar-"))
        self._tmp = Path(tempfile.mkdtemp(prefix="talkgen-liveavatar-io-"))
        self._ref = self._tmp / "portrait.png"
        self._last: Any = None
        self.pipe = self._load(checkout_dir(la), device)
        self.use_portrait(portrait)

    def use_portrait(self, portrait: "Portrait") -> None:
        """Render the next chunks of `portrait`: a job's input, read by generate() at every call
        (it builds its KV cache anew in each, causal_s2v_pipeline.py L935 and _tpp.py L937), so a
        new portrait needs no reload of the model."""
        from talkgen.png import write_png

        self.portrait = portrait
        write_png(self._ref, portrait.image)
        self.height, self.width = self._frame_size()

    def _frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames LiveAvatar will make from our portrait, asked of the
        pipeline itself: generate() ignores generate_size and sizes frames from the reference
        image, scaled within max_area and rounded to multiples of 64. Every rank knows it
        before the first chunk, so the output rank's encoder opens at the frames' real size."""
        h, w = (int(v) for v in self.pipe.get_gen_size(size=None, max_area=max_area(self.la), ref_image_path=str(self._ref),
                                                       pre_video_path=None))
        if h <= 0 or w <= 0:
            side = self.portrait.image.shape[0]
            raise TalkgenError(f"render.liveavatar.size={self.la.size} leaves LiveAvatar no frame for a {side}x{side} portrait: "
                               "set a larger area, e.g. 704*384")
        return h, w

    def _load(self, root: Path, device: str):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        suffix = "_tpp" if self.world_size > 1 else ""
        pipeline = importlib.import_module(f"liveavatar.models.wan.causal_s2v_pipeline{suffix}")
        configs = importlib.import_module("liveavatar.models.wan.wan_2_2.configs")
        la = self.la
        if self.world_size == 1:
            from talkgen.ranks.group import ensure_single_process_group

            ensure_single_process_group(self._tmp)
        ckpt, lora = weight_dirs(la)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        pipe = _continuing(pipeline.WanS2V)(
            config=configs.WAN_CONFIGS[la.task], checkpoint_dir=str(ckpt), device_id=local_rank, rank=self.rank,
            convert_model_dtype=True, single_gpu=self.world_size == 1, offload_kv_cache=False,
        )
        if la.lora:
            settings = _lora_settings(root)
            pipe.noise_model = pipe.add_lora_to_model(
                pipe.noise_model, lora_rank=settings["lora_rank"], lora_alpha=settings["lora_alpha"],
                lora_target_modules=settings["lora_target_modules"], init_lora_weights=settings["init_lora_weights"],
                pretrained_lora_path=str(_lora_file(lora)), load_lora_weight_only=False,
            )
        if la.fp8:
            import torch

            if not hasattr(torch, "_scaled_mm"):
                raise TalkgenError("render.liveavatar.fp8 needs a torch with FP8 matmul (torch._scaled_mm): set it to false")
            fp8 = importlib.import_module("liveavatar.utils.fp8_linear")
            fp8.replace_linear_with_scaled_fp8(pipe.noise_model, ignore_keys=FP8_KEEP)
        return pipe

    def identity(self) -> dict:
        return {**identity(self.config), "portrait": self.portrait.sha256}

    def continuity_after(self, end_frame: int) -> Any:
        return self._last

    def render_chunk(self, track: "SpeechTrack", start_frame: int, end_frame: int, continuity: Any = None) -> Iterator["np.ndarray"]:
        import numpy as np

        la, n = self.la, end_frame - start_frame
        if (n + DROPPED) % la.infer_frames:
            raise TalkgenError(f"a LiveAvatar chunk must be whole clips of {la.infer_frames} frames less the {DROPPED} "
                               f"generate() drops, got {n}: render again to rebuild the plan")
        self.pipe.seed_frames = self._load_seed(continuity)
        # The audio around the chunk, as far as the speech goes (its start is the first chunk's
        # lead): their audio encoder normalises what it is given and hears across frames, so
        # the chunk's own frames of this encoding are those of one encoding of the whole speech.
        speech_frames = math.ceil(track.samples * self.fps / track.sample_rate)
        before = min(AUDIO_CONTEXT_FRAMES, start_frame)
        after = max(0, min(AUDIO_CONTEXT_FRAMES, speech_frames - end_frame))
        wav = self._chunk_audio(track, start_frame - DROPPED - before, end_frame + after)
        self.pipe.audio_window = (before, n + DROPPED)
        video, _ = self.pipe.generate(
            input_prompt=la.prompt, ref_image_path=str(self._ref), audio_path=str(wav), num_repeat=(n + DROPPED) // la.infer_frames,
            generate_size=la.size, max_area=max_area(la), infer_frames=la.infer_frames,
            sample_solver=la.solver, sampling_steps=la.sample_steps, seed=la.seed + start_frame,
            offload_model=la.offload and self.world_size == 1, num_gpus_dit=la.num_gpus_dit if self.world_size > 1 else 1,
            enable_vae_parallel=la.enable_vae_parallel and self.world_size > 1, enable_online_decode=False,
        )
        if self.rank != self.output_rank:
            return
        if video is None:
            raise TalkgenError(f"LiveAvatar returned no video on rank {self.rank}, its output rank")
        # (C, N, H, W) in [-1, 1] -> N frames of H x W x 3 uint8.
        frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(dtype=__import__("torch").uint8).permute(1, 2, 3, 0).cpu().numpy()
        if frames.shape[1:3] != (self.height, self.width):
            raise TalkgenError(f"LiveAvatar returned {frames.shape[2]}x{frames.shape[1]} frames where its get_gen_size() said "
                               f"{self.width}x{self.height} for this portrait: use a checkout of {UPSTREAM} (render.liveavatar.checkout)")
        if len(frames) != n:
            raise TalkgenError(f"LiveAvatar returned {len(frames)} frames for a chunk of {n}, where its generate() drops "
                               f"{DROPPED} of {n + DROPPED} at {UPSTREAM}: use a checkout of that commit (render.liveavatar.checkout)")
        self._last = self._save_seed(frames, end_frame)
        for frame in frames:
            yield np.ascontiguousarray(frame)

    def _chunk_audio(self, track: "SpeechTrack", start: int, end: int) -> Path:
        """Frames [start, end) of the speech as a 16 kHz WAV, the file their audio encoder
        reads; silence before the speech's first frame (the first chunk's lead)."""
        import numpy as np

        from talkgen.speech import WavWriter

        sr = track.sample_rate
        audio = track.read(start * sr // self.fps, end * sr // self.fps)  # zeros outside the recording
        if sr != AUDIO_RATE:
            idx = np.linspace(0, len(audio) - 1, int(len(audio) * AUDIO_RATE / sr))
            audio = np.interp(idx, np.arange(len(audio)), audio).astype(np.float32)
        path = self._tmp / "chunk.wav"
        w = WavWriter(path, AUDIO_RATE)
        w.write(audio)
        w.close()
        return path

    def _save_seed(self, frames: "np.ndarray", end_frame: int) -> dict:
        """Keep the chunk's last frames on disk, as many as the model's motion window (73
        upstream) where the chunk has them; the continuity state is the file's path. Fewer
        would leave the window's oldest frames as copies of one frame."""
        import numpy as np

        from talkgen.chunks import STATE_FILE

        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"motion-{end_frame:07d}.npy"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npy")
        np.save(tmp, frames[-int(self.pipe.motion_frames) :])
        os.replace(tmp, path)
        return {STATE_FILE: str(path.resolve()), "frame": end_frame}

    def _load_seed(self, continuity: Any):
        from talkgen.chunks import state_file

        path = state_file(continuity)
        if path is None:
            return None
        import numpy as np
        import torch

        frames = torch.from_numpy(np.load(path))  # N, H, W, 3 uint8
        return (frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0)


BACKEND = Backend(kind="avatar", names=("liveavatar",), identity=identity, check=None, load=LiveAvatarEngine,
                  memory=memory_need, formats=formats, doctor=doctor_findings,
                  avatar=AvatarParts(traits=traits, preflight=check, rank_settings=rank_settings, ranks=True),
                  settings=Settings(
                      # its checkout and weights are in its identity by what they are, not where they lie
                      output=("fps", "device", "dtype", "nproc", *(f"liveavatar.{k}" for k in (
                          "task", "size", "prompt", "infer_frames", "clips_per_chunk", "sample_steps", "solver", "seed", "lora",
                          "fp8", "offload", "num_gpus_dit", "enable_vae_parallel", "min_gpu_gb"))),
                      reload=("fps", "device", "dtype", "nproc", "liveavatar")))


def _lora_settings(root: Path) -> dict:
    """LoRA rank, alpha and targets from LiveAvatar's own training config."""
    import yaml

    data = yaml.safe_load((root / "liveavatar" / "configs" / "s2v_causal_sft.yaml").read_text(encoding="utf-8"))
    return {k: data[k] for k in ("lora_rank", "lora_alpha", "lora_target_modules", "init_lora_weights")}


def _lora_file(folder: Path) -> Path:
    """The LoRA to merge: the file LiveAvatar's own loader takes from Quark-Vision/Live-Avatar
    by name, else (a renamed copy) the first weights file in the folder."""
    named = folder / LORA_FILE
    if named.is_file():
        return named
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".pt", ".bin"))
    if not files:
        raise TalkgenError(f"no LoRA weights ({LORA_FILE}, or any .safetensors or .pt) in {folder}: "
                           "talkgen weights pull --model live-avatar (or set render.liveavatar.lora_dir)")
    return files[0]


def _checkout_id(la: LiveAvatarConfig) -> str:
    root = checkout_dir(la)
    head = root / ".git" / "HEAD" if root else None
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (root / ".git" / ref[5:]).read_text().strip()
        return ref
    except (OSError, AttributeError):
        return str(root) if root else ""


def _code_hash() -> str:
    from talkgen.job import code_hash

    return code_hash(__name__)
